"""lab.yml: what `provision serve` serves, to whom, on which links. Schema → typed, frozen config.

One file holds the links (interfaces and subnets), the DHCP mode, boot entries (a kernel, initrd
and command line per CPU architecture), where files and state live, and the inventory (`devices:`,
read by provision.config.inventory, the same list the BMC commands use). Every error names file:line.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from provision.config import (
    ConfigError,
    Enum,
    Field,
    FilePath,
    Int,
    IPv4Addr,
    IPv4Net,
    List,
    Map,
    Mark,
    Obj,
    Section,
    Str,
    load_file,
)
from provision.config.inventory import DEVICE, GROUP, GROUP_KEYS, Device, Inventory, devices_from_list
from provision.config.onie import ONIE, OnieSettings, settings_from_section
from provision.config.security import (
    API,
    EVENTS,
    ApiSettings,
    EventRetention,
    api_from_section,
    events_from_section,
)

DEFAULT_STATE_DIR = Path("/var/lib/provision")
DEFAULT_LEASE_TIME = 3600
IPXE_DIR = Path("/usr/lib/ipxe")
GRUB_ARM64_MODULES = Path("/usr/lib/grub/arm64-efi")


class Mode(enum.Enum):
    AUTHORITATIVE = "authoritative"  # we hand out addresses
    PROXY = "proxy"  # another DHCP server does; we only add boot information (proxyDHCP)


class Unknown(enum.Enum):
    IGNORE = "ignore"  # stay silent for MACs not in the inventory (still recorded as dhcp.ignored)
    DISCOVER = "discover"  # boot them into the `discover` entry


class Arch(enum.Enum):
    X86_64 = "x86_64"
    ARM64 = "arm64"


class X64Loader(enum.Enum):
    IPXE = "ipxe.efi"  # iPXE with its own NIC drivers
    SNPONLY = "snponly.efi"  # iPXE over the firmware's SNP: the one NIC the firmware booted from


_IFNAME = Str(r"[A-Za-z0-9_.:@-]{1,15}", "a network interface name such as eth1")
_RANGE = Str(
    r"\d+\.\d+\.\d+\.\d+\s*-\s*\d+\.\d+\.\d+\.\d+", "an address range such as 198.18.10.100-198.18.10.200"
)

KERNEL_SET = Obj(
    {
        "kernel": Field(FilePath(must_exist=False), required=True, doc="the kernel image"),
        "initrd": Field(FilePath(must_exist=False), default=None),
        "cmdline": Field(Str(allow_empty=True), default=""),
    },
    name="boot entry arch",
)

BOOT_ENTRY = Obj(
    {
        "x86_64": Field(KERNEL_SET, default=None, doc="for BIOS and UEFI x64 machines"),
        "arm64": Field(KERNEL_SET, default=None, doc="for ARM64 UEFI machines"),
        "description": Field(Str(allow_empty=True), default=""),
    },
    name="boot entry",
)

SUBNET = Obj(
    {
        "network": Field(IPv4Net(), required=True),
        "interface": Field(_IFNAME, default=None, doc="where it is directly attached; unset: via a relay"),
        "pool": Field(List(_RANGE), default_factory=list, doc="ranges handed to unknown clients"),
        "router": Field(IPv4Addr(), default=None),
        "dns": Field(List(IPv4Addr()), default_factory=list),
        "domain": Field(Str(), default=None),
        "lease_time": Field(Int(60, 365 * 86400), default=DEFAULT_LEASE_TIME, doc="seconds"),
        "relays": Field(
            List(IPv4Addr(), unique=True),
            default_factory=list,
            doc="source addresses of the DHCP relays serving this subnet; giaddr from others is ignored",
        ),
    },
    name="subnet",
)

BOOT = Obj(
    {
        "default": Field(Str(), default=None, doc="entry for known devices without their own `boot:`"),
        "unknown": Field(Enum(*(u.value for u in Unknown)), default=Unknown.IGNORE.value),
        "discover": Field(Str(), default=None, doc="entry booted by unknown machines (unknown: discover)"),
        "uefi_x64_loader": Field(Enum(*(x.value for x in X64Loader)), default=X64Loader.IPXE.value),
        "entries": Field(Map(BOOT_ENTRY), default_factory=dict),
    },
    name="boot",
)

PATHS = Obj(
    {
        "tftp_root": Field(FilePath(must_exist=False, kind="folder"), default=None),
        "http_root": Field(FilePath(must_exist=False, kind="folder"), default=None),
        "state_dir": Field(FilePath(must_exist=False, kind="folder"), default=None),
        "db": Field(
            FilePath(must_exist=False), default=None, doc="SQLite file; default state_dir/provision.db"
        ),
        "ipxe_dir": Field(FilePath(must_exist=False, kind="folder"), default=None),
        "grub_arm64_efi": Field(FilePath(must_exist=False), default=None, doc="a prebuilt GRUB image"),
        "grub_arm64_modules": Field(FilePath(must_exist=False, kind="folder"), default=None),
    },
    name="paths",
)


LAB = Obj(
    {
        "interfaces": Field(List(_IFNAME, min_len=1, unique=True), required=True, doc="links to serve on"),
        "mode": Field(Enum(*(m.value for m in Mode)), default=Mode.AUTHORITATIVE.value),
        "subnets": Field(List(SUBNET), default_factory=list),
        "http_port": Field(Int(1, 65535), default=80),
        "tftp_port": Field(Int(1, 65535), default=69),
        "boot": Field(BOOT, default=None),
        "paths": Field(PATHS, default=None),
        "state": Field(
            Str(r"postgres(ql)?://\S*", "a PostgreSQL URL such as postgresql://provision@db1/provision"),
            default=None,
            doc="shared state in PostgreSQL (docs/scale-out.md); unset: SQLite at paths.db",
        ),
        "onie": Field(ONIE, default=None, doc="ONIE installer serving (provision.config.onie)"),
        "api": Field(API, default=None, doc="API access and callback limits (docs/security.md)"),
        "events": Field(EVENTS, default=None, doc="event retention (docs/security.md)"),
        "devices": Field(List(DEVICE), default_factory=list),
        "groups": Field(Map(GROUP), default_factory=dict, doc="settings shared by devices naming the group"),
    },
    name="lab",
)


@dataclass(frozen=True)
class KernelSet:
    kernel: Path
    initrd: Path | None = None
    cmdline: str = ""


@dataclass(frozen=True)
class BootEntry:
    name: str
    kernels: dict[Arch, KernelSet] = field(default_factory=dict)
    description: str = ""

    def for_arch(self, arch: Arch) -> KernelSet | None:
        return self.kernels.get(arch)


@dataclass(frozen=True)
class Pool:
    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address


@dataclass(frozen=True)
class Subnet:
    network: ipaddress.IPv4Network
    interface: str | None = None
    pools: tuple[Pool, ...] = ()
    router: str | None = None
    dns: tuple[str, ...] = ()
    domain: str | None = None
    lease_time: int = DEFAULT_LEASE_TIME
    relays: tuple[str, ...] = ()  # docs/netboot.md "DHCP hardening"


@dataclass(frozen=True)
class BootConfig:
    entries: dict[str, BootEntry] = field(default_factory=dict)
    default: str | None = None
    unknown: Unknown = Unknown.IGNORE
    discover: str | None = None
    uefi_x64_loader: X64Loader = X64Loader.IPXE


@dataclass(frozen=True)
class Paths:
    state_dir: Path = DEFAULT_STATE_DIR
    tftp_root: Path | None = None
    http_root: Path | None = None
    db: Path | None = None
    ipxe_dir: Path = IPXE_DIR
    grub_arm64_efi: Path | None = None
    grub_arm64_modules: Path = GRUB_ARM64_MODULES

    @property
    def db_path(self) -> Path:
        return self.db or self.state_dir / "provision.db"


@dataclass(frozen=True)
class LabConfig:
    interfaces: tuple[str, ...]
    mode: Mode = Mode.AUTHORITATIVE
    subnets: tuple[Subnet, ...] = ()
    boot: BootConfig = field(default_factory=BootConfig)
    paths: Paths = field(default_factory=Paths)
    inventory: Inventory = field(default_factory=lambda: Inventory([]))
    http_port: int = 80
    tftp_port: int = 69
    onie: OnieSettings | None = None  # the `onie:` section; None: switches are not served
    groups: dict[str, dict[str, str | None]] = field(default_factory=dict)  # `groups:`, for enrolled devices
    api: ApiSettings = field(default_factory=ApiSettings)  # the `api:` section (docs/security.md)
    events: EventRetention = field(default_factory=EventRetention)  # the `events:` section
    state: str | None = None  # `state: postgresql://…` (docs/scale-out.md); None: SQLite at paths.db
    source: Path | None = None

    @property
    def state_location(self) -> str | Path:
        """Where the state store is: the PostgreSQL URL, or the SQLite file."""
        return self.state or self.paths.db_path


def _pool(raw: str) -> Pool:
    first, last = (ipaddress.IPv4Address(p.strip()) for p in raw.split("-", 1))
    return Pool(first, last)


def _subnet(data: Section, interfaces: tuple[str, ...]) -> Subnet:
    net = ipaddress.IPv4Network(data["network"])
    pools = []
    for raw in data["pool"]:
        try:
            pool = _pool(raw)
        except ValueError as exc:
            raise data.error(
                "pool", f"bad range {raw!r}: {exc}", "write FIRST-LAST inside the network"
            ) from None
        if pool.first not in net or pool.last not in net or pool.first > pool.last:
            raise data.error(
                "pool", f"range {raw} is not an ascending range inside {net}", f"pick addresses in {net}"
            )
        pools.append(pool)
    if data["router"] and ipaddress.IPv4Address(data["router"]) not in net:
        raise data.error("router", f"router {data['router']} is outside {net}", f"pick a router in {net}")
    if data["interface"] and data["interface"] not in interfaces:
        raise data.error(
            "interface",
            f"interface {data['interface']!r} is not in `interfaces:` {list(interfaces)}",
            "add it to `interfaces:` or fix the name",
        )
    return Subnet(
        network=net,
        interface=data["interface"],
        pools=tuple(pools),
        router=data["router"],
        dns=tuple(data["dns"]),
        domain=data["domain"],
        lease_time=data["lease_time"],
        relays=tuple(data["relays"]),
    )


def _entry(name: str, data: Section) -> BootEntry:
    kernels: dict[Arch, KernelSet] = {}
    for arch in Arch:
        ks = data[arch.value]
        if ks:
            kernels[arch] = KernelSet(ks["kernel"], ks["initrd"], ks["cmdline"])
    if not kernels:
        raise data.error(
            None, f"boot entry {name!r} has neither x86_64 nor arm64", "add `x86_64: {kernel: ...}`"
        )
    return BootEntry(name, kernels, data["description"])


def _check_entry_ref(section: Section, key: str, entries: dict[str, BootEntry]) -> None:
    name = section.get(key)
    if name and name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=1)
        fix = f"did you mean {close[0]!r}?" if close else "known entries: " + (", ".join(entries) or "none")
        raise section.error(key, f"no boot entry {name!r}", fix)


def check_files(cfg: LabConfig, marks: dict[Path, Mark | None] | None = None) -> None:
    """Every kernel and initrd a boot entry names must exist: say which, and where it was named."""
    for entry in cfg.boot.entries.values():
        for ks in entry.kernels.values():
            for path in (ks.kernel, ks.initrd):
                if path is not None and not path.is_file():
                    mark = (marks or {}).get(path)
                    raise ConfigError(
                        mark,
                        f"boot entry {entry.name!r}: file not found: {path}",
                        "build or copy it there, or fix the path (relative paths start at lab.yml's folder)",
                    )


def from_section(data: Section, source: Path | None = None, check: bool = True) -> LabConfig:
    interfaces = tuple(data["interfaces"])
    subnets = tuple(_subnet(s, interfaces) for s in data["subnets"])
    boot_s = data["boot"]
    entries: dict[str, BootEntry] = {}
    marks: dict[Path, Mark | None] = {}
    boot = BootConfig()
    if boot_s:
        for name, e in boot_s["entries"].items():
            entries[name] = _entry(name, e)
            for arch in Arch:
                if e[arch.value]:
                    for k in ("kernel", "initrd"):
                        if e[arch.value][k]:
                            marks[e[arch.value][k]] = e[arch.value].mark_of(k)
        for key in ("default", "discover"):
            _check_entry_ref(boot_s, key, entries)
        if boot_s["unknown"] == Unknown.DISCOVER.value and not boot_s["discover"]:
            raise boot_s.error(
                "unknown", "unknown: discover needs a `discover:` entry", "add `discover: <entry>`"
            )
        boot = BootConfig(
            entries=entries,
            default=boot_s["default"],
            unknown=Unknown(boot_s["unknown"]),
            discover=boot_s["discover"],
            uefi_x64_loader=X64Loader(boot_s["uefi_x64_loader"]),
        )
    devices = devices_from_list(data["devices"], data["groups"])
    for dev, dsec in zip(devices, data["devices"], strict=True):
        if dev.boot and dev.boot not in entries:
            _check_entry_ref(dsec, "boot", entries)
    p = data["paths"] or {}
    state_dir = p.get("state_dir") or DEFAULT_STATE_DIR
    paths = Paths(
        state_dir=state_dir,
        tftp_root=p.get("tftp_root"),
        http_root=p.get("http_root"),
        db=p.get("db"),
        ipxe_dir=p.get("ipxe_dir") or IPXE_DIR,
        grub_arm64_efi=p.get("grub_arm64_efi"),
        grub_arm64_modules=p.get("grub_arm64_modules") or GRUB_ARM64_MODULES,
    )
    mode = Mode(data["mode"])
    if mode is Mode.AUTHORITATIVE and not subnets:
        raise data.error(
            "subnets" if "subnets" in data.key_marks else None,
            "authoritative mode needs at least one subnet",
            "add `subnets:` with network and pool, or set `mode: proxy`",
        )
    cfg = LabConfig(
        interfaces=interfaces,
        mode=mode,
        subnets=subnets,
        boot=boot,
        paths=paths,
        inventory=Inventory(devices, source),
        http_port=data["http_port"],
        tftp_port=data["tftp_port"],
        groups={name: {k: g[k] for k in GROUP_KEYS} for name, g in data["groups"].items()},
        onie=settings_from_section(data["onie"]) if data["onie"] is not None else None,
        api=api_from_section(data["api"]),
        events=events_from_section(data["events"]),
        state=data["state"],
        source=source,
    )
    if check:
        check_files(cfg, marks)
    return cfg


def load_lab(path: Path | str, check_files: bool = True) -> LabConfig:
    """Read and check lab.yml; with check_files, every kernel/initrd it names must exist."""
    path = Path(path)
    return from_section(load_file(path, LAB), path, check=check_files)


def device_entry(cfg: LabConfig, device: Device | None) -> BootEntry | None:
    """Which boot entry a device gets: its own `boot:`, else the lab default; unknown → discover."""
    entries = cfg.boot.entries
    if device is None:
        if cfg.boot.unknown is Unknown.DISCOVER and cfg.boot.discover:
            return entries.get(cfg.boot.discover)
        return None
    name = device.boot or cfg.boot.default
    return entries.get(name) if name else None


__all__ = [
    "LAB",
    "Arch",
    "BootConfig",
    "BootEntry",
    "KernelSet",
    "LabConfig",
    "Mode",
    "Paths",
    "Pool",
    "Subnet",
    "Unknown",
    "X64Loader",
    "device_entry",
    "from_section",
    "load_lab",
]
