"""An interface's IPv4 address, netmask, MAC and state, from the kernel by ioctl (stdlib only).

One answer for both layers: pxe's DHCP server asks which address to stamp as server identifier on
each link, provision's host networking asks the same to check and explain a configuration. The
ioctls read the caller's network namespace, as netlink would, without a netlink library.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass

# <linux/sockios.h>
SIOCGIFFLAGS = 0x8913
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
SIOCGIFHWADDR = 0x8927
IFF_UP = 0x1  # <linux/if.h>
ARPHRD_ETHER = 1  # <linux/if_arp.h>
ARPHRD_LOOPBACK = 772
_IFNAMSIZ = 16  # struct ifreq: ifr_name[IFNAMSIZ], then a 24-byte union (ifr_addr, ifr_flags, ...)


@dataclass(frozen=True)
class InterfaceAddress:
    ifname: str
    index: int
    address: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    mac: str | None = None  # None for links without an Ethernet-style address (tun, ip6tnl)
    up: bool = True


def interface_names() -> list[str]:
    """Every interface in this network namespace, in index order."""
    return [name for _, name in sorted(socket.if_nameindex())]


def _ifreq(sock: socket.socket, request: int, ifname: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, struct.pack("256s", ifname.encode()[: _IFNAMSIZ - 1]))


def ipv4_address(ifname: str) -> str | None:
    """Only the primary IPv4 address of `ifname` (one ioctl), or None: what the DHCP server
    stamps as its identifier on that link, asked again while the link has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            return socket.inet_ntoa(_ifreq(s, SIOCGIFADDR, ifname)[20:24])
        except OSError:
            return None


def interface_ipv4(ifname: str) -> InterfaceAddress | None:
    """The primary IPv4 address of `ifname` and its network; None if there is no such interface
    or it has no IPv4 address (yet)."""
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            addr = _ifreq(s, SIOCGIFADDR, ifname)[20:24]  # sockaddr_in.sin_addr
            mask = _ifreq(s, SIOCGIFNETMASK, ifname)[20:24]
            flags = struct.unpack_from("H", _ifreq(s, SIOCGIFFLAGS, ifname), _IFNAMSIZ)[0]
            hw = _ifreq(s, SIOCGIFHWADDR, ifname)
        except OSError:  # EADDRNOTAVAIL: no IPv4 address; ENODEV: gone since the lookup
            return None
    family = struct.unpack_from("H", hw, _IFNAMSIZ)[0]  # sockaddr.sa_family = ARPHRD_*
    mac = hw[_IFNAMSIZ + 2 : _IFNAMSIZ + 8].hex(":") if family in (ARPHRD_ETHER, ARPHRD_LOOPBACK) else None
    iface = ipaddress.IPv4Interface((addr, socket.inet_ntoa(mask)))
    return InterfaceAddress(ifname, index, iface.ip, iface.network, mac, bool(flags & IFF_UP))
