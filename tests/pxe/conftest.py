"""Fixtures of the pxe tests (the suite-wide ones are in tests/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.dhcp_netns import DhcpNet
from tests.support.netns import NetNS, linked_pair, namespaces, veth
from tests.support.tools import require_root


@pytest.fixture
def dhcp_net(tmp_path) -> Iterator[DhcpNet]:
    """A server namespace (s0 = 198.18.0.1/24) and a client namespace (c0, no address) joined by a
    veth; `dhcp_net.start(**config)` runs our DHCP server (tests/support/dhcp_server.py) in the
    server namespace with SUBNET and the store in tmp_path. Everything it started is stopped by
    PID and both namespaces removed after the test, also when it failed."""
    require_root()
    with linked_pair("s0", "c0", "198.18.0.1/24") as pair:
        yield DhcpNet(**vars(pair), workdir=tmp_path)


@dataclass
class BootLan:
    """One broadcast domain (a bridge in its own namespace): the server namespace on s0 =
    198.18.0.1/24 and one namespace per named host, each on its interface e0."""

    server: NetNS
    hosts: dict[str, NetNS] = field(default_factory=dict)

    def __getitem__(self, name: str) -> NetNS:
        return self.hosts[name]


@pytest.fixture
def boot_lan(tmp_path: Path) -> Iterator[Callable[..., BootLan]]:
    """`boot_lan(dev=None, attacker="198.18.0.66/24")`: the server and those hosts (address or
    None) on one bridge. Several clients (and a hostile host) on one link need distinct MACs,
    which a single veth pair cannot give. Namespaces and what runs in them go after the test."""
    require_root()
    with contextlib.ExitStack() as stack:

        def make(**hosts: str | None) -> BootLan:
            br, srv, *others = stack.enter_context(namespaces(2 + len(hosts), prefix="lan"))
            br.run(["ip", "link", "add", "br0", "type", "bridge"])
            br.run(["ip", "link", "set", "br0", "up"])
            lan = BootLan(srv)
            ends = [(srv, "s0", "198.18.0.1/24")] + [
                (ns, "e0", addr) for ns, addr in zip(others, hosts.values(), strict=True)
            ]
            for i, (ns, ifname, addr) in enumerate(ends):
                veth(br, f"p{i}", ns, ifname, None, addr)
                br.run(["ip", "link", "set", f"p{i}", "master", "br0"])
            lan.hosts = dict(zip(hosts, others, strict=True))
            return lan

        yield make
