"""Hardware profiles: one YAML file per platform in hardware-profiles/, validated by a schema.

A profile says what a machine is (ONIE platform, CPU arch, firmware), how to talk to it
(serial console), and what its kernel needs (modules to load, modules to keep away, extra
command line). Switch facts come from ONIE's own machine/<vendor>/<machine>/ tree; each shipped
file cites its source in a comment at the top.

Naming follows ONIE [build-config/Makefile: PLATFORM = $(ARCH)-$(MACHINE)-r$(MACHINE_REV)]:
`machine` is ONIE's onie_machine, which by convention already starts with the vendor prefix
(accton_as7712_32x, mlnx_msn2700, dell_z9100_c2538; the virtual kvm_x86_64 has none). So
`onie_platform` must equal `<arch>-<machine>-r<revision>`; ONIE's discovery names use
`<vendor>_<machine>`, which is this `machine`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from onie.kernel_cmdline import console_arg, kernel_args
from provision import resources
from provision.config import (
    ConfigError,
    Enum,
    Field,
    Int,
    List,
    Obj,
    Section,
    Size,
    Str,
    load_file,
)
from provision.errors import EXIT_INPUT, ProvisionError

ARCHES = ("x86_64", "arm64")
FIRMWARES = ("uefi", "bios", "uboot")
KINDS = ("switch", "server", "virtual")
BMC_KINDS = ("none", "redfish", "ipmi", "qemu")
PARTITION_TYPES = ("gpt", "msdos")
# ONIE's build refuses any other SWITCH_ASIC_VENDOR [build-config/Makefile KNOWN_ASIC_VENDORS].
# The value is the last-but-one fallback in the installer name waterfall, so a typo matters.
KNOWN_ASIC_VENDORS = ("bcm", "bft", "cavium", "centec", "mlnx", "mvl", "nephos", "none", "qemu")
# Rates a UART, GRUB `serial --speed` and the kernel's console= all accept.
CONSOLE_SPEEDS = (9600, 19200, 38400, 57600, 115200)
ENV_PROFILES_DIR = "PROVISION_PROFILES_DIR"

MODULE = Str(r"[A-Za-z0-9_-]+", "a kernel module name such as i2c_i801")
# `modules:` in a hardware profile and in a switch spec (switchspec imports it from here): kernel
# modules to load at boot and to keep away (module_blacklist=, onie.kernel_cmdline).
MODULES = Field(
    Obj(
        {
            "load": Field(List(MODULE, unique=True), default_factory=list),
            "blacklist": Field(List(MODULE, unique=True), default_factory=list),
        },
        name="modules",
    ),
    default=None,
)


def module_lists(modules: Section | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(load, blacklist) of a checked `modules:` block; both empty when the block is absent."""
    if modules is None:
        return (), ()
    return tuple(modules["load"]), tuple(modules["blacklist"])


CONSOLE = Obj(
    {
        "device": Field(Str(r"tty[A-Za-z0-9]+", "a console device such as ttyS0 or ttyAMA0"), required=True),
        "speed": Field(Int(1200, 4000000), default=115200, doc="baud rate"),
    },
    name="console",
)

DISK = Obj(
    {
        "device_hint": Field(Str(), doc="the usual install disk, e.g. /dev/sda or /dev/vda"),
        "bus_path": Field(
            Str(),
            doc="a piece of the install disk's /sys/block/<dev>/device path, as ONIE's "
            "installer.conf matches it (tells the internal disk from a USB stick)",
        ),
        "min_size": Field(Size()),
    },
    name="disk",
)

UBOOT_MEDIA = ("disk", "partition", "raw", "mtd")
# U-Boot commands take these words in interface + device (`ext4load mmc 0:2`, `virtio read`).
UBOOT_DEVICE = Str(r"(mmc|virtio|usb|scsi|sata|nvme) \d+", "a U-Boot device such as 'mmc 0' or 'virtio 0'")
FW_ENV_LINE = Obj(
    {
        "device": Field(
            Str(r"(/dev/\S+|mtd:[A-Za-z0-9_.-]+)", "/dev/mtdN, a block device, or mtd:<name in /proc/mtd>"),
            required=True,
        ),
        "offset": Field(Int(0, 2**40), default=0),
        "env_size": Field(Int(0x400, 0x1000000), required=True),
        "sector_size": Field(Int(0, 0x1000000), default=0, doc="flash erase size; 0 on block devices"),
    },
    name="fw_env line",
)
# docs/hardware-profiles.md "U-Boot platforms"; ONIE's contract in docs/onie.md.
UBOOT = Obj(
    {
        "fw_env": Field(
            List(FW_ENV_LINE, min_len=1),
            required=True,
            doc="fw_env.config lines (two = redundant environment); ONIE's own /etc/fw_env.config wins",
        ),
        "medium": Field(Enum(*UBOOT_MEDIA), required=True, doc="where the NOS FIT image goes"),
        "device": Field(Str(r"/dev/\S+", "a device path such as /dev/mmcblk0"), default=None),
        "uboot_device": Field(UBOOT_DEVICE, default=None),
        "partition": Field(Int(1, 128), default=None, doc="medium partition: its number on the disk"),
        "offset": Field(Int(0, 2**40), default=None, doc="medium raw: byte offset in device"),
        "size": Field(Size(), default=None, doc="medium raw or mtd: bytes the region holds"),
        "mtd_name": Field(Str(r"[A-Za-z0-9_.-]+", "an MTD partition name"), default=None),
        "flash_address": Field(Int(0, 2**40), default=None, doc="medium mtd: where U-Boot sees it (cp.b)"),
        "fdt": Field(Str(r"[A-Za-z0-9_./-]+\.dtb", "a path such as marvell/ac5x_4G_db.dtb"), default=None),
        "load_address": Field(Str(r"[$}{A-Za-z0-9_x]+", "an address or ${variable}"), default="${loadaddr}"),
        "bootm_fdt": Field(
            Str(r"[$}{A-Za-z0-9_x]+", "an address or ${variable}"),
            default=None,
            doc="without fdt: the device tree bootm passes, e.g. ${fdtcontroladdr}",
        ),
    },
    name="uboot",
)

PROFILE = Obj(
    {
        "id": Field(
            Str(r"[a-z0-9][a-z0-9_.-]*", "an id of lower-case letters, digits, _ . -"), required=True
        ),
        "kind": Field(Enum(*KINDS), required=True),
        "vendor": Field(Str(), required=True, doc="the maker, as people write it"),
        "machine": Field(
            Str(r"[A-Za-z0-9_.-]+", "an ONIE machine name such as accton_as7712_32x"),
            required=True,
            doc="ONIE's onie_machine (vendor prefix included)",
        ),
        "revision": Field(Int(0, 255), default=0),
        "vendor_id": Field(
            Int(0, 0xFFFFFFFF), doc="IANA enterprise number (ONIE's VENDOR_ID, onie_vendor_id)"
        ),
        "onie_platform": Field(
            Str(r"[a-z0-9_]+-[A-Za-z0-9_.-]+-r\d+", "an ONIE platform such as x86_64-accton_as7712_32x-r0"),
            doc="`<arch>-<machine>-r<rev>` as ONIE's machine.conf spells it",
        ),
        "arch": Field(Enum(*ARCHES), required=True),
        "firmware": Field(Enum(*FIRMWARES), required=True),
        "partition_type": Field(Enum(*PARTITION_TYPES), default="gpt"),
        "console": Field(CONSOLE, required=True),
        "disk": Field(DISK, default=None),
        "switch_asic": Field(Enum(*KNOWN_ASIC_VENDORS), default=None),
        "modules": MODULES,
        "cmdline": Field(Str(allow_empty=True), default=""),
        "uboot": Field(UBOOT, default=None, doc="U-Boot platforms: environment and NOS storage"),
        "bmc": Field(Enum(*BMC_KINDS), default="none"),
        "description": Field(Str(allow_empty=True), default=""),
        "references": Field(List(Str()), default_factory=list, doc="where the facts come from"),
    },
    name="hardware profile",
)


@dataclass(frozen=True)
class Console:
    device: str
    speed: int = 115200

    @property
    def kernel_arg(self) -> str:
        """`console=ttyS1,115200n8`: 8 data bits, no parity, as ONIE itself boots."""
        return console_arg(self.device, self.speed)


@dataclass(frozen=True)
class FwEnvLine:
    device: str
    offset: int
    env_size: int
    sector_size: int = 0

    def config_line(self) -> str:
        """One fw_env.config line (libubootenv and u-boot-tools read the same columns)."""
        line = f"{self.device}\t0x{self.offset:x}\t0x{self.env_size:x}"
        return line + (f"\t0x{self.sector_size:x}" if self.sector_size else "")


@dataclass(frozen=True)
class UBootProfile:
    fw_env: tuple[FwEnvLine, ...]
    medium: str
    device: str | None = None
    uboot_device: str | None = None
    partition: int | None = None
    offset: int | None = None
    size: int | None = None
    mtd_name: str | None = None
    flash_address: int | None = None
    fdt: str | None = None
    load_address: str = "${loadaddr}"
    bootm_fdt: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "fw_env": [vars(f) for f in self.fw_env],
            "medium": self.medium,
            "device": self.device,
            "uboot_device": self.uboot_device,
            "partition": self.partition,
            "offset": self.offset,
            "size": self.size,
            "mtd_name": self.mtd_name,
            "flash_address": self.flash_address,
            "fdt": self.fdt,
            "load_address": self.load_address,
            "bootm_fdt": self.bootm_fdt,
        }


@dataclass(frozen=True)
class HardwareProfile:
    id: str
    kind: str
    vendor: str
    machine: str
    arch: str
    firmware: str
    console: Console
    revision: int = 0
    onie_platform: str | None = None
    switch_asic: str | None = None
    modules_load: tuple[str, ...] = ()
    modules_blacklist: tuple[str, ...] = ()
    cmdline: str = ""
    disk_device_hint: str | None = None
    bmc: str = "none"
    description: str = ""
    source: Path | None = field(default=None, compare=False)
    vendor_id: int | None = None
    partition_type: str = "gpt"
    disk_bus_path: str | None = None
    disk_min_size: int | None = None
    references: tuple[str, ...] = ()
    uboot: UBootProfile | None = None

    @property
    def onie_arch(self) -> str:
        """ONIE's spelling of the CPU arch (machine.conf onie_arch; armv8a builds say arm64)."""
        return {"x86_64": "x86_64", "arm64": "arm64"}[self.arch]

    @property
    def vendor_machine(self) -> str:
        """`<vendor>_<machine>` of ONIE's installer names: onie_machine itself."""
        return self.machine

    @property
    def is_onie(self) -> bool:
        return self.onie_platform is not None

    def kernel_args(self) -> tuple[str, ...]:
        """Kernel command-line words this hardware needs: extra cmdline, `module_blacklist=`, and
        the serial console last, built by the same onie.kernel_cmdline.kernel_args that the
        installer's grub.cfg uses (there the NOS's words and modules_load= join in)."""
        return kernel_args(self.console.kernel_arg, (self.cmdline,), blacklist=self.modules_blacklist)

    def as_dict(self) -> dict[str, object]:
        """Plain data for --json (stable keys)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "vendor": self.vendor,
            "machine": self.machine,
            "revision": self.revision,
            "vendor_id": self.vendor_id,
            "onie_platform": self.onie_platform,
            "arch": self.arch,
            "firmware": self.firmware,
            "partition_type": self.partition_type,
            "console": {"device": self.console.device, "speed": self.console.speed},
            "disk": {
                "device_hint": self.disk_device_hint,
                "bus_path": self.disk_bus_path,
                "min_size": self.disk_min_size,
            },
            "switch_asic": self.switch_asic,
            "modules": {"load": list(self.modules_load), "blacklist": list(self.modules_blacklist)},
            "cmdline": self.cmdline,
            "kernel_args": list(self.kernel_args()),
            "uboot": self.uboot.as_dict() if self.uboot else None,
            "bmc": self.bmc,
            "description": self.description,
            "references": list(self.references),
            "source": str(self.source) if self.source else None,
        }


def load_profile(path: Path | str) -> HardwareProfile:
    """Read and check one profile file; every error is a ConfigError with file:line:col."""
    data = load_file(path, PROFILE)
    modules_load, modules_blacklist = module_lists(data["modules"])
    disk = data["disk"] or {}
    profile = HardwareProfile(
        id=data["id"],
        kind=data["kind"],
        vendor=data["vendor"],
        machine=data["machine"],
        arch=data["arch"],
        firmware=data["firmware"],
        console=Console(data["console"]["device"], data["console"]["speed"]),
        revision=data["revision"],
        onie_platform=data["onie_platform"],
        switch_asic=data["switch_asic"],
        modules_load=modules_load,
        modules_blacklist=modules_blacklist,
        cmdline=data["cmdline"],
        disk_device_hint=disk.get("device_hint"),
        bmc=data["bmc"],
        description=data["description"],
        source=Path(path),
        vendor_id=data["vendor_id"],
        partition_type=data["partition_type"],
        disk_bus_path=disk.get("bus_path"),
        disk_min_size=disk.get("min_size"),
        references=tuple(data["references"]),
        uboot=_uboot(data["uboot"]),
    )
    _check(profile, data)
    return profile


def _uboot(u: Section | None) -> UBootProfile | None:
    if u is None:
        return None
    lines = tuple(FwEnvLine(x["device"], x["offset"], x["env_size"], x["sector_size"]) for x in u["fw_env"])
    need = {
        "disk": ("device", "uboot_device"),
        "partition": ("device", "uboot_device", "partition"),
        "raw": ("device", "uboot_device", "offset", "size"),
        "mtd": ("mtd_name", "flash_address", "size"),
    }[u["medium"]]
    missing = [k for k in need if u[k] is None]
    if missing:
        raise u.error(
            "medium",
            f"medium {u['medium']} needs {', '.join(need)}; missing {', '.join(missing)}",
            'add the missing keys under uboot: (docs/hardware-profiles.md "U-Boot platforms")',
        )
    if len(lines) > 2:
        raise u.error("fw_env", "fw_env.config holds one line, or two for a redundant environment")
    return UBootProfile(
        fw_env=lines,
        medium=u["medium"],
        device=u["device"],
        uboot_device=u["uboot_device"],
        partition=u["partition"],
        offset=u["offset"],
        size=u["size"],
        mtd_name=u["mtd_name"],
        flash_address=u["flash_address"],
        fdt=u["fdt"],
        load_address=u["load_address"],
        bootm_fdt=u["bootm_fdt"],
    )


def _check(profile: HardwareProfile, data) -> None:  # data: config Section
    if profile.onie_platform:
        arch = profile.onie_platform.split("-", 1)[0]
        if arch != profile.onie_arch:
            raise data.error(
                "onie_platform",
                f"platform arch {arch!r} does not match arch {profile.arch!r}",
                f"start onie_platform with {profile.onie_arch}-",
            )
        if not profile.onie_platform.endswith(f"-r{profile.revision}"):
            raise data.error(
                "onie_platform",
                f"platform {profile.onie_platform!r} does not end in -r{profile.revision} (revision)",
                "make revision and the -rN suffix agree",
            )
        expected = f"{profile.onie_arch}-{profile.machine}-r{profile.revision}"
        if profile.onie_platform != expected:
            raise data.error(
                "onie_platform",
                f"platform {profile.onie_platform!r} is not <arch>-<machine>-r<rev> = {expected!r}",
                "set machine to ONIE's onie_machine (vendor prefix included), e.g. accton_as7712_32x",
            )
    if profile.kind == "switch" and not profile.onie_platform:
        raise data.error(
            None,
            f"switch profile {profile.id!r} has no onie_platform",
            "add onie_platform: <arch>-<machine>-r<rev>",
        )
    if profile.kind == "switch" and not profile.switch_asic:
        raise data.error(
            None,
            f"switch profile {profile.id!r} has no switch_asic",
            "add switch_asic: (ONIE's SWITCH_ASIC_VENDOR in machine.make) " + ", ".join(KNOWN_ASIC_VENDORS),
        )
    if profile.firmware == "bios" and profile.arch != "x86_64":
        raise data.error("firmware", "BIOS firmware exists only on x86_64", "use uefi or uboot")
    if profile.firmware == "uboot" and profile.arch == "x86_64":
        raise data.error("firmware", "x86_64 machines boot with BIOS or UEFI, not U-Boot", "use bios or uefi")
    if profile.firmware == "uboot" and profile.kind == "switch" and profile.uboot is None:
        raise data.error(
            "firmware",
            f"U-Boot switch {profile.id!r} has no uboot: block",
            'add uboot: with fw_env and where the NOS goes (docs/hardware-profiles.md "U-Boot platforms")',
        )
    if profile.uboot is not None and profile.firmware != "uboot":
        raise data.error("uboot", "a uboot: block on a machine whose firmware is not uboot", "remove it")
    if profile.console.speed not in CONSOLE_SPEEDS:
        raise data["console"].error(
            "speed",
            f"console speed {profile.console.speed} is not a standard rate",
            "use one of " + ", ".join(map(str, CONSOLE_SPEEDS)),
        )
    both = sorted(set(profile.modules_load) & set(profile.modules_blacklist))
    if both:
        raise data["modules"].error(
            "blacklist", f"module(s) both loaded and blacklisted: {', '.join(both)}", "keep each in one list"
        )
    if Path(str(data.mark.file)).stem != profile.id:
        raise data.error(
            "id",
            f"id {profile.id!r} differs from the file name {Path(str(data.mark.file)).name!r}",
            f"rename the file to {profile.id}.yml or change the id",
        )


def profile_files(paths: list[Path]) -> list[Path]:
    """Files named by `paths`: a folder gives its *.yml and *.yaml, a file itself."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found.extend(sorted([*path.glob("*.yml"), *path.glob("*.yaml")]))
        else:
            found.append(path)
    return found


def env_folders() -> list[Path]:
    """Folders named by $PROVISION_PROFILES_DIR (os.pathsep-separated)."""
    raw = os.environ.get(ENV_PROFILES_DIR, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


class ProfileNotFound(ProvisionError, LookupError):
    """No profile by that id (exit 2). A LookupError too: callers that only ask "is there one?"
    catch that (provision.boot.policy.profile_console)."""

    exit_code = EXIT_INPUT


class ProfileRegistry:
    """The shipped profiles, then $PROVISION_PROFILES_DIR, then `folders`; later ones override by id."""

    def __init__(self, folders: list[Path] | None = None, use_env: bool = True):
        extra = [*(env_folders() if use_env else []), *(Path(f) for f in folders or [])]
        for folder in extra:
            if not folder.is_dir():
                raise ConfigError(
                    None,
                    f"profiles folder {folder} does not exist",
                    f"create it or fix --profiles-dir / ${ENV_PROFILES_DIR}",
                )
        self.folders = [resources.profiles_dir(), *extra]
        self._profiles: dict[str, HardwareProfile] | None = None

    def _load(self) -> dict[str, HardwareProfile]:
        if self._profiles is None:
            found: dict[str, HardwareProfile] = {}
            for path in profile_files(self.folders):
                profile = load_profile(path)
                found[profile.id] = profile
            self._profiles = found
        return self._profiles

    def all(self) -> list[HardwareProfile]:
        return sorted(self._load().values(), key=lambda p: p.id)

    def get(self, profile_id: str) -> HardwareProfile:
        profiles = self._load()
        if profile_id not in profiles:
            close = difflib.get_close_matches(profile_id, list(profiles), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ProfileNotFound(
                f"no hardware profile {profile_id!r}{hint}; `provision profiles list` shows them"
            )
        return profiles[profile_id]

    def find_by_platform(self, onie_platform: str) -> HardwareProfile | None:
        """The profile for an ONIE platform string as a switch reports it (DHCP option 60,
        ONIE-* headers), or None. Matched exactly: ONIE spells platforms in lower case."""
        for profile in self.all():
            if profile.onie_platform == onie_platform:
                return profile
        return None


__all__ = [
    "KNOWN_ASIC_VENDORS",
    "PROFILE",
    "ConfigError",
    "Console",
    "HardwareProfile",
    "ProfileNotFound",
    "ProfileRegistry",
    "load_profile",
    "profile_files",
]
