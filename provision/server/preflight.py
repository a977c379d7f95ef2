"""Checks before `provision serve` binds anything, each failure an error an operator can fix:
not root, an interface missing or without IPv4, a subnet not on its interface, a port in use."""

from __future__ import annotations

import errno
import os

from provision.boot.policy import ServerAddress
from provision.config.lab import LabConfig
from provision.errors import EXIT_ENV, ProvisionError
from provision.server import hostnet


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
