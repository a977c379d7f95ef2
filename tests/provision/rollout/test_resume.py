"""Resume: the engine killed with SIGKILL mid-wave (a real subprocess running `provision rollout
start`), then `provision rollout resume ID`: no device armed twice, none installed twice, none
skipped. And each point a kill can fall between two writes, set up in the store and resumed.

The driver and the installer reports are the scripted stand-ins of tests.provision.rollout.
scripted (its docstring says why); the rehearsal with the simulated fleet is the end-to-end test."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provision.cli.devices_cmds import _fleet
from provision.cli.state import state_place
from provision.rollout.engine import Engine, create
from provision.store.rollouts import RolloutStore
from provision.store.sqlite import Store
from pxe.policy import Event
from tests.provision.rollout.conftest import db_of, events, make_plan, plan_text
from tests.provision.rollout.scripted import FakeServer, Fleet, factory
from tests.support.cli import REPO, cli_env


def _scripted_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.provision.rollout.scripted", *args]


def test_kill_9_mid_wave_then_resume(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    server.delay = 0.4  # slow installs: the kill lands with armings outstanding
    plan = lab.parent / "plan.yml"
    plan.write_text(
        plan_text(fleet, "devices: ['leaf-*']\ntarget: '2.0'\ncanaries: 1\nwave_size: 4\nmax_parallel: 2\n")
    )
    proc = subprocess.Popen(
        _scripted_cli("rollout", "start", str(plan), "--lab", str(lab), "--poll", "0.1"),
        cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while len(fleet.arms()) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    with Store(db_of(lab)) as store:
        rs = RolloutStore(store)
        (rec,) = rs.recent(1)
        before = {d.name: d.stage for d in rs.devices(rec.id)}
    assert rec.state == "running" and rec.owner  # it died without a word
    assert "pending" in before.values() and set(before.values()) - {"pending", "verified"}, before

    r = subprocess.run(
        _scripted_cli("rollout", "resume", rec.id[:10], "--lab", str(lab), "--poll", "0.1", "--json"),
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["rollout"]["state"] == "done" and not doc["rollout"]["running"]
    assert {d["name"]: d["stage"] for d in doc["devices"]} == {f"leaf-0{i}": "verified" for i in range(1, 9)}
    # Each device driven once, armed once (one device.armed event), installed once; none skipped.
    assert collections.Counter(a["name"] for a in fleet.arms()) == {f"leaf-0{i}": 1 for i in range(1, 9)}
    assert collections.Counter(e.detail["name"] for e in events(lab, "device.armed")) == {
        f"leaf-0{i}": 1 for i in range(1, 9)
    }
    time.sleep(0.2)
    assert server.installs == {f"leaf-0{i}": 1 for i in range(1, 9)}
    assert all(d["attempts"] == 1 for d in doc["devices"])


def _engine_on(lab: Path, fleet: Fleet, text: str, rearm_safe: bool = False) -> tuple[str, Path]:
    place = state_place(lab, None, None)
    full = plan_text(fleet, text)
    if rearm_safe:
        full = full.replace("options: {", "options: {rearm_safe: true, ")
    with _fleet(place, write=True) as (_fl, store):
        rid = create(store, make_plan(lab, full), "test")
    return rid, place.db


def test_killed_in_the_driver_call_of_a_rearm_safe_driver(
    lab: Path, fleet: Fleet, server: FakeServer
) -> None:
    """Killed during `arm` (driver_started written, no report yet): a driver that says a second
    call is harmless (ssh, manual) is called again for the SAME arming (not armed again), and
    the install goes on; a driver that does not say so is left alone (previous test)."""
    rid, db = _engine_on(lab, fleet, "devices: [leaf-06]\ntarget: '2.0'\n", rearm_safe=True)
    with Store(db) as store:
        store.arm("leaf-06", "2.0", "00000000000000b6", "test rollout")
        RolloutStore(store).update_device(
            rid, "leaf-06", stage="arming", attempts=1, install_id="00000000000000b6", armed_event=0,
            driver_started=time.time(), version_before="1.0",
        )  # fmt: skip
    assert _resume(lab, rid) == 0
    assert [a["install_id"] for a in fleet.arms()] == ["00000000000000b6"]
    assert events(lab, "device.armed") == []
    with Store(db) as store:
        (row,) = RolloutStore(store).devices(rid)
    assert row.stage == "verified" and row.attempts == 1


def _resume(lab: Path, rid: str) -> int:
    import asyncio

    place = state_place(lab, None, None)
    with _fleet(place, write=True) as (fl, store):
        return asyncio.run(Engine(store, fl, rid, by="test", poll=0.05, drivers=factory).run())


def test_killed_after_the_arming_before_the_driver(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    """The install id and the lifecycle arming were written, the driver was not called: resume
    calls the driver for THAT arming and does not arm again."""
    rid, db = _engine_on(lab, fleet, "devices: [leaf-02]\ntarget: '2.0'\n")
    with Store(db) as store:
        RolloutStore(store).update_device(
            rid, "leaf-02", stage="arming", attempts=1, install_id="00000000000000b2"
        )
        store.arm("leaf-02", "2.0", "00000000000000b2", "test rollout")
    assert _resume(lab, rid) == 0
    assert [a["install_id"] for a in fleet.arms()] == ["00000000000000b2"]
    assert events(lab, "device.armed") == []  # the arming made "before the kill" was kept, not redone


@pytest.mark.parametrize("rearm_safe", [False, True])
def test_killed_after_the_driver_was_called(
    lab: Path, fleet: Fleet, server: FakeServer, rearm_safe: bool
) -> None:
    """The driver was called before the kill (driver_started) and the install reported: resume
    never calls it again, even a driver that says a second call is safe; the install's own
    report (written here as the server would) completes the device."""
    rid, db = _engine_on(lab, fleet, "devices: [leaf-03]\ntarget: '2.0'\n", rearm_safe)
    with Store(db) as store:
        store.arm("leaf-03", "2.0", "00000000000000b3", "test rollout")
        RolloutStore(store).update_device(
            rid, "leaf-03", stage="arming", attempts=1, install_id="00000000000000b3", armed_event=0,
            driver_started=time.time(), version_before="1.0",
        )  # fmt: skip
        store.add_event(
            Event(
                "installer.report",
                mac="52:54:00:61:00:03",
                detail={"stage": "complete", "status": "ok", "install_id": "00000000000000b3"},
            )
        )
        store.flush()  # fmt: skip
    fleet.set_versions({"leaf-03": "2.0"})
    assert _resume(lab, rid) == 0
    assert fleet.arms() == []
    with Store(db) as store:
        (row,) = RolloutStore(store).devices(rid)
    assert row.stage == "verified" and row.attempts == 1


def test_killed_after_installed_is_not_installed_again(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    rid, db = _engine_on(lab, fleet, "devices: [leaf-04]\ntarget: '2.0'\n")
    with Store(db) as store:
        RolloutStore(store).update_device(
            rid, "leaf-04", stage="installed", attempts=1, install_id="00000000000000b4", version_before="1.0"
        )
    fleet.set_versions({"leaf-04": "2.0"})
    assert _resume(lab, rid) == 0
    assert fleet.arms() == [] and events(lab, "device.armed") == []


def test_resume_refuses_while_another_engine_runs_it(lab: Path, fleet: Fleet) -> None:
    from tests.support.cli import run_cli

    rid, db = _engine_on(lab, fleet, "devices: [leaf-05]\ntarget: '2.0'\n")
    with Store(db) as store:
        RolloutStore(store).claim(rid, f"{os.uname().nodename}:{os.getpid()}")  # this test process: alive
    r = run_cli("rollout", "resume", rid, "--lab", str(lab))
    assert r.returncode == 3 and "is being run by" in r.stderr, r.stderr
    assert fleet.arms() == []
