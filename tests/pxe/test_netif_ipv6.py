"""pxe.netif.ipv6_link_local reads what `ip -6 addr` shows, and /proc/net/if_inet6's format."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

import pytest

from pxe.netif import interface_names, ipv6_link_local


@pytest.mark.skipif(not shutil.which("ip"), reason="needs iproute2's ip")
def test_agrees_with_ip_for_every_interface() -> None:
    links = json.loads(
        subprocess.run(["ip", "-j", "-6", "addr"], capture_output=True, check=True, text=True).stdout
    )
    shown = {
        link["ifname"]: sorted(
            ipaddress.IPv6Address(a["local"])
            for a in link.get("addr_info", [])
            if a.get("scope") == "link" and not a.get("dadfailed")
        )
        for link in links
    }
    for name in interface_names():
        expected = shown.get(name)
        assert ipv6_link_local(name) == (expected[0] if expected else None), name


def test_reads_the_proc_format(tmp_path) -> None:
    proc = tmp_path / "if_inet6"
    proc.write_text(
        "fd000000000000000000000000000002 04 40 00 80     eth0\n"
        "fe80000000000000fcff00fffe000009 04 40 20 08     eth0\n"  # DAD failed: unusable
        "fe8000000000000000fc00fffe000001 04 40 20 40     eth0\n"  # tentative: still returned
        "fe800000000000000000000000000007 05 40 20 80    veth1\n"
    )
    assert ipv6_link_local("eth0", str(proc)) == ipaddress.IPv6Address("fe80::fc:ff:fe00:1")
    assert ipv6_link_local("veth1", str(proc)) == ipaddress.IPv6Address("fe80::7")
    assert ipv6_link_local("eth1", str(proc)) is None
    assert ipv6_link_local("eth0", str(tmp_path / "missing")) is None
