"""The IPMI driver (pyghmi) against OpenIPMI's ipmi_sim, cross-checked with ipmitool."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from provision.bmc import AuthError, BootDevice, BootMode, PowerAction, PowerState, Timeout, Unsupported
from provision.bmc.credentials import Credentials, Secret
from provision.bmc.ipmi import IpmiDriver
from tests.support.bmc.ipmisim import ipmi_sim
from tests.support.cli import run_cli
from tests.support.ports import free_udp_port
from tests.support.tools import require_tool

PASSWORD = "ipmi-Secret-77"


@pytest.fixture
def sim(tmp_path):
    exe = require_tool("ipmi_sim")
    with ipmi_sim(tmp_path / "sim", exe, password=PASSWORD) as s:
        yield s


def ipmitool(sim, *args: str) -> str:
    tool = require_tool("ipmitool")
    argv = [
        tool,
        "-I",
        "lanplus",
        "-C",
        "3",
        "-H",
        sim.host,
        "-p",
        str(sim.port),
        "-U",
        sim.username,
        "-E",
        *args,
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={"IPMI_PASSWORD": PASSWORD}
    ).stdout


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def drv(sim, password: str = PASSWORD) -> IpmiDriver:
    return IpmiDriver(
        "sim", sim.host, sim.port, Credentials(sim.username, Secret(password)), poll_interval=0.2
    )


def test_power_on_off_cycle(sim):
    with drv(sim) as d:
        assert d.power_state() is PowerState.OFF
        d.set_power(PowerAction.ON)
        assert d.wait_power(PowerState.ON, 10) is PowerState.ON
        assert "Chassis Power is on" in ipmitool(sim, "chassis", "power", "status")
        before = len(sim.calls)
        d.set_power(PowerAction.CYCLE)
        # ipmi_sim carries out a cycle as "power 0" now and "power 1" a moment later.
        wait_until(
            lambda: (
                [c for c in sim.calls[before:] if " set power " in c]
                == ["0x20 set power 0", "0x20 set power 1"]
            )
        )
        assert d.power_state() is PowerState.ON
        d.set_power(PowerAction.OFF)
        assert d.power_state() is PowerState.OFF
    assert "Chassis Power is off" in ipmitool(sim, "chassis", "power", "status")


def test_boot_once_pxe_and_disk(sim):
    with drv(sim) as d:
        assert d.boot_once(BootDevice.PXE).applied
        assert "Force PXE" in ipmitool(sim, "chassis", "bootparam", "get", "5")
        assert d.boot_once(BootDevice.DISK, BootMode.UEFI).applied
        assert "Force Boot from default Hard-Drive" in ipmitool(sim, "chassis", "bootparam", "get", "5")
        with pytest.raises(Unsupported):
            d.boot_once(BootDevice.HTTP)


def test_wrong_password_is_auth_error(sim):
    with pytest.raises(AuthError) as err, drv(sim, "wrong-password"):
        pass
    assert "wrong-password" not in str(err.value)


def test_no_ipmi_listener_times_out():
    port = free_udp_port()
    with (
        pytest.raises(Timeout, match="no IPMI answer"),
        IpmiDriver("gone", "127.0.0.1", port, Credentials("admin", Secret("x"))),
    ):
        pass


def test_cli_power_and_boot_over_ipmi(sim):
    env = {"IPMIPW": PASSWORD}
    bmc = f"ipmi://127.0.0.1:{sim.port}"
    base = ("--bmc", bmc, "-u", sim.username, "--password-env", "IPMIPW")
    r = run_cli("power", "on", *base, "--wait", "--timeout", "5", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert '"power_state": "on"' in r.stdout
    r = run_cli("boot", *base, "--once", "pxe", env=env)
    assert r.returncode == 0, r.stderr
    assert "next boot pxe" in r.stdout
    assert PASSWORD not in r.stdout + r.stderr


def test_timeout_bounds_a_silent_bmc():
    # A bound UDP socket that never answers stands in for a hung BMC. pyghmi retries on its own
    # schedule and gave up after 4.8-5.8 s whatever --timeout said (5.4 s under --timeout 3).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        start = time.monotonic()
        with (
            pytest.raises(Timeout, match="no IPMI answer within 2 s") as err,
            IpmiDriver("hung", "127.0.0.1", port, Credentials("admin", Secret("x")), timeout=2),
        ):
            pass
        took = time.monotonic() - start
        assert took < 3, took
        assert "--timeout" in err.value.fix
        r = run_cli(
            "power",
            "status",
            "--bmc",
            f"ipmi://127.0.0.1:{port}",
            "-u",
            "admin",
            "--password-env",
            "P",
            "--timeout",
            "2",
            "--json",
            env={"P": "x"},
        )
    assert r.returncode == 1
    assert "no IPMI answer within 2 s" in json.loads(r.stdout)["results"][0]["error"]["message"]
