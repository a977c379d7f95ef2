"""Pieces of the fleet and the ssh driver that need no namespace: the fleet's switches and their
faults, its inventory, and the ssh driver's one-session step script run by a real sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from provision.lab import standin
from provision.lab.fleet import FleetSpec, inventory_yaml, plan_switches
from provision.rollout.drivers.bootstyle import VERSION_COMMAND, version_of
from provision.rollout.drivers.ssh import _failed_step, _steps_script


def test_switches_addresses_macs_and_faults_are_deterministic(tmp_path: Path):
    spec = FleetSpec(
        interface="x", count=1000, first_ip="198.18.8.250", fail_rate=0.02, hang_rate=0.01, seed=3
    )
    layout = standin.Layout(tmp_path)
    switches = plan_switches(spec, layout)
    assert [s.ip for s in switches[:8]] == [f"198.18.8.{n}" for n in (250, 251, 252, 253, 254, 255)] + [
        "198.18.9.0",
        "198.18.9.1",
    ]
    assert len({s.mac for s in switches}) == 1000 and switches[0].mac == "02:4c:41:00:00:01"
    faults = [s.fault for s in switches]
    assert 10 <= faults.count("fail") <= 35 and 3 <= faults.count("hang") <= 20
    assert faults.count("wrong-platform") == 0
    assert [s.fault for s in plan_switches(spec, layout)] == faults  # same seed, same switches
    other = plan_switches(FleetSpec(**{**spec.__dict__, "seed": 4}), layout)
    assert [s.fault for s in other] != faults


def test_inventory_is_lab_yml_devices(tmp_path: Path):
    spec = FleetSpec(interface="x", count=3, first_ip="198.18.8.1")
    doc = yaml.safe_load(inventory_yaml(spec, plan_switches(spec, standin.Layout(tmp_path))))
    assert doc["devices"][1] == {
        "name": "leaf-002",
        "mac": "02:4c:41:00:00:02",
        "serial": "FLEET-0002",
        "ip": "198.18.8.2",
        "profile": "kvm_x86_64",
    }


def test_step_script_names_the_failing_step():
    script = _steps_script(["true", "echo first >&2; echo oops >&2; exit 3", "echo never > /dev/stderr"])
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 3
    assert _failed_step(done.stderr, 3) == (1, "oops")
    assert "never" not in done.stderr
    ok = subprocess.run(["sh", "-c", _steps_script(["true", "true"])], capture_output=True, text=True)
    assert ok.returncode == 0 and _failed_step(ok.stderr, 2) == (1, "")


def test_version_command_reads_the_installers_release_file_under_boot(tmp_path: Path):
    """Our installer writes boot/provision-release inside the NOS boot partition, so a NOS that
    mounts it at /boot has /boot/boot/provision-release. The default version command, run by a
    real sh with its absolute paths moved under tmp_path, finds it; /etc/provision-nos-version
    wins when present; os-release's VERSION_ID is the last resort."""
    root = tmp_path
    command = VERSION_COMMAND
    for top in ("/etc/", "/boot/", "/host/"):
        command = command.replace(f" {top}", f" {root}{top}")

    def run() -> str | None:
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False).stdout
        return version_of(out)

    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('NAME="demo"\nVERSION_ID=0.9\n')
    assert run() == "0.9"
    (root / "boot/boot").mkdir(parents=True)
    (root / "boot/boot/provision-release").write_text("demo-nos 2.0.0\n")
    assert run() == "2.0.0"
    (root / "etc/provision-nos-version").write_text("demo-nos 2.1.0\n")
    assert run() == "2.1.0"
