"""Who an ONIE switch says it is, read from what a `pxe.Client` carries: its DHCP options (60, 77,
61, 125) or its HTTP request headers (ONIE-*). pxe knows nothing of ONIE; this is where its wire
becomes an `OnieIdentity`, once per request (the router asks, then hands the identity on).
"""

from __future__ import annotations

from collections.abc import Mapping

from dhcp4.options import OPT_USER_CLASS, OPT_VENDOR_CLASS, OPT_VIVSO
from onie import discovery
from onie.identity import OnieIdentity
from pxe.policy import Client, Service

_DHCP = (Service.DHCP, Service.PROXYDHCP)
_VENDOR_PREFIX = discovery.VENDOR_CLASS_PREFIX.encode()  # ASCII: as bytes it matches the same 60s


def identity_of(client: Client) -> OnieIdentity | None:
    """The ONIE identity in this request, or None when nothing in it says ONIE."""
    if client.service in _DHCP:
        options = client.options
        if not options:
            return None
        # Every PXE client's DHCP request comes through here: one that has neither 77 nor 125
        # and no `onie_vendor:` 60 is none of identity_from_dhcp's three signs, seen without
        # decoding anything (bench/dhcp.py).
        if OPT_USER_CLASS not in options and OPT_VIVSO not in options:
            raw60 = options.get(OPT_VENDOR_CLASS)
            if raw60 is None or not raw60.startswith(_VENDOR_PREFIX):
                return None
        return discovery.identity_from_dhcp(options, mac=client.mac)
    if client.headers:
        return discovery.identity_from_headers(client.headers)
    return None


def mac_from_headers(headers: Mapping[str, str] | None) -> str | None:
    """ONIE sends its own MAC in every HTTP request (ONIE-ETH-ADDR, docs/onie.md "HTTP headers")."""
    if not headers:
        return None
    return discovery.normalise_mac(headers.get(discovery.HEADER_ETH_ADDR, "")) or None
