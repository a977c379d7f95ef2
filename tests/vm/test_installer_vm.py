"""End to end: install the demo NOS onto an ONIE-laid-out disk, then boot that disk in QEMU.

BIOS: SeaBIOS → our GRUB in the MBR → grub.cfg → the NOS prints its marker on the serial port.
UEFI: OVMF with fresh variables → \\EFI\\BOOT\\BOOTX64.EFI (the fallback the installer added,
since the ESP had none) → grub.cfg → marker. The demo NOS powers off after the marker
(nos.poweroff), so QEMU exits by itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from onie.installer import build
from provision.config.switchspec import load_switch_spec
from tests.support.disk import fake_onie_root, onie_disk
from tests.support.installer import KVM, templates
from tests.support.tools import require_root, require_tool
from tests.support.vm import OVMF_CODE, OVMF_VARS

pytestmark = [pytest.mark.vm, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
MARKER = "PROVISION-NOS-BOOTED vmnos 3.0"

SPEC = """\
nos: {name: vmnos, version: "3.0"}
platforms: [kvm_x86_64]
payload: {linuxkit: nos/vmnos}
cmdline: nos.poweroff
partitions:
  - {label: VMNOS-BOOT, size: 64M, role: boot}
grub: {title: VM NOS 3.0, timeout: 1}
"""


def boot_disk(image: Path, firmware: str, workdir: Path, until: str = MARKER, timeout: float = 420) -> str:
    qemu = require_tool("qemu-system-x86_64")
    argv = [
        qemu,
        "-accel",
        "tcg",
        "-machine",
        "q35",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "512",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-nic",
        "none",
        "-drive",
        f"file={image},format=raw,if=virtio",
    ]
    if firmware == "uefi":
        if not OVMF_CODE.exists():
            pytest.fail(f"needs {OVMF_CODE} (Debian package ovmf)")
        vars_copy = workdir / "OVMF_VARS.fd"
        if not vars_copy.exists():
            shutil.copy(OVMF_VARS, vars_copy)  # fresh variables: no boot entries, fallback path only
        argv += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_copy}",
        ]
    log = workdir / f"serial-{firmware}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if until.encode() in log.read_bytes():
                    break
                time.sleep(1)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    return log.read_bytes().decode("utf-8", "replace")


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_installed_disk_boots_the_nos(tmp_path: Path, firmware: str) -> None:
    require_root()
    nos = tmp_path / "spec" / "nos"
    subprocess.run(
        ["bash", str(REPO / "examples" / "nos" / "build.sh"), str(nos), "vmnos", "3.0"],
        check=True,
        capture_output=True,
    )
    (tmp_path / "spec" / "switch.yml").write_text(SPEC)
    spec = load_switch_spec(tmp_path / "spec" / "switch.yml").spec
    installer = build(spec, KVM, tmp_path / KVM.installer_name, templates()).path
    with onie_disk(tmp_path, firmware, size="512M") as disk:
        env = {
            **os.environ,
            "PROVISION_ONIE_ROOT": str(fake_onie_root(tmp_path, KVM.onie_platform, firmware)),
            "PROVISION_TARGET_DISK": disk.device,
        }
        result = subprocess.run(
            ["busybox", "sh", str(installer)], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        image = disk.image
    serial = boot_disk(image, firmware, tmp_path)
    assert MARKER in serial, serial[-3000:]
    assert "Loading VM NOS 3.0" in serial  # our grub.cfg's entry did it

    # What `grub-reboot ONIE` does from the NOS: next_entry=ONIE in grubenv, for one boot.
    set_next_entry(image, tmp_path, "ONIE")
    serial = boot_disk(image, firmware, tmp_path, until="Loading ONIE ...", timeout=240)
    assert "Loading ONIE ..." in serial and MARKER not in serial, serial[-3000:]


def set_next_entry(image: Path, workdir: Path, entry: str) -> None:
    """grub-editenv on the NOS boot partition of a disk image (a loop device at its offset)."""
    info = subprocess.run(["sgdisk", "-p", str(image)], capture_output=True, text=True, check=True).stdout
    row = next(line.split() for line in info.splitlines() if line.strip().endswith("VMNOS-BOOT"))
    start, end = int(row[1]), int(row[2])
    dev = subprocess.run(
        [
            "losetup",
            "-f",
            "--show",
            "-o",
            str(start * 512),
            "--sizelimit",
            str((end - start + 1) * 512),
            str(image),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    mnt = workdir / "mnt-nos-boot"
    mnt.mkdir(exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "ext4", dev, str(mnt)], check=True)
        try:
            env_file = mnt / "grub" / "grubenv"
            subprocess.run(["grub-editenv", str(env_file), "set", f"next_entry={entry}"], check=True)
            assert env_file.stat().st_size == 1024
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
