"""The rollout engine in this process against a real store: gates (K and P%), the canary wave,
pause after the canaries and `continue`, scoping of reports to this rollout's arming, the
idempotent skip, retries, abort, and the boot check.

The driver is tests.provision.rollout.scripted.ScriptedDriver and the installer reports come
from its FakeServer thread, which writes them into the store as `provision serve` would: a
STAND-IN for real switches (the simulated fleet's rehearsal is the end-to-end test)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from provision.rollout.engine import CANARY_PAUSE, Engine
from provision.store.rollouts import RolloutStore
from provision.store.sqlite import Store
from pxe.policy import Event
from tests.provision.rollout.conftest import by_name, db_of, events, make_plan, plan_text, run_engine
from tests.provision.rollout.scripted import FakeServer, Fleet
from tests.support.cli import REPO, cli_env


def test_all_done_exit_0_and_each_device_armed_once(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    plan = make_plan(
        lab,
        plan_text(fleet, "devices: ['leaf-*']\ntarget: '2.0'\ncanaries: 1\nwave_size: 3\nmax_parallel: 2\n"),
    )
    code, rid, rows = run_engine(lab, plan)
    assert code == 0
    assert {r.stage for r in rows} == {"verified"} and all(r.attempts == 1 for r in rows)
    assert sorted(a["name"] for a in fleet.arms()) == [f"leaf-0{i}" for i in range(1, 9)]
    armed = events(lab, "device.armed")
    assert sorted(e.detail["name"] for e in armed) == [f"leaf-0{i}" for i in range(1, 9)]
    # The arming the lifecycle recorded is the one the driver was given and the row names.
    assert (
        {e.detail["install_id"] for e in armed}
        == {a["install_id"] for a in fleet.arms()}
        == {r.install_id for r in rows}
    )
    # Waves in order: every device of wave 1 was armed after the canary verified.
    canary = next(r for r in rows if r.wave == 0)
    arms = {a["name"]: a["time"] for a in fleet.arms()}
    assert all(arms[r.name] > canary.since for r in rows if r.wave == 1)
    # Each stage a device entered is an event (the stream, the web page and timelines follow them)
    stages: dict[str, list[str]] = {}
    for e in events(lab, "rollout.device"):
        assert e.detail["rollout"] == rid and e.detail["wave"] == by_name(rows)[e.detail["name"]].wave
        stages.setdefault(e.detail["name"], []).append(e.detail["stage"])
    assert stages == {r.name: ["arming", "installing", "installed", "verified"] for r in rows}
    assert [e.detail["state"] for e in events(lab, "rollout.state")][-1] == "done"


def test_gate_k_stops_the_rollout_exit_1(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    fleet.set_script({"leaf-02": "fail", "leaf-03": "fail"})
    text = "devices: ['leaf-*']\ntarget: '2.0'\nwave_size: 4\nmax_parallel: 4\ngates: {max_failures: 1}\n"
    code, rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 1
    got = by_name(rows)
    assert got["leaf-02"].stage == got["leaf-03"].stage == "failed"
    assert "disk full" in (got["leaf-02"].error or "")
    assert all(got[f"leaf-0{i}"].stage == "pending" for i in range(5, 9))  # wave 1 never started
    with Store(db_of(lab)) as store:
        rec = RolloutStore(store).get(rid)
    assert rec is not None and rec.state == "stopped" and "more than max_failures 1" in (rec.reason or "")
    said = events(lab, "rollout.state")[-1].detail
    assert said["rollout"] == rid and said["state"] == "stopped" and said["reason"] == rec.reason


def test_gate_percent_tolerates_then_stops(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    fleet.set_script({"leaf-02": "fail"})
    text = "devices: ['leaf-*']\ntarget: '2.0'\nwave_size: 4\ngates: {max_failure_percent: 30}\n"
    code, _rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 4  # 1 of 4 (25%) is within 30%: every wave ran, one device failed
    assert [r.name for r in rows if r.stage == "failed"] == ["leaf-02"]
    assert sum(r.stage == "verified" for r in rows) == 7


def test_gate_percent_exceeded(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    fleet.set_script({"leaf-06": "fail", "leaf-07": "arm-error"})
    text = "devices: ['leaf-*']\ntarget: '2.0'\nwave_size: 4\ngates: {max_failure_percent: 30}\n"
    code, rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 1  # 2 of 4 (50%) in wave 1
    assert by_name(rows)["leaf-07"].error == "driver scripted: leaf-07: scripted arming error"
    with Store(db_of(lab)) as store:
        rec = RolloutStore(store).get(rid)
    assert rec is not None and "(50%)" in (rec.reason or "")


def test_a_failed_canary_stops_before_any_wave(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    fleet.set_script({"leaf-01": "fail"})
    text = "devices: ['leaf-*']\ntarget: '2.0'\ncanaries: 1\ngates: {max_failures: 5}\n"
    code, _rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 1
    assert [a["name"] for a in fleet.arms()] == ["leaf-01"]
    assert all(r.stage == "pending" for r in rows if r.wave > 0)


def test_pause_after_canaries_waits_for_continue(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    """The engine pauses after the canary wave; `provision rollout continue` from another
    terminal (a real subprocess) lets it go on."""
    from tests.support.cli import run_cli

    text = "devices: ['leaf-0[1-4]']\ntarget: '2.0'\ncanaries: 1\ngates: {pause_after_canaries: true}\n"
    plan = make_plan(lab, plan_text(fleet, text))
    seen_pause: list[float] = []
    continued: list[int] = []

    def on_tick(engine: Engine) -> None:
        if engine.state == "paused" and not seen_pause:
            assert (engine.rec.reason or "").startswith(CANARY_PAUSE)
            seen_pause.append(time.time())
            # Nothing beyond the canary was armed while paused.
            assert [a["name"] for a in fleet.arms()] == ["leaf-01"]

            def go() -> None:
                time.sleep(0.3)
                r = run_cli("rollout", "continue", engine.id[:8], "--lab", str(lab))
                continued.append(r.returncode)

            helper = threading.Thread(target=go, daemon=True)
            helpers.append(helper)
            helper.start()

    helpers: list[threading.Thread] = []
    code, _rid, rows = run_engine(lab, plan, on_tick=on_tick)
    for helper in helpers:
        helper.join(60)  # the CLI wrote the store before it exits: the engine may finish first
    assert code == 0 and seen_pause and continued == [0]
    assert all(r.stage == "verified" for r in rows)
    later = [a["time"] for a in fleet.arms() if a["name"] != "leaf-01"]
    assert min(later) > seen_pause[0] + 0.3


def test_old_reports_do_not_count(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    """Scoping: a complete report of an EARLIER arming (another install id), a token-less one
    from before this arming, and a late report of an earlier arming arriving while this one
    waits must not end this rollout's install."""
    mac = "52:54:00:61:00:01"
    with Store(db_of(lab)) as store:
        store.arm("leaf-01", "1.5", "00000000000000aa", "an earlier rollout")
        store.add_event(
            Event(
                "installer.report",
                mac=mac,
                detail={"stage": "complete", "status": "ok", "install_id": "00000000000000aa"},
            )
        )
        store.add_event(Event("installer.report", mac=mac, detail={"stage": "complete", "status": "ok"}))
        store.flush()
    fleet.set_script({"leaf-01": "hang"})  # its installer never reports this time

    def late_report(engine: Engine) -> None:
        rows = {r.name: r for r in engine.devices()}
        if rows["leaf-01"].stage == "installing" and not getattr(late_report, "sent", False):
            late_report.sent = True  # type: ignore[attr-defined]
            with Store(db_of(lab)) as other:
                other.add_event(
                    Event(
                        "installer.report",
                        mac=mac,
                        detail={"stage": "complete", "status": "ok", "install_id": "00000000000000aa"},
                    )
                )
                other.flush()  # fmt: skip

    text = "devices: [leaf-01]\ntarget: '2.0'\ntimeouts: {arm: 5, install: 2, boot: 5}\ngates: {max_failures: 1}\n"
    code, _rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)), on_tick=late_report)
    assert getattr(late_report, "sent", False)
    assert code == 4
    (row,) = rows
    assert row.stage == "failed" and "install timeout (2 s): no report" in (row.error or "")
    # The arming it was waiting on was withdrawn (scoped by its install id), with an event.
    disarmed = [e for e in events(lab, "device.disarmed") if e.detail.get("install_id") == row.install_id]
    assert len(disarmed) == 1


def test_lost_reports_but_back_at_target_is_installed_once(
    lab: Path, fleet: Fleet, server: FakeServer
) -> None:
    """Reports are best-effort: a switch whose reports all got lost but that runs the target at
    the install timeout is installed (its arming ended as installed, so no later discovery
    installs it again), not failed and not armed a second time."""
    fleet.set_versions({"leaf-01": "1.0"})
    fleet.set_script({"leaf-01": "lost-reports"})
    text = "devices: [leaf-01]\ntarget: '2.0'\ntimeouts: {arm: 5, install: 2, boot: 5}\n"
    code, _rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 0
    (row,) = rows
    assert row.stage == "verified" and row.attempts == 1 and len(fleet.arms()) == 1
    installed = [e for e in events(lab, "device.installed") if e.detail.get("install_id") == row.install_id]
    assert len(installed) == 1 and "runs 2.0" in installed[0].detail["reason"]
    with Store(db_of(lab)) as store:
        intent = store.intents()["leaf-01"]
    assert not intent.armed and intent.outcome == "installed" and intent.install_id == row.install_id


def test_tokenless_report_after_the_arming_counts(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    fleet.set_script({"leaf-03": "tokenless"})
    code, _rid, rows = run_engine(
        lab, make_plan(lab, plan_text(fleet, "devices: [leaf-03]\ntarget: '2.0'\n"))
    )
    assert code == 0 and rows[0].stage == "verified"


def test_already_at_target_is_skipped_and_said(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    fleet.set_versions({"leaf-02": "2.0", "leaf-04": "2.0"})
    text = "devices: ['leaf-0[1-4]']\ntarget: '2.0'\n"
    code, _rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 0
    got = by_name(rows)
    assert got["leaf-02"].stage == got["leaf-04"].stage == "skipped"
    assert got["leaf-02"].note == "already at 2.0: not reinstalled" and got["leaf-02"].attempts == 0
    assert sorted(a["name"] for a in fleet.arms()) == ["leaf-01", "leaf-03"]
    assert sorted(e.detail["name"] for e in events(lab, "device.armed")) == ["leaf-01", "leaf-03"]
    # Run the same plan again: everything is at the target now, nothing is armed (idempotent).
    code, _rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 0 and {r.stage for r in rows} == {"skipped"}
    assert len(fleet.arms()) == 2


def test_retry_arms_again_with_a_new_install_id(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    fleet.set_script({"leaf-05": "fail-once"})
    text = "devices: [leaf-05]\ntarget: '2.0'\nretries: 1\n"
    code, _rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 0 and rows[0].stage == "verified" and rows[0].attempts == 2
    ids = [a["install_id"] for a in fleet.arms()]
    assert len(ids) == 2 and ids[0] != ids[1] and rows[0].install_id == ids[1]


def test_wrong_version_after_install_fails_the_boot_check(
    lab: Path, fleet: Fleet, server: FakeServer
) -> None:
    fleet.set_script({"leaf-06": "wrong-version", "leaf-07": "unknown"})
    text = "devices: [leaf-06, leaf-07]\ntarget: '2.0'\ntimeouts: {arm: 5, install: 10, boot: 1}\ngates: {max_failures: 1}\n"
    code, _rid, rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    got = by_name(rows)
    assert code == 4
    assert got["leaf-06"].stage == "failed" and "it runs 1.0, expected 2.0" in (got["leaf-06"].error or "")
    assert got["leaf-07"].stage == "verified" and "not checked" in (got["leaf-07"].note or "")


def test_abort_withdraws_outstanding_armings(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    from tests.support.cli import run_cli

    fleet.set_script({f"leaf-0{i}": "hang" for i in range(1, 9)})
    text = "devices: ['leaf-*']\ntarget: '2.0'\nwave_size: 4\nmax_parallel: 2\n"
    results: list[str] = []

    def on_tick(engine: Engine) -> None:
        if len(fleet.arms()) == 2 and not results:
            results.append("aborting")
            r = run_cli("rollout", "abort", engine.id, "--lab", str(lab), "--reason", "test")
            results.append(r.stdout)

    code, rid, _rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)), on_tick=on_tick)
    assert code == 1
    assert "disarmed leaf-01, leaf-02" in results[1]
    assert len(fleet.arms()) == 2  # nothing armed after the abort
    with Store(db_of(lab)) as store:
        intents = store.intents()
        assert RolloutStore(store).get(rid).state == "aborted"  # type: ignore[union-attr]
    assert not intents["leaf-01"].armed and intents["leaf-01"].outcome == "disarmed"
    assert "leaf-03" not in intents


def test_continue_after_a_gate_then_resume(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    """A gate stopped wave 1; `continue` (another process) accepts its failures; `resume` runs
    the rest: the failed devices stay failed (not armed again), the next wave goes."""
    from tests.support.cli import run_cli

    fleet.set_script({"leaf-01": "fail", "leaf-02": "fail"})
    text = "devices: ['leaf-0[1-6]']\ntarget: '2.0'\nwave_size: 3\ngates: {max_failures: 1}\n"
    code, rid, _rows = run_engine(lab, make_plan(lab, plan_text(fleet, text)))
    assert code == 1
    r = run_cli("rollout", "resume", rid, "--lab", str(lab))
    assert r.returncode == 1 and "stopped by a gate" in r.stderr and "continue" in r.stderr
    r = run_cli("rollout", "continue", rid, "--lab", str(lab))
    assert r.returncode == 0 and f"provision rollout resume {rid}" in r.stdout, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "tests.provision.rollout.scripted", "rollout", "resume", rid, "--lab", str(lab),
         "--poll", "0.1"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 4, r.stdout + r.stderr  # done, two failed (accepted)
    with Store(db_of(lab)) as store:
        rows = by_name(RolloutStore(store).devices(rid))
        rec = RolloutStore(store).get(rid)
    assert rec is not None and rec.state == "partial" and rec.accepted_wave == 0
    assert [n for n, d in rows.items() if d.stage == "failed"] == ["leaf-01", "leaf-02"]
    assert all(rows[f"leaf-0{i}"].stage == "verified" for i in (3, 4, 5, 6))
    names = [a["name"] for a in fleet.arms()]
    assert names.count("leaf-01") == 1 and names.count("leaf-02") == 1
