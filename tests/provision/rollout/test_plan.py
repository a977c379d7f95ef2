"""Rollout plans: selection, waves, overrides, and every bad plan (file:line:col, the fix, exit 2
through the CLI, all problems at once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.config.errors import ConfigErrors
from provision.rollout.plan import Plan
from tests.provision.rollout.conftest import make_plan, plan_text
from tests.provision.rollout.scripted import Fleet
from tests.support.cli import run_cli


def test_selection_waves_canaries_and_overrides(lab: Path, fleet: Fleet) -> None:
    body = """\
name: tor-v2
devices:
  names: ['leaf-*', spine-01, srv-01]
  site: ams1
  exclude: [leaf-08]
target: "2.0"
canaries: [leaf-05, leaf-01]
wave_size: 3
max_parallel: 2
gates: {max_failure_percent: 10, pause_after_canaries: true, delay: 7}
retries: 2
"""
    text = (
        body
        + f"""\
driver:
  name: scripted
  options: {{folder: '{fleet.folder}', user: admin}}
  groups:
    spines: {{options: {{user: netops}}}}
  devices:
    leaf-02: {{options: {{port: 2222}}}}
"""
    )
    plan = make_plan(lab, text)
    # srv-01 is at fra1 (filtered out by site), leaf-08 excluded; canaries first, in the order named.
    assert plan.waves == (
        ("leaf-05", "leaf-01"),
        ("leaf-02", "leaf-03", "leaf-04"),
        ("leaf-06", "leaf-07", "spine-01"),
    )
    assert plan.canaries == 2 and plan.max_parallel == 2 and plan.delay == 7 and plan.retries == 2
    assert plan.max_failures is None and plan.max_failure_percent == 10 and plan.pause_after_canaries
    assert plan.version == "2.0" and plan.timeouts == {"arm": 300, "install": 1800, "boot": 900}
    assert plan.drivers["leaf-03"].options == {"folder": str(fleet.folder), "user": "admin"}
    assert plan.drivers["spine-01"].options["user"] == "netops"
    assert plan.drivers["leaf-02"].options == {"folder": str(fleet.folder), "user": "admin", "port": 2222}
    assert any("srv-01" in n and "site" in n for n in plan.notes)
    # What is stored with the rollout comes back the same.
    assert Plan.from_doc(json.loads(json.dumps(plan.to_doc()))) == plan


def test_list_form_role_rack_and_defaults(lab: Path, fleet: Fleet) -> None:
    plan = make_plan(
        lab, plan_text(fleet, "devices: {role: switch, rack: [r2, r9]}\ntarget: v2\ncanaries: 1\n")
    )
    assert plan.devices == ["leaf-05", "leaf-06", "leaf-07", "leaf-08", "spine-01"]  # spine: its group's role
    assert plan.waves[0] == ("leaf-05",) and plan.waves[1] == ("leaf-06", "leaf-07", "leaf-08", "spine-01")
    assert plan.max_failures == 0 and plan.max_parallel == 10  # the safe defaults
    plan = make_plan(lab, plan_text(fleet, "devices: {tags: [tor, 'pod-2']}\ntarget: v2\n"))
    assert plan.devices == ["leaf-02", "leaf-04", "leaf-06", "leaf-08"]  # every tag listed
    plan = make_plan(lab, plan_text(fleet, "devices: [leaf-02, 'leaf-0[34]']\ntarget: v2\nwave_size: 2\n"))
    assert plan.waves == (("leaf-02", "leaf-03"), ("leaf-04",)) and plan.canaries == 0


def test_gate_thresholds() -> None:
    plan = Plan("p", "flags", "2", "2", (("a",), ("b", "c", "d", "e")), 1, 2, 1, 30, False, 0, {}, 0, {})
    assert "canary" in (plan.gate_tripped(0, 1, 1) or "")
    assert plan.gate_tripped(1, 0, 4) is None
    assert plan.gate_tripped(1, 1, 4) is None  # 1 is not more than K=1, 25% not more than 30%
    assert "max_failures 1" in (plan.gate_tripped(1, 2, 10) or "")  # 2 > K
    only_p = Plan("p", "flags", "2", "2", (), 0, 2, None, 30, False, 0, {}, 0, {})
    assert only_p.gate_tripped(1, 3, 10) is None  # exactly 30%: not more
    assert "4 of 10 failed (40%)" in (only_p.gate_tripped(1, 4, 10) or "")


BAD = """\
name: broken
devices:
  names: [leaf-01, leaf-99, 'spine-*', 'core-*']
target: "2.0"
canaries: [leaf-07]
wave_size: 0
driver:
  name: telepathy
  devices:
    leaf-42: {options: {port: 22}}
"""


def test_every_bad_plan_problem_at_once(lab: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        make_plan(lab, BAD)
    found = {(f.code, f.mark.line if f.mark else None) for f in info.value.findings}
    assert found == {
        ("unknown-device", 3),  # leaf-99
        ("unknown-device", 3),  # core-* matches nothing
        ("canary-not-selected", 5),
        ("bad-wave-size", 6),
        ("unknown-driver", 8),
        ("unknown-device", 10),  # an override for a device not selected
    }
    messages = "\n".join(str(f) for f in info.value.findings)
    assert "no device 'leaf-99'" in messages and "did you mean" in messages
    assert "no device matches 'core-*'" in messages
    assert "canary 'leaf-07' is not in the selection" in messages
    assert "wave_size 0" in messages and "unknown arming driver 'telepathy'" in messages


def test_bad_plans_exit_2_through_the_cli(lab: Path, tmp_path: Path) -> None:
    """As an operator sees it: exit 2, `plan.yml:line:col: what`, the fix, nothing stored."""
    plan = tmp_path / "bad.yml"
    plan.write_text(BAD)
    r = run_cli("rollout", "start", str(plan), "--lab", str(lab))
    assert r.returncode == 2, r.stderr
    assert f"{plan}:3:" in r.stderr and "leaf-99" in r.stderr
    assert f"{plan}:6:" in r.stderr and "wave_size 0" in r.stderr
    assert f"{plan}:8:" in r.stderr and "telepathy" in r.stderr
    assert f"{plan}:5:" in r.stderr and "leaf-07" in r.stderr
    assert "fix:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "state" / "provision.db").exists()

    empty = tmp_path / "empty.yml"
    empty.write_text("devices: {site: nowhere}\ntarget: '2'\ndriver: telepathy\n")
    r = run_cli("rollout", "start", str(empty), "--lab", str(lab))
    assert r.returncode == 2 and f"{empty}:1:10: error: the selection is empty" in r.stderr, r.stderr

    # Flags: the same checks, without a place.
    r = run_cli("rollout", "start", "--devices", "leaf-99", "--target", "2", "--driver", "telepathy",
                "--wave-size", "0", "--lab", str(lab))  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert (
        "no device 'leaf-99'" in r.stderr
        and "unknown arming driver" in r.stderr
        and "wave_size 0" in r.stderr
    )

    # A typo in a key, and a device that cannot be armed, named.
    typo = tmp_path / "typo.yml"
    typo.write_text("devices: [srv-01]\ntarget: '2'\nwave_sise: 3\ndriver: telepathy\n")
    r = run_cli("rollout", "start", str(typo), "--lab", str(lab), "--dry-run")
    assert r.returncode == 2
    assert (
        f"{typo}:3:1: error: unknown key 'wave_sise'" in r.stderr and "did you mean 'wave_size'" in r.stderr
    )
    assert "srv-01 has install: never" in r.stderr


def test_the_example_plan(tmp_path: Path) -> None:
    """examples/rollout.yml against a site of 120 leaves and 2 spines (docs/rollout.md's example)."""
    from provision.config.inventory import Device, Inventory
    from provision.rollout.plan import load_plan
    from tests.support.cli import REPO

    devices = [Device(f"leaf-{i:02d}", role="switch", site="ams1") for i in range(1, 121)]
    devices += [Device(f"spine-0{i}", role="switch", site="ams1", group="spines") for i in (1, 2)]
    plan = load_plan(REPO / "examples" / "rollout.yml", Inventory(devices), drivers=("ssh", "manual"))
    assert plan.waves[0] == ("leaf-01", "leaf-02")
    assert [len(w) for w in plan.waves] == [2, 50, 50, 17]  # leaf-99 excluded
    assert plan.drivers["leaf-07"].name == "manual" and plan.drivers["leaf-08"].options == {"user": "admin"}
    assert plan.pause_after_canaries and plan.max_failures == 2 and plan.max_failure_percent == 5


def test_tags_from_a_netbox_csv_survive_enrolment_and_export(tmp_path: Path) -> None:
    """NetBox's Tags column (comma-separated) → an enrolled device's tags → export; a plan's
    `tags:` selects on them."""
    from provision.config.inventory import Inventory
    from provision.devices.importer import csv_text, parse_file
    from provision.devices.lifecycle import device_doc, device_from_doc
    from provision.rollout.plan import load_plan

    csv = tmp_path / "netbox.csv"
    csv.write_text('"Name","Tags","MAC address"\n"tor-1","tor,pod-2","52:54:00:63:00:01"\n"tor-2","tor",""\n')
    parsed = parse_file(csv)
    assert not parsed.errors, parsed.errors
    devs = [device_from_doc(device_doc(d)) for d, _mark in parsed.devices]  # as the store keeps them
    assert [d.tags for d in devs] == [("tor", "pod-2"), ("tor",)]
    assert "tor,pod-2" in csv_text(devs).splitlines()[1]
    plan_file = tmp_path / "p.yml"
    plan_file.write_text("devices: {tags: ['pod-*']}\ntarget: '2'\ndriver: ssh\n")
    assert load_plan(plan_file, Inventory(devs), drivers=("ssh",)).devices == ["tor-1"]
