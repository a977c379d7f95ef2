"""Typed configuration of the DHCP server: plain frozen objects the caller builds (no YAML here)."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from functools import cached_property

DEFAULT_LEASE_TIME = 3600


class Mode(enum.Enum):
    """Chosen once at start, like smee's two handlers behind one `handle(packet)`."""

    AUTHORITATIVE = "authoritative"  # we hand out addresses and boot information
    PROXY = "proxy"  # another server hands out addresses; we add boot information [PXE 2.1 §2.2]


@dataclass(frozen=True)
class Subnet:
    """One IPv4 subnet we serve. `pools` are inclusive (first, last) ranges inside `network`.

    `interface` ties a directly attached subnet to the interface its clients arrive on; relayed
    subnets (reached through giaddr or option 82.5) leave it None. `server_ip` is our address the
    clients reach (option 54, siaddr); None: the address of `interface`, found at start.

    `relays`: the relay agents allowed to speak for this subnet, by the IP source address their
    relayed packets come from. A packet with giaddr set is served only when its source is listed
    for the subnet it selects; only then are option 82.5 (link selection) and 82.11 (server-id
    override) honoured (docs/netboot.md "DHCP hardening").
    """

    network: str  # e.g. "198.18.0.0/24"
    pools: tuple[tuple[str, str], ...] = ()
    router: str | None = None
    dns: tuple[str, ...] = ()
    domain: str | None = None
    lease_time: int = DEFAULT_LEASE_TIME
    server_ip: str | None = None
    interface: str | None = None
    relays: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        net = ipaddress.IPv4Network(self.network, strict=False)
        object.__setattr__(self, "network", str(net))
        # normalised dotted quads: compared as strings with the source address recvmsg gives
        object.__setattr__(self, "relays", tuple(str(ipaddress.IPv4Address(r)) for r in self.relays))
        for first, last in self.pools:
            a, b = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
            if a not in net or b not in net or int(a) > int(b):
                raise ValueError(f"pool {first}-{last} is not an ordered range inside {net}")
        if self.lease_time <= 0:
            raise ValueError("lease_time must be positive")

    @cached_property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.network)

    @cached_property
    def bounds(self) -> tuple[int, int]:
        """First and last address of the network as integers (fast membership tests)."""
        return int(self.net.network_address), int(self.net.broadcast_address)

    @cached_property
    def relay_set(self) -> frozenset[str]:
        return frozenset(self.relays)

    def contains(self, ip: int) -> bool:
        lo, hi = self.bounds
        return lo <= ip <= hi


@dataclass(frozen=True)
class Reservation:
    """A fixed address for one MAC; reserved addresses are never handed to anyone else."""

    mac: str
    ip: str
    hostname: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", self.mac.lower().replace("-", ":"))
        ipaddress.IPv4Address(self.ip)


@dataclass(frozen=True)
class DhcpServerConfig:
    """`interfaces`: where to listen (SO_BINDTODEVICE); nothing is bound on other interfaces.

    `authoritative`: NAK a REQUEST outside SELECTING for the wrong network or for an address live
    with another client even when we have no record of the requester; False: silence then. With no
    record and neither case, we are silent either way (RFC 2131 §4.3.2, docs/netboot.md).
    """

    interfaces: tuple[str, ...]
    subnets: tuple[Subnet, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    mode: Mode = Mode.AUTHORITATIVE
    authoritative: bool = True
    offer_timeout: float = 30.0  # how long an offered address stays promised to its client
    decline_quarantine: float = 600.0  # RFC 2131 §4.3.3: mark a declined address as unusable
    port: int = 67
    proxy_port: int = 4011  # proxy mode only: the UEFI second stage [PXE 2.1 §2.2]
    max_batch: int = 64  # datagrams handled per wake-up before one durable commit
