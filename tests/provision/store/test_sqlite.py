"""provision.store.sqlite on a real SQLite file: migrations, durability across reopen, event queries."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from provision.store.buffered import seen_span
from provision.store.sqlite import MIGRATIONS, Store, StoreError, _default, _json, _write
from pxe.dhcp.config import Subnet
from pxe.dhcp.leases import Lease, LeaseEngine, LeaseState
from pxe.policy import Event

MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"


def lease(ip: str, mac: str, state=LeaseState.BOUND) -> Lease:
    return Lease(
        ip=ip,
        mac=mac,
        state=state,
        expires=2e9,
        subnet="198.18.0.0/24",
        hostname="h",
        client_id=b"\x01x",
        updated=5.0,
    )


def test_migrates_from_empty_and_is_wal(tmp_path):
    db = tmp_path / "p.db"
    with Store(db) as s:
        assert s.schema_version == len(MIGRATIONS)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"leases", "devices", "events"} <= tables
    con.close()
    with Store(db) as s:  # reopening applies nothing twice
        assert s.schema_version == len(MIGRATIONS)


def test_refuses_newer_schema_and_non_database(tmp_path):
    db = tmp_path / "p.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        Store(junk)


def test_lease_survives_reopen_and_delete(tmp_path):
    db = tmp_path / "p.db"
    s = Store(db)
    s.save_lease(lease("198.18.0.10", MAC1))
    s.save_lease(lease("198.18.0.11", MAC2))
    s.commit()
    # a second connection (another process would see the same) sees committed rows at once
    other = sqlite3.connect(db)
    assert other.execute("SELECT count(*) FROM leases").fetchone()[0] == 2
    other.close()
    s.delete_lease("198.18.0.11")
    s.save_lease(lease("198.18.0.10", MAC1, LeaseState.RELEASED))
    s.close()
    with Store(db) as s:
        (only,) = s.leases()
        assert only == lease("198.18.0.10", MAC1, LeaseState.RELEASED)
        # and the engine reloads it as the client's binding
        eng = LeaseEngine([Subnet("198.18.0.0/24", pools=(("198.18.0.10", "198.18.0.20"),))], (), s)
        assert eng.offer(eng.pools["198.18.0.0/24"].subnet, MAC1) == "198.18.0.10"


def test_events_queries_and_devices(tmp_path):
    with Store(tmp_path / "p.db") as s:
        s.add_event(Event("dhcp.discover", MAC1, None, {"xid": "1", "circuit": b"\x01"}, ts=100))
        s.add_event(Event("dhcp.ack", MAC1, "198.18.0.10", {"xid": "1"}, ts=101))
        s.add_event(Event("dhcp.discover", MAC2, None, {}, ts=102))
        s.add_event(Event("tftp.sent", MAC2, "198.18.0.11", {"bytes": 10}, ts=103))
        s.add_event(Event("power.on", None, None, {}, ts=104))
        assert [e.kind for e in s.events()] == [
            "dhcp.discover",
            "dhcp.ack",
            "dhcp.discover",
            "tftp.sent",
            "power.on",
        ]
        assert [e.kind for e in s.events(mac=MAC1)] == ["dhcp.discover", "dhcp.ack"]
        assert [e.mac for e in s.events(kinds=["dhcp.discover"])] == [MAC1, MAC2]
        assert [e.ts for e in s.events(since=102)] == [102, 103, 104]
        assert [e.ts for e in s.events(limit=2)] == [103, 104]
        assert s.events(mac=MAC1)[0].detail == {"xid": "1", "circuit": "01"}
        last = s.last_event_per_device()
        assert set(last) == {MAC1, MAC2}
        assert last[MAC1].kind == "dhcp.ack" and last[MAC2].kind == "tftp.sent"
        devices = {d.mac: d for d in s.devices()}
        assert devices[MAC1].first_seen == 100 and devices[MAC1].last_seen == 101
        s.upsert_device(MAC1, serial="SN1", platform="x86_64-kvm_x86_64-r0", identity={"vendor": "kvm"})
        s.upsert_device(MAC1, hostname="sw1")
        d = {d.mac: d for d in s.devices()}[MAC1]
        assert (d.serial, d.platform, d.hostname, d.identity) == (
            "SN1",
            "x86_64-kvm_x86_64-r0",
            "sw1",
            {"vendor": "kvm"},
        )


def test_store_is_an_event_sink_batched_by_interval_and_leases_per_loop_turn(tmp_path):
    s = Store(tmp_path / "p.db", event_flush_interval=0.2)

    def rows(table: str) -> int:
        other = sqlite3.connect(tmp_path / "p.db")
        try:
            return other.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            other.close()

    async def burst() -> tuple[int, int, int]:
        for i in range(500):
            s(Event("http.sent", MAC1, None, {"i": i}))
        s.save_lease(lease("198.18.0.10", MAC1))
        await asyncio.sleep(0)  # one loop turn: the lease is written, the events wait
        early = (rows("leases"), rows("events"))
        await asyncio.sleep(0.3)  # the event interval has passed
        return (*early, rows("events"))

    assert asyncio.run(burst()) == (1, 0, 500)
    assert len(s._events) == 0
    s.close()


def test_a_batch_of_any_size_is_written_whole(tmp_path):
    """_write binds up to 64 rows a statement (64, 32, ... 1): 0 to 130 leases and events, each
    row once, in order, and a device per MAC with its first and last time."""
    with Store(tmp_path / "p.db") as s:
        for n in (0, 1, 2, 63, 64, 65, 130):
            macs = [f"02:00:00:00:{n:02x}:{i:02x}" for i in range(n)]
            leases = {f"198.18.{n}.{i}": lease(f"198.18.{n}.{i}", mac) for i, mac in enumerate(macs)}
            events = [
                Event("dhcp.ack", mac, f"198.18.{n}.{i}", {"i": i}, 100.0 + i) for i, mac in enumerate(macs)
            ]
            events.append(Event("dhcp.ack", macs[0] if macs else None, None, {}, 500.0))
            _write(s.db, leases, events)
            got = s.events(limit=n + 1)
            assert [(e.mac, e.detail) for e in got[:-1]] == [(m, {"i": i}) for i, m in enumerate(macs)]
        assert len(s.leases()) == sum((1, 2, 63, 64, 65, 130))
        devices = {d.mac: d for d in s.devices()}
        assert (devices["02:00:00:00:82:00"].first_seen, devices["02:00:00:00:82:00"].last_seen) == (
            100.0,
            500.0,
        )
        assert (devices["02:00:00:00:82:81"].first_seen, devices["02:00:00:00:82:81"].last_seen) == (
            229.0,
            229.0,
        )


def test_event_detail_json_is_the_stdlib_encoders():
    """The prebuilt C encoder writes what json.JSONEncoder(separators, ensure_ascii=False) did."""
    reference = json.JSONEncoder(default=_default, separators=(",", ":"), ensure_ascii=False).encode
    for detail in ({}, {"note": "bios-pxe → undionly.kpxe", "n": None, "x": 1.5e300, "b": b"\x00\xff"},
                   {"nested": {"list": [1, "\n\"", {"k": object}]}, "inf": float("-inf")}):  # fmt: skip
        assert _json(detail) == reference(detail)


def test_no_lease_index_by_mac_and_lease_reads_by_address(tmp_path):
    """Migration 6 dropped leases_mac (a random key written per lease, read by no query): what
    reads leases reads the whole table or one address, by its primary key."""
    with Store(tmp_path / "p.db") as s:
        indexes = {
            r[0]
            for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='leases'")
        }
        assert indexes == {"sqlite_autoindex_leases_1"}
        plan = [
            r[3]
            for r in s.db.execute(
                "EXPLAIN QUERY PLAN SELECT mac, state, expires FROM leases WHERE ip=?", ("x",)
            )
        ]
        assert plan == ["SEARCH leases USING INDEX sqlite_autoindex_leases_1 (ip=?)"]


def test_seen_span_is_each_macs_first_and_last_time_in_any_order():
    events = [Event("dhcp.ack", MAC1, ts=5.0), Event("dhcp.ack", MAC2, ts=4.0), Event("x", None, ts=1.0),
              Event("dhcp.ack", MAC1, ts=3.0), Event("dhcp.ack", MAC1, ts=9.0), Event("dhcp.ack", MAC1, ts=7.0),
              Event("dhcp.ack", "", ts=0.0)]  # fmt: skip
    assert seen_span(events) == {MAC1: (3.0, 9.0), MAC2: (4.0, 4.0)}


@pytest.mark.parametrize("start", range(1, len(MIGRATIONS)))
def test_upgrade_keeps_a_populated_older_database(tmp_path, start):
    """A state file written by an older provision (schema `start`, with leases, devices, events
    and, where the schema has them, intents and a rollout) opens at the current version with every
    row readable, the per-device last events filled, and the dropped indexes gone."""
    from provision.store.sqlite import _statements

    db = tmp_path / "old.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    for number, script in enumerate(MIGRATIONS[:start], start=1):
        for statement in _statements(script):
            con.execute(statement)
        con.execute(f"PRAGMA user_version={number}")
    con.execute(
        "INSERT INTO leases VALUES ('198.18.0.10', ?, 'bound', 2e9, 'h', x'0178', '198.18.0.0/24', 5.0)",
        (MAC1,),
    )
    con.execute(
        "INSERT INTO devices (mac, serial, first_seen, last_seen) VALUES (?, 'SN1', 1.0, 2.0)", (MAC1,)
    )
    for ts, kind, mac in ((1.0, "dhcp.ack", MAC1), (2.0, "tftp.sent", MAC1), (3.0, "dhcp.ack", MAC2)):
        con.execute(
            "INSERT INTO events (ts, kind, mac, ip, detail) VALUES (?, ?, ?, '198.18.0.10', '{\"n\":1}')",
            (ts, kind, mac),
        )
    if start >= 2:
        con.execute("INSERT INTO enrolled VALUES ('sw1', '{\"mac\":\"52:54:00:00:00:01\"}', 1.0, 'ops')")
        con.execute("INSERT INTO intents (name, armed, target, updated) VALUES ('sw1', 1, 'nos-1', 1.0)")
    if start >= 4:
        con.execute(
            "INSERT INTO rollouts (id, name, plan, state, created, created_by, updated) "
            "VALUES ('r1', 'wave', '{}', 'running', 1.0, 'ops', 1.0)"
        )
        con.execute(
            "INSERT INTO rollout_devices (rollout, name, wave, position, stage, since) "
            "VALUES ('r1', 'sw1', 0, 0, 'armed', 1.0)"
        )
    con.close()

    with Store(db) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.leases() == [lease("198.18.0.10", MAC1)]
        assert [(d.mac, d.serial) for d in s.devices()] == [(MAC1, "SN1")]
        assert [(e.kind, e.mac, e.detail) for e in s.events()] == [
            ("dhcp.ack", MAC1, {"n": 1}),
            ("tftp.sent", MAC1, {"n": 1}),
            ("dhcp.ack", MAC2, {"n": 1}),
        ]
        last = s.last_events()
        assert sorted(e.kind for e in last[MAC1]) == ["dhcp.ack", "tftp.sent"]
        assert [e.ts for e in last[MAC2]] == [3.0]
        if start >= 2:
            assert s.intents()["sw1"].armed and s.intents()["sw1"].target == "nos-1"
            assert [r.name for r in s.enrolled()] == ["sw1"]
        # New events still reach the per-device table after the upgrade.
        s.add_event(Event("dhcp.ack", MAC2, "198.18.0.11", {"n": 2}, ts=4.0))
        s.flush()
        assert [e.detail for e in s.last_events([MAC2])[MAC2]] == [{"n": 2}]
        indexes = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "events_mac_ts" not in indexes and "leases_mac" not in indexes
        assert {"events_mac_id", "events_kind_ts", "events_ts"} <= indexes
    if start >= 4:
        con = sqlite3.connect(db)
        assert con.execute("SELECT stage FROM rollout_devices WHERE rollout='r1'").fetchall() == [("armed",)]
        con.close()
