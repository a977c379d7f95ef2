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
    raw_uc = opts.get(OPT_USER_CLASS)
    classes = parse_user_classes(raw_uc) if raw_uc else []
    raw_vc = opts.get(OPT_VENDOR_CLASS)
    giaddr, ciaddr = pkt.giaddr, pkt.ciaddr
    # Positional, in Client's field order (keywords cost more than the rest of this function):
    return Client(
        pkt.mac,  # mac
        service,
        arch_of(opts.get(OPT_CLIENT_ARCH)),  # arch
        None if raw_vc is None else _text(raw_vc),  # vendor_class
        classes[0] if classes else None,  # user_class
        "iPXE" in classes or OPT_IPXE_ENCAP in opts,  # is_ipxe
        opts.get(OPT_CLIENT_ID),  # client_id
        uuid_of(opts.get(OPT_CLIENT_UUID)),  # uuid
        relay_agent.get(RAI_CIRCUIT_ID) if relay_agent else None,  # circuit_id
        relay_agent.get(RAI_REMOTE_ID) if relay_agent else None,  # remote_id
        giaddr if giaddr != ZERO_IP else None,  # relay
        ciaddr if ciaddr != ZERO_IP else None,  # ip
        server_ip,
        interface,
        None,  # path
        {},  # headers
        MappingProxyType(opts),  # options: the packet's own dict, read-only for the policy
    )


_TEXT_MAX = 256  # option 60 values remembered as text (a fleet has a few kinds of firmware)
_TEXTS: dict[bytes, str] = {}


def _text(raw: bytes) -> str:
    """Packet.text_option's decoding, remembered (every PXE ROM of a model sends the same 60)."""
    try:
        text = _TEXTS.get(raw)
    except TypeError:  # unhashable: a bytearray an embedding program put in the options
        return bytes(raw).decode("utf-8", "replace").rstrip("\0")
    if text is None:
        text = raw.decode("utf-8", "replace").rstrip("\0")
        if len(_TEXTS) >= _TEXT_MAX:
            _TEXTS.clear()
        _TEXTS[raw] = text
    return text
