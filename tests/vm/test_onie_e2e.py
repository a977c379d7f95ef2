"""ONIE end to end: an ONIE-like QEMU guest discovers our server, installs our NOS, reboots into it.

What runs against what (each test says it again):
- installer: `provision onie-installer` on a copy of examples/switch.yml with the demo NOS of
  examples/nos/build.sh;
- server: `provision serve` (pxe.dhcp + pxe.http + OniePolicy from the lab.yml `onie:` section)
  on a tap inside a namespace this test creates (198.18.4x.0/24);
- switch: tests/support/onie_guest.py, an ONIE-like environment (Debian kernel + busybox initramfs
  with sgdisk/mke2fs/grub-install/efibootmgr, ONIE's discovery order and headers) on q35 with
  OVMF (UEFI) or SeaBIOS (BIOS), over a disk pre-laid with ONIE's partitions.
The last test (`test_guest_alone_with_dnsmasq`) checks the guest itself against dnsmasq + python's
http.server and a reference installer: when the others fail, it tells guest from server.

Timings of each phase are printed (run with -s or -rP to see them); nothing asserts on time.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_cli
from tests.support.netns import NetNS, namespaces, tap
from tests.support.onie_guest import (
    BootLog,
    OnieGuest,
    esp_listing,
    file_sha256,
    onie_fingerprint,
    read_grubenv,
    set_grubenv,
)
from tests.support.onie_guest_image import (
    OVMF_CODE,
    REFERENCE_INSTALLER,
    REFERENCE_MARKER,
    Firmware,
    build_base_disk,
    build_reference_nos,
)
from tests.support.serving import ServeProc, serving
from tests.support.tools import require_root, require_tool

pytestmark = [pytest.mark.vm, pytest.mark.netns, pytest.mark.timeout(1800)]

PLATFORM = "x86_64-kvm_x86_64-r0"
INSTALLER_NAME = f"onie-installer-{PLATFORM}.bin"
NOS_MARKER = "PROVISION-NOS-BOOTED demo 1.0.0"

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
  discovery: {mode}
"""


def _needs() -> None:
    require_root()
    for tool in ("qemu-system-x86_64", "sgdisk", "mke2fs", "mkfs.vfat", "mcopy", "grub-mkimage",
                 "efibootmgr", "grub-install", "cpio", "mksquashfs"):  # fmt: skip
        require_tool(tool)
    if not OVMF_CODE.exists():
        pytest.fail("OVMF missing: run scripts/setup.sh (PKGS_ONIEVM: ovmf)")


@pytest.fixture(scope="module")
def installers(tmp_path_factory) -> Path:
    """`provision onie-installer` output for kvm_x86_64, built once for the module."""
    _needs()
    work = tmp_path_factory.mktemp("onie-installer")
    t0 = time.monotonic()
    subprocess.run([str(REPO / "examples/nos/build.sh"), str(work / "nos/build")], check=True,
                   capture_output=True)  # fmt: skip
    shutil.copy2(REPO / "examples/switch.yml", work / "switch.yml")
    out = work / "installers"
    res = run_cli("onie-installer", str(work / "switch.yml"), "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    built = json.loads(res.stdout)
    assert [Path(b["path"]).name for b in built] == [INSTALLER_NAME]
    # Build the guest's cached pieces here so the first test's timings are about booting.
    for fw in Firmware:
        build_base_disk(fw)
    print(f"\n[onie-e2e] built NOS + installer + guest artefacts in {time.monotonic() - t0:.1f}s")
    return out


def broken_copy(installers: Path, dest: Path) -> Path:
    """A copy of the installer folder whose payload has one byte flipped (the header is intact)."""
    dest.mkdir()
    src = installers / INSTALLER_NAME
    data = bytearray(src.read_bytes())
    offset = int(re.search(rb"^payload_offset=(\d+)", bytes(data), re.M)[1])
    data[offset + 1000] ^= 0xFF
    (dest / INSTALLER_NAME).write_bytes(data)
    return dest


@dataclass
class Lab:
    ns: NetNS
    lab_yml: Path
    serve: ServeProc
    net: str

    def status(self) -> dict:
        res = run_cli("status", "--lab", str(self.lab_yml), "--json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def device(self, mac: str) -> dict:
        return next(d for d in self.status()["devices"] if d["mac"] == mac)


@contextmanager
def our_lab(tmp_path: Path, installers: Path, net: str, mode: str = "exact") -> Iterator[Lab]:
    """`provision serve` with an `onie:` section, on tap0 in a fresh namespace."""
    lab_yml = tmp_path / "lab.yml"
    lab_yml.write_text(LAB.format(net=net, state=tmp_path / "state", installers=installers, mode=mode))
    with namespaces(1, prefix="oe") as (ns,):
        tap(ns, "tap0", f"{net}.1/24")
        with serving(ns, str(lab_yml)) as sp:
            yield Lab(ns, lab_yml, sp, net)


class Phases:
    """Collects phase durations and prints them as one table at the end of a test."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[tuple[str, float, str]] = []

    def add(self, name: str, log: BootLog) -> None:
        detail = " ".join(f"{k}@{v}s" for k, v in log.phases().items())
        self.rows.append((name, log.elapsed, detail))
        print(f"[onie-e2e] {self.title}: {name}: {log.elapsed:.1f}s {detail}", flush=True)

    def print(self) -> None:
        print(f"\n[onie-e2e] {self.title}")
        for name, secs, detail in self.rows:
            print(f"  {name:<28} {secs:6.1f}s  {detail}")


def install(guest: OnieGuest, lab: Lab, phases: Phases, name: str, url: str = "") -> BootLog:
    log = guest.boot_onie(timeout=900)
    phases.add(name, log)
    assert not log.timed_out, log.tail()
    assert "ONIE-GUEST-PHASE install-ok" in log.text, log.tail(80)
    # ONIE rebooted after the install and QEMU (-no-reboot) exited by itself, cleanly.
    assert log.returncode == 0, log.tail(80)
    # The guest's kernel mounts vfat and has efivars: the installer must take the real
    # grub-install path (--target=x86_64-efi into the mounted ESP, or i386-pc into the MBR), not
    # the grub-mkimage + mtools fallback kept for containers that cannot mount vfat.
    assert f"installing GRUB ({guest.firmware.value})" in log.text, log.tail(80)
    assert "grub-mkimage + mtools" not in log.text, log.tail(80)
    # The installer ran with ONIE-BOOT mounted, as under ONIE (whole-table re-reads fail then).
    assert "ONIE-BOOT /dev/vda2 mounted on /mnt/onie-boot" in log.text
    url = url or f"http://{lab.net}.1/{INSTALLER_NAME}"
    # The exact URL carries the install's callback token (docs/security.md); ONIE runs it as given.
    executed = re.search(
        rf"ONIE: Executing installer: {re.escape(url)}(\?token=[A-Za-z0-9_-]+)?\n", log.text + "\n"
    )
    assert executed, log.tail(80)
    return log


def nvram(log: BootLog) -> list[str]:
    """Boot entry labels in BootOrder order, from the efibootmgr listing the guest prints after
    a successful install (ONIE-GUEST-NVRAM lines)."""
    lines = [line.split(" ", 1)[1] for _, line in log.lines if line.startswith("ONIE-GUEST-NVRAM ")]
    order = next((ln.split(":", 1)[1].strip().split(",") for ln in lines if ln.startswith("BootOrder")), [])
    labels = {}
    for ln in lines:
        m = re.match(r"Boot([0-9A-Fa-f]{4})\*?\s+(.*)", ln)
        if m:
            labels[m[1].upper()] = re.split(r"\t|\s{2,}|\s+HD\(", m[2])[0].strip()
    return [labels.get(b.upper(), b) for b in order]


def boot_nos(guest: OnieGuest, phases: Phases, name: str) -> BootLog:
    log = guest.boot_disk(marker=NOS_MARKER, timeout=600)
    phases.add(name, log)
    assert log.stopped_on is not None and NOS_MARKER in log.stopped_on, log.tail(80)
    return log


def boot_disk_into_onie(guest: OnieGuest, phases: Phases, name: str) -> BootLog:
    """Power on from the disk until ONIE's discovery starts (ONIE's own boot path)."""
    log = guest.boot_disk(marker="ONIE-GUEST-PHASE discovery", timeout=600)
    phases.add(name, log)
    assert log.stopped_on is not None, log.tail(80)
    return log


def grub_reboot_onie(guest: OnieGuest, phases: Phases) -> BootLog:
    """`grub-reboot ONIE` from the NOS (next_entry=ONIE in its grubenv, rewritten in place), then
    power on: the NOS's GRUB takes its ONIE entry, which reaches ONIE's own GRUB."""
    set_grubenv(guest.disk, "DEMO-BOOT", "/grub/grubenv", next_entry="ONIE")
    back = boot_disk_into_onie(guest, phases, "grub-reboot ONIE -> ONIE")
    assert "Loading ONIE ..." in back.text and "ONIE-GUEST-GRUB" in back.text, back.tail(80)
    return back


def new_guest(lab: Lab, tmp_path: Path, firmware: Firmware, serial: str) -> OnieGuest:
    return OnieGuest(tmp_path / f"guest-{firmware.value}", firmware, lab.ns, "tap0", serial=serial)


def test_uefi_install_reboot_into_nos_then_reinstall(installers, tmp_path):
    """Ours end to end on OVMF: discover → fetch → install → NVRAM boot into the NOS, twice."""
    phases = Phases("UEFI (OVMF), provision serve + provision onie-installer")
    with our_lab(tmp_path, installers, "198.18.44") as lab:
        guest = new_guest(lab, tmp_path, Firmware.UEFI, "PVE2E-UEFI-1")
        before = onie_fingerprint(guest.disk, Firmware.UEFI)
        # Factory-fresh: the NVRAM holds ONIE's own entry, which boots ONIE from the disk.
        fresh = boot_disk_into_onie(guest, phases, "fresh disk -> ONIE (NVRAM)")
        assert re.search(r'BdsDxe: starting Boot\d+ "ONIE: Open Network Install Environment"', fresh.text)

        first = install(guest, lab, phases, "install 1 (ONIE boot)")
        # The URL came from our DHCP answer (option 125 sub-option 1 is tried first, docs/onie.md).
        assert "ONIE-GUEST-PHASE url-source" in first.text and "opt125" in first.text
        assert "provision: payload verified" in first.text
        # The installer found ONIE's layout as it expects it (e.g. /EFI/onie/grubx64.efi on the ESP).
        assert "provision: WARNING" not in first.text, first.tail(80)
        nos = boot_nos(guest, phases, "NOS boot 1 (NVRAM entry)")
        # OVMF took the entry the installer made with efibootmgr (ahead of ONIE's), not the
        # fallback loader.
        assert re.search(r'BdsDxe: starting Boot\d+ "demo" .*\\EFI\\demo\\grubx64\.efi', nos.text)
        assert lab.device(guest.mac)["stage"] == "installed"

        assert nvram(first)[0] == "demo" and "ONIE: Open Network Install Environment" in nvram(first)
        # grub-install --bootloader-id=demo wrote the NOS's loader beside ONIE's, plus the
        # fallback loader (the ESP had none).
        assert "grubx64.efi" in [n.lower() for n in esp_listing(guest.disk, "/EFI/demo")]
        assert "bootx64.efi" in [n.lower() for n in esp_listing(guest.disk, "/EFI/BOOT")]

        # Idempotent: a second install over the first, then the NOS boots again.
        second = install(guest, lab, phases, "install 2 (over install 1)")
        # One NOS entry, first in BootOrder, ONIE's entry kept (no duplicates piling up).
        entries = nvram(second)
        assert entries[0] == "demo" and entries.count("demo") == 1, entries
        assert entries.count("ONIE: Open Network Install Environment") == 1, entries
        boot_nos(guest, phases, "NOS boot 2")
        parts = subprocess.run(["sgdisk", "-p", str(guest.disk)], capture_output=True, text=True).stdout
        assert parts.count("DEMO-BOOT") == 1 and parts.count("DEMO-ROOT-A") == 1, parts

        assert onie_fingerprint(guest.disk, Firmware.UEFI) == before, "ONIE-BOOT/GPT/ONIE loader changed"
        events = lab.serve.output
        assert events.count("installer.report") >= 2 and "stage=complete status=ok" in events
        assert lab.device(guest.mac)["stage"] == "installed"
    phases.print()


def test_uefi_fallback_loader_then_grub_reboot_onie(installers, tmp_path):
    """After an install, a machine whose NVRAM was reset still boots the NOS through the ESP's
    fallback \\EFI\\BOOT\\BOOTX64.EFI (OVMF with fresh vars; docs/lab.md). Then `grub-reboot ONIE`
    (next_entry=ONIE in the NOS's grubenv, rewritten in place) chainloads ONIE's own loader
    /EFI/onie/grubx64.efi back into ONIE once; the boot after that is the NOS again."""
    phases = Phases("UEFI fresh NVRAM + grub-reboot ONIE, provision serve + provision onie-installer")
    with our_lab(tmp_path, installers, "198.18.45") as lab:
        guest = new_guest(lab, tmp_path, Firmware.UEFI, "PVE2E-UEFI-2")
        install(guest, lab, phases, "install (ONIE boot)")
        guest.reset_nvram()
        nos = boot_nos(guest, phases, "NOS boot (fallback loader)")
        assert not re.search(r'BdsDxe: starting Boot\d+ "demo"', nos.text), "NVRAM entry survived a reset?"

        grub_reboot_onie(guest, phases)
        # GRUB's save_env cleared the one-shot entry: the next boot is the NOS.
        assert "next_entry=\n" in read_grubenv(guest.disk, "DEMO-BOOT", "/grub/grubenv")
        boot_nos(guest, phases, "NOS boot (after ONIE)")
    phases.print()


def test_bios_install_reboot_into_nos_and_back_to_onie(installers, tmp_path):
    """Ours end to end on SeaBIOS. The factory-fresh disk boots ONIE from ONIE's own MBR GRUB;
    an install puts the NOS's GRUB in the MBR and it boots the NOS; `grub-reboot ONIE` takes the
    NOS's ONIE entry (`chainloader +1` of ONIE-BOOT's boot sector) back to ONIE once; then the NOS
    again. ONIE-BOOT's bytes and ONIE's GPT entries never change."""
    phases = Phases("BIOS (SeaBIOS), provision serve + provision onie-installer")
    with our_lab(tmp_path, installers, "198.18.46") as lab:
        guest = new_guest(lab, tmp_path, Firmware.BIOS, "PVE2E-BIOS-1")
        before = onie_fingerprint(guest.disk, Firmware.BIOS)
        fresh = boot_disk_into_onie(guest, phases, "fresh disk -> ONIE (MBR)")
        assert "ONIE-GUEST-GRUB" in fresh.text, fresh.tail(80)

        install(guest, lab, phases, "install (ONIE boot)")
        boot_nos(guest, phases, "NOS boot (MBR GRUB)")
        assert lab.device(guest.mac)["stage"] == "installed"

        grub_reboot_onie(guest, phases)
        boot_nos(guest, phases, "NOS boot (after ONIE)")
        assert onie_fingerprint(guest.disk, Firmware.BIOS) == before
    phases.print()


def test_bios_inexact_discovery_finds_installer_by_name(installers, tmp_path):
    """`onie.discovery: inexact`: no URL in DHCP; the guest probes the servers DHCP named (option
    72, siaddr, 54) on port 80 and GETs ONIE's default names, most specific first and bare before
    `.bin`; our server answers the first name with this platform's installer."""
    phases = Phases("BIOS, inexact discovery, provision serve + provision onie-installer")
    with our_lab(tmp_path, installers, "198.18.49", mode="inexact") as lab:
        guest = new_guest(lab, tmp_path, Firmware.BIOS, "PVE2E-INEXACT-1")
        bare = f"http://{lab.net}.1/onie-installer-{PLATFORM}"
        log = install(guest, lab, phases, "install (ONIE boot, inexact)", url=bare)
        assert "url-source" in log.text and f"inexact:{lab.net}.1" in log.text, log.tail(80)
        # Option 72 named our server (udhcpc hands it over as hex: c6 12 31 01 = 198.18.49.1).
        www_hex = "".join(f"{int(o):02x}" for o in f"{lab.net}.1".split("."))
        assert f"opt72={www_hex}" in log.text, log.tail(80)
        assert "opt125" not in log.text and "opt114 " not in log.text.replace("opt114=", "")
        boot_nos(guest, phases, "NOS boot (MBR GRUB)")
        assert lab.device(guest.mac)["stage"] == "installed"
    phases.print()


def test_broken_installer_leaves_disk_and_onie_intact(installers, tmp_path):
    """A payload with one flipped byte: the installer refuses before touching the disk, ONIE
    says so, and our server shows the failure (stage failed, installer.report failed)."""
    phases = Phases("broken installer (UEFI), provision serve")
    broken = broken_copy(installers, tmp_path / "broken")
    with our_lab(tmp_path, broken, "198.18.47") as lab:
        guest = new_guest(lab, tmp_path, Firmware.UEFI, "PVE2E-BROKEN-1")
        onie_before = onie_fingerprint(guest.disk, Firmware.UEFI)
        disk_before = file_sha256(guest.disk)
        log = guest.boot_onie(timeout=900)
        phases.add("ONIE boot with broken installer", log)
        assert not log.timed_out, log.tail()
        assert "ONIE-GUEST-PHASE install-failed" in log.text, log.tail(80)
        assert "payload SHA-256 mismatch" in log.text
        assert "ONIE: Failure: NOS installer failed" in log.text
        assert "ONIE-GUEST-PHASE install-ok" not in log.text
        assert file_sha256(guest.disk) == disk_before, "the disk changed"
        assert onie_fingerprint(guest.disk, Firmware.UEFI) == onie_before
        # After the failure the guest goes on down ONIE's list and cycles again, as ONIE does, so
        # its stage is `discovered` again; the failure is its last error, and it ran once: a
        # switch whose install failed is not handed the installer again for a while (one try
        # per discovery cycle, not one per name; docs/lifecycle.md).
        row = lab.device(guest.mac)
        assert row["error"] and "sha256" in row["error"], row
        failed = re.findall(r"installer\.report .*stage=verified status=failed", lab.serve.output)
        assert len(failed) == 1, lab.serve.output[-4000:]
    phases.print()


def test_guest_alone_with_dnsmasq(tmp_path):
    """The guest itself, against dnsmasq (DHCP, option 114) + `python -m http.server` and a
    reference installer (tests/support/onie_guest/reference-installer.sh). Not our server."""
    _needs()
    require_tool("dnsmasq")
    phases = Phases("guest self-check: dnsmasq + http.server + reference installer (BIOS)")
    www = tmp_path / "www"
    www.mkdir()
    build_reference_nos(www)
    shutil.copy2(REFERENCE_INSTALLER, www / INSTALLER_NAME)
    net = "198.18.48"
    with namespaces(1, prefix="od") as (ns,):
        tap(ns, "tap0", f"{net}.1/24")
        # dnsmasq sends quotes literally in --dhcp-option-force=114,"url": pass it bare (docs/lab.md).
        ns.popen(["dnsmasq", "--no-daemon", "--port=0", "--interface=tap0", "--bind-interfaces",
                  f"--dhcp-range={net}.100,{net}.200,1h", f"--dhcp-leasefile={tmp_path}/leases",
                  f"--dhcp-option-force=114,http://{net}.1:8080/{INSTALLER_NAME}"],
                 stdout=subprocess.DEVNULL)  # fmt: skip
        ns.popen([sys.executable, "-m", "http.server", "-b", f"{net}.1", "-d", str(www), "8080"],
                 stdout=subprocess.DEVNULL)  # fmt: skip
        time.sleep(1)
        guest = OnieGuest(tmp_path / "guest", Firmware.BIOS, ns, "tap0", serial="PVE2E-REF-1")
        before = onie_fingerprint(guest.disk, Firmware.BIOS)
        log = guest.boot_onie(timeout=900)
        phases.add("install (ONIE boot)", log)
        assert "ONIE-GUEST-PHASE install-ok" in log.text, log.tail(80)
        assert "url-source" in log.text and "opt114" in log.text
        nos = guest.boot_disk(marker=REFERENCE_MARKER, timeout=600)
        phases.add("NOS boot (MBR GRUB)", nos)
        assert nos.stopped_on is not None, nos.tail(80)
        assert onie_fingerprint(guest.disk, Firmware.BIOS) == before
    phases.print()
