"""What the host knows about its links: an interface's IPv4 address and subnet, who holds a port.

Interface facts come from the kernel by ioctl (pxe.netif, shared with the DHCP server), in the caller's
network namespace.
Port holders come from /proc/net/{udp,tcp} (socket inode) matched against /proc/*/fd links: the
same walk `ss -p` and `fuser` do, so "port 67 in use" can say "by dnsmasq (pid 812)".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from provision.errors import EXIT_ENV, ProvisionError
from pxe import netif
from pxe.netif import InterfaceAddress


class NetInfoError(ProvisionError):
    """An interface or port this host cannot give us (exit 3: the environment, not the input)."""

    exit_code = EXIT_ENV


def interface_names() -> list[str]:
    return netif.interface_names()


def interface_ipv4(ifname: str) -> InterfaceAddress:
    """The first IPv4 address on `ifname`, or a NetInfoError that says what to do."""
    found = netif.interface_ipv4(ifname)
    if found is not None:
        return found
    names = interface_names()
    if ifname not in names:
        raise NetInfoError(
            f"interface {ifname!r} not found (have: {', '.join(names)})",
            "name an existing interface (`ip -br link`), or create it first",
        )
    raise NetInfoError(
        f"interface {ifname!r} has no IPv4 address",
        f"give it one, e.g. `ip addr add 198.18.10.1/24 dev {ifname}`",
    )


@dataclass(frozen=True)
class PortHolder:
    pid: int
    name: str

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


def _socket_inodes(proto: str, port: int) -> set[str]:
    inodes: set[str] = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10:
                continue
            local = cols[1]
            if int(local.rsplit(":", 1)[1], 16) != port:
                continue
            # TCP: only listeners (state 0A) hold the port for our purpose
            if proto == "tcp" and cols[3] != "0A":
                continue
            inodes.add(cols[9])
    return inodes


def port_holders(proto: str, port: int) -> list[PortHolder]:
    """Processes with a `proto` ("udp"/"tcp") socket bound to `port`, as far as /proc tells.

    /proc/net is per network namespace; /proc/<pid>/fd is not, so only processes whose socket is in
    the caller's namespace match. Unreadable processes are skipped.
    """
    inodes = _socket_inodes(proto, port)
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    found: dict[int, PortHolder] = {}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                try:
                    if os.readlink(fd) in wanted:
                        name = (pid_dir / "comm").read_text().strip()
                        found[int(pid_dir.name)] = PortHolder(int(pid_dir.name), name)
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return sorted(found.values(), key=lambda h: h.pid)


def describe_port_in_use(proto: str, port: int, address: str | None = None) -> NetInfoError:
    holders = port_holders(proto, port)
    where = f"{address}:{port}" if address else str(port)
    by = f" by {', '.join(map(str, holders))}" if holders else ""
    fix = (
        f"stop {holders[0].name} (e.g. `systemctl stop {holders[0].name}` or kill {holders[0].pid})"
        if holders
        else f"find the holder with `ss -lunp 'sport = :{port}'` and stop it"
    )
    if port in (67, 69) and proto == "udp":
        fix += ", or serve on another interface/namespace"
    return NetInfoError(f"{proto.upper()} port {where} is in use{by}", fix)
