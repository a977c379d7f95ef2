"""The inventory: the devices an operator knows by name, with what identifies them and their BMC.

It lives under `devices:` in lab.yml (or in any YAML file with a top-level `devices:` list), so
`provision power cycle leaf-01 -i lab.yml` and `provision serve lab.yml` read the same list.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from provision.config import (
    Bool,
    ConfigError,
    Enum,
    Field,
    FilePath,
    Int,
    IPv4Addr,
    List,
    MacAddr,
    Mark,
    Obj,
    Section,
    Str,
)
from provision.config.schema import Context, _compose
from provision.config.secret_fields import EnvVarName, SecretFreeURL

INSTALL_MODES = ("armed", "always", "never")

BMC = Obj(
    {
        "url": Field(
            SecretFreeURL(("redfish", "redfish+http", "https", "http", "ipmi")),
            required=True,
            doc="redfish://host[:port] (HTTPS), redfish+http://host for plain HTTP, ipmi://host[:port]",
        ),
        "username": Field(Str(), default=None),
        "username_env": Field(EnvVarName(), default=None),
        "password_env": Field(EnvVarName(), default=None),
        "password_file": Field(FilePath(must_exist=False), default=None),
        "insecure": Field(Bool(), default=False, doc="skip TLS verification for this BMC only"),
        "ca_cert": Field(FilePath(), default=None),
        "fingerprint": Field(
            Str(r"(sha256:)?[0-9A-Fa-f:]{64,95}", "a SHA-256 certificate fingerprint"), default=None
        ),
        "timeout": Field(Int(1, 3600), default=60),
        "connect_timeout": Field(Int(1, 600), default=10),
        "system": Field(Str(), default=None, doc="Systems member Id, where the BMC manages several"),
    },
    name="bmc",
)

DEVICE = Obj(
    {
        "name": Field(Str(r"[A-Za-z0-9][A-Za-z0-9_.-]*", "a device name such as leaf-01"), required=True),
        "mac": Field(MacAddr(), default=None, doc="the boot NIC's MAC"),
        "macs": Field(List(MacAddr()), default_factory=list, doc="more MACs of the same device"),
        "serial": Field(Str(), default=None),
        "ip": Field(IPv4Addr(), default=None, doc="reserved address"),
        "hostname": Field(Str(), default=None),
        "profile": Field(Str(), default=None, doc="hardware profile id"),
        "switch_port": Field(Str(), default=None, doc="DHCP option 82 circuit-id of the port it hangs off"),
        "boot": Field(Str(), default=None, doc="name of a boot entry in lab.yml"),
        "installer": Field(Str(), default=None, doc="pin an installer file or NOS version for this device"),
        "role": Field(Enum("switch", "server", "virtual"), default=None),
        "platform": Field(Str(), default=None, doc="ONIE platform it must report (else its profile's)"),
        "install": Field(
            Enum(*INSTALL_MODES),
            default=None,
            doc="armed (default): install only when armed, once; always: on every boot; never",
        ),
        "group": Field(Str(), default=None, doc="a `groups:` entry whose settings it takes"),
        "site": Field(Str(), default=None),
        "rack": Field(Str(), default=None),
        "position": Field(Str(), default=None),
        "asset_tag": Field(Str(), default=None),
        "tags": Field(
            List(Str(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*", "a tag such as tor or pod-2")),
            default_factory=list,
            doc="free labels (NetBox's tags); a rollout plan can select on them",
        ),
        "bmc": Field(BMC, default=None),
    },
    name="device",
)


GROUP = Obj(
    {
        "install": Field(Enum(*INSTALL_MODES), default=None, doc="install mode of the group's devices"),
        "boot": Field(Str(), default=None, doc="boot entry of the group's servers"),
        "installer": Field(Str(), default=None, doc="installer pin of the group's switches"),
        "profile": Field(Str(), default=None),
        "platform": Field(Str(), default=None),
        "role": Field(Enum("switch", "server", "virtual"), default=None),
    },
    name="group",
)
GROUP_KEYS = ("install", "boot", "installer", "profile", "platform", "role")


@dataclass(frozen=True)
class BmcConfig:
    url: str
    username: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    insecure: bool = False
    ca_cert: Path | None = None
    fingerprint: str | None = None
    timeout: int = 60
    connect_timeout: int = 10
    system: str | None = None


@dataclass(frozen=True)
class Device:
    name: str
    mac: str | None = None
    macs: tuple[str, ...] = ()
    serial: str | None = None
    ip: str | None = None
    hostname: str | None = None
    profile: str | None = None
    switch_port: str | None = None
    boot: str | None = None
    installer: str | None = None
    role: str | None = None
    platform: str | None = None
    install: str | None = None  # None: the group's, else "armed"
    group: str | None = None
    site: str | None = None
    rack: str | None = None
    position: str | None = None
    asset_tag: str | None = None
    tags: tuple[str, ...] = ()
    bmc: BmcConfig | None = None
    source: str = "lab"  # lab: lab.yml's devices; store: enrolled with `provision devices`
    mark: Mark | None = field(default=None, compare=False, repr=False)

    @property
    def all_macs(self) -> tuple[str, ...]:
        return tuple(m for m in (self.mac, *self.macs) if m)


def device_from_section(data: Section) -> Device:
    bmc = BmcConfig(**data["bmc"]) if data["bmc"] else None
    fields = {k: v for k, v in data.items() if k not in ("bmc", "macs", "tags")}
    return Device(**fields, macs=tuple(data["macs"]), tags=tuple(data["tags"]), bmc=bmc, mark=data.mark)


def with_group(dev: Device, group: Mapping[str, str | None]) -> Device:
    """The device with its group's settings where it has none of its own."""
    inherited = {k: group.get(k) for k in GROUP_KEYS if getattr(dev, k) is None and group.get(k) is not None}
    return replace(dev, **inherited) if inherited else dev  # type: ignore[arg-type]


def devices_from_list(items: list[Section], groups: Section | None = None) -> list[Device]:
    """Devices of a `devices:` list; a device's unset fields come from its `group:` (lab.yml `groups:`)."""
    devices = [device_from_section(s) for s in items]
    if groups is not None:
        for i, (dev, section) in enumerate(zip(devices, items, strict=True)):
            if dev.group is None:
                continue
            group = groups.get(dev.group)
            if group is None:
                close = difflib.get_close_matches(dev.group, list(groups), n=1)
                fix = f"did you mean {close[0]!r}?" if close else "add it under `groups:`"
                raise section.error("group", f"no group {dev.group!r}", fix)
            devices[i] = with_group(dev, {k: group[k] for k in GROUP_KEYS})
    seen: dict[str, Device] = {}
    for dev, section in zip(devices, items, strict=True):
        for key in (dev.name, *dev.all_macs):
            if key in seen:
                raise section.error(
                    None,
                    f"{key!r} is used by both {seen[key].name!r} and {dev.name!r}",
                    "give each device its own name and MAC",
                )
            seen[key] = dev
    return devices


class Inventory:
    def __init__(self, devices: list[Device], source: Path | None = None):
        self.devices = devices
        self.source = source
        self._by_name = {d.name: d for d in devices}
        # MAC and serial indexes, built on first use: a lookup per DHCP packet and per status row
        # was a scan of every device (status of 2,000 devices took 5 s in bench/web.py).
        self._index: tuple[int, dict[str, Device], dict[str, Device]] | None = None

    def _indexes(self) -> tuple[dict[str, Device], dict[str, Device]]:
        if self._index is None or self._index[0] != len(self.devices):
            macs: dict[str, Device] = {}
            serials: dict[str, Device] = {}
            for d in self.devices:  # the first device listed wins, as the scan it replaces
                for m in d.all_macs:
                    macs.setdefault(m.lower(), d)
                if d.serial:
                    serials.setdefault(d.serial.casefold(), d)
            self._index = (len(self.devices), macs, serials)
        return self._index[1], self._index[2]

    def get(self, name: str) -> Device:
        if name not in self._by_name:
            close = difflib.get_close_matches(name, list(self._by_name), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            where = f" in {self.source}" if self.source else ""
            raise KeyError(f"no device {name!r}{where}{hint}")
        return self._by_name[name]

    def named(self, name: str) -> Device | None:
        return self._by_name.get(name)

    def by_mac(self, mac: str) -> Device | None:
        return self._indexes()[0].get(mac.lower())

    def by_serial(self, serial: str | None) -> Device | None:
        if not serial:
            return None
        return self._indexes()[1].get(serial.casefold())

    def by_switch_port(self, circuit_id: str | None) -> Device | None:
        if not circuit_id:
            return None
        for d in self.devices:
            if d.switch_port and d.switch_port == circuit_id:
                return d
        return None

    def find(
        self, mac: str | None = None, serial: str | None = None, circuit_id: str | None = None
    ) -> Device | None:
        """The device by serial, else MAC, else the switch port it hangs off (option 82 circuit-id):
        the serial first because a switch's management MAC can change with a replaced board."""
        return (
            self.by_serial(serial) or (self.by_mac(mac) if mac else None) or self.by_switch_port(circuit_id)
        )

    def merged(self, extra: list[Device]) -> Inventory:
        """This inventory plus `extra` (enrolled devices); a name, MAC or serial already here wins."""
        taken = {d.name for d in self.devices}
        macs = {m for d in self.devices for m in d.all_macs}
        serials = {d.serial.casefold() for d in self.devices if d.serial}
        kept = [
            d
            for d in extra
            if d.name not in taken
            and not (set(d.all_macs) & macs)
            and not (d.serial and d.serial.casefold() in serials)
        ]
        return Inventory([*self.devices, *kept], self.source)


def load_inventory(path: Path | str) -> Inventory:
    """Read the `devices:` list of any YAML file (lab.yml or a plain inventory), ignoring other keys."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            None, f"{path}: cannot read: {exc}", "check the path given with -i/--inventory"
        ) from None
    node = _compose(text, path)
    ctx = Context(path)
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(Mark(path, 1, 1), "expected a mapping with a `devices:` list", "add `devices:`")
    for knode, vnode in node.value:
        if isinstance(knode, yaml.ScalarNode) and knode.value == "devices":
            return Inventory(devices_from_list(List(DEVICE).check(vnode, ctx)), path)
    raise ConfigError(
        Mark(path, 1, 1), "no `devices:` list in this file", "add `devices:` with one entry per machine"
    )
