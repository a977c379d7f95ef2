"""TFTP packet codec (RFC 1350, option extension RFC 2347). Pure functions, no I/O.

Parsing never raises anything but `MalformedPacket`, whatever bytes arrive: the server turns that
into a logged event (and, where the RFC says so, an ERROR packet) and carries on.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

# Opcodes [RFC 1350 §5; OACK RFC 2347]
OP_RRQ = 1
OP_WRQ = 2
OP_DATA = 3
OP_ACK = 4
OP_ERROR = 5
OP_OACK = 6


class ErrorCode(enum.IntEnum):
    """[RFC 1350 appendix; 8 from RFC 2347]"""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8  # RFC 2347: the client ends the transfer after reading the OACK


class Mode(enum.Enum):
    NETASCII = "netascii"
    OCTET = "octet"
    MAIL = "mail"  # obsolete [RFC 1350 §1]; refused


# Option names [RFC 2348 blksize, RFC 2349 tsize/timeout, RFC 7440 windowsize]
OPT_BLKSIZE = "blksize"
OPT_TSIZE = "tsize"
OPT_TIMEOUT = "timeout"
OPT_WINDOWSIZE = "windowsize"

MAX_OPTIONS = 16  # no real client sends more than 5; bounds the work of a hostile request
MAX_STRING = 1024

_HDR = struct.Struct("!HH")


class MalformedPacket(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    """RRQ or WRQ. Option names are lower-cased (RFC 2347: case-insensitive); values kept raw."""

    opcode: int
    filename: str
    mode: Mode
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ack:
    block: int


@dataclass(frozen=True)
class Error:
    code: int
    message: str


@dataclass(frozen=True)
class Data:
    block: int
    payload: bytes


Packet = Request | Ack | Error | Data


def _strings(body: bytes) -> list[str]:
    """Split NUL-terminated strings; the last one must be terminated [RFC 1350 §5]."""
    if not body.endswith(b"\x00"):
        raise MalformedPacket("unterminated string")
    raw = body[:-1].split(b"\x00")
    if len(raw) > 2 + 2 * MAX_OPTIONS:
        raise MalformedPacket("too many options")
    out = []
    for item in raw:
        if len(item) > MAX_STRING:
            raise MalformedPacket("string too long")
        # Filenames are netascii on the wire; latin-1 maps every byte so nothing can fail to decode
        # and the path check (pxe.files) sees exactly the bytes that were sent.
        out.append(item.decode("latin-1"))
    return out


def parse(data: bytes) -> Packet:
    if len(data) < 4:
        raise MalformedPacket(f"short packet ({len(data)} bytes)")
    opcode = int.from_bytes(data[:2], "big")
    if opcode in (OP_RRQ, OP_WRQ):
        items = _strings(data[2:])
        if len(items) < 2:
            raise MalformedPacket("request without mode")
        filename, mode_s, *opts = items
        try:
            mode = Mode(mode_s.lower())
        except ValueError:
            raise MalformedPacket(f"unknown mode {mode_s[:32]!r}") from None
        if len(opts) % 2:
            # Some clients pad with a trailing empty string; anything else is broken. Drop the last.
            opts = opts[:-1]
        options: dict[str, str] = {}
        for name, value in zip(opts[::2], opts[1::2], strict=True):
            options.setdefault(name.lower(), value)  # first occurrence wins
        return Request(opcode, filename, mode, options)
    if opcode == OP_ACK:
        return Ack(int.from_bytes(data[2:4], "big"))
    if opcode == OP_ERROR:
        code = int.from_bytes(data[2:4], "big")
        message = data[4:].split(b"\x00", 1)[0][:MAX_STRING].decode("latin-1")
        return Error(code, message)
    if opcode == OP_DATA:
        return Data(int.from_bytes(data[2:4], "big"), data[4:])
    raise MalformedPacket(f"unexpected opcode {opcode}")


def data_header(block: int) -> bytes:
    return _HDR.pack(OP_DATA, block & 0xFFFF)


def build_data(block: int, payload: bytes) -> bytes:
    return _HDR.pack(OP_DATA, block & 0xFFFF) + payload


def build_ack(block: int) -> bytes:
    return _HDR.pack(OP_ACK, block & 0xFFFF)


def build_error(code: int, message: str) -> bytes:
    return _HDR.pack(OP_ERROR, code) + message.encode("ascii", "replace")[:200] + b"\x00"


def build_oack(options: dict[str, str]) -> bytes:
    body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in options.items())
    return OP_OACK.to_bytes(2, "big") + body


def build_request(
    opcode: int, filename: str, mode: str = "octet", options: Mapping[str, object] | None = None
) -> bytes:
    """For tests and tools: an RRQ/WRQ as a client would send it."""
    body = filename.encode("latin-1") + b"\x00" + mode.encode() + b"\x00"
    for k, v in (options or {}).items():
        body += str(k).encode() + b"\x00" + str(v).encode() + b"\x00"
    return opcode.to_bytes(2, "big") + body
