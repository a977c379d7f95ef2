"""Checks before `provision serve` binds anything, each failure an error an operator can fix:
not root, an interface missing or without IPv4, a subnet not on its interface, a port in use;
and the descriptor plan: the soft RLIMIT_NOFILE raised to what the TFTP and HTTP caps need."""

from __future__ import annotations

import errno
import os
import resource
from dataclasses import dataclass

from provision.boot.policy import ServerAddress
from provision.config.lab import LabConfig
from provision.errors import EXIT_ENV, ProvisionError
from provision.server import hostnet
from pxe.limits import NofileLimit, raise_nofile
from pxe.netif import ipv6_link_local


class ServeError(ProvisionError):
    """`provision serve` cannot start: the environment is not as it needs (exit 3)."""

    exit_code = EXIT_ENV


def check_root() -> None:
    if os.geteuid() != 0:
        raise ServeError(
            "provision serve needs root (ports 67/69/80, binding to interfaces)",
            "run it with sudo, or as root inside the lab's network namespace",
        )


def resolve_interfaces(cfg: LabConfig) -> list[hostnet.InterfaceAddress]:
    """Each served interface's IPv4 address; every subnet bound to an interface must be on it."""
    found = [hostnet.interface_ipv4(ifname) for ifname in cfg.interfaces]
    for sub in cfg.subnets:
        if sub.interface:
            iface = next(i for i in found if i.ifname == sub.interface)
            if iface.address not in sub.network:
                raise ServeError(
                    f"subnet {sub.network} is on {sub.interface}, whose address is {iface.address}/"
                    f"{iface.network.prefixlen}",
                    f"give {sub.interface} an address in {sub.network}, or fix the subnet",
                )
    return found


def server_addresses(cfg: LabConfig, ifaces: list[hostnet.InterfaceAddress]) -> list[ServerAddress]:
    """Our address per network we serve: each link's own, and for relayed subnets the first
    interface's (relayed clients reach us routed)."""
    servers = [ServerAddress(i.network, str(i.address), i.ifname) for i in ifaces]
    for sub in cfg.subnets:
        if sub.interface is None:
            servers.append(ServerAddress(sub.network, str(ifaces[0].address)))
    return servers


def port_error(exc: OSError, proto: str, port: int, addr: str | None) -> ServeError:
    """A bind failure as the operator's error: who holds the port, or what permission is missing."""
    if exc.errno == errno.EADDRINUSE:
        err = hostnet.describe_port_in_use(proto, port, addr)
        return ServeError(err.message, err.fix)
    if exc.errno == errno.EACCES:
        return ServeError(f"no permission to bind {proto} port {port}", "run as root")
    return ServeError(f"cannot bind {proto} port {port} on {addr or 'all'}: {exc}", "check the interface")


# Descriptors that are not a TFTP transfer or an HTTP connection: the store (database, WAL,
# shared memory), DHCP and listening sockets, the event loop, log files, executor threads.
FD_RESERVE = 256
FDS_PER_TRANSFER = 2  # a TFTP transfer: its socket and the file it sends
FDS_PER_CONNECTION = 2  # an HTTP connection: its socket and, while sending, the file
HTTP_LISTENERS = 2  # per interface: its IPv4 address and its IPv6 link-local one
TFTP_TRANSFERS = 1000  # per interface, at most (pxe.tftp.TftpConfig.max_transfers)
HTTP_CONNECTIONS = 1000  # per interface, at most (pxe.http.HttpLimits.max_connections)
MIN_CAP = 16


@dataclass(frozen=True)
class DescriptorPlan:
    tftp_transfers: int  # per interface
    http_connections: int  # per interface
    limit: NofileLimit

    @property
    def summary(self) -> str:
        lim = self.limit
        raised = f"raised from {lim.before} to {lim.soft}" if lim.soft > lim.before else f"kept at {lim.soft}"
        hard = "unlimited" if lim.hard == resource.RLIM_INFINITY else str(lim.hard)
        text = (
            f"open files: soft limit {raised} (hard {hard}, wanted {lim.wanted}); per interface "
            f"at most {self.tftp_transfers} TFTP transfers and {self.http_connections} HTTP connections"
        )
        if lim.soft < lim.wanted:
            text += (
                f" (lowered to fit; raise the hard limit, e.g. LimitNOFILE={lim.wanted}, for the defaults)"
            )
        return text


def plan_descriptors(interfaces: int, backlog: int) -> DescriptorPlan:
    """Raise the soft RLIMIT_NOFILE to what the TFTP and HTTP caps need on `interfaces` links;
    when the hard limit is lower, lower the caps to fit, so the servers refuse new work at their
    caps (ERROR 0 / 503, counted) before the process runs out of descriptors. asyncio accepts up
    to `backlog` connections per listener before our protocol can refuse them: that is reserved
    too. Nothing to fix for the operator: the summary line says what was set."""
    n = max(1, interfaces)
    burst = n * HTTP_LISTENERS * backlog
    per_iface = TFTP_TRANSFERS * FDS_PER_TRANSFER + HTTP_CONNECTIONS * FDS_PER_CONNECTION
    limit = raise_nofile(FD_RESERVE + burst + n * per_iface)
    tftp, http = TFTP_TRANSFERS, HTTP_CONNECTIONS
    room = limit.soft - FD_RESERVE - burst
    if room < n * per_iface:
        share = max(MIN_CAP, room // (n * (FDS_PER_TRANSFER + FDS_PER_CONNECTION)))
        tftp, http = min(tftp, share), min(http, share)
    return DescriptorPlan(tftp, http, limit)


def link_local_address(ifname: str) -> str | None:
    """`ifname`'s IPv6 link-local address with its zone ("fe80::1%eth0"), for HTTP to listen on
    too: ONIE falls back to IPv6 link-local neighbours when DHCP gave it nothing
    (docs/netboot.md). None when the link has none (IPv6 disabled on it)."""
    ip = ipv6_link_local(ifname)
    return f"{ip}%{ifname}" if ip is not None else None
