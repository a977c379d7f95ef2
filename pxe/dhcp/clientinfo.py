"""What a DHCP packet says about who is asking, as a `pxe.Client` for the policy.

Built once per packet (the handler keeps it for the whole exchange). Only what the wire says:
the raw options ride along in `Client.options`, so an application reads vendor identities (ONIE's
60/77/125, say) without pxe knowing them.
"""

from __future__ import annotations

import struct
import uuid as _uuid
from collections.abc import Mapping
from types import MappingProxyType

from dhcp4.codec import ZERO_IP, Packet
from dhcp4.options import (
    ARCH_EFI_BC,
    ARCH_EFI_X64,
    OPT_CLIENT_ARCH,
    OPT_CLIENT_ID,
    OPT_CLIENT_UUID,
    OPT_IPXE_ENCAP,
    OPT_USER_CLASS,
    OPT_VENDOR_CLASS,
    RAI_CIRCUIT_ID,
    RAI_REMOTE_ID,
)
from dhcp4.tlv import parse_user_classes
from pxe.policy import Client, Service


def arch_of(raw: bytes | None) -> int | None:
    """Option 93: a list of 16-bit types [RFC 4578 §2.1]; we take the first."""
    if raw is None or len(raw) < 2:
        return None
    arch: int = struct.unpack_from("!H", raw)[0]
    return ARCH_EFI_X64 if arch == ARCH_EFI_BC else arch


def uuid_of(raw: bytes | None) -> str | None:
    """Option 97: type 0 then 16 bytes [RFC 4578 §2.3]."""
    if raw is None or len(raw) != 17 or raw[0] != 0:
        return None
    return str(_uuid.UUID(bytes=raw[1:]))


def client_from_packet(
    pkt: Packet,
    service: Service = Service.DHCP,
    interface: str | None = None,
    server_ip: str | None = None,
    relay_agent: Mapping[int, bytes] | None = None,
) -> Client:
    """`relay_agent`: option 82's sub-options, parsed once by the caller (dhcp4.tlv)."""
    opts = pkt.options
    rai = relay_agent or {}
    raw_uc = opts.get(OPT_USER_CLASS)
    classes = parse_user_classes(raw_uc) if raw_uc else []
    return Client(
        mac=pkt.mac,
        service=service,
        arch=arch_of(opts.get(OPT_CLIENT_ARCH)),
        vendor_class=pkt.text_option(OPT_VENDOR_CLASS),
        user_class=classes[0] if classes else None,
        is_ipxe="iPXE" in classes or OPT_IPXE_ENCAP in opts,
        client_id=opts.get(OPT_CLIENT_ID),
        uuid=uuid_of(opts.get(OPT_CLIENT_UUID)),
        circuit_id=rai.get(RAI_CIRCUIT_ID),
        remote_id=rai.get(RAI_REMOTE_ID),
        relay=pkt.giaddr if pkt.giaddr != ZERO_IP else None,
        ip=pkt.ciaddr if pkt.ciaddr != ZERO_IP else None,
        server_ip=server_ip,
        interface=interface,
        options=MappingProxyType(opts),  # the packet's own dict, read-only for the policy
    )
