"""Loop-device disks laid out like ONIE leaves them (docs/onie.md table), for installer tests.

The image is partitioned with sgdisk using ONIE's GUIDs and attributes, attached with
`losetup -P`, and partition nodes are made from sysfs when the container has no udev (partx adds
kernel partitions but no /dev node). Filesystems: mkfs.vfat on the ESP (files written with mtools:
this container's kernel cannot mount vfat), mke2fs -L ONIE-BOOT -d (populated without mounting).
Everything is undone on exit, also when the test fails: unmount, detach, remove nodes we made.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from onie.layout import ATTR_ONIE, ATTR_REQUIRED, GUID_BIOS_BOOT, GUID_ESP, GUID_ONIE_BOOT

ONIE_MARKER = "onie-boot-marker: the tests hash this partition before and after an install\n"


def run(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


@dataclass(frozen=True)
class GptEntry:
    number: int
    name: str
    type_guid: str
    attributes: str
    first: int
    last: int


@dataclass
class LoopDisk:
    image: Path
    device: str  # /dev/loopN
    firmware: str
    made_nodes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return os.path.basename(self.device)

    def part(self, number: int) -> str:
        return f"{self.device}p{number}"

    def entries(self) -> list[GptEntry]:
        out = run("sgdisk", "-p", self.device).stdout
        rows = []
        for line in out.splitlines():
            m = re.match(r"\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+(.*)$", line)
            if not m:
                continue
            num = int(m.group(1))
            info = run("sgdisk", "-i", str(num), self.device).stdout
            guid = re.search(r"Partition GUID code: (\S+)", info).group(1)
            attrs = re.search(r"Attribute flags: (\S+)", info).group(1)
            rows.append(
                GptEntry(num, m.group(4).strip(), guid.upper(), attrs, int(m.group(2)), int(m.group(3)))
            )
        return rows

    def by_name(self, name: str) -> GptEntry:
        for e in self.entries():
            if e.name == name:
                return e
        raise AssertionError(f"no partition named {name!r} on {self.device}: {self.entries()}")

    def hash_part(self, number: int) -> str:
        return sha256_file(self.part(number))

    def hash_disk(self) -> str:
        return sha256_file(self.device)

    def ensure_nodes(self) -> None:
        sysdir = Path("/sys/class/block") / self.name
        for child in sorted(sysdir.iterdir()):
            if not child.name.startswith(self.name + "p"):
                continue
            node = Path("/dev") / child.name
            major, minor = (int(x) for x in (child / "dev").read_text().split(":"))
            if node.exists():
                st = node.stat()
                if (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor):
                    continue
                node.unlink()
            os.mknod(node, 0o600 | 0o060000, os.makedev(major, minor))
            self.made_nodes.append(str(node))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _partition_image(image: Path, firmware: str) -> None:
    if firmware == "uefi":
        first = [
            "-n",
            "1:2048:+256M",
            "-t",
            f"1:{GUID_ESP}",
            "-c",
            "1:EFI System",
            "-A",
            f"1:=:{ATTR_REQUIRED:x}",
        ]
    else:
        first = [
            "-n",
            "1:2048:+2M",
            "-t",
            f"1:{GUID_BIOS_BOOT}",
            "-c",
            "1:GRUB-BOOT",
            "-A",
            f"1:=:{ATTR_ONIE:x}",
        ]
    onie = ["-n", "2:0:+128M", "-t", f"2:{GUID_ONIE_BOOT}", "-c", "2:ONIE-BOOT", "-A", f"2:=:{ATTR_ONIE:x}"]
    run("sgdisk", "-o", *first, *onie, str(image))


def _unmount_all(prefix: str) -> None:
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[0].startswith(prefix + "p")]
    for m in reversed(mounts):
        run("umount", "-l", m, check=False)


@contextlib.contextmanager
def onie_disk(
    workdir: Path, firmware: str, size: str = "1G", mount_onie_boot: bool = True
) -> Iterator[LoopDisk]:
    """A fresh disk image holding only ONIE's partitions, attached as a loop device."""
    image = workdir / f"disk-{firmware}.img"
    run("truncate", "-s", size, str(image))
    _partition_image(image, firmware)
    device = run("losetup", "-f", "--show", "-P", str(image)).stdout.strip()
    disk = LoopDisk(image, device, firmware)
    try:
        run("partx", "-a", device, check=False)  # -P usually did it; harmless when it did
        disk.ensure_nodes()
        if firmware == "uefi":
            run("mkfs.vfat", "-F", "32", "-n", "EFI", disk.part(1))
            fake_loader = workdir / "onie-grubx64.efi"
            fake_loader.write_bytes(b"MZ fake ONIE grubx64.efi for tests\n" * 64)
            run("mmd", "-i", disk.part(1), "::/EFI", "::/EFI/onie")
            run("mcopy", "-i", disk.part(1), str(fake_loader), "::/EFI/onie/grubx64.efi")
        else:
            # Stand-in for ONIE's GRUB core image in the BIOS boot partition.
            with open(disk.part(1), "r+b") as f:
                f.write(b"ONIE GRUB core.img stand-in\n" * 1024)
        root = workdir / "onie-boot-root"
        (root / "grub").mkdir(parents=True, exist_ok=True)
        (root / "onie-marker.txt").write_text(ONIE_MARKER)
        (root / "grub" / "grub.cfg").write_text("# ONIE's own grub.cfg stand-in\n")
        run("mke2fs", "-q", "-F", "-t", "ext4", "-L", "ONIE-BOOT", "-d", str(root), disk.part(2))
        if mount_onie_boot:
            # ONIE keeps ONIE-BOOT mounted (/mnt/onie-boot) while it runs an installer, which makes
            # sgdisk's full re-read fail as busy. Read-only here so that its bytes stay comparable.
            mnt = workdir / "mnt-onie-boot"
            mnt.mkdir(exist_ok=True)
            run("mount", "-o", "ro", "-t", "ext4", disk.part(2), str(mnt))
        yield disk
    finally:
        _unmount_all(device)
        run("losetup", "-d", device, check=False)
        for node in disk.made_nodes:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(node)
        # Nodes the installer made for partitions it added (no udev here).
        for node in Path("/dev").glob(os.path.basename(device) + "p*"):
            if not Path("/sys/class/block", node.name).exists():
                with contextlib.suppress(FileNotFoundError):
                    node.unlink()


def fake_onie_root(
    workdir: Path, platform: str, firmware: str, serial: str = "SN-TEST-0001", mac: str = "52:54:00:12:34:56"
) -> Path:
    """An ONIE root for the installer's test-only PROVISION_ONIE_ROOT: etc/machine.conf, bin/onie-sysinfo."""
    root = workdir / "onie-root"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "bin").mkdir(parents=True, exist_ok=True)
    arch, rest = platform.split("-", 1)
    machine = rest.rsplit("-r", 1)[0]
    lines = [
        "onie_version=2025.05",
        f"onie_platform={platform}",
        f"onie_arch={arch}",
        f"onie_machine={machine}",
        "onie_machine_rev=0",
        f"onie_firmware={firmware}",
        "onie_partition_type=gpt",
    ]
    if firmware == "uefi":
        lines += ["onie_uefi_boot_loader=grubx64.efi", "onie_uefi_arch=x64"]
    (root / "etc" / "machine.conf").write_text("\n".join(lines) + "\n")
    sysinfo = root / "bin" / "onie-sysinfo"
    sysinfo.write_text(
        "#!/bin/sh\n"
        f'case "$1" in -p) echo {platform} ;; -s) echo {serial} ;; -e) echo {mac} ;; '
        f"-t) echo gpt ;; -c) echo {arch} ;; *) echo {platform} ;; esac\n"
    )
    sysinfo.chmod(0o755)
    return root
