"""`provision check`: every problem of a lab.yml (or switch.yml) at once, each with file:line:col,
what is wrong, the fix and a stable code; `provision serve` runs the same before it binds.

The schema pass collects (provision.config.schema, `errors=`) instead of stopping at the first
error; the rules below then run on the checked Sections, which remember where each value stood,
and skip whatever the schema pass already found wrong (a value left at its default, None when it
was required). Codes and what each means are in docs/lab.md "provision check".

Bounds: the file is read up to MAX_FILE bytes, at most MAX_FINDINGS findings are kept (the rest
are counted), boot files are read 4 KiB each (provision.config.bootfiles), and pools are handled
as integer ranges, never address by address, so a 0.0.0.0/0 pool costs what a /24 does.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onie.layout import MIN_PARTITION, Firmware, onie_partitions
from provision.config import bootfiles
from provision.config.errors import ConfigError, ConfigErrors, Finding, Mark
from provision.config.lab import LAB, Arch, LabConfig, Mode, Unknown
from provision.config.profiles import HardwareProfile, ProfileRegistry
from provision.config.schema import Section, _compose, load_text
from provision.config.switchspec import SPEC, load_switch_spec, resolve_platforms
from provision.onie.catalog import Catalog
from pxe import netif
from pxe.netif import InterfaceAddress

log = logging.getLogger("provision.check")

MAX_FILE = 4 * 1024 * 1024  # a lab of thousands of devices is well under 1 MiB
MAX_FINDINGS = 500

ERROR, WARNING, NOTE = "error", "warning", "note"

# Looks an interface up on this host; None when it is not here (or has no IPv4 address).
HostLookup = Callable[[str], InterfaceAddress | None]


@dataclass
class Report:
    """What `check_file` found. `kind` is "lab" or "switch" (detected from the content)."""

    path: Path
    kind: str = "lab"
    findings: list[Finding] = field(default_factory=list)
    dropped: int = 0  # findings past MAX_FINDINGS, counted, not kept

    def add(
        self,
        severity: str,
        code: str,
        mark: Mark | None,
        message: str,
        fix: str | None = None,
    ) -> None:
        if len(self.findings) >= MAX_FINDINGS:
            if not self.dropped:
                log.warning("%s: more than %d findings; the rest are counted only", self.path, MAX_FINDINGS)
            self.dropped += 1
            return
        self.findings.append(Finding(severity, code, mark, message, fix))

    def error(self, code: str, mark: Mark | None, message: str, fix: str | None = None) -> None:
        self.add(ERROR, code, mark, message, fix)

    def warning(self, code: str, mark: Mark | None, message: str, fix: str | None = None) -> None:
        self.add(WARNING, code, mark, message, fix)

    def note(self, code: str, mark: Mark | None, message: str, fix: str | None = None) -> None:
        self.add(NOTE, code, mark, message, fix)

    def from_config_error(self, exc: ConfigError, code: str = "invalid") -> None:
        self.error(exc.code or code, exc.mark, exc.message, exc.fix)

    def of(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def errors(self) -> list[Finding]:
        return self.of(ERROR)

    @property
    def warnings(self) -> list[Finding]:
        return self.of(WARNING)

    @property
    def notes(self) -> list[Finding]:
        return self.of(NOTE)

    def raise_errors(self) -> None:
        """A ConfigError listing every error (exit 2), if there is any."""
        if self.errors:
            raise ConfigErrors(self.errors, self.dropped)


# --- entry points -------------------------------------------------------------------------------


def check_file(
    path: Path | str, host: HostLookup | None = None, registry: ProfileRegistry | None = None
) -> Report:
    """Check lab.yml or switch.yml (told apart by their keys) and return every finding."""
    path = Path(path)
    report = Report(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError as exc:
        report.error("file-unreadable", None, f"{path}: cannot read: {exc.strerror}", "check the path")
        return report
    if len(raw) > MAX_FILE:
        report.error(
            "file-too-large",
            Mark(path, 1, 1),
            f"{path} is larger than {MAX_FILE // 1024 // 1024} MiB",
            "is this the right file? lab.yml and switch.yml are a few KiB",
        )
        return report
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.error(
            "file-unreadable", Mark(path, 1, 1), f"not UTF-8 text ({exc.reason})", "save it as UTF-8"
        )
        return report
    try:
        node = _compose(text, path)
    except ConfigError as exc:
        report.from_config_error(exc)
        return report
    report.kind = "switch" if _is_switch_spec(node) else "lab"
    try:
        registry = registry or ProfileRegistry()
    except ConfigError as exc:
        report.from_config_error(exc, "profiles-folder-missing")
        registry = ProfileRegistry(use_env=False)
    if report.kind == "switch":
        _check_switch(text, path, report, registry)
    else:
        _check_lab(text, path, report, host or netif.interface_ipv4, registry)
    return report


def check_config(cfg: LabConfig, host: HostLookup | None = None) -> Report:
    """The checks `provision serve` runs before it binds: those of its lab file (quick mode,
    which has no file, is built from flags already checked by the CLI)."""
    if cfg.source is None:
        return Report(Path("<quick mode>"))
    return check_file(cfg.source, host)


def _is_switch_spec(node: yaml.Node | None) -> bool:
    if not isinstance(node, yaml.MappingNode):
        return False
    keys = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return "interfaces" not in keys and bool(keys & {"nos", "payload"})


def _schema(text: str, path: Path, schema: Any, report: Report) -> Section | None:
    errors: list[ConfigError] = []
    try:
        data = load_text(text, schema, path, errors)
    except ConfigError as exc:  # the document itself is not a mapping
        errors.append(exc)
        data = None
    for found in errors:
        report.from_config_error(found)
    return data if isinstance(data, Section) else None


# --- lab.yml ------------------------------------------------------------------------------------


@dataclass
class _Net:
    """A subnet as the rules see it: integers, so no rule ever walks addresses one by one."""

    network: ipaddress.IPv4Network
    section: Section
    pools: list[tuple[int, int, str, Mark | None]]  # first, last, as written, where
    router: int | None
    server: InterfaceAddress | None  # our address on this network, if its interface is here

    @property
    def lo(self) -> int:
        return int(self.network.network_address)

    @property
    def hi(self) -> int:
        return int(self.network.broadcast_address)


def _ip(value: object) -> int | None:
    try:
        return int(ipaddress.IPv4Address(str(value)))
    except ValueError:
        return None


def _dotted(ip: int) -> str:
    return str(ipaddress.IPv4Address(ip))


def _pool_range(raw: str) -> tuple[int, int] | None:
    parts = raw.split("-", 1)
    if len(parts) != 2:
        return None
    first, last = (_ip(p.strip()) for p in parts)
    if first is None or last is None:
        return None
    return first, last


def _check_lab(text: str, path: Path, report: Report, host: HostLookup, registry: ProfileRegistry) -> None:
    data = _schema(text, path, LAB, report)
    if data is None:
        return
    interfaces = [i for i in data.get("interfaces") or [] if isinstance(i, str)]
    here = {name: host(name) for name in interfaces}
    nets = _subnets(data, interfaces, here, report)
    devices = [d for d in data.get("devices") or [] if isinstance(d, Section)]
    _pool_rules(nets, report)
    _device_address_rules(devices, nets, report)
    _duplicates(devices, report)
    _boot_rules(data, devices, report)
    _profile_rules(data, devices, registry, report)
    _onie_rules(data, devices, registry, report)
    _bmc_rules(devices, report)


def _subnets(
    data: Section, interfaces: list[str], here: dict[str, InterfaceAddress | None], report: Report
) -> list[_Net]:
    subnets = [s for s in data.get("subnets") or [] if isinstance(s, Section)]
    if Mode(data.get("mode") or Mode.AUTHORITATIVE.value) is Mode.AUTHORITATIVE and not subnets:
        report.error(
            "no-subnet",
            data.mark_of("subnets") if "subnets" in data.key_marks else data.mark,
            "authoritative mode needs at least one subnet",
            "add `subnets:` with network and pool, or set `mode: proxy`",
        )
    nets: list[_Net] = []
    seen: dict[ipaddress.IPv4Network, Mark | None] = {}
    missing_ifaces: set[str] = set()
    for s in subnets:
        if s.get("network") is None:
            continue
        net = ipaddress.IPv4Network(s["network"])
        where = s.mark_of("network")
        if net in seen:
            report.error(
                "duplicate-network",
                where,
                f"network {net} is listed twice (first at line {_line(seen[net])}); only one would be served",
                "merge the two entries into one",
            )
            continue
        for other, other_mark in seen.items():
            if net.overlaps(other):
                report.error(
                    "overlapping-subnets",
                    where,
                    f"network {net} overlaps {other} (line {_line(other_mark)}): a client would match both",
                    "make the networks disjoint (one prefix per link)",
                )
        seen[net] = where
        iface = s.get("interface")
        if iface and iface not in interfaces:
            report.error(
                "subnet-interface-unknown",
                s.mark_of("interface"),
                f"interface {iface!r} is not in `interfaces:` {interfaces}",
                "add it to `interfaces:` or fix the name",
            )
        router = _ip(s["router"]) if s.get("router") else None
        if router is not None and ipaddress.IPv4Address(router) not in net:
            report.error(
                "router-outside-subnet",
                s.mark_of("router"),
                f"router {s['router']} is outside {net}",
                f"pick a router address in {net}",
            )
            router = None
        server = _server_on(net, iface, interfaces, here)
        if server is None:
            wanted = [iface] if iface else interfaces
            missing_ifaces.update(n for n in wanted if here.get(n) is None)
        pools = []
        for raw in s.get("pool") or []:
            rng = _pool_range(raw)
            mark = s.mark_of("pool")
            if (
                rng is None
                or not (net.network_address <= ipaddress.IPv4Address(rng[0]))
                or (ipaddress.IPv4Address(rng[1]) not in net)
                or rng[0] > rng[1]
            ):
                report.error(
                    "pool-bad-range",
                    mark,
                    f"pool {raw} is not an ascending range FIRST-LAST inside {net}",
                    f"write FIRST-LAST with both addresses in {net}, FIRST <= LAST",
                )
                continue
            pools.append((rng[0], rng[1], raw, mark))
        nets.append(_Net(net, s, pools, router, server))
    for name in sorted(missing_ifaces):
        report.note(
            "server-address-unknown",
            data.mark_of("interfaces"),
            f"interface {name!r} is not on this host (or has no IPv4 address): whether a pool or a "
            "device holds the server's own address was not checked",
            f"run `provision check` on the boot server, where {name} exists",
        )
    return nets


def _server_on(
    net: ipaddress.IPv4Network,
    iface: str | None,
    interfaces: list[str],
    here: dict[str, InterfaceAddress | None],
) -> InterfaceAddress | None:
    """Our address on `net`, as provision.server.root picks it: the subnet's interface, else a
    served interface whose address is on that network (a relayed subnet has none of ours)."""
    if iface:
        found = here.get(iface)
        return found if found is not None and found.address in net else None
    return next((a for n in interfaces if (a := here.get(n)) is not None and a.address in net), None)


def _line(mark: Mark | None) -> str:
    return str(mark.line) if mark else "?"


def _pool_rules(nets: list[_Net], report: Report) -> None:
    everything: list[tuple[int, int, str, Mark | None]] = []
    for n in nets:
        special = {n.lo: "network", n.hi: "broadcast"} if n.network.prefixlen <= 30 else {}
        for first, last, raw, mark in n.pools:
            for addr, what in special.items():
                if first <= addr <= last:
                    report.error(
                        "pool-holds-network-or-broadcast",
                        mark,
                        f"pool {raw} holds the {what} address {_dotted(addr)} of {n.network}; "
                        "a client given it cannot talk",
                        f"start the pool above {_dotted(n.lo)} and end it below {_dotted(n.hi)}",
                    )
            if n.router is not None and first <= n.router <= last:
                report.error(
                    "pool-holds-router",
                    mark,
                    f"pool {raw} holds the router address {_dotted(n.router)}",
                    "leave the router's address out of the pool",
                )
            if n.server is not None and first <= int(n.server.address) <= last:
                report.error(
                    "pool-holds-server-address",
                    mark,
                    f"pool {raw} holds {n.server.address}, this server's own address on "
                    f"{n.server.ifname}; it would be handed to a client",
                    f"leave {n.server.address} out of the pool",
                )
            everything.append((first, last, raw, mark))
    # Sorted by start, each pool is compared with the one reaching furthest so far: n log n, and
    # a long pool that spans several short ones is caught against each of them.
    everything.sort(key=lambda p: (p[0], p[1]))
    widest: tuple[int, int, str, Mark | None] | None = None
    for p in everything:
        if widest is not None and p[0] <= widest[1]:
            report.error(
                "overlapping-pools",
                p[3],
                f"pool {p[2]} overlaps pool {widest[2]} (line {_line(widest[3])})",
                "make the pools disjoint",
            )
        if widest is None or p[1] > widest[1]:
            widest = p


def _net_of(ip: int, nets: list[_Net]) -> _Net | None:
    return next((n for n in nets if n.lo <= ip <= n.hi), None)


def _device_address_rules(devices: list[Section], nets: list[_Net], report: Report) -> None:
    if not nets:
        return  # proxy mode without subnets: reserved addresses are not ours to hand out
    for d in devices:
        ip = _ip(d["ip"]) if d.get("ip") else None
        if ip is None:
            continue
        mark, name, text = d.mark_of("ip"), d.get("name") or "?", d["ip"]
        n = _net_of(ip, nets)
        if n is None:
            report.error(
                "device-ip-outside-subnets",
                mark,
                f"device {name}: {text} is in none of the subnets ("
                + ", ".join(str(x.network) for x in nets)
                + ")",
                "give it an address in one of the subnets, or add its subnet",
            )
            continue
        if n.network.prefixlen <= 30 and ip in (n.lo, n.hi):
            report.error(
                "device-ip-network-or-broadcast",
                mark,
                f"device {name}: {text} is the {'network' if ip == n.lo else 'broadcast'} address of {n.network}",
                f"pick a host address in {n.network}",
            )
        if ip == n.router:
            report.error(
                "device-ip-is-router",
                mark,
                f"device {name}: {text} is the router of {n.network}",
                "give the device its own address",
            )
        if n.server is not None and ip == int(n.server.address):
            report.error(
                "device-ip-is-server",
                mark,
                f"device {name}: {text} is this server's own address on {n.server.ifname}",
                "give the device its own address",
            )
        for first, last, raw, _ in n.pools:
            if first <= ip <= last:
                if d.get("mac") or d.get("macs"):
                    report.warning(
                        "device-ip-in-pool",
                        mark,
                        f"device {name}: {text} is inside pool {raw}; it is kept for the device's "
                        "MAC, but the pool is smaller than it looks",
                        "reserve addresses outside the pool",
                    )
                else:
                    report.error(
                        "device-ip-in-pool",
                        mark,
                        f"device {name}: {text} is inside pool {raw} and the device has no MAC, so "
                        "the pool may hand the address to another client first",
                        "reserve addresses outside the pool (or add the device's mac:)",
                    )


def _duplicates(devices: list[Section], report: Report) -> None:
    def values(d: Section, key: str) -> list[str]:
        if key == "mac":
            return [m for m in (d.get("mac"), *(d.get("macs") or [])) if m]
        v = d.get(key)
        return [str(v).strip() if key != "serial" else str(v).strip().upper()] if v else []

    for key, code in (("name", "duplicate-name"), ("mac", "duplicate-mac"), ("serial", "duplicate-serial"),
                      ("ip", "duplicate-ip")):  # fmt: skip
        first: dict[str, Section] = {}
        for d in devices:
            for v in values(d, key):
                if v in first:
                    other = first[v]
                    where = d.mark_of("macs" if key == "mac" and v != d.get("mac") else key)
                    report.error(
                        code,
                        where,
                        f"{key} {v} of device {d.get('name')!r} is also device {other.get('name')!r}'s "
                        f"(line {_line(other.mark_of(key))})",
                        f"give each device its own {key}",
                    )
                else:
                    first[v] = d


def _boot_rules(data: Section, devices: list[Section], report: Report) -> dict[str, Section]:
    boot = data.get("boot")
    entries: dict[str, Section] = {}
    if isinstance(boot, Section):
        entries = {k: v for k, v in (boot.get("entries") or {}).items() if isinstance(v, Section)}
        for name, e in entries.items():
            kernels = [(a, ks) for a in Arch if isinstance(ks := e.get(a.value), Section)]
            if not kernels and not (e.failed & {"x86_64", "arm64"}):
                report.error(
                    "boot-entry-empty",
                    e.mark,
                    f"boot entry {name!r} has neither x86_64 nor arm64",
                    "add `x86_64: {kernel: ...}` or `arm64: {kernel: ...}`",
                )
            for arch, ks in kernels:
                _kernel_set(name, arch, ks, report)
        for key in ("default", "discover"):
            _entry_ref(boot, key, entries, report)
        if boot.get("unknown") == Unknown.DISCOVER.value and not boot.get("discover"):
            report.error(
                "discover-entry-missing",
                boot.mark_of("unknown"),
                "unknown: discover needs a `discover:` entry",
                "add `discover: <entry>` naming a boot entry",
            )
    for d in devices:
        _entry_ref(d, "boot", entries, report)
    return entries


def _entry_ref(section: Section, key: str, entries: dict[str, Section], report: Report) -> None:
    name = section.get(key)
    if not name or name in entries:
        return
    close = difflib.get_close_matches(name, list(entries), n=1)
    fix = f"did you mean {close[0]!r}?" if close else "known entries: " + (", ".join(entries) or "none")
    report.error("unknown-boot-entry", section.mark_of(key), f"no boot entry {name!r}", fix)


def _kernel_set(name: str, arch: Arch, ks: Section, report: Report) -> None:
    for key, code in (("kernel", "kernel"), ("initrd", "initrd")):
        path = ks.get(key)
        if path is None:
            continue
        mark = ks.mark_of(key)
        if not Path(path).is_file():
            report.error(
                f"{code}-missing",
                mark,
                f"boot entry {name!r} ({arch.value}): {key} not found: {path}",
                "build or copy it there, or fix the path (relative paths start at the lab file's folder)",
            )
            continue
        try:
            problem = (
                bootfiles.kernel_problem(Path(path), arch.value)
                if key == "kernel"
                else bootfiles.initrd_problem(Path(path))
            )
        except OSError as exc:
            report.error(f"{code}-missing", mark, f"boot entry {name!r}: cannot read {path}: {exc.strerror}")
            continue
        if problem:
            want = (
                {"x86_64": "an x86 bzImage", "arm64": "an arm64 Image"}[arch.value]
                if key == "kernel"
                else "a cpio archive (compressed or not)"
            )
            report.error(
                "kernel-not-a-kernel" if key == "kernel" else "initrd-not-an-initrd",
                mark,
                f"boot entry {name!r} ({arch.value}): {path} {problem}, not {want}",
                "point it at the right file (a truncated download or a swapped kernel/initrd looks like this)",
            )


def _profile_rules(data: Section, devices: list[Section], registry: ProfileRegistry, report: Report) -> None:
    groups = data.get("groups") or {}
    sections = [*devices, *(g for g in groups.values() if isinstance(g, Section))]
    for s in sections:
        pid = s.get("profile")
        if not pid:
            continue
        _profile(registry, pid, report, s.mark_of("profile"))


def _profile(
    registry: ProfileRegistry, pid: str, report: Report | None, mark: Mark | None
) -> HardwareProfile | None:
    try:
        return registry.get(pid)
    except ConfigError as exc:  # a broken profile file in a profiles folder
        if report is not None:
            report.from_config_error(exc, "profile-invalid")
        return None
    except LookupError as exc:
        if report is not None:
            report.error(
                "profile-unknown",
                mark,
                str(exc).split("; ")[0],
                "`provision profiles list` shows the known ids; add your own with $PROVISION_PROFILES_DIR",
            )
        return None


def _onie_rules(data: Section, devices: list[Section], registry: ProfileRegistry, report: Report) -> None:
    onie = data.get("onie")
    if not isinstance(onie, Section):
        if any(d.get("installer") for d in devices):
            d = next(d for d in devices if d.get("installer"))
            report.warning(
                "installer-pin-without-onie",
                d.mark_of("installer"),
                f"device {d.get('name')} pins an installer but lab.yml has no `onie:` section",
                "add `onie: {installers: <folder>}`, or drop installer:",
            )
        return
    folder = onie.get("installers")
    if folder is None:
        return
    if not Path(folder).is_dir():
        report.error(
            "installers-folder-missing",
            onie.mark_of("installers"),
            f"installers folder not found: {folder}",
            "create it and build installers into it (`provision onie-installer switch.yml -o <folder>`), "
            "or fix the path (relative paths start at the lab file's folder)",
        )
        return
    catalog = Catalog(Path(folder))
    platform_of: dict[str, str | None] = {}  # device serial/MAC -> its profile's platform
    pins: list[tuple[str, str | None, Mark | None, str]] = []
    for d in devices:
        profile = _profile(registry, d["profile"], None, None) if d.get("profile") else None
        platform = profile.onie_platform if profile else None
        for key in (d.get("serial"), d.get("mac"), *(d.get("macs") or [])):
            if key:
                platform_of[str(key).lower()] = platform
        if d.get("installer"):
            pins.append((d["installer"], platform, d.mark_of("installer"), f"device {d.get('name')}"))
    for plat, pin in (onie.get("platforms") or {}).items():
        pins.append((pin, plat, onie["platforms"].mark_of(plat), f"onie.platforms {plat}"))
    for key, pin in (onie.get("devices") or {}).items():
        plat = platform_of.get(str(key).lower())
        pins.append((pin, plat, onie["devices"].mark_of(key), f"onie.devices {key}"))
    for key, pin in (onie.get("switch_ports") or {}).items():
        pins.append((pin, None, onie["switch_ports"].mark_of(key), f"onie.switch_ports {key}"))
    for pin, platform, mark, who in pins:
        choice = catalog.resolve_pin(pin, platform)
        if choice.entry is not None:
            continue
        wrong = " is for " in choice.reason
        have = ", ".join(e.label for e in catalog.entries()[:8]) or "none"
        report.error(
            "installer-pin-wrong-platform" if wrong else "installer-pin-not-found",
            mark,
            f"{who}: {choice.reason}",
            "pin an installer built for this platform"
            if wrong
            else f"pin a file name or NOS version that is in {folder} (there: {have})",
        )


def _bmc_rules(devices: list[Section], report: Report) -> None:
    for d in devices:
        bmc = d.get("bmc")
        if not isinstance(bmc, Section):
            continue
        url = str(bmc.get("url") or "")
        creds = any(bmc.get(k) for k in ("username", "username_env", "password_env", "password_file"))
        if creds and url.startswith(("redfish+http://", "http://")):
            report.warning(
                "bmc-credentials-in-clear",
                bmc.mark_of("url"),
                f"device {d.get('name')}: BMC credentials go over plain HTTP ({url.split('://')[0]}://): "
                "anyone on the path reads them",
                "use redfish:// (HTTPS; `insecure: true` or `ca_cert:` for a self-signed BMC)",
            )
        env = bmc.get("password_env")
        if env and not env.isupper():
            # Environment variable names are upper case by convention; a mixed-case value is far
            # more often the password itself. Never echo it.
            report.warning(
                "password-env-not-a-name",
                bmc.mark_of("password_env"),
                f"device {d.get('name')}: password_env should name an environment variable (such "
                "as BMC_PASSWORD); this value does not look like one (not shown: it may be the password)",
                "write the variable's name, export the password in it, and change the password if it "
                "was committed",
            )


# --- switch.yml ---------------------------------------------------------------------------------


def _check_switch(text: str, path: Path, report: Report, registry: ProfileRegistry) -> None:
    data = _schema(text, path, SPEC, report)
    if data is None:
        return
    profiles: list[HardwareProfile] = []
    for pid in data.get("platforms") or []:
        p = _profile(registry, pid, report, data.mark_of("platforms"))
        if p is not None:
            profiles.append(p)
    arches = {p.arch for p in profiles}
    payload = data.get("payload")
    if isinstance(payload, Section):
        kernel, initrd = payload.get("kernel"), payload.get("initrd")
        if payload.get("linuxkit") is not None:
            prefix = Path(payload["linuxkit"])
            kernel = kernel or prefix.with_name(prefix.name + "-kernel")
            initrd = initrd or prefix.with_name(prefix.name + "-initrd.img")
        arch = next(iter(arches)) if len(arches) == 1 else None
        for key, value, fn, code, want in (
            (
                "kernel",
                kernel,
                lambda p: bootfiles.kernel_problem(p, arch),
                "kernel-not-a-kernel",
                "a kernel",
            ),
            ("initrd", initrd, bootfiles.initrd_problem, "initrd-not-an-initrd", "a cpio archive"),
            ("rootfs", payload.get("rootfs"), bootfiles.squashfs_problem, "rootfs-not-squashfs", "squashfs"),
        ):
            if value is None or not Path(value).is_file():
                continue  # missing files: the schema pass or load_switch_spec says so
            problem = fn(Path(value))
            if problem:
                mark = payload.mark_of(key if key in payload.key_marks else "linuxkit")
                report.error(
                    code,
                    mark,
                    f"payload {key} {value} {problem}, not {want}",
                    "point it at the right file (a truncated build output or a swapped file looks like this)",
                )
    if report.errors:
        return  # the loader below stops at the first error; the schema's are all listed already
    try:
        spec = load_switch_spec(path)
        resolve_platforms(spec, registry)
    except ConfigError as exc:
        report.from_config_error(exc, "switch-spec-invalid")
        return
    total = sum(p.size or MIN_PARTITION for p in spec.spec.layout.partitions)
    for p in profiles:
        firmware = Firmware.BIOS if p.firmware == "bios" else Firmware.UEFI
        need = total + sum(k.size for k in onie_partitions(firmware))
        where = data.mark_of("partitions") if data.get("partitions") is not None else data.mark
        if p.disk_min_size is None:
            report.note(
                "disk-size-unknown",
                where,
                f"profile {p.id} does not say how large its disk is (disk.min_size): the layout "
                f"({_gib(need)} with ONIE's partitions) was not checked against it",
                f"add `disk: {{min_size: ...}}` to the {p.id} profile",
            )
        elif need > p.disk_min_size:
            report.error(
                "layout-larger-than-disk",
                where,
                f"the partitions need {_gib(need)} with ONIE's own, more than {p.id}'s disk "
                f"({_gib(p.disk_min_size)})",
                "shrink the partitions (size: 0 on the last one takes the rest of the disk)",
            )


def _gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size // 1024**2} MiB"


# Every code this module can report; docs/lab.md lists each (a test keeps the two equal).
RULES = (
    "yaml-syntax", "yaml-too-deep", "file-unreadable", "file-too-large", "unknown-key",
    "duplicate-key", "missing-key", "bad-value", "duplicate-item", "file-missing", "folder-missing",
    "no-subnet", "duplicate-network", "overlapping-subnets", "subnet-interface-unknown",
    "router-outside-subnet", "pool-bad-range", "pool-holds-network-or-broadcast", "pool-holds-router",
    "pool-holds-server-address", "server-address-unknown", "overlapping-pools",
    "device-ip-outside-subnets", "device-ip-network-or-broadcast", "device-ip-is-router",
    "device-ip-is-server", "device-ip-in-pool", "duplicate-name", "duplicate-mac", "duplicate-serial",
    "duplicate-ip", "boot-entry-empty", "unknown-boot-entry", "discover-entry-missing", "kernel-missing",
    "initrd-missing", "kernel-not-a-kernel", "initrd-not-an-initrd", "profile-unknown", "profile-invalid",
    "profiles-folder-missing", "installers-folder-missing", "installer-pin-not-found",
    "installer-pin-wrong-platform", "installer-pin-without-onie", "bmc-credentials-in-clear",
    "password-env-not-a-name", "rootfs-not-squashfs", "layout-larger-than-disk", "disk-size-unknown",
    "switch-spec-invalid",
)  # fmt: skip


__all__ = ["ERROR", "NOTE", "RULES", "WARNING", "Report", "check_config", "check_file"]
