"""The one decision point: front ends build a `Client`, the policy answers a `BootDecision`.

Shape taken from pixiecore's Booter: `decide(client) -> BootDecision | None`, where None means
"not ours: stay silent" (another server on the link may own this machine), and
`render(client, path) -> RenderedFile | None`, where None means "serve the plain file tree".
`pxe` knows no application: what a vendor protocol (ONIE's options 114/125, say) needs rides in
`Client.options` on the way in and in `BootDecision.extra_options` on the way out.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pxe.frozen import fast_init


class Service(enum.Enum):
    """Which front end built the Client."""

    DHCP = "dhcp"
    PROXYDHCP = "proxydhcp"
    TFTP = "tftp"
    HTTP = "http"


@fast_init  # built per DHCP packet: pxe/frozen.py
@dataclass(frozen=True)
class Client:
    """What the wire said about who is asking. Everything but mac and service may be unknown."""

    mac: str  # lower-case, colon separated; "" when a TFTP/HTTP request cannot be tied to one
    service: Service
    arch: int | None = None  # DHCP option 93, first entry (docs/netboot.md table); None when not sent
    vendor_class: str | None = None  # option 60
    user_class: str | None = None  # option 77 (first RFC 3004 item, decoded)
    is_ipxe: bool = False  # option 77 == "iPXE" or option 175 present
    client_id: bytes | None = None  # option 61
    uuid: str | None = None  # option 97
    circuit_id: bytes | None = None  # option 82 sub-option 1 (switch port)
    remote_id: bytes | None = None  # option 82 sub-option 2
    relay: str | None = None  # giaddr when relayed
    ip: str | None = None  # source address (TFTP/HTTP) or ciaddr
    # Our address as this client reaches it: the DHCP server's choice for siaddr/option 54 (the
    # subnet's server address, else the receiving link's), the address a TFTP or HTTP request came
    # in on. URLs a policy builds for this client use it, so they always agree with siaddr.
    server_ip: str | None = None
    # Our interface the request came in on (DHCP: the receiving socket's interface / IP_PKTINFO
    # ifindex); None when the front end does not know.
    interface: str | None = None
    path: str | None = None  # requested file (TFTP/HTTP)
    headers: Mapping[str, str] = field(default_factory=dict)  # HTTP request headers
    options: Mapping[int, bytes] = field(default_factory=dict)  # every DHCP option, as received

    @property
    def is_http_boot(self) -> bool:
        return bool(self.vendor_class and self.vendor_class.startswith("HTTPClient"))


@fast_init  # built per DHCP packet: pxe/frozen.py
@dataclass(frozen=True)
class BootDecision:
    """What to give a client. Fields left None are not sent."""

    hostname: str | None = None
    ip: str | None = None  # a reserved address; None: take one from the pool
    bootfile: str | None = None  # DHCP option 67 / `file`: a TFTP path or, for HTTP boot, a URL
    next_server: str | None = None  # siaddr; None: this server's address on that link
    # Further options for OFFER/ACK, written as given (after the boot options, so they win).
    extra_options: Mapping[int, bytes] = field(default_factory=dict)
    lease_time: int | None = None  # seconds; None: the subnet default
    note: str = ""  # why this decision was taken, for logs and events


@dataclass(frozen=True)
class RenderedFile:
    """The policy's answer for one requested path, instead of the plain file tree.

    Either `content` (a per-device iPXE script or grub.cfg rendered in memory) or `path` (a file on
    disk chosen per device, e.g. an installer for this machine's platform, sent with sendfile).
    `found=False` is a deliberate "not here" (HTTP 404 / TFTP error 1): a client walking a list of
    names (ONIE's waterfall) then moves on instead of taking a file meant for another machine.
    """

    content: bytes | None = None
    path: Path | None = None
    content_type: str = "application/octet-stream"
    found: bool = True

    @classmethod
    def not_found(cls) -> RenderedFile:
        return cls(found=False)


@fast_init  # built per DHCP packet: pxe/frozen.py
@dataclass(frozen=True)
class Event:
    kind: str  # e.g. dhcp.offer, dhcp.ack, tftp.sent, http.sent (the application adds its own)
    mac: str | None = None
    ip: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


EventSink = Callable[[Event], None]


class Policy(Protocol):
    def decide(self, client: Client) -> BootDecision | None:
        """What to give this client, or None: not ours, stay silent (an event still records it)."""
        ...

    def render(self, client: Client, path: str) -> RenderedFile | None:
        """A per-device answer for `path`, or None to fall back to the server's file tree."""
        ...
