"""`provision rollout` as an operator runs it (separate processes): start from flags, the
progress lines and the summary, the exit code, status/list (--json), pause/continue/abort
refusals, --help with examples.

The driver and the installer reports are the scripted stand-ins of tests.provision.rollout.
scripted (its docstring says why); the simulated fleet's rehearsal is the end-to-end test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.provision.rollout.scripted import FakeServer, Fleet
from tests.support.cli import REPO, cli_env, run_cli


def test_start_from_flags_status_list(lab: Path, fleet: Fleet, server: FakeServer) -> None:
    fleet.set_script({"leaf-02": "fail"})
    fleet.set_versions({"leaf-04": "2.0"})
    r = subprocess.run(
        [sys.executable, "-m", "tests.provision.rollout.scripted", "rollout", "start",
         "--devices", "leaf-0[1-4]", "--target", "2.0", "--driver", "scripted", "-o", f"folder={fleet.folder}",
         "--canaries", "1", "--max-failures", "1", "--poll", "0.1", "--lab", str(lab)],
        cwd=REPO, env=cli_env({"COLUMNS": "120"}), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 4, r.stderr  # one device failed, within the gate
    out = r.stdout
    assert "wave 0 leaf-01 verified: running 2.0" in out
    assert "wave 1 leaf-02 failed: install failed: disk full (scripted)" in out
    assert "wave 1 leaf-04 skipped: already at 2.0: not reinstalled" in out
    assert "partial (1 device(s) failed)" in out
    rid = out.split()[1]

    status = run_cli("rollout", "status", rid[:6], "--json", "--lab", str(lab))
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["rollout"]["id"] == rid and doc["rollout"]["state"] == "partial"
    assert [w["devices"] for w in doc["rollout"]["waves"]] == [1, 3]
    wave1 = doc["rollout"]["waves"][1]
    assert (wave1["verified"], wave1["failed"], wave1["skipped"], wave1["state"]) == (1, 1, 1, "done")
    stages = {d["name"]: d["stage"] for d in doc["devices"]}
    assert stages == {"leaf-01": "verified", "leaf-02": "failed", "leaf-03": "verified", "leaf-04": "skipped"}
    assert doc["devices"][0]["since"].endswith("Z")

    listing = json.loads(run_cli("rollout", "list", "--json", "--lab", str(lab)).stdout)
    assert [x["id"] for x in listing["rollouts"]] == [rid]
    table = run_cli("rollout", "status", "--lab", str(lab), env={"COLUMNS": "100"}).stdout
    assert "leaf-02" in table and "disk full" in table

    # Control commands on an ended rollout say why not, exit 2; an unknown id too.
    r = run_cli("rollout", "pause", rid, "--lab", str(lab))
    assert r.returncode == 2 and "is partial, not running" in r.stderr
    r = run_cli("rollout", "abort", rid, "--lab", str(lab))
    assert r.returncode == 2 and "already ended" in r.stderr
    r = run_cli("rollout", "status", "nosuch", "--lab", str(lab))
    assert r.returncode == 2 and "no rollout 'nosuch'" in r.stderr


def test_help_has_examples_and_exit_codes() -> None:
    r = run_cli("rollout", "--help")
    assert r.returncode == 0
    assert "provision rollout start" in r.stdout and "resume ID" in r.stdout and "4 some failed" in r.stdout
    r = run_cli("rollout", "start", "--help")
    assert r.returncode == 0 and "--dry-run" in r.stdout and "--max-failure-percent" in r.stdout


def test_dry_run_prints_waves_and_stores_nothing(lab: Path, tmp_path: Path) -> None:
    plan = tmp_path / "p.yml"
    plan.write_text("devices: {rack: r1}\ntarget: '2.0'\ncanaries: [leaf-03]\nwave_size: 2\ndriver: ssh\n")
    r = run_cli("rollout", "start", str(plan), "--dry-run", "--json", "--lab", str(lab))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["waves"] == [["leaf-03"], ["leaf-01", "leaf-02"], ["leaf-04"]]
    r = run_cli("rollout", "start", str(plan), "--dry-run", "--lab", str(lab), env={"COLUMNS": "120"})
    assert r.returncode == 0 and "canary" in r.stdout and "leaf-01, leaf-02" in r.stdout
    assert "any canary failure stops it" in r.stdout
    assert not (tmp_path / "state" / "provision.db").exists()


def test_version_from_the_installer_and_none_for_a_boot_entry(tmp_path: Path) -> None:
    """A target naming an installer file: the version to see is the installer's nos_version (as
    `provision serve` would pick it); a boot entry has none (servers: no version check)."""
    (tmp_path / "installers").mkdir()
    (tmp_path / "installers" / "tor-nos.bin").write_text(
        "#!/bin/sh\ntarget_platform=x86_64-kvm_x86_64-r0\nnos_name=tor\nnos_version=2.1.0\nexit 0\n"
    )
    (tmp_path / "lab.yml").write_text(
        "interfaces: [eth9]\nsubnets:\n  - network: 198.18.62.0/24\n    interface: eth9\n"
        "    pool: [198.18.62.100-198.18.62.199]\npaths:\n  state_dir: state\n"
        "onie:\n  installers: installers\n"
        "boot:\n  entries:\n    rescue:\n      x86_64:\n        kernel: k\n"
        "devices:\n  - {name: leaf-01, mac: '52:54:00:62:00:01', platform: x86_64-kvm_x86_64-r0}\n"
        "  - {name: srv-01, mac: '52:54:00:62:00:02', role: server}\n"
    )
    lab = str(tmp_path / "lab.yml")
    r = run_cli("rollout", "start", "--devices", "leaf-01", "--target", "tor-nos.bin", "--driver", "ssh",
                "--dry-run", "--json", "--lab", lab)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "2.1.0"
    r = run_cli("rollout", "start", "--devices", "srv-01", "--target", "rescue", "--driver", "ssh",
                "--dry-run", "--json", "--lab", lab)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] is None
    r = run_cli("rollout", "start", "--devices", "leaf-01", "--target", "9.9", "--driver", "ssh",
                "--dry-run", "--lab", lab)  # fmt: skip
    assert r.returncode == 2 and "target '9.9' for leaf-01: pinned installer '9.9' not found" in r.stderr


def test_a_device_in_flight_elsewhere_is_not_taken(lab: Path, fleet: Fleet) -> None:
    """A rollout not ended (here: its engine died) holds its devices: a new rollout naming one
    of them is refused, exit 2, with what to do; nothing is stored or armed."""
    from provision.rollout.engine import create
    from provision.store.rollouts import RolloutStore
    from provision.store.sqlite import Store
    from tests.provision.rollout.conftest import db_of, make_plan, plan_text

    db_of(lab).parent.mkdir(exist_ok=True)
    with Store(db_of(lab)) as store:
        rid = create(store, make_plan(lab, plan_text(fleet, "devices: ['leaf-0[12]']\ntarget: '2.0'\n")), "t")
    r = run_cli("rollout", "start", "--devices", "leaf-02", "--devices", "leaf-03", "--target", "2.0",
                "--driver", "ssh", "--lab", str(lab))  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert f"1 device(s) are in rollouts that have not ended ({rid}): leaf-02" in r.stderr
    assert f"provision rollout abort {rid}" in r.stderr
    with Store(db_of(lab)) as store:
        assert [x.id for x in RolloutStore(store).recent()] == [rid] and store.intents() == {}
