"""The struct codec against scapy as the oracle, plus hostile input: only DecodeError may escape."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dhcp4.codec import DecodeError, Packet, decode, encode, encode_option, ip_bytes, ip_str, mac_to_chaddr
from dhcp4.options import MAGIC_COOKIE, MIN_PACKET, MessageType

MAC = "52:54:00:12:34:56"


def scapy_discover(**dhcp_opts) -> bytes:
    opts = [("message-type", "discover")] + list(dhcp_opts.items()) + ["end"]
    pkt = BOOTP(op=1, xid=0x1234ABCD, flags=0x8000, chaddr=mac_to_chaddr(MAC), giaddr="198.18.5.1") / DHCP(
        options=opts
    )
    return bytes(pkt)


def test_decode_scapy_built_packet():
    raw = scapy_discover(
        vendor_class_id=b"PXEClient:Arch:00007:UNDI:003000", max_dhcp_size=1472, hostname=b"sw1"
    )
    pkt = decode(raw)
    assert pkt.op == 1
    assert pkt.xid == 0x1234ABCD
    assert pkt.flags == 0x8000
    assert pkt.mac == MAC
    assert pkt.giaddr == "198.18.5.1"
    assert pkt.message_type is MessageType.DISCOVER
    assert pkt.options[60] == b"PXEClient:Arch:00007:UNDI:003000"
    assert pkt.options[57] == struct.pack("!H", 1472)
    assert pkt.options[12] == b"sw1"


def test_encode_parsed_by_scapy():
    pkt = Packet(
        xid=7, yiaddr="198.18.0.100", siaddr="198.18.0.1", chaddr=mac_to_chaddr(MAC), file=b"undionly.kpxe"
    )
    pkt.options[53] = bytes([MessageType.OFFER])
    pkt.options[54] = bytes([198, 18, 0, 1])
    pkt.options[51] = struct.pack("!I", 3600)
    pkt.options[67] = b"undionly.kpxe"
    raw = encode(pkt)
    assert len(raw) >= MIN_PACKET
    sp = BOOTP(raw)
    assert sp.op == 2 and sp.xid == 7
    assert sp.yiaddr == "198.18.0.100" and sp.siaddr == "198.18.0.1"
    assert sp.chaddr[:6] == bytes.fromhex(MAC.replace(":", ""))
    assert sp.file.rstrip(b"\0") == b"undionly.kpxe"
    opts = {o[0]: o[1] for o in sp[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == 2
    assert opts["server_id"] == "198.18.0.1"
    assert opts["lease_time"] == 3600
    assert opts["boot-file-name"] == b"undionly.kpxe"
    # and it survives a full frame round trip through scapy
    frame = Ether() / IP() / UDP(sport=67, dport=68) / BOOTP(raw)
    assert bytes(frame[BOOTP]) == raw


def test_long_option_split_and_concatenated_rfc3396():
    url = ("http://198.18.0.1/" + "x" * 600).encode()
    pkt = Packet(xid=1)
    pkt.options[53] = bytes([MessageType.ACK])
    pkt.options[114] = url
    raw = encode(pkt)
    # three instances of option 114 on the wire (255 + 255 + rest)
    body = raw[240:]
    assert body[0:2] == bytes([53, 1])
    assert body[3] == 114 and body[4] == 255
    assert body[3 + 257] == 114 and body[3 + 258] == 255
    assert decode(raw).options[114] == url
    # scapy (which names 114 by its newer RFC 8910 use) sees three instances adding up to ours
    parts = [
        o[1]
        for o in BOOTP(raw)[DHCP].options
        if isinstance(o, tuple) and o[0] in (114, "default-url", "captive-portal")
    ]
    assert b"".join(p if isinstance(p, bytes) else p.encode() for p in parts) == url


def test_overload_file_and_sname_read_for_options():
    # option 52 = 3: options continue in `file`, then `sname` [RFC 2131 §4.1]
    fileopts = encode_option(12, b"from-file") + b"\xff"
    snameopts = encode_option(15, b"from.sname") + b"\xff"
    raw = bytes(
        BOOTP(op=1, xid=9, chaddr=mac_to_chaddr(MAC), file=fileopts, sname=snameopts)
        / DHCP(options=[("message-type", "request"), (52, b"\x03"), "end"])
    )
    pkt = decode(raw)
    assert pkt.options[12] == b"from-file"
    assert pkt.options[15] == b"from.sname"
    assert 52 not in pkt.options
    assert pkt.file == b"" and pkt.sname == b""


def test_encode_never_emits_overload():
    pkt = Packet()
    pkt.options[53] = b"\x05"
    pkt.options[52] = b"\x03"
    assert 52 not in decode(encode(pkt)).options
    assert bytes([52, 1, 3]) not in encode(pkt)[240:260]


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"", "shorter"),
        (b"\x01" * 239, "shorter"),
        (bytes(236) + b"\x00\x00\x00\x00", "cookie"),
        (bytes(236) + MAGIC_COOKIE + bytes([12, 40]) + b"short", "past the end"),
        (bytes(236) + MAGIC_COOKIE + bytes([12]), "no length"),
        (bytes(236) + MAGIC_COOKIE + bytes([52, 1, 9, 255]), "option 52"),
        (bytes([1, 1, 17]) + bytes(233) + MAGIC_COOKIE + b"\xff", "hlen"),
    ],
)
def test_malformed_packets_raise_decode_error(raw, why):
    with pytest.raises(DecodeError, match=why):
        decode(raw)


def test_zero_length_chaddr_decodes_to_empty_mac():
    raw = bytearray(scapy_discover())
    raw[2] = 0  # hlen
    assert decode(bytes(raw)).mac == ""


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=700))
def test_fuzz_random_bytes(data):
    with contextlib.suppress(DecodeError):
        decode(data)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=400), st.integers(0, 255), st.integers(0, 3))
def test_fuzz_valid_header_random_options(options, hlen, overload):
    head = bytearray(scapy_discover()[:240])
    head[2] = hlen
    tail = bytes([52, 1, overload]) + options if overload else options
    try:
        pkt = decode(bytes(head) + tail)
    except DecodeError:
        return
    # whatever decoded must encode again (no exception but ValueError for oversize fields)
    encode(pkt)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.integers(1, 254).filter(lambda c: c != 52), st.binary(max_size=600), max_size=12))
def test_roundtrip_any_options(opts):
    pkt = Packet(xid=42, chaddr=mac_to_chaddr(MAC))
    pkt.options.update(opts)
    assert decode(encode(pkt)).options == dict(opts.items())


def test_remembered_addresses_are_what_inet_aton_and_inet_ntoa_say() -> None:
    """The codec remembers address conversions both ways: a non-canonical spelling that
    inet_aton accepts ("1.2", "010.0.0.1") must never come back as the text of its bytes."""
    assert ip_bytes("1.2") == b"\x01\x00\x00\x02"
    assert ip_bytes("010.0.0.1") == b"\x08\x00\x00\x01"
    assert ip_str(b"\x01\x00\x00\x02") == "1.0.0.2"
    assert ip_str(b"\x08\x00\x00\x01") == "8.0.0.1"
    pkt = decode(encode(Packet(op=1, ciaddr="1.2", giaddr="198.19.0.1", options={50: b"\x01\x00\x00\x02"})))
    assert (pkt.ciaddr, pkt.giaddr, pkt.ip_option(50)) == ("1.0.0.2", "198.19.0.1", "1.0.0.2")
    assert ip_bytes(ip_str(b"\xc6\x13\x03\x04")) == b"\xc6\x13\x03\x04"
    with pytest.raises(OSError):
        ip_bytes("not an address")
    with pytest.raises(OSError):
        ip_str(b"\x01\x02\x03")


def test_options_given_as_bytearray_read_as_bytes_do() -> None:
    pkt = Packet(options={53: bytearray(b"\x03"), 50: bytearray(b"\xc6\x12\x00\x07")})
    assert pkt.message_type is MessageType.REQUEST
    assert pkt.ip_option(50) == "198.18.0.7"
    assert Packet(options={53: b"\x09"}).message_type is None
    assert Packet(options={53: b"\x01\x01"}).message_type is None
