"""What crosses into and out of the installer builder: plain frozen dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from onie.layout import Layout


class HookPoint(enum.Enum):
    """Named points of the install where a spec's shell snippet runs (as root, under sh)."""

    PRE_INSTALL = "pre-install"  # verified and on the right platform; disk not touched yet
    POST_PARTITION = "post-partition"  # NOS partitions made and formatted, nothing written
    POST_INSTALL = "post-install"  # payload and bootloader in place; boot partition mounted


class Stage(enum.Enum):
    """Stages the install reports to the server (`/api/v1/report?stage=`)."""

    STARTED = "started"
    VERIFIED = "verified"
    PARTITIONED = "partitioned"
    PAYLOAD = "payload"
    BOOTLOADER = "bootloader"
    COMPLETE = "complete"


@dataclass(frozen=True)
class PayloadFile:
    """One extra file: copied to `dest` (relative) inside the NOS boot partition."""

    source: Path
    dest: str


@dataclass(frozen=True)
class InstallerSpec:
    nos_name: str
    nos_version: str
    kernel: Path
    initrd: Path
    layout: Layout
    rootfs: Path | None = None
    files: tuple[PayloadFile, ...] = ()
    cmdline: str = ""  # the NOS's own arguments; merged after the platform's
    modules_load: tuple[str, ...] = ()
    modules_blacklist: tuple[str, ...] = ()
    grub_title: str = ""
    grub_timeout: int = 5
    hooks: tuple[tuple[HookPoint, str], ...] = ()
    report_url: str | None = None  # else derived at install time from ONIE's onie_exec_url

    @property
    def title(self) -> str:
        return self.grub_title or f"{self.nos_name} {self.nos_version}"


@dataclass(frozen=True)
class EfiNames:
    grub_target: str  # grub-install --target / grub-mkimage -O
    loader: str  # what grub-install writes to /EFI/<id>/ (and ONIE's own /EFI/onie/ loader)
    fallback: str  # the removable-media path /EFI/BOOT/<name> (UEFI spec 2.10 §3.5.1.1)


EFI_NAMES = {
    "x86_64": EfiNames("x86_64-efi", "grubx64.efi", "BOOTX64.EFI"),
    "arm64": EfiNames("arm64-efi", "grubaa64.efi", "BOOTAA64.EFI"),
}


class UBootMedium(enum.Enum):
    """Where a U-Boot platform's NOS FIT image goes (docs/onie.md "U-Boot platforms")."""

    DISK = "disk"  # NOS partitions made on a GPT disk (by label), nos.itb in the boot partition
    PARTITION = "partition"  # an existing partition (e.g. eMMC p2 on msdos), nos.itb in its ext4
    RAW = "raw"  # written at a byte offset of a block device (mmc read / virtio read)
    MTD = "mtd"  # an MTD partition by name (/proc/mtd), written with flashcp (cp.b / sf read)


@dataclass(frozen=True)
class UBootTarget:
    """What a hardware profile's `uboot:` block says, as the installer needs it."""

    medium: UBootMedium
    device: str  # disk: the block device (/dev/mmcblk0); partition: /dev/mmcblk0p2; raw: the disk
    uboot_device: str  # U-Boot's interface and device: "mmc 0", "virtio 0"
    fw_env_config: str  # fw_env.config text (one or two lines: device offset env-size sector-size)
    offset: int = 0  # raw: byte offset in `device`
    max_size: int = 0  # raw/mtd: bytes the region holds (0: unbounded)
    mtd_name: str = ""  # mtd: the partition name in /proc/mtd
    flash_address: int = 0  # mtd: the region's address as U-Boot sees it (cp.b from NOR)
    partition_number: int = 0  # partition: its number, for ext4load <dev>:<n>
    fdt: str = ""  # the device tree, relative to the payload's dtbs folder (ONIE's KERNEL_DTB)
    load_address: str = "${loadaddr}"  # where U-Boot loads the FIT before bootm
    bootm_fdt: str = ""  # when the FIT has no fdt: the third bootm argument (e.g. ${fdtcontroladdr})


@dataclass(frozen=True)
class PlatformInfo:
    """The target as ONIE names it, plus what the boot entry needs (from a hardware profile)."""

    onie_platform: str  # <arch>-<vendor>_<machine>-r<rev>
    arch: str
    console_device: str = "ttyS0"
    console_speed: int = 115200
    modules_load: tuple[str, ...] = ()
    modules_blacklist: tuple[str, ...] = ()
    cmdline: str = ""
    firmware: str = "uefi"  # uefi or bios (GRUB, chosen at install time), or uboot
    uboot: UBootTarget | None = None  # firmware uboot: where the FIT goes, how U-Boot loads it

    @property
    def efi(self) -> EfiNames:
        """GRUB's EFI target and the loader file names for this CPU (docs/onie.md "arm64 UEFI")."""
        try:
            return EFI_NAMES[self.arch]
        except KeyError:
            raise ValueError(f"no UEFI GRUB target for arch {self.arch!r}") from None

    @property
    def serial_unit(self) -> int:
        digits = "".join(c for c in self.console_device if c.isdigit())
        return int(digits) if digits else 0

    @property
    def installer_name(self) -> str:
        """ONIE's most specific default name (docs/onie.md "The installer-name waterfall": tried first)."""
        return f"onie-installer-{self.onie_platform}.bin"


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    member: str


@dataclass(frozen=True)
class Member:
    name: str
    size: int


@dataclass(frozen=True)
class BuildResult:
    path: Path
    platform: str
    size: int
    payload_sha256: str
    payload_size: int
    members: tuple[Member, ...]


class InstallerFormat(enum.Enum):
    PROVISION = "provision"
    SHARCH = "onie-sharch"  # ONIE's demo format (onie-mk-demo.sh, sharch_body.sh)


@dataclass(frozen=True)
class InstallerInfo:
    path: Path
    format: InstallerFormat
    checksum_ok: bool
    checksum_kind: str  # sha256 or sha1
    expected: str
    actual: str
    payload_offset: int
    payload_size: int
    members: tuple[Member, ...]
    platform: str | None = None
    arch: str | None = None
    nos_name: str | None = None
    nos_version: str | None = None
    has_updater_cookie: bool = False
    problems: tuple[str, ...] = field(default=())
