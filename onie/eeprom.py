"""ONIE TlvInfo system EEPROM: encode and decode, with the CRC-32 ONIE and U-Boot check.

The format [ONIE design spec, "Board EEPROM Information Format"; U-Boot cmd/tlv_eeprom.c,
which carries ONIE's original sys-eeprom code]:

    offset 0   "TlvInfo\\0"                 8 bytes
    offset 8   version 0x01                1 byte
    offset 9   total length of the TLVs    u16 big-endian (includes the CRC TLV)
    offset 11  TLVs: type u8, length u8 (≤ 255), value
    last TLV   type 0xFE, length 4, CRC-32 (zlib's) over every byte from 'T' through the
               CRC TLV's length byte, stored big-endian

The whole block is at most 2048 bytes (TLV_INFO_MAX_LEN), so the total length is at most
2037. Types 0x00 and 0xFF are illegal (0xFF is what an erased EEPROM reads as). Bytes after
the block (an EEPROM is usually bigger than its TlvInfo) are ignored.

Pure library: bytes in, typed objects out. No YAML, no files, no `provision`.
"""

from __future__ import annotations

import enum
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

SIGNATURE = b"TlvInfo\x00"
VERSION = 0x01
HEADER_SIZE = 11  # signature 8 + version 1 + total length 2
MAX_SIZE = 2048  # TLV_INFO_MAX_LEN: header + TLVs
MAX_TOTAL_LENGTH = MAX_SIZE - HEADER_SIZE  # TLV_TOTAL_LEN_MAX
MAX_VALUE_LENGTH = 255
CRC_TLV_SIZE = 6  # type + length + 4 CRC bytes

_DATE_RE = re.compile(r"\d\d/\d\d/\d\d\d\d \d\d:\d\d:\d\d")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


class EepromError(ValueError):
    """A TlvInfo block that cannot be read or written; `offset` is where (None: not a place)."""

    def __init__(self, message: str, offset: int | None = None):
        self.message = message
        self.offset = offset
        super().__init__(f"{message} (at byte offset {offset})" if offset is not None else message)


class CrcMismatch(EepromError):
    def __init__(self, stored: int, computed: int, offset: int):
        self.stored = stored
        self.computed = computed
        super().__init__(
            f"CRC-32 mismatch: stored 0x{stored:08X}, computed 0x{computed:08X}; "
            "the EEPROM contents are corrupt or were edited without updating the CRC",
            offset,
        )


class TlvCode(enum.IntEnum):
    """TLV type codes [ONIE design spec; U-Boot include/tlv_eeprom.h]."""

    PRODUCT_NAME = 0x21
    PART_NUMBER = 0x22
    SERIAL_NUMBER = 0x23
    BASE_MAC = 0x24
    MANUFACTURE_DATE = 0x25
    DEVICE_VERSION = 0x26
    LABEL_REVISION = 0x27
    PLATFORM_NAME = 0x28
    ONIE_VERSION = 0x29
    MAC_COUNT = 0x2A
    MANUFACTURER = 0x2B
    COUNTRY_CODE = 0x2C
    VENDOR = 0x2D
    DIAG_VERSION = 0x2E
    SERVICE_TAG = 0x2F
    VENDOR_EXTENSION = 0xFD
    CRC_32 = 0xFE

    @property
    def key(self) -> str:
        """The snake_case name used in YAML and JSON (`base_mac`, `mac_count`...)."""
        return self.name.lower()

    @property
    def title(self) -> str:
        """The name onie-syseeprom prints."""
        return _TITLES[self]

    @classmethod
    def from_key(cls, key: str) -> TlvCode:
        return cls[key.upper()]


_TITLES = {
    TlvCode.PRODUCT_NAME: "Product Name",
    TlvCode.PART_NUMBER: "Part Number",
    TlvCode.SERIAL_NUMBER: "Serial Number",
    TlvCode.BASE_MAC: "Base MAC Address",
    TlvCode.MANUFACTURE_DATE: "Manufacture Date",
    TlvCode.DEVICE_VERSION: "Device Version",
    TlvCode.LABEL_REVISION: "Label Revision",
    TlvCode.PLATFORM_NAME: "Platform Name",
    TlvCode.ONIE_VERSION: "ONIE Version",
    TlvCode.MAC_COUNT: "MAC Addresses",
    TlvCode.MANUFACTURER: "Manufacturer",
    TlvCode.COUNTRY_CODE: "Country Code",
    TlvCode.VENDOR: "Vendor Name",
    TlvCode.DIAG_VERSION: "Diag Version",
    TlvCode.SERVICE_TAG: "Service Tag",
    TlvCode.VENDOR_EXTENSION: "Vendor Extension",
    TlvCode.CRC_32: "CRC-32",
}

TEXT_CODES = frozenset(
    {
        TlvCode.PRODUCT_NAME,
        TlvCode.PART_NUMBER,
        TlvCode.SERIAL_NUMBER,
        TlvCode.MANUFACTURE_DATE,
        TlvCode.LABEL_REVISION,
        TlvCode.PLATFORM_NAME,
        TlvCode.ONIE_VERSION,
        TlvCode.MANUFACTURER,
        TlvCode.COUNTRY_CODE,
        TlvCode.VENDOR,
        TlvCode.DIAG_VERSION,
        TlvCode.SERVICE_TAG,
    }
)
# Binary codes whose value has one right length; another length is a corrupt record. (Text
# codes with a nominal length, the date and country, are checked when encoding only: a vendor's
# slightly-off string must not make the whole EEPROM unreadable.)
FIXED_LENGTHS: dict[int, int] = {
    TlvCode.BASE_MAC: 6,
    TlvCode.DEVICE_VERSION: 1,
    TlvCode.MAC_COUNT: 2,
    TlvCode.CRC_32: 4,
}


@dataclass(frozen=True)
class VendorExtension:
    """TLV 0xFD: a vendor's IANA enterprise number (u32 big-endian) and opaque bytes."""

    iana: int
    data: bytes = b""


TlvValue = str | int | VendorExtension | bytes


def code_name(code: int) -> str:
    try:
        return TlvCode(code).key
    except ValueError:
        return f"0x{code:02x}"


def code_title(code: int) -> str:
    try:
        return TlvCode(code).title
    except ValueError:
        return "Unknown"


@dataclass(frozen=True)
class Tlv:
    """One record. `value` is the raw bytes; `typed` and `text` interpret them by code."""

    code: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFF:
            raise EepromError(f"TLV code {self.code} is not a byte")
        if self.code in (0x00, 0xFF):
            raise EepromError(f"TLV code 0x{self.code:02X} is reserved and may not be used")
        if len(self.value) > MAX_VALUE_LENGTH:
            raise EepromError(
                f"{code_name(self.code)}: value is {len(self.value)} bytes; a TLV holds at most 255"
            )

    @property
    def name(self) -> str:
        return code_name(self.code)

    @property
    def title(self) -> str:
        return code_title(self.code)

    @classmethod
    def of(cls, code: int | TlvCode, value: TlvValue) -> Tlv:
        """Build a record from a typed value, checked the way onie-syseeprom checks input."""
        return cls(int(code), encode_value(int(code), value))

    @property
    def typed(self) -> TlvValue:
        """str for text and MAC, int for device version / MAC count / CRC, VendorExtension, or bytes."""
        return decode_value(self.code, self.value)

    @property
    def text(self) -> str:
        """The value for people: text as stored, MAC as aa:bb:.., numbers in decimal, CRC in hex."""
        value = self.typed
        if self.code == TlvCode.CRC_32 and isinstance(value, int):
            return f"0x{value:08X}"
        if isinstance(value, VendorExtension):
            return f"IANA {value.iana}: {value.data.hex(' ')}" if value.data else f"IANA {value.iana}"
        if isinstance(value, bytes):
            return value.hex(" ")
        return str(value)


def _text_value(code: int, value: TlvValue) -> bytes:
    if not isinstance(value, str):
        raise EepromError(f"{code_name(code)}: expected text, got {type(value).__name__}")
    raw = value.encode("utf-8")
    if code == TlvCode.MANUFACTURE_DATE and not _DATE_RE.fullmatch(value):
        raise EepromError(f"manufacture_date {value!r} is not MM/DD/YYYY hh:mm:ss (e.g. 11/28/2026 04:20:00)")
    if code == TlvCode.COUNTRY_CODE and not re.fullmatch(r"[A-Z]{2}", value):
        raise EepromError(f"country_code {value!r} is not a 2-letter ISO 3166-1 code such as US")
    return raw


def encode_value(code: int, value: TlvValue) -> bytes:
    """A typed value → the bytes stored for `code`. Raises EepromError on a bad value."""
    if code == TlvCode.CRC_32:
        raise EepromError("the CRC-32 TLV is computed by the encoder; do not set it")
    if code in TEXT_CODES:
        return _text_value(code, value)
    if code == TlvCode.BASE_MAC:
        if not isinstance(value, str) or not _MAC_RE.fullmatch(value):
            raise EepromError(f"base_mac {value!r} is not a MAC address such as 52:54:00:12:34:56")
        raw = bytes(int(part, 16) for part in re.split(r"[:-]", value))
        # The same rule as U-Boot's set_mac(): a base MAC must be a usable unicast address.
        if raw == bytes(6) or raw[0] & 0x01:
            raise EepromError(f"base_mac {value} is all-zero or multicast; use a unicast address")
        return raw
    if code == TlvCode.DEVICE_VERSION:
        return _uint(code, value, 1)
    if code == TlvCode.MAC_COUNT:
        return _uint(code, value, 2)
    if code == TlvCode.VENDOR_EXTENSION:
        if not isinstance(value, VendorExtension):
            raise EepromError("vendor_extension: expected a VendorExtension(iana, data)")
        if not 0 <= value.iana <= 0xFFFFFFFF:
            raise EepromError(f"vendor_extension: IANA number {value.iana} does not fit in 32 bits")
        return struct.pack(">I", value.iana) + value.data
    if isinstance(value, bytes):
        return value
    raise EepromError(f"TLV 0x{code:02X} is not a known code: give its value as bytes")


def _uint(code: int, value: TlvValue, size: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EepromError(f"{code_name(code)}: expected a whole number, got {value!r}")
    limit = 1 << (8 * size)
    if not 0 <= value < limit:
        raise EepromError(f"{code_name(code)}: {value} is out of range 0..{limit - 1}")
    return value.to_bytes(size, "big")


def decode_value(code: int, raw: bytes) -> TlvValue:
    if code in TEXT_CODES:
        return raw.decode("utf-8", errors="replace")
    if code == TlvCode.BASE_MAC and len(raw) == 6:
        return ":".join(f"{b:02x}" for b in raw)
    if code in (TlvCode.DEVICE_VERSION, TlvCode.MAC_COUNT, TlvCode.CRC_32):
        return int.from_bytes(raw, "big")
    if code == TlvCode.VENDOR_EXTENSION and len(raw) >= 4:
        return VendorExtension(int.from_bytes(raw[:4], "big"), raw[4:])
    return raw


@dataclass(frozen=True)
class TlvInfo:
    """A decoded (or to-be-encoded) TlvInfo block. `tlvs` never holds the CRC record.

    After `decode`, `crc` is the stored CRC, `crc_computed` the one the bytes give and
    `crc_valid` whether they match; an object built by hand has crc None.
    """

    tlvs: tuple[Tlv, ...] = ()
    version: int = VERSION
    crc: int | None = field(default=None, compare=False)
    crc_valid: bool = field(default=True, compare=False)
    crc_computed: int | None = field(default=None, compare=False)

    @classmethod
    def build(cls, values: Iterable[tuple[int | TlvCode, TlvValue]]) -> TlvInfo:
        return cls(tuple(Tlv.of(code, value) for code, value in values))

    def get(self, code: int | TlvCode) -> Tlv | None:
        for tlv in self.tlvs:
            if tlv.code == code:
                return tlv
        return None

    def value(self, code: int | TlvCode) -> TlvValue | None:
        tlv = self.get(code)
        return tlv.typed if tlv else None

    def as_dict(self) -> dict[str, object]:
        """key → typed value (vendor extensions as a list); for JSON and for tests."""
        out: dict[str, object] = {}
        for tlv in self.tlvs:
            value = tlv.typed
            if isinstance(value, VendorExtension):
                exts = out.setdefault("vendor_extension", [])
                assert isinstance(exts, list)
                exts.append({"iana": value.iana, "data": value.data.hex()})
            elif isinstance(value, bytes):
                out[tlv.name] = value.hex()
            else:
                out[tlv.name] = value
        return out

    @property
    def product_name(self) -> str | None:
        return self._str(TlvCode.PRODUCT_NAME)

    @property
    def serial_number(self) -> str | None:
        return self._str(TlvCode.SERIAL_NUMBER)

    @property
    def base_mac(self) -> str | None:
        return self._str(TlvCode.BASE_MAC)

    @property
    def platform_name(self) -> str | None:
        return self._str(TlvCode.PLATFORM_NAME)

    @property
    def mac_count(self) -> int | None:
        value = self.value(TlvCode.MAC_COUNT)
        return value if isinstance(value, int) else None

    def _str(self, code: TlvCode) -> str | None:
        value = self.value(code)
        return value if isinstance(value, str) else None

    def encode(self) -> bytes:
        return encode(self.tlvs, version=self.version)


def encode(tlvs: Iterable[Tlv], version: int = VERSION) -> bytes:
    """TLVs (in the order given) → a complete TlvInfo block ending in its CRC-32 record."""
    body = bytearray()
    for tlv in tlvs:
        if tlv.code == TlvCode.CRC_32:
            raise EepromError("the CRC-32 TLV is computed by the encoder; do not pass one")
        body += bytes((tlv.code, len(tlv.value))) + tlv.value
    total = len(body) + CRC_TLV_SIZE
    if total > MAX_TOTAL_LENGTH:
        raise EepromError(f"TLVs need {HEADER_SIZE + total} bytes; a TlvInfo EEPROM holds at most {MAX_SIZE}")
    block = SIGNATURE + bytes((version,)) + struct.pack(">H", total) + bytes(body)
    block += bytes((TlvCode.CRC_32, 4))
    return block + struct.pack(">I", zlib.crc32(block))


def decode(data: bytes, verify_crc: bool = True) -> TlvInfo:
    """Bytes (an EEPROM dump, trailing padding allowed) → TlvInfo.

    Raises EepromError with the byte offset of the first problem. A wrong CRC raises
    CrcMismatch, unless verify_crc is False: then the result says crc_valid=False.
    """
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise EepromError(f"{len(data)} bytes is too short for a TlvInfo header ({HEADER_SIZE})", 0)
    if data[:8] != SIGNATURE:
        if data[:8] == b"\xff" * 8:
            raise EepromError("the EEPROM is blank (all 0xFF): no TlvInfo block was ever written", 0)
        raise EepromError(f"no TlvInfo signature: the block starts with {data[:8]!r}", 0)
    version = data[8]
    if version != VERSION:
        raise EepromError(f"TlvInfo version {version} is not supported (only {VERSION})", 8)
    (total,) = struct.unpack(">H", data[9:11])
    if total > MAX_TOTAL_LENGTH:
        raise EepromError(
            f"header total length {total} exceeds the maximum {MAX_TOTAL_LENGTH} (2048-byte EEPROM)", 9
        )
    end = HEADER_SIZE + total
    if end > len(data):
        raise EepromError(
            f"header says {total} bytes of TLVs follow, but the data ends after {len(data) - HEADER_SIZE}",
            9,
        )
    tlvs: list[Tlv] = []
    crc: int | None = None
    pos = HEADER_SIZE
    while pos < end:
        if pos + 2 > end:
            raise EepromError("a TLV header is cut off by the end of the block", pos)
        code, length = data[pos], data[pos + 1]
        if code in (0x00, 0xFF):
            raise EepromError(f"illegal TLV type 0x{code:02X}", pos)
        if pos + 2 + length > end:
            raise EepromError(
                f"TLV 0x{code:02X} ({code_name(code)}) of length {length} runs past the end of the block",
                pos,
            )
        value = data[pos + 2 : pos + 2 + length]
        want = FIXED_LENGTHS.get(code)
        if want is not None and length != want:
            raise EepromError(f"{code_name(code)} must be {want} bytes long, found {length}", pos)
        if code == TlvCode.VENDOR_EXTENSION and length < 4:
            raise EepromError(f"vendor_extension needs a 4-byte IANA number, found {length} bytes", pos)
        if code == TlvCode.CRC_32:
            if pos + CRC_TLV_SIZE != end:
                raise EepromError("the CRC-32 TLV is not the last record", pos)
            crc = int.from_bytes(value, "big")
            computed = zlib.crc32(data[: pos + 2])
            if crc != computed and verify_crc:
                raise CrcMismatch(crc, computed, pos)
            return TlvInfo(tuple(tlvs), version, crc=crc, crc_valid=crc == computed, crc_computed=computed)
        tlvs.append(Tlv(code, value))
        pos += 2 + length
    raise EepromError("the block has no CRC-32 TLV (0xFE) at its end", end)


__all__ = [
    "MAX_SIZE",
    "SIGNATURE",
    "CrcMismatch",
    "EepromError",
    "Tlv",
    "TlvCode",
    "TlvInfo",
    "TlvValue",
    "VendorExtension",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
]
