"""Partition plans for a NOS on an ONIE x86 disk, as data: what ONIE keeps, what the NOS adds.

The install script template renders a checked plan into sgdisk/mkfs commands; `provision layout`
shows it as a table. Facts about ONIE's own partitions come from ONIE's installer
(installer/grub-arch/install-arch, onie-blkdev-common), summed up in docs/onie.md.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MIB = 1024 * 1024

# GPT partition type GUIDs (UEFI spec 2.10 table 5-7; ONIE's own GUID from onie-blkdev-common).
GUID_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GUID_ONIE_BOOT = "7412F7D5-A156-4B13-81DC-867174929325"
GUID_BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"  # "Hah!IdontNeedEFI"
GUID_LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

# GPT attribute bits: bit 0 "platform required" (ONIE sets it on what a NOS must keep), bit 60
# "read-only" in the Microsoft basic-data sense, which ONIE also sets on ONIE-BOOT and GRUB-BOOT.
ATTR_REQUIRED = 0x1
ATTR_ONIE = 0x1000000000000001

ONIE_BOOT = "ONIE-BOOT"
GRUB_BOOT = "GRUB-BOOT"
ESP_NAME = "EFI System"
DIAG_SUFFIX = "-DIAG"
RESERVED_LABELS = (ONIE_BOOT, GRUB_BOOT, ESP_NAME)

# ext4 labels hold 16 bytes, vfat 11; GPT names hold 36 UTF-16 units. The smallest wins.
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}")
MIN_PARTITION = 1 * MIB
MAX_PARTITION = 16 * 1024**4


class Firmware(enum.Enum):
    UEFI = "uefi"
    BIOS = "bios"


class Filesystem(enum.Enum):
    EXT4 = "ext4"
    VFAT = "vfat"
    RAW = "raw"  # written byte for byte (a squashfs image), no filesystem made


class Role(enum.Enum):
    BOOT = "boot"  # kernel, initrd, GRUB files and grub.cfg, extra files
    ROOTFS = "rootfs"  # the read-only root image written raw
    DATA = "data"  # made empty (formatted) for the NOS to use


@dataclass(frozen=True)
class KeptPartition:
    """A partition ONIE made and a NOS must leave alone."""

    number: int
    name: str
    size: int
    type_guid: str
    attributes: int
    filesystem: str
    why: str


@dataclass(frozen=True)
class NosPartition:
    label: str  # GPT partition name and filesystem label
    size: int  # bytes; 0 = the rest of the disk (last partition only)
    role: Role
    filesystem: Filesystem = Filesystem.EXT4
    type_guid: str = GUID_LINUX_FS
    slot: str | None = None  # "A" or "B" for A/B root slots

    @property
    def size_kib(self) -> int:
        return self.size // 1024


@dataclass(frozen=True)
class Layout:
    partitions: tuple[NosPartition, ...]

    def by_role(self, role: Role) -> list[NosPartition]:
        return [p for p in self.partitions if p.role is role]

    @property
    def boot(self) -> NosPartition:
        return self.by_role(Role.BOOT)[0]

    @property
    def rootfs(self) -> NosPartition | None:
        """The slot the installer writes (A when there are A/B slots)."""
        roots = self.by_role(Role.ROOTFS)
        return roots[0] if roots else None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(p.label for p in self.partitions)


class LayoutError(ValueError):
    """A plan that would clash with ONIE or cannot be made; `problems` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def onie_partitions(firmware: Firmware) -> tuple[KeptPartition, ...]:
    """ONIE's x86 GPT layout (docs/onie.md "Partition layout ONIE leaves on x86"): shown as kept."""
    onie_boot = KeptPartition(
        2, ONIE_BOOT, 128 * MIB, GUID_ONIE_BOOT, ATTR_ONIE, "ext4", "ONIE kernel, initrd, grub.cfg"
    )
    if firmware is Firmware.UEFI:
        esp = KeptPartition(
            1,
            ESP_NAME,
            256 * MIB,
            GUID_ESP,
            ATTR_REQUIRED,
            "vfat",
            "shared ESP: /EFI/onie, NOS adds /EFI/<nos>",
        )
        return (esp, onie_boot)
    grub = KeptPartition(
        1, GRUB_BOOT, 2 * MIB, GUID_BIOS_BOOT, ATTR_ONIE, "-", "BIOS boot partition (GRUB core image)"
    )
    return (grub, onie_boot)


def expand_ab(partitions: list[NosPartition], ab: set[str]) -> list[NosPartition]:
    """Turn each ROOTFS partition named in `ab` into two slots LABEL-A and LABEL-B."""
    out: list[NosPartition] = []
    for p in partitions:
        if p.label in ab:
            for slot in ("A", "B"):
                out.append(NosPartition(f"{p.label}-{slot}", p.size, p.role, p.filesystem, p.type_guid, slot))
        else:
            out.append(p)
    return out


def check_layout(partitions: list[NosPartition] | tuple[NosPartition, ...]) -> Layout:
    """Validate a plan; raise LayoutError listing every problem, or return the Layout."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, p in enumerate(partitions):
        if not LABEL_RE.fullmatch(p.label):
            problems.append(
                f"label {p.label!r}: use 1-16 letters, digits, _ or - (ext4 labels hold 16 bytes)"
            )
        if p.label.upper() in (r.upper() for r in RESERVED_LABELS):
            problems.append(f"label {p.label!r} is ONIE's own partition name")
        if p.label.upper().endswith(DIAG_SUFFIX):
            problems.append(f"label {p.label!r}: *-DIAG partitions belong to the vendor's diagnostics")
        if p.label in seen:
            problems.append(f"label {p.label!r} is used twice")
        seen.add(p.label)
        if p.type_guid.upper() in (GUID_ESP, GUID_ONIE_BOOT, GUID_BIOS_BOOT):
            problems.append(f"{p.label}: type GUID {p.type_guid} is reserved for ONIE/firmware use")
        if p.size == 0 and i != len(partitions) - 1:
            problems.append(f"{p.label}: only the last partition may take the rest of the disk (size 0)")
        elif p.size and not (MIN_PARTITION <= p.size <= MAX_PARTITION):
            problems.append(f"{p.label}: size {p.size} bytes is not between 1 MiB and 16 TiB")
        elif p.size % MIB:
            problems.append(f"{p.label}: size must be a whole number of MiB (sgdisk aligns to 1 MiB)")
        if p.role is Role.ROOTFS and p.filesystem is not Filesystem.RAW:
            problems.append(f"{p.label}: a rootfs partition holds the image raw (filesystem: raw)")
        if p.role is not Role.ROOTFS and p.filesystem is Filesystem.RAW:
            problems.append(f"{p.label}: filesystem raw is only for the rootfs role")
    boots = [p for p in partitions if p.role is Role.BOOT]
    if len(boots) != 1:
        problems.append(f"the plan needs exactly one boot partition, found {len(boots)}")
    elif boots[0].filesystem is not Filesystem.EXT4:
        problems.append(
            f"{boots[0].label}: the boot partition must be ext4 (GRUB reads it, the NOS mounts it)"
        )
    if problems:
        raise LayoutError(problems)
    return Layout(tuple(partitions))


def default_layout(nos_name: str, with_rootfs_size: int | None = None) -> Layout:
    """A plan for a spec that names none: one boot partition, plus a raw rootfs slot if needed."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", nos_name.upper())[:11]
    parts = [NosPartition(f"{stem}-BOOT", 256 * MIB, Role.BOOT)]
    if with_rootfs_size:
        size = max(64 * MIB, -(-with_rootfs_size * 5 // 4 // MIB) * MIB)
        parts.append(NosPartition(f"{stem}-ROOT", size, Role.ROOTFS, Filesystem.RAW))
    return check_layout(parts)


def human_size(size: int) -> str:
    if size == 0:
        return "rest of disk"
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"
