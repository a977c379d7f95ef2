"""The one decision point: front ends build a `Client`, the policy answers a `BootDecision`.

Shape taken from pixiecore's Booter: `decide(client) -> BootDecision | None`, where None means
"not ours: stay silent" (another server on the link may own this machine).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from typing import Protocol as _TypingProtocol

from onie.identity import OnieIdentity


class Protocol(enum.Enum):
    DHCP = "dhcp"
    PROXYDHCP = "proxydhcp"
    TFTP = "tftp"
    HTTP = "http"


@dataclass(frozen=True)
class Client:
    """What we know of who is asking. Everything but mac and protocol may be unknown."""

    mac: str  # lower-case, colon separated
    protocol: Protocol
    arch: int | None = None  # DHCP option 93 (NETBOOT.md table); None when not sent
    vendor_class: str | None = None  # option 60
    user_class: str | None = None  # option 77 (first RFC 3004 item, decoded)
    is_ipxe: bool = False  # option 77 == "iPXE" or option 175 present
    client_id: bytes | None = None  # option 61
    uuid: str | None = None  # option 97
    circuit_id: bytes | None = None  # option 82 sub-option 1 (switch port)
    remote_id: bytes | None = None  # option 82 sub-option 2
    relay: str | None = None  # giaddr when relayed
    ip: str | None = None  # source address (TFTP/HTTP) or ciaddr
    onie: OnieIdentity | None = None  # set when the request looks like ONIE discovery
    # Our interface the request came in on (DHCP: the receiving socket's interface / IP_PKTINFO
    # ifindex); None when the front end does not know. With several directly attached links it is
    # the only thing that says which of our addresses an unknown, address-less client can reach.
    interface: str | None = None
    path: str | None = None  # requested file (TFTP/HTTP)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_http_boot(self) -> bool:
        return bool(self.vendor_class and self.vendor_class.startswith("HTTPClient"))


@dataclass(frozen=True)
class BootDecision:
    """What to give a client. Fields left None are not sent."""

    hostname: str | None = None
    ip: str | None = None  # a reserved address; None: take one from the pool
    bootfile: str | None = None  # DHCP option 67 / `file`: a TFTP path or, for HTTP boot, a URL
    next_server: str | None = None  # siaddr; None: this server's address on that link
    onie_installer_url: str | None = None  # ONIE: option 114 and option 125 (42623) sub-option 1
    extra_options: Mapping[int, bytes] = field(default_factory=dict)
    lease_time: int | None = None  # seconds; None: the subnet default
    note: str = ""  # why this decision was taken, for logs and events


@dataclass(frozen=True)
class RenderedFile:
    """The policy's answer for one requested path, instead of the plain file tree.

    Either `content` (a per-device iPXE script or grub.cfg rendered in memory) or `path` (a file on
    disk chosen per device, e.g. the ONIE installer for this switch's platform, sent with sendfile).
    `found=False` is a deliberate "not here" (HTTP 404 / TFTP error 1): ONIE's name waterfall needs
    it so that a switch moves on to the next name instead of taking another platform's installer.
    """

    content: bytes | None = None
    path: Path | None = None
    content_type: str = "application/octet-stream"
    found: bool = True

    @classmethod
    def not_found(cls) -> RenderedFile:
        return cls(found=False)


@dataclass(frozen=True)
class Event:
    kind: str  # e.g. dhcp.offer, dhcp.ack, tftp.sent, http.sent, onie.discovered, installer.fetched
    mac: str | None = None
    ip: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


EventSink = Callable[[Event], None]


class Policy(_TypingProtocol):
    def decide(self, client: Client) -> BootDecision | None: ...

    def render(self, client: Client, path: str) -> RenderedFile | None:
        """A per-device answer for `path`, or None to fall back to the server's file tree."""
        ...
