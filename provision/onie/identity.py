"""Who an ONIE switch says it is, read from what a `pxe.Client` carries: its DHCP options (60, 77,
61, 125) or its HTTP request headers (ONIE-*). pxe knows nothing of ONIE; this is where its wire
becomes an `OnieIdentity`, once per request (the router asks, then hands the identity on).
"""

from __future__ import annotations

from collections.abc import Mapping

from onie import discovery
from onie.identity import OnieIdentity
from pxe.policy import Client, Service

_DHCP = (Service.DHCP, Service.PROXYDHCP)


def identity_of(client: Client) -> OnieIdentity | None:
    """The ONIE identity in this request, or None when nothing in it says ONIE."""
    if client.service in _DHCP:
        return discovery.identity_from_dhcp(client.options, mac=client.mac) if client.options else None
    if client.headers:
        return discovery.identity_from_headers(client.headers)
    return None


def mac_from_headers(headers: Mapping[str, str] | None) -> str | None:
    """ONIE sends its own MAC in every HTTP request (ONIE-ETH-ADDR, docs/onie.md "HTTP headers")."""
    if not headers:
        return None
    return discovery.normalise_mac(headers.get(discovery.HEADER_ETH_ADDR, "")) or None
