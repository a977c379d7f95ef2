"""The qemu, bmc and manual arming drivers against real peers: QEMU's QMP (a stopped PC machine,
no guest runs), sushy-emulator's Redfish (tests/support/bmc), and the manual driver's text."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from provision.config.inventory import BmcConfig, Device
from provision.rollout.drivers import driver_for
from provision.rollout.drivers.base import ArmingError, ArmRequest
from provision.rollout.drivers.manual import ManualDriver
from provision.rollout.drivers.qemu import Qmp
from pxe.policy import Event
from tests.support.bmc.emulator import sushy_emulator
from tests.support.netns import stop_process

QEMU = shutil.which("qemu-system-x86_64")


def _req(dev: Device, **options) -> ArmRequest:
    return ArmRequest(dev, "r1", "i1", "2.0", options)


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 missing (scripts/setup.sh PKGS_VM)")
def test_qemu_driver_sets_bootindex_and_resets(tmp_path: Path):
    drv, watch = tmp_path / "drv.qmp", tmp_path / "watch.qmp"
    argv = [QEMU or "", "-machine", "pc", "-S", "-nodefaults", "-display", "none", "-m", "16"]
    argv += ["-device", "e1000,id=net0", "-device", "e1000,id=net1"]
    for sock in (drv, watch):
        argv += ["-qmp", f"unix:{sock},server=on,wait=off"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (drv.exists() and watch.exists()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "QEMU did not open its QMP sockets"
            time.sleep(0.05)

        async def scenario() -> tuple[str, list[str], int]:
            observer = await Qmp.open(str(watch))
            dev = Device(name="lab-vm1")
            driver = driver_for("qemu", {"qmp": str(tmp_path / "{name}.qmp").replace("lab-vm1", "x")})
            note = await driver.arm(_req(dev, qmp=str(drv), bootindex={"net1": 0, "net0": 3}, boot_set="n"))
            events = []
            while "RESET" not in events:
                line = await asyncio.wait_for(observer.reader.readline(), 5)
                events.append(json.loads(line).get("event"))
            index = await observer.execute("qom-get", path="/machine/peripheral/net1", property="bootindex")
            with pytest.raises(ArmingError, match=r"DeviceNotFound|not found"):
                await driver.arm(_req(dev, qmp=str(drv), bootindex={"nosuch": 0}))
            with pytest.raises(ArmingError, match="cannot open the QMP socket"):
                await driver.arm(_req(dev, qmp=str(tmp_path / "absent.qmp")))
            await observer.close()
            assert await driver.current_version(_req(dev, qmp=str(drv))) is None
            assert (
                await driver.current_version(_req(dev, version_command="echo nos {name}-7.1"))
                == "lab-vm1-7.1"
            )
            return note, events, index

        note, events, index = asyncio.run(scenario())
        assert note.endswith("net1 bootindex 0, net0 bootindex 3, boot_set n, system_reset")
        assert "RESET" in events
        assert index == 0
    finally:
        stop_process(proc)


def test_bmc_driver_boot_once_pxe_and_power(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("EMU_PW", "Emu-pass-4711")
    with sushy_emulator(tmp_path / "emu", password="Emu-pass-4711") as emu:
        url = emu.url.replace("http://", "redfish+http://")
        bmc = BmcConfig(url=url, username=emu.username, password_env="EMU_PW")
        dev = Device(name="srv-01", bmc=bmc)
        driver = driver_for("bmc", {})
        journal: list[Event] = []
        driver.journal = journal.append  # type: ignore[attr-defined]  # the engine sets it
        note = asyncio.run(driver.arm(_req(dev)))
        assert "boot once pxe" in note
        # the operation is recorded for /metrics (bmc.operation), with no address or user in it
        [op] = journal
        assert op.kind == "bmc.operation" and op.detail["operation"] == "rollout-arm"
        assert op.detail["ok"] is True and op.detail["protocol"] == "redfish"
        assert op.detail["name"] == "srv-01" and emu.username not in json.dumps(op.detail)
        systems = requests.get(f"{emu.url}/redfish/v1/Systems", auth=(emu.username, emu.password), timeout=10)
        member = systems.json()["Members"][0]["@odata.id"]
        system = requests.get(emu.url + member, auth=(emu.username, emu.password), timeout=10).json()
        assert system["Boot"]["BootSourceOverrideTarget"] == "Pxe"
        # sushy-emulator keeps the override Continuous whatever is sent (its libvirt semantics):
        # the driver's note says so rather than hiding it
        assert system["Boot"]["BootSourceOverrideEnabled"] in ("Once", "Continuous")
        if system["Boot"]["BootSourceOverrideEnabled"] == "Continuous":
            assert "Continuous" in note
        assert "powered on (was off)" in note  # the emulator's fake system starts Off
        deadline = time.monotonic() + 20
        while system["PowerState"] != "On" and time.monotonic() < deadline:  # it settles later
            time.sleep(0.3)
            system = requests.get(emu.url + member, auth=(emu.username, emu.password), timeout=10).json()
        assert system["PowerState"] == "On"
        assert asyncio.run(driver.current_version(_req(dev))) is None

        monkeypatch.setenv("EMU_PW", "wrong")
        with pytest.raises(ArmingError, match="srv-01: BMC"):
            asyncio.run(driver.arm(_req(dev)))
        assert len(journal) == 2 and journal[1].detail["ok"] is False and journal[1].detail["error"]
    with pytest.raises(ArmingError, match="no `bmc:` in the inventory"):
        asyncio.run(driver_for("bmc", {}).arm(_req(Device(name="sw-9"))))


def test_manual_driver_says_what_to_do_per_boot_style():
    said: list[str] = []
    driver = ManualDriver({}, say=said.append)
    asyncio.run(driver.arm(_req(Device(name="leaf-01", ip="198.18.0.9", profile="accton_as7712_32x"))))
    asyncio.run(driver.arm(_req(Device(name="leaf-02", profile="pegatron_dm6218_b"))))
    grub, uboot = said
    assert "leaf-01 (198.18.0.9)" in grub and "grub platform" in grub
    assert "/mnt/onie-boot/onie/tools/bin/onie-boot-mode -o install" in grub
    assert "grub-reboot ONIE" in grub and grub.index("grub-reboot") < grub.index("reboot\n")
    assert "fw_setenv onie_boot_reason install" in uboot and "uboot platform" in uboot
    with pytest.raises(ArmingError, match="cannot tell whether it boots with GRUB or U-Boot") as err:
        asyncio.run(driver.arm(_req(Device(name="odd"))))
    assert err.value.exit_code == 2
    with pytest.raises(ArmingError, match="unknown arming driver 'telnet'"):
        driver_for("telnet", {})
