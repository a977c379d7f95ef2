"""The inventory: the devices an operator knows by name, with what identifies them and their BMC.

It lives under `devices:` in lab.yml (or in any YAML file with a top-level `devices:` list), so
`provision power cycle leaf-01 -i lab.yml` and `provision serve lab.yml` read the same list.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from provision.config import (
    URL,
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

BMC = Obj(
    {
        "url": Field(
            URL(("redfish", "redfish+http", "https", "http", "ipmi")),
            required=True,
            doc="redfish://host[:port] (HTTPS), redfish+http://host for plain HTTP, ipmi://host[:port]",
        ),
        "username": Field(Str(), default=None),
        "username_env": Field(Str(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name"), default=None),
        "password_env": Field(Str(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name"), default=None),
        "password_file": Field(FilePath(must_exist=False), default=None),
        "insecure": Field(Bool(), default=False, doc="skip TLS verification for this BMC only"),
        "ca_cert": Field(FilePath(), default=None),
        "fingerprint": Field(
            Str(r"(sha256:)?[0-9A-Fa-f:]{64,95}", "a SHA-256 certificate fingerprint"), default=None
        ),
        "timeout": Field(Int(1, 3600), default=60),
        "connect_timeout": Field(Int(1, 600), default=10),
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
        "bmc": Field(BMC, default=None),
    },
    name="device",
)


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
    bmc: BmcConfig | None = None
    mark: Mark | None = field(default=None, compare=False, repr=False)

    @property
    def all_macs(self) -> tuple[str, ...]:
        return tuple(m for m in (self.mac, *self.macs) if m)


def device_from_section(data: Section) -> Device:
    bmc = BmcConfig(**data["bmc"]) if data["bmc"] else None
    fields = {k: v for k, v in data.items() if k not in ("bmc", "macs")}
    return Device(**fields, macs=tuple(data["macs"]), bmc=bmc, mark=data.mark)


def devices_from_list(items: list[Section]) -> list[Device]:
    devices = [device_from_section(s) for s in items]
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

    def get(self, name: str) -> Device:
        if name not in self._by_name:
            close = difflib.get_close_matches(name, list(self._by_name), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            where = f" in {self.source}" if self.source else ""
            raise KeyError(f"no device {name!r}{where}{hint}")
        return self._by_name[name]

    def by_mac(self, mac: str) -> Device | None:
        mac = mac.lower()
        for d in self.devices:
            if mac in d.all_macs:
                return d
        return None


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
