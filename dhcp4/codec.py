"""DHCPv4 packets to and from bytes, with `struct` only (scapy is our test oracle, not the hot path).

Decoding never raises anything but `DecodeError`, whatever the bytes: the server feeds it whatever
arrives on port 67. Options are kept as an ordered `dict[int, bytes]`; an option that appears
several times is concatenated, and `file`/`sname` are read for options when option 52 says so
[RFC 3396 §5, RFC 2131 §4.1]. Encoding splits values longer than 255 bytes into consecutive
instances of the same code [RFC 3396 §6] and never uses option 52 (PXE ROMs mishandle it).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from dhcp4.options import (
    BOOTREPLY,
    HEADER_LEN,
    HTYPE_ETHERNET,
    MAGIC_COOKIE,
    MIN_PACKET,
    OPT_END,
    OPT_MESSAGE_TYPE,
    OPT_OVERLOAD,
    OPT_PAD,
    MessageType,
)

# op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr sname file
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_OVERLOAD_FILE = 1
_OVERLOAD_SNAME = 2
ZERO_IP = "0.0.0.0"
_ZERO4 = b"\0\0\0\0"

_ntoa = socket.inet_ntoa
_aton = socket.inet_aton

# Dotted quads <-> 4 bytes, remembered: inet_ntoa/inet_aton cost ten times a dict hit, and a
# packet's addresses repeat (0.0.0.0, a relay's giaddr, our own address, the address offered and
# then acknowledged). Pure functions of their argument, so never stale; emptied when full.
_IP_MEMO_MAX = 4096
_STR_OF: dict[bytes, str] = {_ZERO4: ZERO_IP}
_BYTES_OF: dict[str, bytes] = {ZERO_IP: _ZERO4}


def _ip_str(raw: bytes) -> str:
    text = _ntoa(raw)
    if len(_STR_OF) >= _IP_MEMO_MAX:
        _STR_OF.clear()
    if len(_BYTES_OF) >= _IP_MEMO_MAX:
        _BYTES_OF.clear()
    # both ways: inet_ntoa's text is canonical, so inet_aton gives these bytes back (an address
    # the lease engine offers is then encoded, read back from option 50 and parsed with hits)
    _STR_OF[raw] = text
    _BYTES_OF[text] = raw
    return text


def ip_str(raw: bytes) -> str:
    """4 bytes to a dotted quad (inet_ntoa, remembered); OSError when not 4 bytes."""
    return _STR_OF.get(raw) or _ip_str(raw)


def _ip_bytes(text: str) -> bytes:
    raw = _aton(text)  # OSError for what is not an address: nothing remembered
    if len(_BYTES_OF) >= _IP_MEMO_MAX:
        _BYTES_OF.clear()
    _BYTES_OF[text] = raw
    return raw


_NEVER_WRITTEN = frozenset((OPT_PAD, OPT_END, OPT_OVERLOAD))


# (code, length) header bytes by code then length, built on first use of a code and then indexed:
# cheaper than bytes((code, n)). A plain list: a dict subclass is not specialised by the interpreter.
_CODE_LEN: list[list[bytes] | None] = [None] * 256


def _code_len(code: int) -> list[bytes]:
    row = _CODE_LEN[code] = [bytes((code, n)) for n in range(256)]
    return row


class DecodeError(ValueError):
    """The bytes are not a DHCP/BOOTP packet we can read; `str()` says why."""


@dataclass
class Packet:
    """One DHCP message. Addresses are dotted strings, `chaddr` the raw 16-byte field."""

    op: int = BOOTREPLY
    htype: int = HTYPE_ETHERNET
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: str = ZERO_IP
    yiaddr: str = ZERO_IP
    siaddr: str = ZERO_IP
    giaddr: str = ZERO_IP
    chaddr: bytes = b"\0" * 16
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)
    _mac: str = field(default="", init=False, repr=False, compare=False)
    _mac_key: tuple[bytes, int] | tuple[()] = field(default=(), init=False, repr=False, compare=False)

    @property
    def mac(self) -> str:
        """chaddr as lower-case colon-separated text (hlen bytes, at most 16)."""
        chaddr, hlen = self.chaddr, self.hlen
        key = self._mac_key
        if not key or key[0] is not chaddr or key[1] != hlen:
            self._mac = chaddr[: max(0, min(hlen, 16))].hex(":")
            self._mac_key = (chaddr, hlen)
        return self._mac

    @property
    def message_type(self) -> MessageType | None:
        raw = self.options.get(OPT_MESSAGE_TYPE)
        try:
            return _MESSAGE_TYPES.get(raw)
        except TypeError:  # unhashable: a bytearray an embedding program put there
            return _MESSAGE_TYPES.get(bytes(raw))  # type: ignore[arg-type]

    def ip_option(self, code: int) -> str | None:
        raw = self.options.get(code)
        if raw is None or len(raw) != 4:
            return None
        try:
            return _STR_OF.get(raw) or _ip_str(raw)
        except TypeError:  # unhashable: a bytearray an embedding program put there
            return _ntoa(raw)

    def text_option(self, code: int) -> str | None:
        raw = self.options.get(code)
        return None if raw is None else raw.decode("utf-8", "replace").rstrip("\0")


# Option 53's one-byte values (anything else: None), looked up rather than built per packet.
_MESSAGE_TYPES: dict[bytes | None, MessageType] = {bytes((m,)): m for m in MessageType}


def _parse_options(buf: bytes, start: int, end: int, into: dict[int, bytes]) -> bool:
    """Options in buf[start:end] into `into` (concatenating repeats); True when END was seen."""
    i = start
    while i < end:
        code = buf[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return True
        if i + 1 >= end:
            raise DecodeError(f"option {code} at offset {i} has no length byte")
        length = buf[i + 1]
        value_end = i + 2 + length
        if value_end > end:
            raise DecodeError(f"option {code} at offset {i} claims {length} bytes past the end")
        value = buf[i + 2 : value_end]
        prev = into.get(code)
        into[code] = value if prev is None else prev + value
        i = value_end
    return False


def decode(buf: bytes) -> Packet:
    """Parse one datagram. Raises DecodeError (only) when it is not a readable DHCP packet."""
    try:
        return _decode(bytes(buf))
    except DecodeError:
        raise
    except Exception as exc:  # belt and braces: hostile input must never escape as anything else
        raise DecodeError(f"unreadable packet: {exc!r}") from exc


def _decode(buf: bytes) -> Packet:
    if len(buf) < HEADER_LEN + 4:
        raise DecodeError(f"packet of {len(buf)} bytes is shorter than the {HEADER_LEN + 4}-byte minimum")
    if buf[HEADER_LEN : HEADER_LEN + 4] != MAGIC_COOKIE:
        raise DecodeError("bad magic cookie (BOOTP without DHCP options is not served)")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, bootfile) = _HEADER.unpack_from(
        buf
    )
    if hlen > 16:
        raise DecodeError(f"hlen {hlen} exceeds the 16-byte chaddr field")
    options: dict[int, bytes] = {}
    _parse_options(buf, HEADER_LEN + 4, len(buf), options)
    overload = options.pop(OPT_OVERLOAD, None)
    if overload is not None:
        # RFC 2131 §4.1: options continue in `file` (1), `sname` (2) or both (3), file first.
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise DecodeError(f"option 52 has an invalid value {overload.hex()}")
        if overload[0] & _OVERLOAD_FILE:
            _parse_options(bootfile, 0, len(bootfile), options)
            bootfile = b""
        if overload[0] & _OVERLOAD_SNAME:
            _parse_options(sname, 0, len(sname), options)
            sname = b""
    ip = _STR_OF.get
    # Positional, in field order: keywords cost more than the rest of this function's calls.
    return Packet(
        op, htype, hlen, hops, xid, secs, flags,
        ip(ci) or _ip_str(ci), ip(yi) or _ip_str(yi), ip(si) or _ip_str(si), ip(gi) or _ip_str(gi),
        chaddr, sname.split(b"\0", 1)[0], bootfile.split(b"\0", 1)[0], options,
    )  # fmt: skip


def encode_option(code: int, value: bytes) -> bytes:
    """One option, split into 255-byte instances when longer [RFC 3396 §6]."""
    if len(value) <= 255:
        return bytes((code, len(value))) + value
    parts = []
    for i in range(0, len(value), 255):
        chunk = value[i : i + 255]
        parts.append(bytes((code, len(chunk))) + chunk)
    return b"".join(parts)


def encoded_size(options: dict[int, bytes]) -> int:
    """Bytes the options area will take (cookie and END included), before padding."""
    size = 4 + 1
    for value in options.values():
        n = len(value)
        size += n + 2 if n <= 255 else n + 2 * -(-n // 255)
    return size


def encode(pkt: Packet) -> bytes:
    """Bytes on the wire, padded to the BOOTP minimum of 300. Options are written in dict order."""
    if len(pkt.sname) > 64 or len(pkt.file) > 128:
        raise ValueError("sname is limited to 64 bytes and file to 128 (use option 67 for longer)")
    ip = _BYTES_OF.get
    ci, yi, si, gi = pkt.ciaddr, pkt.yiaddr, pkt.siaddr, pkt.giaddr
    head = _HEADER.pack(
        pkt.op, pkt.htype, pkt.hlen, pkt.hops, pkt.xid & 0xFFFFFFFF, pkt.secs, pkt.flags,
        ip(ci) or _ip_bytes(ci), ip(yi) or _ip_bytes(yi), ip(si) or _ip_bytes(si), ip(gi) or _ip_bytes(gi),
        pkt.chaddr.ljust(16, b"\0")[:16], pkt.sname, pkt.file,
    )  # fmt: skip
    parts = [head, MAGIC_COOKIE]
    append = parts.append
    rows = _CODE_LEN
    for code, value in pkt.options.items():
        n = len(value)
        # The common case, inline (this loop runs ~15 times per reply): a code that is neither
        # 0, 255 nor 52 (_NEVER_WRITTEN, spelled out: a constant test) and a value that fits.
        if n <= 255 and 0 < code < 255 and code != 52:
            append((rows[code] or _code_len(code))[n])
            append(value)
        elif code not in _NEVER_WRITTEN:
            append(encode_option(code, value))  # split [RFC 3396 §6]; ValueError for a bad code
    append(b"\xff")
    out = b"".join(parts)
    if len(out) < MIN_PACKET:
        out += b"\0" * (MIN_PACKET - len(out))
    return out


def mac_to_chaddr(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", "")).ljust(16, b"\0")


def ip_bytes(ip: str) -> bytes:
    return _BYTES_OF.get(ip) or _ip_bytes(ip)


def ip_list(ips: tuple[str, ...] | list[str]) -> bytes:
    return b"".join(_aton(ip) for ip in ips)


__all__ = [
    "ZERO_IP",
    "DecodeError",
    "Packet",
    "decode",
    "encode",
    "encode_option",
    "encoded_size",
    "ip_bytes",
    "ip_list",
    "ip_str",
    "mac_to_chaddr",
]
