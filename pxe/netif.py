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


IFA_F_DADFAILED = 0x08  # <linux/if_addr.h>: duplicate address detection failed: unusable
_SCOPE_LINK = 0x20  # IPV6_ADDR_LINKLOCAL as /proc/net/if_inet6 writes the scope


def ipv6_link_local(ifname: str, proc: str = "/proc/net/if_inet6") -> ipaddress.IPv6Address | None:
    """The IPv6 link-local address (fe80::/10) of `ifname` in this network namespace, or None
    (no such interface, IPv6 disabled on it, link down, or its DAD failed). A tentative one (DAD
    still running, the first second or two after the link comes up) is returned: it becomes
    usable by itself, and a listener bound with IP_FREEBIND is ready when it does.

    /proc/net/if_inet6, one address a line [Linux net/ipv6/addrconf.c, if6_seq_show]:
    "fe800000000000000000000000000001 02 40 20 80 eth0": address, index, prefix length,
    scope, flags, name."""
    try:
        with open(proc, encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:  # no IPv6 in this kernel
        return None
    found: ipaddress.IPv6Address | None = None
    for line in lines:
        fields = line.split()
        if len(fields) != 6 or fields[5] != ifname:
            continue
        addr, scope, flags = fields[0], int(fields[3], 16), int(fields[4], 16)
        if scope != _SCOPE_LINK or flags & IFA_F_DADFAILED:
            continue
        ip = ipaddress.IPv6Address(bytes.fromhex(addr))
        if ip.is_link_local and (found is None or ip < found):
            found = ip  # the lowest when a link has several: the same one on every start
    return found
