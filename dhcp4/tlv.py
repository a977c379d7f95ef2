"""Sub-option framings inside DHCPv4 options: code/length/value items, RFC 3004 user classes and
RFC 3925 vendor-identifying blocks. Pure functions over bytes; decoders never raise on bad input.

The one copy: option 82 sub-options [RFC 3046 §2.0], ONIE's option 125 sub-options and the PXE
option 43 items all use the 1-byte code / 1-byte length framing below.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

MAX_ITEM_LEN = 255  # a 1-byte length: sub-options, user-class items, RFC 3925 data-len


def encode_suboptions(items: Iterable[tuple[int, bytes]]) -> bytes:
    """1-byte code, 1-byte length, value, for each item."""
    out = bytearray()
    for code, value in items:
        if len(value) > MAX_ITEM_LEN:
            raise ValueError(f"sub-option {code} is {len(value)} bytes; at most {MAX_ITEM_LEN} fit")
        out += bytes((code, len(value))) + value
    return bytes(out)


def parse_suboptions(raw: bytes) -> dict[int, bytes]:
    """code/length/value items; a truncated tail is ignored (as relays and ONIE's parser do)."""
    out: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(raw):
        code, n = raw[i], raw[i + 1]
        if i + 2 + n > len(raw):
            break
        out[code] = raw[i + 2 : i + 2 + n]
        i += 2 + n
    return out


def encode_user_classes(items: Iterable[str]) -> bytes:
    """Option 77 as an RFC 3004 §4 list: a length byte before each item."""
    out = bytearray()
    for text in items:
        raw = text.encode()
        if not 0 < len(raw) <= MAX_ITEM_LEN:
            raise ValueError(f"a user class item is 1 to {MAX_ITEM_LEN} bytes [RFC 3004 §4]")
        out += bytes((len(raw),)) + raw
    return bytes(out)


def parse_user_classes(raw: bytes) -> list[str]:
    """Option 77 items [RFC 3004 §4]; one plain string when the length prefixes do not add up
    (busybox `-x 77:` sends no length byte, and iPXE sends plain `iPXE`)."""
    items: list[bytes] = []
    i = 0
    while i < len(raw):
        n = raw[i]
        if n == 0 or i + 1 + n > len(raw):
            items = []
            break
        items.append(raw[i + 1 : i + 1 + n])
        i += 1 + n
    if not items and raw:
        items = [raw]
    return [item.decode("utf-8", "replace") for item in items]


def encode_vivso(enterprise: int, data: bytes) -> bytes:
    """One RFC 3925 §4 block: enterprise-number (4 bytes), data-len (1 byte), data."""
    if len(data) > MAX_ITEM_LEN:
        raise ValueError(f"option 125 data for enterprise {enterprise} is {len(data)} bytes; at most 255")
    return struct.pack("!IB", enterprise, len(data)) + data


def parse_vivso(raw: bytes) -> dict[int, bytes]:
    """Option 125 → {enterprise: data}; blocks of one enterprise are concatenated [RFC 3925 §4]."""
    out: dict[int, bytes] = {}
    i = 0
    while i + 5 <= len(raw):
        enterprise, n = struct.unpack_from("!IB", raw, i)
        if i + 5 + n > len(raw):
            break
        out[enterprise] = out.get(enterprise, b"") + raw[i + 5 : i + 5 + n]
        i += 5 + n
    return out
