"""pxe.dhcp.replies and clientinfo: remembered boot options are what a fresh computation gives;
a Client carries each option in its own field."""

from __future__ import annotations

from dhcp4.codec import Packet
from dhcp4.options import (
    OPT_BOOTFILE,
    OPT_TFTP_SERVER,
    OPT_TFTP_SERVER_ADDRESS,
    OPT_VENDOR_CLASS,
    OPT_VENDOR_SPECIFIC,
    MessageType,
)
from pxe.dhcp import replies
from pxe.dhcp.clientinfo import client_from_packet
from pxe.policy import BootDecision, Client, Service

MAC = "52:54:00:00:00:01"
PXE = "PXEClient:Arch:00000:UNDI:002001"


def _apply(client: Client, decision: BootDecision, server: str, prl: bytes | bytearray | None) -> Packet:
    reply = replies.base_reply(Packet(op=1, xid=7), MessageType.OFFER, server)
    replies.add_boot_options(reply, client, decision, server, prl)  # type: ignore[arg-type]
    return reply


def test_remembered_boot_options_follow_every_input() -> None:
    decision = BootDecision(bootfile="undionly.kpxe", hostname="h1")
    pxe = Client(mac=MAC, service=Service.DHCP, vendor_class=PXE)
    first = _apply(pxe, decision, "198.18.0.1", bytes((66, 67)))
    assert first.siaddr == "198.18.0.1" and first.file == b"undionly.kpxe"
    assert first.options[OPT_TFTP_SERVER] == b"198.18.0.1" and OPT_TFTP_SERVER_ADDRESS not in first.options
    assert first.options[OPT_VENDOR_CLASS] == replies.VC_PXE and OPT_VENDOR_SPECIFIC in first.options
    # a caller changing its reply does not change the next one
    first.options.pop(OPT_VENDOR_SPECIFIC)
    again = _apply(pxe, decision, "198.18.0.1", bytes((66, 67)))
    assert again.options == {**first.options, OPT_VENDOR_SPECIFIC: replies.PXE_SKIP_DISCOVERY}
    # another server address, option 55, firmware or decision: its own options
    other = _apply(pxe, decision, "198.18.1.1", bytes((150,)))
    assert other.siaddr == "198.18.1.1" and other.options[OPT_TFTP_SERVER_ADDRESS] == b"\xc6\x12\x01\x01"
    assert OPT_TFTP_SERVER not in other.options
    ipxe = Client(mac=MAC, service=Service.DHCP, vendor_class=PXE, is_ipxe=True)
    assert OPT_VENDOR_CLASS not in _apply(ipxe, decision, "198.18.0.1", None).options
    url = BootDecision(bootfile="http://198.18.0.1/ipxe.efi", next_server="198.18.0.9")
    http = Client(mac=MAC, service=Service.DHCP, vendor_class="HTTPClient:Arch:00016:UNDI:003000")
    got = _apply(http, url, "198.18.0.1", bytearray((66,)))  # unhashable 55: computed, not kept
    assert got.siaddr == "198.18.0.9" and got.options[OPT_VENDOR_CLASS] == replies.VC_HTTP
    assert got.options[OPT_BOOTFILE] == b"http://198.18.0.1/ipxe.efi"
    assert got.options[OPT_TFTP_SERVER] == b"198.18.0.9"
    assert replies.boot_options(http, url, "198.18.0.1", bytes((66,)))[2] == {
        k: v for k, v in got.options.items() if k not in (53, 54)
    }


def test_remembered_boot_options_follow_an_edited_extra_options() -> None:
    """A decision's fields are frozen but its extra_options is a mapping its policy may edit:
    the options go out as they are now, never as they were remembered."""
    extra: dict[int, bytes] = {150: b"\xc6\x12\x00\x01"}
    decision = BootDecision(bootfile="x.efi", extra_options=extra)
    pxe = Client(mac=MAC, service=Service.DHCP, vendor_class=PXE)
    assert _apply(pxe, decision, "198.18.0.1", None).options[150] == b"\xc6\x12\x00\x01"
    extra[150] = b"\xc6\x12\x00\x02"
    extra[252] = b"http://198.18.0.1/wpad.dat"
    again = _apply(pxe, decision, "198.18.0.1", None)
    assert again.options[150] == b"\xc6\x12\x00\x02" and again.options[252] == b"http://198.18.0.1/wpad.dat"
    del extra[252]
    assert 252 not in _apply(pxe, decision, "198.18.0.1", None).options


def test_client_from_packet_fills_each_field_from_its_option() -> None:
    """client_from_packet builds Client positionally: every field checked by name here."""
    options = {
        53: b"\x01",
        60: b"PXEClient:Arch:00007:UNDI:003000\x00",
        77: b"\x04iPXE",
        93: b"\x00\x09",
        61: b"\x01\x52\x54\x00\x00\x00\x01",
        97: b"\x00" + bytes(range(16)),
    }
    pkt = Packet(op=1, chaddr=bytes.fromhex("525400000001").ljust(16, b"\0"), giaddr="198.19.0.1",
                 ciaddr="198.18.0.5", options=options)  # fmt: skip
    rai = {1: b"eth1/1", 2: b"leaf1"}
    client = client_from_packet(pkt, Service.DHCP, "s0", "198.18.0.1", rai)
    assert client == Client(
        mac=MAC,
        service=Service.DHCP,
        arch=7,  # 9 (EFI BC) is read as 7 (RFC 4578 erratum 4624)
        vendor_class="PXEClient:Arch:00007:UNDI:003000",
        user_class="iPXE",
        is_ipxe=True,
        client_id=options[61],
        uuid="00010203-0405-0607-0809-0a0b0c0d0e0f",
        circuit_id=b"eth1/1",
        remote_id=b"leaf1",
        relay="198.19.0.1",
        ip="198.18.0.5",
        server_ip="198.18.0.1",
        interface="s0",
        path=None,
        headers={},
        options=options,
    )
    bare = client_from_packet(Packet(op=1, options={60: bytearray(b"HTTPClient")}))
    assert (bare.vendor_class, bare.relay, bare.ip, bare.circuit_id, bare.is_http_boot) == (
        "HTTPClient", None, None, None, True,
    )  # fmt: skip
