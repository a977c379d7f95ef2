"""pxe.tftp.packets and option negotiation: pure functions, fuzzed with hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pxe.tftp import packets as P
from pxe.tftp.transfer import _RX, _RX_WORD, MAX_BLKSIZE, Limits, _ack_words, negotiate


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=1500))
def test_parse_random_bytes_raises_only_malformed(data):
    try:
        packet = P.parse(data)
    except P.MalformedPacket:
        return
    assert isinstance(packet, P.Request | P.Ack | P.Error | P.Data)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from([b"\x00\x01", b"\x00\x02"]),
    st.lists(st.binary(max_size=40).filter(lambda b: b"\x00" not in b), max_size=12),
    st.booleans(),
)
def test_parse_request_shaped_garbage(opcode, items, terminated):
    data = opcode + b"\x00".join(items) + (b"\x00" if terminated else b"")
    try:
        packet = P.parse(data)
    except P.MalformedPacket:
        return
    assert isinstance(packet, P.Request)
    assert all(k == k.lower() for k in packet.options)


@given(
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), min_size=1, max_size=100),
    st.sampled_from(["octet", "OCTET", "netascii"]),
    st.dictionaries(
        st.sampled_from(["blksize", "tsize", "windowsize", "timeout", "x"]), st.integers(0, 10**6)
    ),
)
def test_request_round_trip(name, mode, options):
    packet = P.parse(P.build_request(P.OP_RRQ, name, mode, options))
    assert packet == P.Request(P.OP_RRQ, name, P.Mode(mode.lower()), {k: str(v) for k, v in options.items()})


def test_other_packets():
    assert P.parse(P.build_ack(65535)) == P.Ack(65535)
    assert P.parse(P.build_data(65536 + 7, b"abc")) == P.Data(7, b"abc")  # wire numbers wrap
    assert P.parse(P.build_error(8, "User aborted")) == P.Error(8, "User aborted")
    assert P.parse(b"\x00\x05\x00\x01no terminator") == P.Error(1, "no terminator")


@settings(max_examples=1000, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["blksize", "tsize", "windowsize", "timeout"]), st.text(max_size=14)),
    st.integers(0, 2**40),
)
def test_negotiate_stays_in_range(requested, size):
    n = negotiate(requested, size, Limits())
    assert 8 <= n.blksize <= MAX_BLKSIZE and 1 <= n.windowsize <= 64 and 1 <= n.timeout <= 255
    for key, value in n.oack.items():
        assert key in requested and value.isdigit()


def test_negotiate_examples():
    assert negotiate({"blksize": "1468", "windowsize": "4", "tsize": "0"}, 10, Limits()).oack == {
        "blksize": "1468",
        "tsize": "10",
        "windowsize": "4",
    }
    n = negotiate({"blksize": "65465", "windowsize": "65"}, 10, Limits(max_blksize=1468))
    assert (n.blksize, n.windowsize) == (1468, 64)
    assert negotiate({"blksize": "7", "timeout": "256"}, 10, Limits()).oack == {}
    assert negotiate({"tsize": "0"}, 0, Limits()).oack == {}  # curl rejects "tsize 0" in an OACK


def test_the_lockstep_fast_path_recognises_exactly_the_wire_ack_of_each_block():
    # transfer.py compares the received datagram's first 4 bytes, read as one native word, with
    # a table entry: each entry must be ACK n as it arrives, and no two blocks may share one.
    words = _ack_words()
    assert len(words) == 65536 and len(set(words)) == 65536
    for n in (0, 1, 255, 256, 4660, 65535):
        _RX[:4] = P.build_ack(n)
        assert _RX_WORD[0] == words[n]
    _RX[:4] = P.build_data(1, b"")
    assert _RX_WORD[0] not in words
