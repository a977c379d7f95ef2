"""QEMU guests and the tiny initramfs they netboot, for tests/vm (docs/lab.md "QEMU firmware recipes").

The initramfs is static busybox plus an /init that prints `PROVISION-NETBOOT-OK arch=<uname -m>`
and the kernel command line on the console, then powers off. x86-64 pieces come from the host
(linux-image-amd64, busybox-static); ARM64 pieces from the cache scripts/setup.sh fills from
Debian's arm64 .debs (/var/cache/provision-lab/arm64/root).

`python -m tests.support.vm netboot-files DIR` writes DIR/{x86_64,arm64}/{vmlinuz|Image,initrd.gz}.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = "PROVISION-NETBOOT-OK"
ARM64_ROOT = Path(os.environ.get("PROVISION_ARM64_CACHE", "/var/cache/provision-lab/arm64")) / "root"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
AAVMF = Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")
IPXE_EFI_ROM = Path("/usr/lib/ipxe/qemu/efi-e1000.rom")

INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "{MARKER} arch=$(/bin/busybox uname -m)"
echo "cmdline: $(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
"""


def _cpio_newc(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive from (name, mode, data, rdev) without needing root for mknod."""
    out = io.BytesIO()
    ino = 1

    def pad(n: int) -> None:
        out.write(b"\0" * ((4 - n % 4) % 4))

    for name, mode, data, rdev in [*entries, ("TRAILER!!!", 0, b"", 0)]:
        nb = name.encode() + b"\0"
        major, minor = os.major(rdev), os.minor(rdev)
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(nb), 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out.write(header + nb)
        pad(len(header) + len(nb))
        out.write(data)
        pad(len(data))
        ino += 1
    return out.getvalue()


def busybox_entries(busybox: Path, init: str) -> list[tuple[str, int, bytes, int]]:
    """The cpio entries of a static-busybox initramfs with its /init and /dev/console (Debian's
    kernel does not mount devtmpfs; docs/lab.md); callers add their own files."""
    S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK, stat.S_IFCHR
    return [
        ("bin", S_IFDIR | 0o755, b"", 0),
        ("dev", S_IFDIR | 0o755, b"", 0),
        ("proc", S_IFDIR | 0o755, b"", 0),
        ("sys", S_IFDIR | 0o755, b"", 0),
        ("dev/console", S_IFCHR | 0o600, b"", os.makedev(5, 1)),
        ("dev/null", S_IFCHR | 0o666, b"", os.makedev(1, 3)),
        ("bin/busybox", S_IFREG | 0o755, busybox.read_bytes(), 0),
        ("bin/sh", S_IFLNK | 0o777, b"busybox", 0),
        ("init", S_IFREG | 0o755, init.encode(), 0),
    ]


def write_initramfs(entries: list[tuple[str, int, bytes, int]], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(_cpio_newc(entries), compresslevel=6, mtime=0))
    return out


def build_initramfs(busybox: Path, out: Path) -> Path:
    """Static busybox + the marker /init."""
    return write_initramfs(busybox_entries(busybox, INIT), out)


def x86_kernel() -> Path | None:
    found = sorted(Path("/boot").glob("vmlinuz-*"))
    return found[-1] if found else None


def arm64_kernel() -> Path | None:
    found = sorted((ARM64_ROOT / "boot").glob("vmlinuz-*-arm64"))
    return found[-1] if found else None


def arm64_busybox() -> Path | None:
    path = ARM64_ROOT / "bin" / "busybox"
    return path if path.is_file() else None


def netboot_files(
    folder: Path, arches: tuple[str, ...] = ("x86_64", "arm64")
) -> dict[str, tuple[Path, Path]]:
    """Kernel + marker initramfs per arch under folder/<arch>/; returns what it could build."""
    made: dict[str, tuple[Path, Path]] = {}
    if "x86_64" in arches and (k := x86_kernel()) and Path("/bin/busybox").is_file():
        d = folder / "x86_64"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(k, d / "vmlinuz")
        made["x86_64"] = (d / "vmlinuz", build_initramfs(Path("/bin/busybox"), d / "initrd.gz"))
    if "arm64" in arches and (k := arm64_kernel()) and (bb := arm64_busybox()):
        d = folder / "arm64"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(k, d / "Image")
        made["arm64"] = (d / "Image", build_initramfs(bb, d / "initrd.gz"))
    return made


@dataclass(frozen=True)
class Guest:
    """How to start one firmware flavour; argv is run inside the test's namespace."""

    name: str
    argv: list[str]


def x86_guest(kind: str, tap: str, mac: str, workdir: Path) -> Guest:
    """kind: bios (SeaBIOS+iPXE ROM), uefi-ipxe (OVMF+iPXE EFI ROM), uefi-pxe (OVMF native PXE),
    uefi-http (OVMF UEFI HTTP boot)."""
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-boot", "n"]
    argv += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no"]
    if kind == "bios":
        argv += ["-device", f"e1000,netdev=n0,mac={mac}"]
    else:
        vars_fd = workdir / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, vars_fd)
        argv += [
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={vars_fd}",
        ]  # fmt: skip
        if kind == "uefi-ipxe":
            argv += ["-device", f"e1000,netdev=n0,mac={mac},romfile={IPXE_EFI_ROM}"]
        else:
            # OVMF has no e1000 driver of its own (it came from the iPXE ROM): native EDK2 PXE needs
            # a NIC OVMF drives itself, virtio-net (VirtioNetDxe), with the ROM emptied.
            argv += ["-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile="]
        # Pin IPv4 PXE: skip the PXEv6 attempt EDK2 would otherwise make too.
        argv += ["-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"]
        if kind == "uefi-http":  # no PXE at all: EDK2 moves on to HTTP boot (docs/lab.md)
            argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]
    return Guest(f"x86-{kind}", argv)


def arm64_guest(kind: str, tap: str, mac: str) -> Guest:
    """kind: pxe (EDK2 PXE → GRUB over TFTP) or http (UEFI HTTP boot)."""
    argv = [
        "qemu-system-aarch64", "-M", "virt", "-accel", "tcg", "-cpu", "cortex-a57", "-smp", "1",
        "-m", "1024", "-nographic", "-no-reboot", "-bios", str(AAVMF),
        # AAVMF waits ~5 s for a key without this (docs/lab.md "QEMU firmware recipes").
        "-boot", "menu=on,splash-time=0",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile=",
        "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
    ]  # fmt: skip
    if kind == "http":
        argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]
    return Guest(f"arm64-{kind}", argv)


# The firmware gave up on the network: UEFI fell through to its shell, GRUB to its prompt.
GAVE_UP = ("Shell> ", "grub> ")


def run_guest(ns, guest: Guest, log: Path, timeout: float) -> tuple[str, float]:
    """Run the guest in namespace `ns` until it powers off, gives up, or times out.

    Returns (console text, seconds until the marker appeared, or until the end without it).
    """
    t0 = time.monotonic()
    seen: float | None = None
    with open(log, "wb") as fh:
        proc = ns.popen(guest.argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.5)
            text = log.read_text(errors="replace")
            if seen is None and MARKER in text:
                seen = time.monotonic() - t0
            if any(g in text for g in GAVE_UP):
                break
        ns.stop(proc)
    return log.read_text(errors="replace"), seen if seen is not None else time.monotonic() - t0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "netboot-files":
        sys.exit("usage: python -m tests.support.vm netboot-files DIR")
    for arch, (kernel, initrd) in netboot_files(Path(sys.argv[2])).items():
        print(f"{arch}: {kernel} {initrd}")
