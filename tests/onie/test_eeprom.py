"""onie.eeprom: TlvInfo encode/decode checked against bytes built by hand and a published vector."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onie.eeprom import (
    TEXT_CODES,
    CrcMismatch,
    EepromError,
    Tlv,
    TlvCode,
    TlvInfo,
    VendorExtension,
    decode,
    encode,
)


def crc32_bitwise(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), written out bit by bit so the
    golden vectors below do not lean on the same zlib call the encoder uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def hand_built(records: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("BB", code, len(value)) + value for code, value in records)
    head = b"TlvInfo\x00" + b"\x01" + struct.pack(">H", len(body) + 6) + body + b"\xfe\x04"
    return head + struct.pack(">I", crc32_bitwise(head))


def test_bitwise_crc_agrees_with_zlib_on_the_standard_check_value():
    # "123456789" → 0xCBF43926 is the published check value of CRC-32/ISO-HDLC.
    assert crc32_bitwise(b"123456789") == 0xCBF43926 == zlib.crc32(b"123456789")


def test_encoder_matches_bytes_built_by_hand():
    records = [
        (0x21, b"AS7712-32X"),
        (0x23, b"771232X1234567"),
        (0x24, bytes.fromhex("00e0ec123456")),
        (0x2A, struct.pack(">H", 74)),
        (0x25, b"06/15/2016 10:11:12"),
        (0x26, b"\x02"),
        (0x28, b"x86_64-accton_as7712_32x-r0"),
        (0xFD, struct.pack(">I", 259) + b"\x01\x02"),
    ]
    info = TlvInfo.build(
        [
            (TlvCode.PRODUCT_NAME, "AS7712-32X"),
            (TlvCode.SERIAL_NUMBER, "771232X1234567"),
            (TlvCode.BASE_MAC, "00:E0:EC:12:34:56"),
            (TlvCode.MAC_COUNT, 74),
            (TlvCode.MANUFACTURE_DATE, "06/15/2016 10:11:12"),
            (TlvCode.DEVICE_VERSION, 2),
            (TlvCode.PLATFORM_NAME, "x86_64-accton_as7712_32x-r0"),
            (TlvCode.VENDOR_EXTENSION, VendorExtension(259, b"\x01\x02")),
        ]
    )
    expected = hand_built(records)
    assert info.encode() == expected
    # The CRC record is the last six bytes and covers everything before its value.
    assert expected[-6:-4] == b"\xfe\x04"
    assert struct.unpack(">I", expected[-4:])[0] == zlib.crc32(expected[:-4])


def test_empty_eeprom_is_header_plus_crc_like_uboot_erase():
    # U-Boot's `tlv_eeprom erase` leaves total length 0, then update_crc() appends the CRC TLV.
    assert encode([]) == hand_built([])
    assert struct.unpack(">H", encode([])[9:11])[0] == 6
    assert decode(encode([])).tlvs == ()


# A published vector: the doctest of CESNET's CzechLight "ONIE-ish EEPROM" generator
# (as_onie_blob), a product-name TLV and a vendor extension for IANA 8057 (CESNET).
CZECHLIGHT = (
    b"TlvInfo\x00\x01\x00@!\x15sdn-bidi-cplus1572-g2\xfd!\x00\x00\x1fy\x00\x0cph-tech-0001"
    b"\x00\t\x00\x17\x05\x00\x01\x86\x80\x7f 8\x81\x84\x93\xfe\x04#\x91\xba1"
)


def test_published_vector_decodes_and_reencodes_identically():
    info = decode(CZECHLIGHT)
    assert info.crc == 0x2391BA31 and info.crc_valid
    assert info.product_name == "sdn-bidi-cplus1572-g2"
    ext = info.value(TlvCode.VENDOR_EXTENSION)
    assert isinstance(ext, VendorExtension) and ext.iana == 8057
    assert ext.data.startswith(b"\x00\x0cph-tech-0001")
    assert info.encode() == CZECHLIGHT


def test_typed_values_round_trip():
    info = TlvInfo.build(
        [
            (TlvCode.PRODUCT_NAME, "leaf"),
            (TlvCode.BASE_MAC, "52:54:00:AB:CD:EF"),
            (TlvCode.MAC_COUNT, 0x0102),
            (TlvCode.DEVICE_VERSION, 255),
            (TlvCode.COUNTRY_CODE, "US"),
            (TlvCode.VENDOR_EXTENSION, VendorExtension(42623, b"hello")),
        ]
    )
    raw = info.encode()
    back = decode(raw)
    assert back == info
    assert back.base_mac == "52:54:00:ab:cd:ef"
    assert back.mac_count == 0x0102
    assert back.get(TlvCode.MAC_COUNT).value == b"\x01\x02"  # big-endian on the wire
    assert back.value(TlvCode.DEVICE_VERSION) == 255
    assert back.as_dict()["vendor_extension"] == [{"iana": 42623, "data": b"hello".hex()}]
    assert [t.title for t in back.tlvs][:2] == ["Product Name", "Base MAC Address"]


def test_trailing_eeprom_bytes_are_ignored():
    raw = TlvInfo.build([(TlvCode.SERIAL_NUMBER, "X1")]).encode()
    assert decode(raw + b"\xff" * 200).serial_number == "X1"


def test_unknown_codes_survive_as_bytes():
    raw = hand_built([(0x30, b"\x01\x02\x03")])
    tlv = decode(raw).tlvs[0]
    assert tlv.code == 0x30 and tlv.typed == b"\x01\x02\x03" and tlv.name == "0x30"
    assert encode(decode(raw).tlvs) == raw


@given(
    st.lists(
        st.tuples(
            # Text codes and unknown codes take any bytes; fixed-size ones are tested above.
            st.sampled_from(sorted(TEXT_CODES) + [0x01, 0x30, 0x80, 0xFC]),
            st.binary(min_size=0, max_size=40),
        ),
        max_size=30,
    )
)
def test_round_trip_any_records(records):
    tlvs = tuple(Tlv(code, value) for code, value in records)
    raw = encode(tlvs)
    assert raw == hand_built([(int(t.code), t.value) for t in tlvs])
    assert decode(raw).tlvs == tlvs


# --- corruption: every error names what and where --------------------------------------------


def good() -> bytearray:
    return bytearray(TlvInfo.build([(TlvCode.PRODUCT_NAME, "leaf"), (TlvCode.MAC_COUNT, 2)]).encode())


def test_flipped_value_byte_is_a_crc_mismatch_at_the_crc_record():
    raw = good()
    raw[13] ^= 0x20  # the "l" of "leaf"
    with pytest.raises(CrcMismatch) as exc:
        decode(raw)
    assert exc.value.offset == len(raw) - 6
    assert exc.value.stored == struct.unpack(">I", raw[-4:])[0]
    assert exc.value.computed == zlib.crc32(bytes(raw[:-4]))
    lenient = decode(raw, verify_crc=False)
    assert not lenient.crc_valid and lenient.product_name == "Leaf"


def test_flipped_crc_byte_is_a_crc_mismatch():
    raw = good()
    raw[-1] ^= 0xFF
    with pytest.raises(CrcMismatch):
        decode(raw)


@pytest.mark.parametrize(
    ("mutate", "offset", "needle"),
    [
        (lambda b: b.__setitem__(slice(0, 8), b"TlvInfX\x00"), 0, "no TlvInfo signature"),
        (lambda b: b.__setitem__(slice(0, 8), b"\xff" * 8), 0, "blank"),
        (lambda b: b.__setitem__(8, 2), 8, "version 2"),
        (lambda b: b.__setitem__(slice(9, 11), struct.pack(">H", 200)), 9, "data ends"),
        (lambda b: b.__setitem__(slice(9, 11), struct.pack(">H", 2038)), 9, "exceeds the maximum"),
        (lambda b: b.__setitem__(12, 0x7F), 11, "runs past the end"),
        (lambda b: b.__setitem__(11, 0xFF), 11, "illegal TLV type 0xFF"),
        (lambda b: b.__setitem__(11, 0x00), 11, "illegal TLV type 0x00"),
    ],
)
def test_structural_corruption_is_reported_with_offset(mutate, offset, needle):
    raw = good()
    mutate(raw)
    with pytest.raises(EepromError) as exc:
        decode(raw)
    assert exc.value.offset == offset
    assert needle in str(exc.value) and f"offset {offset}" in str(exc.value)


def test_short_input_and_missing_crc():
    with pytest.raises(EepromError, match="too short"):
        decode(b"TlvInfo")
    no_crc = b"TlvInfo\x00\x01" + struct.pack(">H", 6) + b"\x21\x04leaf"
    with pytest.raises(EepromError, match="no CRC-32 TLV") as exc:
        decode(no_crc)
    assert exc.value.offset == 17


def test_crc_record_not_last_is_refused():
    body = b"\xfe\x04\x00\x00\x00\x00" + b"\x21\x04leaf"
    raw = b"TlvInfo\x00\x01" + struct.pack(">H", len(body)) + body
    with pytest.raises(EepromError, match="not the last") as exc:
        decode(raw)
    assert exc.value.offset == 11


def test_wrong_length_of_a_binary_record_is_refused():
    raw = hand_built([(0x24, b"\x00\x11\x22\x33\x44")])  # a 5-byte MAC
    with pytest.raises(EepromError, match="base_mac must be 6 bytes") as exc:
        decode(raw)
    assert exc.value.offset == 11


@pytest.mark.parametrize(
    ("code", "value", "needle"),
    [
        (TlvCode.BASE_MAC, "01:00:5e:00:00:01", "multicast"),
        (TlvCode.BASE_MAC, "00:00:00:00:00:00", "all-zero"),
        (TlvCode.BASE_MAC, "52:54:00:12:34", "not a MAC"),
        (TlvCode.MANUFACTURE_DATE, "2026-11-28 04:20:00", "MM/DD/YYYY"),
        (TlvCode.DEVICE_VERSION, 256, "out of range"),
        (TlvCode.MAC_COUNT, 65536, "out of range"),
        (TlvCode.COUNTRY_CODE, "USA", "2-letter"),
        (TlvCode.PRODUCT_NAME, "x" * 256, "at most 255"),
        (TlvCode.CRC_32, 0, "computed by the encoder"),
        (TlvCode.VENDOR_EXTENSION, b"raw", "VendorExtension"),
    ],
)
def test_bad_typed_values_are_refused(code, value, needle):
    with pytest.raises(EepromError, match=needle):
        Tlv.of(code, value)


def test_too_much_data_for_2048_bytes_is_refused():
    tlvs = [Tlv(TlvCode.VENDOR_EXTENSION, b"\x00" * 255)] * 8  # 8 * 257 = 2056 bytes
    with pytest.raises(EepromError, match="at most 2048"):
        encode(tlvs)
    fits = [Tlv(TlvCode.VENDOR_EXTENSION, b"\x00" * 255)] * 7 + [Tlv(TlvCode.SERVICE_TAG, b"x" * 220)]
    assert len(encode(fits)) == 11 + 7 * 257 + 222 + 6 == 2038


# Real EEPROMs, as their own tools printed them. Each listing shows every record in storage
# order with its length and the stored CRC-32; rebuilding the block from the printed values must
# give the printed total length and CRC. Sources: an `onie-syseeprom` listing of an Edgecore
# AS4224-52P in the DENT project's lab notes; a SONiC `decode-syseeprom` listing of an Accton
# AS5712-54X quoted in a management-framework source comment; U-Boot's `tlv_eeprom` output in a
# Milk-V Jupiter boot log (before and after it added a MAC).
REAL_LISTINGS = [
    (
        [
            (TlvCode.PRODUCT_NAME, "AS4224-52P-O-AC-F-EC"),
            (TlvCode.PART_NUMBER, "F0LEC4224004Z"),
            (TlvCode.SERIAL_NUMBER, "422452P2141017"),
            (TlvCode.BASE_MAC, "98:19:2C:45:4D:00"),
            (TlvCode.MANUFACTURE_DATE, "10/08/2021 17:32:03"),
            (TlvCode.LABEL_REVISION, "R0CA"),
            (TlvCode.PLATFORM_NAME, "arm64-accton_as4224_52t-r0"),
            (TlvCode.ONIE_VERSION, "2020.02.00.09"),
            (TlvCode.MAC_COUNT, 69),
            (TlvCode.MANUFACTURER, "Accton"),
            (TlvCode.COUNTRY_CODE, "TW"),
            (TlvCode.VENDOR, "Edgecore"),
            (TlvCode.DIAG_VERSION, "00.0c.01.00"),
        ],
        176,
        0x697F9F3C,
    ),
    (
        [
            (TlvCode.MANUFACTURE_DATE, "06/16/2016 14:01:49"),
            (TlvCode.DIAG_VERSION, "2.0.1.4"),
            (TlvCode.LABEL_REVISION, "R01J"),
            (TlvCode.MANUFACTURER, "Accton"),
            (TlvCode.COUNTRY_CODE, "TW"),
            (TlvCode.BASE_MAC, "CC:37:AB:EC:D9:B2"),
            (TlvCode.SERIAL_NUMBER, "571254X1625041"),
            (TlvCode.PART_NUMBER, "FP1ZZ5654002A"),
            (TlvCode.PRODUCT_NAME, "5712-54X-O-AC-B"),
            (TlvCode.MAC_COUNT, 74),
            (TlvCode.VENDOR, "Edgecore"),
            (TlvCode.PLATFORM_NAME, "x86_64-accton_as5712_54x-r0"),
            (TlvCode.ONIE_VERSION, "20170619-debug"),
        ],
        169,
        0x5B1B4944,
    ),
    ([(TlvCode.PRODUCT_NAME, "k1-x_milkv-jupiter")], 26, 0x4216DFE2),
    (
        [
            (TlvCode.PRODUCT_NAME, "k1-x_milkv-jupiter"),
            (TlvCode.BASE_MAC, "FE:FE:FE:8B:BB:C3"),
            (TlvCode.MAC_COUNT, 2),
        ],
        38,
        0xA50E5DD5,
    ),
]


@pytest.mark.parametrize(("values", "total", "crc"), REAL_LISTINGS)
def test_real_eeprom_listings_reproduce_their_printed_crc(values, total, crc):
    raw = TlvInfo.build(values).encode()
    assert struct.unpack(">H", raw[9:11])[0] == total
    assert struct.unpack(">I", raw[-4:])[0] == crc == crc32_bitwise(raw[:-4])
    back = decode(raw)
    assert back.crc == crc and back.crc_valid
