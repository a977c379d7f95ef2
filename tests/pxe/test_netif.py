"""pxe.netif reads what `ip` reads: checked against `ip -j` for every interface of this host."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

import pytest

from pxe.netif import InterfaceAddress, interface_ipv4, interface_names


def test_loopback() -> None:
    lo = interface_ipv4("lo")
    assert lo == InterfaceAddress(
        "lo", 1, ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv4Network("127.0.0.0/8"), "00:00:00:00:00:00"
    )


def test_no_such_interface() -> None:
    assert "no-such-if0" not in interface_names()
    assert interface_ipv4("no-such-if0") is None
    assert interface_ipv4("x" * 40) is None  # longer than IFNAMSIZ


@pytest.mark.skipif(not shutil.which("ip"), reason="needs iproute2's ip")
def test_agrees_with_ip_for_every_interface() -> None:
    links = json.loads(
        subprocess.run(["ip", "-j", "addr"], capture_output=True, check=True, text=True).stdout
    )
    assert [link["ifname"] for link in sorted(links, key=lambda link: link["ifindex"])] == interface_names()
    for link in links:
        got = interface_ipv4(link["ifname"])
        v4 = [a for a in link.get("addr_info", []) if a["family"] == "inet"]
        if not v4:
            assert got is None, link["ifname"]
            continue
        first = ipaddress.IPv4Interface(f"{v4[0]['local']}/{v4[0]['prefixlen']}")
        assert got is not None, link["ifname"]
        assert (got.index, got.address, got.network) == (link["ifindex"], first.ip, first.network)
        assert got.up == ("UP" in link["flags"])
        if link.get("link_type") in ("ether", "loopback"):
            assert got.mac == link["address"]
