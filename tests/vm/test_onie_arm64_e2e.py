"""ONIE end to end on arm64 (issue 12): ONIE-like QEMU guests (qemu-system-aarch64 -M virt, TCG)
discover `provision serve`, run our arm64 installers, reboot, and boot what they left.

What runs against what:
- installers: `provision onie-installer` on one switch.yml listing qemu_armv8a (UEFI, GRUB
  arm64-efi) and qemu-arm64-uboot (a FIT image + fw_setenv), payload: Debian's arm64 kernel and the
  demo NOS initramfs of examples/nos/build.sh built with arm64 busybox;
- server: `provision serve` zero-touch (a lab.yml without `devices:`: unknown switches install)
  on a tap in a namespace this test creates (198.18.5x.0/24);
- switches: tests/support/onie_guest_arm64.py, ONIE-like environments on AAVMF (UEFI) and on
  Debian's qemu_arm64 U-Boot with ONIE's boot contract in its environment (docs/onie.md).

Timings of each phase are printed (-s or -rP); nothing asserts on time.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_cli
from tests.support.netns import NetNS, namespaces, tap
from tests.support.onie_guest import BootLog, file_sha256
from tests.support.onie_guest_arm64 import (
    UBOOT,
    UEFI,
    Arm64Guest,
    Platform,
    build_initramfs,
    build_uboot_disk,
    build_uefi_disk,
    kernel,
    missing_pieces,
)
from tests.support.onie_guest_image import gpt_partitions
from tests.support.serving import ServeProc, serving
from tests.support.tools import require_root, require_tool
from tests.support.vm import arm64_busybox

pytestmark = [pytest.mark.vm, pytest.mark.netns, pytest.mark.timeout(900)]

NOS_MARKER = "PROVISION-NOS-BOOTED demo 1.0.0"
ONIE_ENTERED = "ONIE-GUEST-PHASE discovery"

SPEC = """\
nos:
  name: demo
  version: 1.0.0
platforms: [qemu_armv8a, qemu-arm64-uboot]
payload:
  kernel: nos/Image
  initrd: nos/build/demo-initrd.img
  rootfs: nos/build/demo-rootfs.squashfs
cmdline: "nos.poweroff"
partitions:
  - label: DEMO-BOOT
    size: 128M
    role: boot
  - label: DEMO-ROOT
    size: 64M
    role: rootfs
    ab: true
  - label: DEMO-DATA
    size: 32M
    role: data
    filesystem: ext4
grub:
  title: Demo NOS 1.0.0 (arm64)
  timeout: 1
"""

LAB = """\
interfaces: [tap0]
subnets:
  - network: {net}.0/24
    interface: tap0
    pool: [{net}.100-{net}.199]
paths:
  state_dir: {state}
http_port: 80
onie:
  installers: {installers}
  discovery: exact
"""


def installer_name(platform: Platform) -> str:
    return f"onie-installer-{platform.platform}.bin"


@pytest.fixture(scope="module")
def installers(tmp_path_factory) -> Path:
    """Both arm64 installers from one switch.yml, and the guests' cached pieces, once per module."""
    require_root()
    for tool in ("qemu-system-aarch64", "sgdisk", "mke2fs", "mkfs.vfat", "mcopy", "grub-mkimage",
                 "mkimage", "mkenvimage", "readelf", "modinfo", "depmod", "cpio", "mksquashfs"):  # fmt: skip
        require_tool(tool)
    if why := missing_pieces():
        pytest.fail(why)
    work = tmp_path_factory.mktemp("arm64-installers")
    t0 = time.monotonic()
    busybox = arm64_busybox()
    assert busybox is not None
    subprocess.run([str(REPO / "examples/nos/build.sh"), str(work / "nos/build")], check=True,
                   capture_output=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                             "BUSYBOX": str(busybox)})  # fmt: skip
    shutil.copy2(kernel(), work / "nos/Image")  # Debian's arm64 vmlinuz is an uncompressed Image
    (work / "switch.yml").write_text(SPEC)
    out = work / "installers"
    res = run_cli("onie-installer", str(work / "switch.yml"), "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    names = sorted(Path(b["path"]).name for b in json.loads(res.stdout))
    assert names == sorted(installer_name(p) for p in (UEFI, UBOOT))
    build_uefi_disk()
    build_uboot_disk()
    build_initramfs(UBOOT)
    print(f"\n[onie-arm64] built NOS + installers + guest artefacts in {time.monotonic() - t0:.1f}s")
    return out


def broken_copy(installers: Path, dest: Path) -> Path:
    """The installers with one payload byte flipped each (headers intact)."""
    dest.mkdir()
    for src in installers.glob("*.bin"):
        data = bytearray(src.read_bytes())
        m = re.search(rb"^payload_offset=(\d+)", bytes(data), re.M)
        assert m is not None
        data[int(m[1]) + 1000] ^= 0xFF
        (dest / src.name).write_bytes(data)
    return dest


@dataclass
class Lab:
    ns: NetNS
    lab_yml: Path
    serve: ServeProc
    net: str

    def device(self, mac: str) -> dict:
        res = run_cli("status", "--lab", str(self.lab_yml), "--json")
        assert res.returncode == 0, res.stderr
        return next(d for d in json.loads(res.stdout)["devices"] if d["mac"] == mac)


@contextmanager
def our_lab(tmp_path: Path, installers: Path, net: str) -> Iterator[Lab]:
    """`provision serve`, zero-touch (no `devices:`), on tap0 in a fresh namespace."""
    lab_yml = tmp_path / "lab.yml"
    lab_yml.write_text(LAB.format(net=net, state=tmp_path / "state", installers=installers))
    with namespaces(1, prefix="oa") as (ns,):
        tap(ns, "tap0", f"{net}.1/24")
        with serving(ns, str(lab_yml)) as sp:
            yield Lab(ns, lab_yml, sp, net)


class Phases:
    def __init__(self, title: str):
        self.title = title
        self.rows: list[tuple[str, float, str]] = []

    def add(self, name: str, log: BootLog) -> None:
        detail = " ".join(f"{k}@{v}s" for k, v in log.phases().items())
        self.rows.append((name, log.elapsed, detail))
        print(f"[onie-arm64] {self.title}: {name}: {log.elapsed:.1f}s {detail}", flush=True)

    def print(self) -> None:
        print(f"\n[onie-arm64] {self.title}")
        for name, secs, detail in self.rows:
            print(f"  {name:<30} {secs:6.1f}s  {detail}")


def install(guest: Arm64Guest, lab: Lab, phases: Phases, name: str) -> BootLog:
    log = guest.boot_onie()
    phases.add(name, log)
    assert not log.timed_out, log.tail(80)
    assert "ONIE-GUEST-PHASE install-ok" in log.text, log.tail(80)
    assert log.returncode == 0, log.tail(80)  # ONIE rebooted; QEMU (-no-reboot) exited cleanly
    url = f"http://{lab.net}.1/{installer_name(guest.platform)}"
    # Our DHCP answer's URL (option 125), with the install's token in its query.
    assert re.search(rf"^ONIE: Executing installer: {re.escape(url)}(\?token=\S+)?$", log.text, re.M), (
        log.tail(80)
    )
    assert "provision: payload verified" in log.text, log.tail(80)
    assert "provision: WARNING" not in log.text, log.tail(80)
    return log


def boot_until(guest: Arm64Guest, phases: Phases, name: str, marker: str) -> BootLog:
    log = guest.boot(marker)
    phases.add(name, log)
    assert log.stopped_on is not None and marker in log.stopped_on, log.tail(80)
    return log


def nvram(log: BootLog) -> list[str]:
    """Boot entry labels in BootOrder order, from the efibootmgr listing after an install."""
    lines = [line.split(" ", 1)[1] for _, line in log.lines if line.startswith("ONIE-GUEST-NVRAM ")]
    order = next((ln.split(":", 1)[1].strip().split(",") for ln in lines if ln.startswith("BootOrder")), [])
    labels = {}
    for ln in lines:
        m = re.match(r"Boot([0-9A-Fa-f]{4})\*?\s+(.*)", ln)
        if m:
            labels[m[1].upper()] = re.split(r"\t|\s{2,}|\s+HD\(", m[2])[0].strip()
    return [labels.get(b.upper(), b) for b in order]


def esp_files(disk: Path, folder: str) -> list[str]:
    start = 2048 * 512  # partition 1 of the base disk (onie_guest_arm64.build_uefi_disk)
    out = subprocess.run(["mdir", "-b", "-i", f"{disk}@@{start}", f"::{folder}"], capture_output=True,
                         text=True, check=True, env={"MTOOLS_SKIP_CHECK": "1"}).stdout  # fmt: skip
    return [line.rstrip("/").rsplit("/", 1)[-1].lower() for line in out.split()]


def gpt(disk: Path) -> str:
    return subprocess.run(["sgdisk", "-p", str(disk)], capture_output=True, text=True, check=True).stdout


def test_uefi_arm64_install_reboot_into_nos_then_reinstall(installers, tmp_path):
    """AAVMF: the factory disk boots ONIE (\\EFI\\BOOT\\BOOTAA64.EFI); ONIE discovers our server,
    runs arm64-qemu_armv8a-r0's installer, reboots; AAVMF takes the NVRAM entry efibootmgr made
    and GRUB arm64-efi boots the NOS. A second install over the first: the same one entry, the
    same partitions, the NOS again. ONIE-BOOT is never changed."""
    phases = Phases("arm64 UEFI (AAVMF), provision serve + provision onie-installer")
    with our_lab(tmp_path, installers, "198.18.52") as lab:
        guest = Arm64Guest(tmp_path / "guest", UEFI, lab.ns, "tap0", serial="PVARM-UEFI-1")
        onie_boot = _onie_boot_sha(guest.disk)
        fresh = boot_until(guest, phases, "fresh disk -> ONIE (fallback)", ONIE_ENTERED)
        assert "ONIE-GUEST-GRUB" in fresh.text, fresh.tail(80)

        first = install(guest, lab, phases, "install 1")
        assert "installing GRUB (uefi)" in first.text, first.tail(80)
        nos = boot_until(guest, phases, "NOS boot 1 (NVRAM entry)", NOS_MARKER)
        # AAVMF took the entry efibootmgr made (first in BootOrder), not ONIE's fallback loader.
        assert re.search(r'BdsDxe: starting Boot\d+ "demo"', nos.text), nos.tail(80)
        assert "ONIE-GUEST-GRUB" not in nos.text
        assert nvram(first)[0] == "demo", nvram(first)
        assert "grubaa64.efi" in esp_files(guest.disk, "/EFI/demo")
        # ONIE's fallback loader was there, so the installer left it alone.
        assert esp_files(guest.disk, "/EFI/BOOT") == ["bootaa64.efi"]
        assert lab.device(guest.mac)["stage"] == "installed"

        second = install(guest, lab, phases, "install 2 (over install 1)")
        entries = nvram(second)
        assert entries[0] == "demo" and entries.count("demo") == 1, entries
        boot_until(guest, phases, "NOS boot 2", NOS_MARKER)
        parts = gpt(guest.disk)
        assert parts.count("DEMO-BOOT") == 1 and parts.count("DEMO-ROOT-A") == 1, parts
        assert _onie_boot_sha(guest.disk) == onie_boot, "ONIE-BOOT changed"
        assert lab.serve.output.count("stage=complete status=ok") >= 2, lab.serve.output[-3000:]
        assert lab.device(guest.mac)["stage"] == "installed"
    phases.print()


def test_uboot_arm64_install_writes_env_and_uboot_boots_the_fit(installers, tmp_path):
    """Debian's qemu_arm64 U-Boot with ONIE's bootcmd: nos_bootcmd `echo` falls through to ONIE;
    the installer puts nos.itb in the NOS boot partition and sets nos_bootcmd with fw_setenv in
    the disk environment (profile qemu-arm64-uboot); on power-on U-Boot imports it, runs
    nos_bootcmd, bootm boots the FIT and the NOS prints its marker."""
    phases = Phases("arm64 U-Boot (qemu_arm64), provision serve + provision onie-installer")
    with our_lab(tmp_path, installers, "198.18.53") as lab:
        guest = Arm64Guest(tmp_path / "guest", UBOOT, lab.ns, "tap0", serial="PVARM-UBOOT-1")
        assert guest.disk_env()["nos_bootcmd"] == "echo"
        log = install(guest, lab, phases, "power on -> ONIE -> install")
        assert "\nnos_bootcmd=echo\n" in log.text and "ONIE-UBOOT: booting ONIE" in log.text
        env = guest.disk_env()
        assert env["provision_nos"].startswith("demo"), env
        assert "bootm" in env["nos_bootcmd"] and "run nos_load" in env["nos_bootcmd"], env
        assert "/boot/nos.itb" in env["nos_load"], env
        assert "onie_boot_reason" not in env or env["onie_boot_reason"] == "", env
        nos = boot_until(guest, phases, "power on -> U-Boot -> NOS FIT", NOS_MARKER)
        assert "Loading kernel from FIT Image" in nos.text, nos.tail(80)
        assert "ONIE-UBOOT: booting ONIE" not in nos.text
        assert lab.device(guest.mac)["stage"] == "installed"

        # The NOS asks for ONIE (`fw_setenv onie_boot_reason install`, docs/onie.md): U-Boot's
        # check_boot_reason boots ONIE before nos_bootcmd; ONIE installs again over the first
        # install, clears onie_boot_reason, and the next power-on is the NOS again.
        guest.set_disk_env(onie_boot_reason="install")
        again = install(guest, lab, phases, "onie_boot_reason=install -> ONIE -> install 2")
        assert "ONIE-GUEST-UBOOT-ENV-BEFORE" in again.text and "onie_boot_reason=install" in again.text
        # nos_bootcmd never ran (its echo would be a line of its own; printenv shows it inline).
        assert not re.search("^Loading Demo NOS", again.text, re.M), again.tail(80)
        assert "Loading kernel from FIT Image" not in again.text
        assert guest.disk_env().get("onie_boot_reason", "") == ""
        assert gpt(guest.disk).count("DEMO-BOOT") == 1
        boot_until(guest, phases, "power on -> U-Boot -> NOS FIT 2", NOS_MARKER)
        assert lab.serve.output.count("stage=complete status=ok") >= 2, lab.serve.output[-3000:]
    phases.print()


def test_broken_arm64_installers_leave_onie_bootable(installers, tmp_path):
    """One flipped payload byte: each installer refuses before writing; the UEFI disk is byte for
    byte the same and its next power-on is ONIE; on U-Boot, ONIE's install mode had set
    nos_bootcmd=true, the installer never replaced it, and the next power-on is ONIE again."""
    phases = Phases("broken arm64 installers, provision serve")
    broken = broken_copy(installers, tmp_path / "broken")
    with our_lab(tmp_path, broken, "198.18.54") as lab:
        uefi = Arm64Guest(tmp_path / "uefi", UEFI, lab.ns, "tap0", serial="PVARM-BROKEN-1", disco_attempts=1)
        before = file_sha256(uefi.disk)
        log = uefi.boot_onie()
        phases.add("UEFI: ONIE with broken installer", log)
        assert "ONIE-GUEST-PHASE install-failed" in log.text, log.tail(80)
        assert "payload SHA-256 mismatch" in log.text and "install-ok" not in log.text
        assert file_sha256(uefi.disk) == before, "the disk changed"
        boot_until(uefi, phases, "UEFI: power on -> ONIE", ONIE_ENTERED)
        assert lab.device(uefi.mac)["stage"] == "failed"

        ub = Arm64Guest(tmp_path / "uboot", UBOOT, lab.ns, "tap0", mac="52:54:00:4f:a6:02",
                        serial="PVARM-BROKEN-2", disco_attempts=1)  # fmt: skip
        parts = gpt(ub.disk)
        log = ub.boot_onie()
        phases.add("U-Boot: ONIE with broken installer", log)
        assert "ONIE-GUEST-PHASE install-failed" in log.text, log.tail(80)
        assert "payload SHA-256 mismatch" in log.text and "install-ok" not in log.text
        assert gpt(ub.disk) == parts
        env = ub.disk_env()
        assert env["nos_bootcmd"] == "true" and "provision_nos" not in env, env
        again = boot_until(ub, phases, "U-Boot: power on -> ONIE", ONIE_ENTERED)
        assert "\nnos_bootcmd=true\n" in again.text and "ONIE-UBOOT: booting ONIE" in again.text
        assert lab.device(ub.mac)["stage"] == "failed"
        assert len(re.findall(r"installer\.report .*stage=verified status=failed", lab.serve.output)) >= 2
    phases.print()


def _onie_boot_sha(disk: Path) -> str:
    """SHA-256 of ONIE-BOOT's bytes."""
    part = next(p for p in gpt_partitions(disk) if p.name == "ONIE-BOOT")
    with disk.open("rb") as f:
        f.seek(part.start)
        return hashlib.sha256(f.read(part.size)).hexdigest()
