"""The `onie:` section of lab.yml: where installers live and how switches are answered.

Validated with the rest of lab.yml (file:line errors), then turned into `OnieSettings`, which the
ONIE policy (provision.onie.policy) takes as it is. docs/onie.md says what each discovery mode
puts in the DHCP answer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from onie.platform import normalise_mac
from provision.config.inventory import Inventory
from provision.config.schema import URL, Bool, Enum, Field, FilePath, Map, Obj, Section, Str


class DiscoveryMode(enum.Enum):
    """How much of ONIE's discovery order the DHCP answer uses (docs/onie.md "Discovery")."""

    EXACT = "exact"  # option 125.1 + 114 = the URL; plus 72 when the HTTP server is on port 80
    INEXACT = "inexact"  # option 72 (port 80 only) and bootfile = the default name: HTTP names, then TFTP
    TFTP = "tftp"  # siaddr + bootfile name only: ONIE's tftp_download
    WATERFALL = "waterfall"  # a lease only: ONIE walks the TFTP waterfall on siaddr


ONIE = Obj(
    {
        "installers": Field(
            FilePath(must_exist=False, kind="folder"),
            required=True,
            doc="folder of installers (what `provision onie-installer` writes: onie-installer-<platform>.bin)",
        ),
        "discovery": Field(
            Enum(*(m.value for m in DiscoveryMode)),
            default=DiscoveryMode.EXACT.value,
            doc="exact: URL in options 125/114; inexact: option 72 + names; tftp: bootfile; waterfall: lease only",
        ),
        "url": Field(
            URL(("http",)),
            default=None,
            doc="base URL switches reach our HTTP server at (default: the HTTP address `serve` listens on)",
        ),
        "platforms": Field(
            Map(Str()),
            default_factory=dict,
            doc="ONIE platform -> installer file or NOS version (default per platform)",
        ),
        "devices": Field(
            Map(Str()), default_factory=dict, doc="serial number or MAC -> installer file or NOS version"
        ),
        "switch_ports": Field(
            Map(Str()),
            default_factory=dict,
            doc="option 82 circuit-id (switch port) -> installer file or NOS version",
        ),
        "unknown": Field(
            Enum("ignore", "install"),
            default=None,
            doc="a switch in no inventory: ignore (a lease, no installer) or install (zero-touch). "
            "Default: ignore when the lab lists devices, install when it lists none",
        ),
        "report": Field(
            Bool(),
            default=True,
            doc="accept installers' progress reports at /api/v1/report (false: that endpoint answers "
            "404 and records nothing; installers ignore it and install anyway)",
        ),
    },
    name="onie",
)


@dataclass(frozen=True)
class OnieSettings:
    installers: Path | None = None
    discovery: DiscoveryMode = DiscoveryMode.EXACT
    url: str | None = None
    platforms: Mapping[str, str] = field(default_factory=dict)
    devices: Mapping[str, str] = field(default_factory=dict)  # serial or normalised MAC -> pin
    switch_ports: Mapping[str, str] = field(default_factory=dict)
    report: bool = True
    unknown: str | None = None  # "ignore" | "install" | None: by whether the inventory lists devices

    def unknown_install(self, inventory: Inventory | None) -> bool:
        """Whether a switch in no inventory may install: zero-touch for a brand-new rack stays one
        line away (`unknown: install`), and the safe default holds once the lab lists devices."""
        if self.unknown is not None:
            return self.unknown == "install"
        return inventory is None or not inventory.devices


def settings_from_section(section: Section | None) -> OnieSettings:
    """The validated `onie:` section (or None when lab.yml has none) as settings."""
    if not section:
        return OnieSettings()
    devices = {}
    for key, value in section["devices"].items():
        mac = normalise_mac(key)
        devices[mac or key] = value
    return OnieSettings(
        installers=section["installers"],
        discovery=DiscoveryMode(section["discovery"]),
        url=section["url"],
        platforms=dict(section["platforms"]),
        devices=devices,
        switch_ports=dict(section["switch_ports"]),
        report=section["report"],
        unknown=section["unknown"],
    )
