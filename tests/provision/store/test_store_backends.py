"""The same behaviour from both state stores (provision.store.base): SQLite on a file, PostgreSQL on
a throwaway cluster (tests/support/postgres.py, marked `postgres`). Then what only a shared store
does: migrations under a lock, and lease claims from several processes never duplicating."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import time
from typing import Any

import psycopg
import pytest

from provision.config.inventory import Inventory
from provision.devices.lifecycle import Lifecycle
from provision.store.base import StateStore, is_url, open_store, redact
from provision.store.postgres import MIGRATIONS, PgStore
from provision.store.rollouts import RolloutStore
from provision.store.rollouts_pg import PgRolloutStore
from provision.store.sqlite import StoreError
from pxe.dhcp.config import Subnet
from pxe.dhcp.leases import Lease, LeaseEngine, LeaseState, Outcome
from pxe.policy import Event
from tests.support.cli import run_cli

MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
NET = "198.18.0.0/24"


def lease(ip: str, mac: str, state: LeaseState = LeaseState.BOUND, expires: float = 2e9) -> Lease:
    return Lease(ip=ip, mac=mac, state=state, expires=expires, subnet=NET, hostname="h",
                 client_id=b"\x01x", updated=5.0)  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "p.db")
    return str(request.getfixturevalue("pg_url"))


def opened(location: str, **kw: Any) -> StateStore:
    if is_url(location):
        kw.setdefault("version_poll", 0.0)  # tests look at once
    return open_store(location, **kw)


def test_open_store_picks_the_backend(location):
    with opened(location) as s:
        assert isinstance(s, StateStore)
        assert isinstance(s, PgStore) == is_url(location)
        assert s.schema_version >= 1


def test_redact_hides_the_password():
    assert redact("postgresql://prov:secret@db1/prov") == "postgresql://prov:***@db1/prov"
    assert redact("/var/lib/provision/provision.db") == "/var/lib/provision/provision.db"


def test_leases_survive_reopen_and_another_connection_sees_them(location):
    s = opened(location)
    s.save_lease(lease("198.18.0.10", MAC1))
    s.save_lease(lease("198.18.0.11", MAC2))
    s.commit()
    with opened(location) as other:
        assert sorted(le.ip for le in other.leases()) == ["198.18.0.10", "198.18.0.11"]
    s.delete_lease("198.18.0.11")
    s.save_lease(lease("198.18.0.10", MAC1, LeaseState.RELEASED))
    s.close()
    with opened(location) as s:
        (only,) = s.leases()
        assert only == lease("198.18.0.10", MAC1, LeaseState.RELEASED)
        eng = LeaseEngine([Subnet(NET, pools=(("198.18.0.10", "198.18.0.20"),))], (), s)
        assert eng.offer(eng.pools[NET].subnet, MAC1) == "198.18.0.10"


def test_events_queries_last_events_and_devices(location):
    with opened(location) as s:
        s.add_event(Event("dhcp.discover", MAC1, None, {"xid": "1", "circuit": b"\x01"}, ts=100))
        s.add_event(Event("dhcp.ack", MAC1, "198.18.0.10", {"xid": "1"}, ts=101))
        s.add_event(Event("installer.report", MAC1, None, {"status": "failed"}, ts=101.5))
        s.add_event(Event("installer.report", MAC1, None, {"status": "installed"}, ts=101.7))
        s.add_event(Event("dhcp.discover", MAC2, None, {}, ts=102))
        s.add_event(Event("tftp.sent", MAC2, "198.18.0.11", {"bytes": 10}, ts=103))
        s.add_event(Event("device.armed", None, None, {"name": "leaf1"}, ts=104))
        assert [e.ts for e in s.events()] == [100, 101, 101.5, 101.7, 102, 103, 104]
        assert [e.kind for e in s.events(mac=MAC2)] == ["dhcp.discover", "tftp.sent"]
        assert [e.mac for e in s.events(kinds=["dhcp.discover"])] == [MAC1, MAC2]
        assert [e.ts for e in s.events(since=102)] == [102, 103, 104]
        assert [e.ts for e in s.events(limit=2)] == [103, 104]
        assert s.events(mac=MAC1)[0].detail == {"xid": "1", "circuit": "01"}
        last = s.last_events()
        assert {e.kind for e in last[MAC1]} == {"dhcp.discover", "dhcp.ack", "installer.report"}
        assert [e.detail["status"] for e in last[MAC1] if e.kind == "installer.report"] == [
            "failed",
            "installed",
        ]
        assert [e.kind for e in last["name:leaf1"]] == ["device.armed"]
        assert set(s.last_events([MAC2])) == {MAC2}
        page = s.event_page(limit=2)
        assert [e.ts for _, e in page] == [103, 104]
        after = s.event_page(after=page[0][0], limit=10)
        assert [e.ts for _, e in after] == [104]
        devices = {d.mac: d for d in s.devices()}
        assert devices[MAC1].first_seen == 100 and devices[MAC1].last_seen == 101.7
        s.upsert_device(MAC1, serial="SN1", platform="x86_64-kvm_x86_64-r0", identity={"vendor": "kvm"})
        s.upsert_device(MAC1, hostname="sw\x001")  # a NUL from the wire: stored, not fatal
        d = {d.mac: d for d in s.devices()}[MAC1]
        assert (d.serial, d.platform, d.identity) == ("SN1", "x86_64-kvm_x86_64-r0", {"vendor": "kvm"})
        assert d.hostname is not None and d.hostname.startswith("sw")


def test_events_are_batched_by_interval_leases_per_loop_turn(location):
    s = opened(location, event_flush_interval=0.2)

    def rows() -> tuple[int, int]:
        with opened(location) as other:
            return len(other.leases()), len(other.events())

    async def burst() -> tuple[tuple[int, int], tuple[int, int]]:
        for i in range(500):
            s(Event("http.sent", MAC1, None, {"i": i}))
        s.save_lease(lease("198.18.0.10", MAC1))
        await asyncio.sleep(0)  # one loop turn: the lease is written, the events wait
        early = rows()
        await asyncio.sleep(0.3)
        return early, rows()

    assert asyncio.run(burst()) == ((1, 0), (1, 500))
    s.close()


def test_intent_and_data_version_seen_by_another_connection(location):
    with opened(location) as server, opened(location) as cli:
        fleet = Lifecycle(server, Inventory([]))
        before = server.data_version
        cli.enroll("leaf1", {"name": "leaf1", "macs": [MAC1]}, "test")
        cli.arm("leaf1", "nos-1", "id1", "test")
        assert server.data_version != before
        assert fleet.intent("leaf1") is not None and fleet.intent("leaf1").armed  # type: ignore[union-attr]
        assert [r.name for r in server.enrolled()] == ["leaf1"]
        assert not cli.end_arming("leaf1", "installed", "test", install_id="older")
        assert cli.end_arming("leaf1", "installed", "test", install_id="id1")
        assert server.intents()["leaf1"].outcome == "installed"
        assert cli.unenroll("leaf1") and not cli.unenroll("leaf1")
        assert server.enrolled() == [] and server.intents() == {}


def test_prune_keeps_the_last_of_each_class(location):
    with opened(location) as s:
        old = time.time() - 10 * 86400
        for i in range(20):
            s.add_event(Event("http.sent", MAC1, None, {"i": i}, ts=old + i))
        s.add_event(Event("dhcp.ack", MAC2, None, {}, ts=old))
        total = 0
        more = True
        while more:
            deleted, more = s.prune_events(keep_per_device=5, keep_days=1, chunk=7)
            total += deleted
        assert total == 19  # the newest http.sent of MAC1 and MAC2's only event stay (events_last)
        assert {e.mac for e in s.events()} == {MAC1, MAC2}


# --- PostgreSQL only: migrations and shared allocation -------------------------------------------


@pytest.mark.postgres
def test_upgrade_keeps_a_populated_version_1_database(pg_url):
    """A database written by a provision at schema 1 (leases, devices, events, intents), opened by
    this one: migrated to the current version with every row readable and new events still
    reaching the per-device last events."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_version (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(MIGRATIONS[0].encode())
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute(
            "INSERT INTO leases (ip, mac, state, expires, hostname, subnet, updated, owner) "
            "VALUES ('198.18.0.10', %s, 'bound', 2e9, 'h', '198.18.0.0/24', 5.0, 'old:1:1')",
            (MAC1,),
        )
        conn.execute(
            "INSERT INTO devices (mac, serial, first_seen, last_seen) VALUES (%s, 'SN1', 1, 2)", (MAC1,)
        )
        for ts, kind, mac in ((1.0, "dhcp.ack", MAC1), (2.0, "tftp.sent", MAC1), (3.0, "dhcp.ack", MAC2)):
            conn.execute(
                "INSERT INTO events (ts, kind, mac, ip, detail) VALUES (%s, %s, %s, '198.18.0.10', '{\"n\": 1}')",
                (ts, kind, mac),
            )
        conn.execute("INSERT INTO intents (name, armed, target, updated) VALUES ('sw1', true, 'nos-1', 1)")
    with PgStore(pg_url) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert [(le.ip, le.mac, le.state) for le in s.leases()] == [("198.18.0.10", MAC1, LeaseState.BOUND)]
        assert [(d.mac, d.serial) for d in s.devices()] == [(MAC1, "SN1")]
        assert [(e.kind, e.mac, e.detail) for e in s.events()] == [
            ("dhcp.ack", MAC1, {"n": 1}),
            ("tftp.sent", MAC1, {"n": 1}),
            ("dhcp.ack", MAC2, {"n": 1}),
        ]
        assert sorted(e.kind for e in s.last_events()[MAC1]) == ["dhcp.ack", "tftp.sent"]
        assert s.intents()["sw1"].armed
        s.add_event(Event("dhcp.ack", MAC2, "198.18.0.11", {"n": 2}, ts=4.0))
        s.flush()
        assert [e.detail for e in s.last_events([MAC2])[MAC2]] == [{"n": 2}]
    with psycopg.connect(pg_url) as conn:
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")}
        assert "events_mac_ts" not in indexes and "events_mac_id" in indexes
        assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")] == list(
            range(1, len(MIGRATIONS) + 1)
        )


@pytest.mark.postgres
def test_migrations_race_free_and_newer_schema_refused(pg_url):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PgStore(pg_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]  # four servers starting at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")}
        assert "events_mac_ts" not in indexes and "events_mac_id" in indexes  # (migration 4)
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer than this provision knows"):
        PgStore(pg_url)


@pytest.mark.postgres
def test_claim_refuses_a_live_address_of_another_mac(pg_url):
    with PgStore(pg_url) as a, PgStore(pg_url) as b:
        now = time.time()
        mine = Lease("198.18.0.10", MAC1, LeaseState.BOUND, now + 60, NET, updated=now)
        assert a.claim(mine) == []
        a.claim(Lease("198.18.0.11", MAC1, LeaseState.BOUND, now + 60, NET, updated=now))
        theirs = Lease("198.18.0.10", MAC2, LeaseState.BOUND, now + 60, NET, updated=now)
        learn = b.claim(theirs)  # the holder first, then what the other server wrote since
        assert [(le.ip, le.mac) for le in learn] == [("198.18.0.10", MAC1), ("198.18.0.11", MAC1)]
        assert b.claim(mine) == []  # the same MAC renewing through another server: honoured
        assert b.recall(NET, MAC1) is not None and b.recall(NET, MAC2) is None
        # expired: the address changes hands
        later = Lease("198.18.0.10", MAC2, LeaseState.BOUND, now + 200, NET, updated=now + 100)
        assert b.claim(later) == []
        # a RELEASE sent to the first server after that must not free MAC2's address
        a.save_lease(Lease("198.18.0.10", MAC1, LeaseState.RELEASED, now, NET, updated=now))
        a.commit()
        row = {le.ip: le for le in b.leases()}["198.18.0.10"]
        assert (row.mac, row.state) == (MAC2, LeaseState.BOUND)
        assert a.counters["lease_writes_refused"] == 1


@pytest.mark.postgres
def test_discover_recall_reads_other_servers_rows_once_per_interval(pg_url):
    """recall(exact=False), a DISCOVER's: other servers' bindings come from one catch-up query
    per `recall_fresh` seconds, not one query per client; recall() (a REQUEST's) always asks."""
    now = time.time()
    subnet = Subnet(NET, pools=(("198.18.0.10", "198.18.0.20"),))
    with PgStore(pg_url, recall_fresh=3600) as b, PgStore(pg_url) as a:
        eng = LeaseEngine([subnet], (), b)  # b loads the (empty) table
        assert a.claim(Lease("198.18.0.12", MAC1, LeaseState.BOUND, now + 60, NET, updated=now)) == []
        a.commit()
        assert b.recall(NET, MAC2, exact=False) is None  # the catch-up query reads a's row...
        assert eng.offer(subnet, MAC1) == "198.18.0.12"  # ...so MAC1 is offered its address
        assert a.claim(Lease("198.18.0.13", MAC2, LeaseState.BOUND, now + 60, NET, updated=now)) == []
        a.commit()
        assert b.recall(NET, MAC2, exact=False) is None  # within the interval: no second query
        assert b.recall(NET, MAC2) is not None  # exact: asked at once
    with PgStore(pg_url, recall_fresh=0.0) as c:
        LeaseEngine([subnet], (), c)  # a server starting: the rows it loads answer at once
        assert c.recall(NET, MAC2, exact=False) is not None
        assert c.counters["recalled"] == 1


def _allocate(url: str, first: int, n: int, out: Any) -> None:
    """A server process: its own engine (its own idea of the pool) and connection."""
    subnet = Subnet(NET, pools=(("198.18.0.10", "198.18.0.209"),))
    store = PgStore(url)
    eng = LeaseEngine([subnet], (), store)
    acked: list[tuple[str, str]] = []
    for i in range(first, first + n):
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}"
        for _attempt in range(50):  # a NAK sends the client back to DISCOVER (RFC 2131 §3.1)
            ip = eng.offer(subnet, mac)
            assert ip is not None
            answer = eng.request(subnet, mac, ip, selecting=True)
            store.commit()
            if answer.outcome is Outcome.ACK:
                acked.append((mac, ip))
                break
    store.close()
    out.put((acked, dict(store.counters)))


@pytest.mark.postgres
def test_concurrent_allocation_from_four_processes_never_duplicates(pg_url):
    PgStore(pg_url).close()  # migrated once, so the timing below is allocation only
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_allocate, args=(pg_url, k * 50, 50, out)) for k in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    acked = [pair for r, _ in results for pair in r]
    assert len(acked) == 200  # every client got an address: the pool holds 200
    ips = [ip for _, ip in acked]
    assert len(set(ips)) == 200, "an address was ACKed to two clients"
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT ip, mac FROM leases WHERE state = 'bound'").fetchall()
    assert sorted(rows) == sorted((ip, mac) for mac, ip in acked)


@pytest.mark.postgres
def test_cli_status_and_devices_read_one_shared_store(pg_url, tmp_path):
    """Two servers' writes, one inventory: `status --db URL` lists the devices both saw, and
    `devices enroll` through one URL is seen by a store opened by another process."""
    with PgStore(pg_url) as one, PgStore(pg_url) as two:
        one.add_event(Event("dhcp.ack", MAC1, "198.18.0.10", {}, ts=time.time()))
        two.add_event(Event("dhcp.ack", MAC2, "198.18.0.11", {}, ts=time.time()))
    out = run_cli("status", "--db", pg_url, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert {row["mac"] for row in doc["devices"]} == {MAC1, MAC2}
    assert "password" not in doc["db"] and doc["db"].startswith("postgresql://")
    out = run_cli("devices", "enroll", "leaf9", "--mac", MAC1, "--db", pg_url)
    assert out.returncode == 0, out.stderr
    with PgStore(pg_url) as three:
        assert [r.name for r in three.enrolled()] == ["leaf9"]
    bad = run_cli("status", "--db", "postgresql:///nosuchdb?host=/nonexistent")
    assert bad.returncode == 3 and "nosuchdb" in bad.stderr and "Traceback" not in bad.stderr


def test_rollout_tables_behave_the_same(location):
    """provision.store.rollouts on either store (PostgreSQL: provision.store.rollouts_pg)."""
    with opened(location) as s, opened(location) as cli:
        rs = RolloutStore(s)
        assert isinstance(rs, PgRolloutStore) == is_url(location)
        rs.create(
            "r1abc",
            "spring",
            {"target": "2.0"},
            [("leaf-01", 0, 0), ("leaf-02", 1, 0), ("leaf-03", 1, 1)],
            "t",
        )
        rs.create("r2xyz", "empty", {}, [], "t")
        other = RolloutStore(cli)  # another process (`provision rollout pause`) sees it at once
        rec = other.get("r1abc")
        assert rec is not None and (rec.name, rec.plan, rec.state, rec.accepted_wave) == (
            "spring", {"target": "2.0"}, "running", -1,
        )  # fmt: skip
        assert [r.id for r in other.find("r1")] == ["r1abc"] and other.get("nope") is None
        assert [r.id for r in other.recent(1)] == ["r2xyz"]
        assert other.set_state("r1abc", "paused", "by op", expect=("running",))
        assert not rs.set_state("r1abc", "running", expect=("running",))  # compare-and-set lost
        rs.accept_wave("r1abc", 1)
        rs.accept_wave("r1abc", 0)  # never backwards
        rs.claim("r1abc", "host:1")
        rs.heartbeat("r1abc")
        rec = other.get("r1abc")
        assert rec is not None and (rec.state, rec.reason, rec.accepted_wave, rec.owner) == (
            "paused", "by op", 1, "host:1",
        )  # fmt: skip
        rs.update_device("r1abc", "leaf-02", stage="arming", attempts=1, install_id="i-2")
        with pytest.raises(ValueError):
            rs.update_device("r1abc", "leaf-02", bogus=1)
        devs = other.devices("r1abc")
        assert [(d.name, d.wave, d.position, d.stage) for d in devs] == [
            ("leaf-01", 0, 0, "pending"), ("leaf-02", 1, 0, "arming"), ("leaf-03", 1, 1, "pending"),
        ]  # fmt: skip
        assert devs[1].install_id == "i-2" and devs[1].attempts == 1
        assert other.device("r1abc", "leaf-02") == devs[1] and other.device("r1abc", "nope") is None
        assert other.stage_counts(["r1abc", "r2xyz"]) == {
            "r1abc": {0: {"pending": 1}, 1: {"arming": 1, "pending": 1}}
        }
        before = rs.last_event_id()
        s.add_event(Event("device.armed", None, None, {"name": "leaf-02", "install_id": "i-2"}))
        s.add_event(Event("installer.report", MAC1, None, {"status": "installed"}))
        armed = rs.armed_event_id("i-2", after=before)
        assert armed is not None and armed > before and rs.armed_event_id("i-9") is None
        assert [e.kind for _, e in other.events_after(before, ["installer.report"])] == ["installer.report"]


@pytest.mark.postgres
def test_claims_are_made_durable_by_the_burst_commit(pg_url):
    """A claim commits asynchronously; commit() writes one durable transaction (the servers row)
    whose WAL flush covers the claims before it, and a failing one withholds the replies."""
    with PgStore(pg_url) as s:
        now = time.time()
        s.commit()  # nothing pending: no transaction at all
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM servers").fetchone() == (0,)
        assert s.claim(Lease("198.18.0.10", MAC1, LeaseState.BOUND, now + 60, NET, updated=now)) == []
        with psycopg.connect(pg_url) as conn:  # visible to the other servers at once
            assert conn.execute("SELECT mac FROM leases").fetchall() == [(MAC1,)]
        assert s.claims_db.execute("SHOW synchronous_commit").fetchone() == ("off",)
        s.commit()
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT owner FROM servers").fetchall() == [(s.owner,)]
        assert s._unflushed == 0
        s.claim(Lease("198.18.0.11", MAC2, LeaseState.BOUND, now + 60, NET, updated=now))
        s._db.close()  # the link to the database breaks: the next commit reconnects
        s.commit()
        assert s._unflushed == 0


@pytest.mark.postgres
def test_cli_rollout_list_reads_the_shared_store(pg_url):
    with PgStore(pg_url) as s:
        RolloutStore(s).create("r9shared", "shared", {"target": "2.0"}, [("leaf-01", 0, 0)], "test")
    out = run_cli("rollout", "list", "--db", pg_url, "--json")
    assert out.returncode == 0, out.stderr
    assert "r9shared" in out.stdout


@pytest.mark.postgres
def test_claims_survive_a_lost_connection_and_lost_claims_withhold_replies(pg_url):
    """The database restarts (here: our backends are terminated): the next claim reconnects and
    goes through; the commit writes the burst's earlier claims again, and when one of them now
    belongs to another client (the restart lost it, another server took it) the burst fails."""
    now = time.time()

    def kick(store: PgStore) -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"provision {os.getpid()}",),
            )

    with PgStore(pg_url) as s:
        assert s.claim(Lease("198.18.0.10", MAC1, LeaseState.BOUND, now + 60, NET, updated=now)) == []
        kick(s)
        assert s.claim(Lease("198.18.0.11", MAC2, LeaseState.BOUND, now + 60, NET, updated=now)) == []
        s.commit()  # both claims still theirs: written again, committed
        assert sorted(le.ip for le in s.leases()) == ["198.18.0.10", "198.18.0.11"]
        assert s.claim(Lease("198.18.0.12", MAC1, LeaseState.BOUND, now + 60, NET, updated=now)) == []
        kick(s)
        with psycopg.connect(pg_url, autocommit=True) as conn:  # "lost", then taken elsewhere
            conn.execute("UPDATE leases SET mac = 'aa:aa:aa:aa:aa:aa' WHERE ip = '198.18.0.12'")
        with pytest.raises(StoreError, match="lost with the connection"):
            s.commit()
        s.commit()  # and the store goes on


@pytest.mark.postgres
def test_group_commit_in_a_writer_thread(pg_url):
    """pxe.dhcp.server's group commit: begin_commit() on the loop thread takes the claims and the
    buffered rows, the function runs in another thread on its own connection; a lost claim
    there fails the burst, and abort_commit() hands the claims to the synchronous commit."""
    now = time.time()
    with PgStore(pg_url) as s:
        assert s.begin_commit() is None
        writes = s.lease_writes
        assert s.claim(Lease("198.18.0.10", MAC1, LeaseState.BOUND, now + 60, NET, updated=now)) == []
        s._events.append(Event("dhcp.ack", MAC1, "198.18.0.10", {}))  # buffered (no loop here)
        assert s.lease_writes == writes + 1  # the ACK waits for the transaction
        write = s.begin_commit()
        assert write is not None and s._unflushed == 0
        t = threading.Thread(target=write)
        t.start()
        t.join()
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT owner FROM servers").fetchall() == [(s.owner,)]
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
        # The writer's connection is lost and the claim with it (taken by another client)
        assert s.claim(Lease("198.18.0.11", MAC2, LeaseState.BOUND, now + 60, NET, updated=now)) == []
        assert s._wconn is not None
        s._wconn.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE leases SET mac = 'aa:aa:aa:aa:aa:aa' WHERE ip = '198.18.0.11'")
        write = s.begin_commit()
        assert write is not None
        failed: list[BaseException] = []

        def run() -> None:
            try:
                write()
            except BaseException as exc:
                failed.append(exc)

        t = threading.Thread(target=run)
        t.start()
        t.join()
        assert failed and "lost with the connection" in str(failed[0])
        s.abort_commit()
        with pytest.raises(StoreError, match="lost with the connection"):
            s.commit()  # the server's synchronous commit after a failed writer: withheld too
        s.commit()
