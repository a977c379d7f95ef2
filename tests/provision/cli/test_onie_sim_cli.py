"""`provision onie-sim` errors an operator meets first: clear message, fix, exit code."""

from __future__ import annotations

import subprocess

import pytest

from provision.onie.simulator import switches
from tests.support.cli import cli_argv, cli_env, run_cli
from tests.support.tools import require_root, require_tool


def test_bad_platform_and_mac_are_input_errors():
    out = run_cli("onie-sim", "-i", "lo", "--platform", "kvm")
    assert out.returncode == 2 and "<arch>-<vendor>_<machine>-r<rev>" in out.stderr
    out = run_cli("onie-sim", "-i", "lo", "--mac", "52:54:00:zz:00:01")
    assert out.returncode == 2 and "not a MAC address" in out.stderr


@pytest.mark.root
def test_missing_interface_is_an_environment_error():
    require_root()
    out = run_cli("onie-sim", "-i", "nosuchif0")
    assert out.returncode == 3 and "no interface 'nosuchif0'" in out.stderr and "fix:" in out.stderr


@pytest.mark.root
def test_not_root():
    require_root()
    require_tool("setpriv")
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cli_argv("onie-sim", "-i", "lo")],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert out.returncode == 3 and "needs root" in out.stderr


def test_switches_for_a_rollout():
    sw = switches(["x86_64-kvm_x86_64-r0", "arm64-acme_s1-r0"], 4, "52:54:00:00:00:fe", "SN", "2023.05")
    assert [s.mac for s in sw] == [
        "52:54:00:00:00:fe",
        "52:54:00:00:00:ff",
        "52:54:00:00:01:00",
        "52:54:00:00:01:01",
    ]
    assert [s.serial for s in sw] == ["SN-1", "SN-2", "SN-3", "SN-4"]
    assert [s.platform for s in sw] == ["x86_64-kvm_x86_64-r0", "arm64-acme_s1-r0"] * 2
    assert sw[1].arch == "arm64" and sw[1].vendor_machine == "acme_s1" and sw[0].operation == "os-install"
    one = switches(["x86_64-kvm_x86_64-r0"], 1, None, "ONLY", "2023.05")
    assert one[0].serial == "ONLY" and one[0].mac.startswith("02:4f:4e:")
