"""provision.devices.status and `provision status` on a real SQLite store: the lifecycle's state,
serial matching, bounded queries, pages, the table's width, filters, --watch and the JSON."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from provision.cli.status_cmds import ago, render_table
from provision.config.inventory import Device, Inventory
from provision.devices.lifecycle import Lifecycle
from provision.devices.status import Filters, iso, snapshot
from provision.store.sqlite import MIGRATIONS, Store
from pxe.dhcp import Lease, LeaseState
from pxe.policy import Event
from tests.support.cli import cli_argv, cli_env, run_cli

SWITCH = "52:54:00:70:00:01"
STRANGER = "52:54:00:70:00:99"
PLATFORM = "x86_64-accton_as7712_32x-r0"


def fill(store: Store, t0: float = 1000.0) -> None:
    """leaf-01 (known by serial only), armed, handed its installer and reported installed;
    spine-01 refused; one stranger."""
    store.upsert_device(SWITCH, serial="SER-1", platform=PLATFORM, identity={})
    store.save_lease(Lease("198.18.70.11", SWITCH, LeaseState.BOUND, t0 + 3600, "198.18.70.0/24", "leaf-01"))
    for i in range(50):  # history that status must not read
        store.add_event(Event("dhcp.ack", mac=SWITCH, ip="198.18.70.11", ts=t0 + i * 0.01))
    store.add_event(Event("dhcp.discover", mac=SWITCH, detail={"circuit_id": b"Eth1/7".hex()}, ts=t0 + 1))
    store.add_event(Event("device.refused", mac=STRANGER, detail={"code": "unknown-ignored",
                                                                  "reason": "not in the inventory"}, ts=t0 + 2))  # fmt: skip


def fleet_for(store: Store) -> tuple[Inventory, Lifecycle]:
    lab = Inventory(
        [Device("leaf-01", serial="ser-1", ip="198.18.70.11"), Device("spine-01", mac=STRANGER[:-2] + "02")]
    )
    return lab, Lifecycle(store, lab, store)


def test_state_serial_match_nos_and_error(tmp_path):
    with Store(tmp_path / "p.db") as store:
        fill(store)
        lab, fleet = fleet_for(store)
        intent = fleet.arm("leaf-01", "4.2.1", "cli:test")
        store.add_event(Event("installer.fetched", mac=SWITCH, detail={"nos": "demo", "version": "4.2.1",
                                                                       "file": "x.bin"}, ts=time.time()))  # fmt: skip
        fleet.handed_out(lab.get("leaf-01"), fleet.gate(lab.get("leaf-01")), SWITCH)
        mid = snapshot(store, lab)
        rows = {r["name"] or r["mac"]: r for r in mid["devices"]}
        leaf = rows["leaf-01"]
        # matched by serial though lab.yml names no MAC (it used to show known: false, name: null)
        assert leaf["known"] is True and leaf["mac"] == SWITCH and leaf["serial"] == "ser-1"
        assert leaf["state"] == "installing" and leaf["platform"] == PLATFORM
        assert leaf["nos"] == {
            "name": "demo",
            "version": "4.2.1",
            "from": "installer.fetched",
            "installed": False,
        }
        assert leaf["arming"]["target"] == "4.2.1" and leaf["arming"]["install_id"] == intent.install_id
        assert leaf["switch_port"] == "Eth1/7" and leaf["stage"] == "fetched"
        assert leaf["lease"]["expires"] == iso(4600.0) and leaf["since"].endswith("Z")
        store.add_event(Event("installer.report", mac=SWITCH, ip="198.18.70.11", ts=time.time() + 1,
                              detail={"stage": "complete", "status": "ok", "nos": "demo", "version": "4.2.1", "serial": "SER-1"}))  # fmt: skip
        fleet.on_event(store.events(kinds=["installer.report"])[-1])
        done = {r["name"] or r["mac"]: r for r in snapshot(store, lab)["devices"]}
        assert done["leaf-01"]["state"] == "installed" and done["leaf-01"]["nos"]["installed"] is True
        assert done["spine-01"]["state"] == "enrolled" and done["spine-01"]["mac"] == STRANGER[:-2] + "02"
        stranger = done[STRANGER]
        assert stranger["known"] is False and stranger["state"] == "unknown"
        assert stranger["error"] == "not in the inventory"
        assert "SWITCH" not in json.dumps(done)  # every value is JSON (no float epochs, no objects)
        assert all(
            isinstance(v, (str, type(None)))
            for r in done.values()
            for v in (r["since"], (r["last_event"] or {}).get("time"))
        )


def test_failed_report_is_the_last_error(tmp_path):
    with Store(tmp_path / "p.db") as store:
        fill(store)
        lab, fleet = fleet_for(store)
        fleet.arm("leaf-01", None, "cli:test")
        report = Event("installer.report", mac=SWITCH, ts=time.time(),
                       detail={"stage": "payload", "status": "failed", "message": "disk too small", "serial": "SER-1"})  # fmt: skip
        store.add_event(report)
        fleet.on_event(report)
        leaf = next(r for r in snapshot(store, lab)["devices"] if r["name"] == "leaf-01")
        assert leaf["state"] == "failed" and leaf["error"] == "disk too small" and leaf["stage"] == "failed"


def test_bounded_queries_and_pages(tmp_path):
    """The same number of SELECTs for 3 devices with 50 events as for 40 devices with 2,000."""

    def selects(n_devices: int, n_events: int) -> int:
        with Store(tmp_path / f"q{n_devices}.db") as store:
            for d in range(n_devices):
                mac = f"52:54:00:71:{d // 256:02x}:{d % 256:02x}"
                for i in range(n_events // n_devices):
                    store.add_event(Event("dhcp.ack" if i % 2 else "tftp.sent", mac=mac, ts=1000.0 + i))
            store.flush()
            seen: list[str] = []
            store.db.set_trace_callback(seen.append)
            snap = snapshot(store, Inventory([]))
            store.db.set_trace_callback(None)
            assert len(snap["devices"]) == n_devices
            return sum(1 for s in seen if s.lstrip().upper().startswith("SELECT"))

    assert selects(3, 50) == selects(40, 2000)
    with Store(tmp_path / "q40.db") as store:
        first = snapshot(store, Inventory([]), limit=15)
        assert len(first["devices"]) == 15 and first["next"] == first["devices"][-1]["cursor"]
        rest = snapshot(store, Inventory([]), limit=100, after=first["next"])
        assert len(rest["devices"]) == 25 and rest["next"] is None
        macs = [r["mac"] for r in first["devices"] + rest["devices"]]
        assert macs == sorted(set(macs))
        only = snapshot(store, Inventory([]), filters=Filters(macs=("52:54:00:71:00:0*",)))
        assert [r["mac"] for r in only["devices"]] == [f"52:54:00:71:00:0{i:x}" for i in range(16)]


def test_events_last_survives_migration_of_an_old_store(tmp_path):
    """A schema-2 file made by hand: migration 3 indexes what is already there."""
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    for script in MIGRATIONS[:2]:
        con.executescript(script)
    con.execute("PRAGMA user_version=2")
    con.execute("INSERT INTO events (ts, kind, mac, detail) VALUES (1, 'dhcp.ack', ?, '{}')", (SWITCH,))
    con.execute("INSERT INTO events (ts, kind, mac, detail) VALUES (2, 'dhcp.ack', ?, '{}')", (SWITCH,))
    con.commit()
    con.close()
    with Store(db) as store:
        assert [e.ts for e in store.last_events()[SWITCH]] == [2.0]


def row(**kw) -> dict:
    base = {
        "name": None, "mac": "52:54:00:70:00:01", "ip": "198.18.70.11", "serial": "SER-1",
        "platform": PLATFORM, "nos": {"name": "sonic", "version": "202311.1"}, "state": "failed",
        "since": iso(time.time() - 190), "error": "reported platform x, expected y " * 3, "arming": None,
    }  # fmt: skip
    return {**base, **kw}


@pytest.mark.parametrize("width", [60, 80, 100, 140])
def test_table_fits_and_drops_columns_in_order(width):
    lines = render_table([row(), row(name="leaf-01")], width, time.time())
    assert all(len(line) <= width for line in lines)
    head = lines[0].split()
    assert {"NAME/MAC", "STATE", "LAST"} <= set(head)
    if width >= 140:
        assert {"PLATFORM", "SERIAL", "NOS", "IP", "SINCE"} <= set(head)
    if width <= 80:
        assert "PLATFORM" not in head
    if width <= 60:
        assert "SERIAL" not in head and "NOS" not in head
    assert "3m ago" in "\n".join(lines) or width <= 60


def test_ago():
    assert [ago(100 - s, 100) for s in (5, 200, 7300, 200000)] == ["5s ago", "3m ago", "2h ago", "2d ago"]
    assert ago(None, 0) == "-"


def test_status_cli_json_filters_columns_and_hint(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with Store(state / "provision.db") as store:
        fill(store)
    lab = tmp_path / "lab.yml"
    lab.write_text(
        "interfaces: [eth9]\nsubnets:\n  - network: 198.18.70.0/24\n    interface: eth9\n"
        f"paths:\n  state_dir: {state}\ndevices:\n  - name: leaf-01\n    serial: SER-1\n"
    )
    out = run_cli("status", "--lab", str(lab), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["version"] == 1 and doc["db"] == str(state / "provision.db")
    assert {r["name"] or r["mac"]: r["state"] for r in doc["devices"]} == {
        "leaf-01": "enrolled",
        STRANGER: "unknown",
    }
    only = json.loads(run_cli("status", "--lab", str(lab), "--json", "--state", "unknown").stdout)
    assert [r["mac"] for r in only["devices"]] == [STRANGER]
    named = json.loads(run_cli("status", "--lab", str(lab), "--json", "--name", "leaf-*").stdout)
    assert [r["name"] for r in named["devices"]] == ["leaf-01"]
    plat = json.loads(run_cli("status", "--lab", str(lab), "--json", "--platform", "*accton*").stdout)
    assert [r["name"] for r in plat["devices"]] == ["leaf-01"]
    for cols in ("72", "100"):
        human = run_cli("status", "--lab", str(lab), env={"COLUMNS": cols})
        assert human.returncode == 0 and "leaf-01" in human.stdout and STRANGER in human.stdout
        assert max(len(line) for line in human.stdout.splitlines()) <= int(cols), human.stdout
    bad = run_cli("status", "--lab", str(lab), "--state", "nope")
    assert bad.returncode == 2
    # without --lab: the line under the table says where state lives and how to point elsewhere
    bare = run_cli("status", "--state-dir", str(state))
    assert "not in the inventory" in bare.stdout and str(state) in bare.stdout
    nowhere = run_cli("status", env={"COLUMNS": "100"})
    if not Path("/var/lib/provision/provision.db").exists():
        assert nowhere.returncode == 3
        assert (
            "/var/lib/provision" in nowhere.stderr
            and "--lab" in nowhere.stderr
            and "--state-dir" in nowhere.stderr
        )


def test_watch_redraws_and_ctrl_c_exits_0(tmp_path):
    with Store(tmp_path / "provision.db") as store:
        fill(store)
    proc = subprocess.Popen(
        cli_argv("status", "--db", str(tmp_path / "provision.db"), "--watch", "0.2"),
        env=cli_env({"COLUMNS": "100"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        assert proc.stdout is not None
        while time.monotonic() < deadline and sum("NAME/MAC" in x for x in lines) < 2:
            lines.append(proc.stdout.readline())
        assert sum("NAME/MAC" in x for x in lines) >= 2  # drawn at least twice
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
