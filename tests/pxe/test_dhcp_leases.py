"""The lease engine and handler without sockets: RFC 2131 §4.3 states, offers, reservations,
quirks of the replies. (Real clients talk to the real server in test_dhcp_netns.py.)"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from dhcp4.codec import Packet, decode, encode, mac_to_chaddr
from dhcp4.options import MessageType
from pxe.dhcp.config import DhcpServerConfig, Mode, Reservation, Subnet
from pxe.dhcp.handler import Arrival, Handler
from pxe.dhcp.leases import Decline, LeaseEngine, LeaseState, MemoryLeaseStore, Outcome
from pxe.policy import BootDecision, Client, Event

NET = Subnet("198.18.0.0/24", pools=(("198.18.0.100", "198.18.0.109"),), router="198.18.0.1", interface="s0")
RELAY = "198.18.0.2"  # the relay's address on our link: the source of what it relays
RELAYED = Subnet(
    "198.19.0.0/24", pools=(("198.19.0.10", "198.19.0.20"),), router="198.19.0.1", relays=(RELAY,)
)
ARR = Arrival("s0", "198.18.0.1", "0.0.0.0", 68, 67)
FROM_RELAY = Arrival("s0", "198.18.0.1", RELAY, 67, 67, broadcast=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def mac(i: int) -> str:
    return f"52:54:00:00:00:{i:02x}"


def engine(clock=None, store=None, **kw) -> LeaseEngine:
    return LeaseEngine(
        [NET, RELAYED], kw.pop("reservations", ()), store or MemoryLeaseStore(), clock=clock or Clock(), **kw
    )


def test_consecutive_macs_get_distinct_offers_without_collision():
    eng = engine()
    offers = [eng.offer(NET, mac(i)) for i in range(10)]
    assert len(set(offers)) == 10
    assert eng.offer(NET, mac(11)) is None  # pool of 10 is exhausted by live offers


def test_offer_is_stable_for_the_same_client_and_expires():
    clock = Clock()
    eng = engine(clock, offer_timeout=30)
    first = eng.offer(NET, mac(1))
    assert eng.offer(NET, mac(1)) == first
    for i in range(2, 11):
        eng.offer(NET, mac(i))
    assert eng.offer(NET, mac(20)) is None
    clock.now += 31
    assert eng.offer(NET, mac(20)) is not None  # an old offer no longer holds its address


def test_selecting_binds_and_persists():
    store = MemoryLeaseStore()
    eng = engine(store=store)
    ip = eng.offer(NET, mac(1))
    ans = eng.request(NET, mac(1), ip, selecting=True, hostname="sw1")
    assert ans.outcome is Outcome.ACK and ans.ip == ip and ans.lease_time == NET.lease_time
    assert store.leases[ip].state is LeaseState.BOUND and store.leases[ip].hostname == "sw1"
    # a restarted engine over the same store keeps the binding
    again = LeaseEngine([NET], (), store, clock=Clock())
    assert again.offer(NET, mac(1)) == ip


def test_request_for_someone_elses_address_is_naked():
    eng = engine()
    ip = eng.offer(NET, mac(1))
    eng.request(NET, mac(1), ip, selecting=True)
    assert eng.request(NET, mac(2), ip, selecting=False).outcome is Outcome.NAK
    assert eng.request(NET, mac(2), "198.18.7.7", selecting=False).outcome is Outcome.NAK  # wrong subnet


def test_init_reboot_and_renewing_follow_rfc2131_4_3_2():
    clock = Clock()
    eng = engine(clock)
    # no record of the client: silent (another server may own it), never a blind ACK
    for ip in ("198.18.0.105", "198.18.0.10"):
        answer = eng.request(NET, mac(3), ip, selecting=False)
        assert answer.outcome is Outcome.SILENT and "no record" in answer.reason
    assert eng.lease_of(NET, mac(3)) is None
    # wrong network: NAK (silent when not authoritative)
    assert eng.request(NET, mac(3), "198.18.7.7", selecting=False).outcome is Outcome.NAK
    quiet = engine(authoritative=False)
    assert quiet.request(NET, mac(3), "198.18.7.7", selecting=False).outcome is Outcome.SILENT
    # a client with a binding gets it confirmed; asking for another address is a NAK
    ip = eng.offer(NET, mac(1))
    assert eng.request(NET, mac(1), ip, selecting=True).outcome is Outcome.ACK
    assert eng.request(NET, mac(1), ip, selecting=False).outcome is Outcome.ACK
    other = "198.18.0.109" if ip != "198.18.0.109" else "198.18.0.108"
    assert eng.request(NET, mac(1), other, selecting=False).outcome is Outcome.NAK
    # someone else's live address, asked by a stranger: NAK (the client's notion is wrong)
    answer = eng.request(NET, mac(4), ip, selecting=False)
    assert answer.outcome is Outcome.NAK and "another client" in answer.reason
    # still its record after expiry: the owner gets it back, a stranger still gets silence
    clock.now += NET.lease_time + 1
    assert eng.request(NET, mac(4), ip, selecting=False).outcome is Outcome.SILENT
    assert eng.request(NET, mac(1), ip, selecting=False).outcome is Outcome.ACK
    # an outstanding offer is a record too (a client that leaves out option 54)
    offered = eng.offer(NET, mac(5))
    assert eng.request(NET, mac(5), offered, selecting=False).outcome is Outcome.ACK
    # a reservation is a record: its device is confirmed, elsewhere NAKed
    res = engine(reservations=(Reservation(mac(6), "198.18.0.7"),))
    assert res.request(NET, mac(6), "198.18.0.7", selecting=False).outcome is Outcome.ACK
    assert res.request(NET, mac(7), "198.18.0.7", selecting=False).outcome is Outcome.NAK


def test_decline_only_from_the_leases_owner_for_its_address():
    clock = Clock()
    eng = engine(clock, reservations=(Reservation(mac(9), "198.18.0.109"),))
    free = [f"198.18.0.{i}" for i in range(100, 109)]
    # strangers, offers and the wrong address: nothing is quarantined
    for i, ip in enumerate(free):
        assert eng.decline(NET, mac(40 + i), ip) is Decline.NOT_ITS_LEASE
    ip = eng.offer(NET, mac(1))
    assert eng.decline(NET, mac(1), ip) is Decline.NOT_ITS_LEASE  # offered, not bound
    eng.request(NET, mac(1), ip, selecting=True, client_id=b"\x01one")
    assert eng.decline(NET, mac(2), ip) is Decline.NOT_ITS_LEASE  # another chaddr
    assert eng.decline(NET, mac(1), ip, b"\x01two") is Decline.OTHER_CLIENT_ID
    assert eng.decline(NET, mac(1), ip) is Decline.OTHER_CLIENT_ID  # its lease carries a client-id
    assert eng.decline(NET, mac(1), "198.18.0.108") is Decline.NOT_ITS_LEASE
    assert not any(lease.state is LeaseState.DECLINED for lease in eng.by_ip.values())
    # the reserved device, even by its own MAC: never locked out of its one address
    r = eng.offer(NET, mac(9))
    eng.request(NET, mac(9), r, selecting=True)
    assert eng.decline(NET, mac(9), r) is Decline.RESERVED
    assert eng.offer(NET, mac(9)) == r and eng.lease_of(NET, mac(9)).state is LeaseState.BOUND
    # an expired lease is not the owner's any more
    clock.now += NET.lease_time + 1
    assert eng.decline(NET, mac(1), ip, b"\x01one") is Decline.NOT_BOUND
    clock.now -= NET.lease_time + 1
    assert eng.decline(NET, mac(1), ip, b"\x01one") is Decline.QUARANTINED
    assert eng.by_ip[int.from_bytes(bytes(map(int, ip.split("."))), "big")].state is LeaseState.DECLINED


def test_release_keeps_binding_and_decline_quarantines():
    clock = Clock()
    eng = engine(clock, decline_quarantine=600)
    ip = eng.offer(NET, mac(1))
    eng.request(NET, mac(1), ip, selecting=True)
    assert eng.release(NET, mac(1), ip)
    assert eng.lease_of(NET, mac(1)).state is LeaseState.RELEASED
    assert eng.offer(NET, mac(1)) == ip  # same client, same address
    bad = eng.offer(NET, mac(2))
    eng.request(NET, mac(2), bad, selecting=True)
    assert eng.decline(NET, mac(2), bad) is Decline.QUARANTINED
    seen = {eng.offer(NET, mac(i)) for i in range(2, 11)}
    assert bad not in seen
    clock.now += 601
    for i in range(2, 11):
        eng.forget_offer(NET, mac(i))
    assert bad in {eng.offer(NET, mac(i)) for i in range(20, 30)}


def test_reserved_addresses_never_go_to_others():
    res = (Reservation("52:54:00:aa:00:01", "198.18.0.100", "r1"),)
    eng = engine(reservations=res)
    assert "198.18.0.100" not in {eng.offer(NET, mac(i)) for i in range(9)}
    assert eng.offer(NET, "52:54:00:aa:00:01") == "198.18.0.100"
    assert eng.request(NET, "52:54:00:aa:00:01", "198.18.0.101", selecting=False).outcome is Outcome.NAK


def test_released_addresses_reused_only_when_pool_is_full():
    clock = Clock()
    eng = engine(clock, offer_timeout=5)
    for i in range(10):
        ip = eng.offer(NET, mac(i))
        eng.request(NET, mac(i), ip, selecting=True)
    old = eng.lease_of(NET, mac(0)).ip
    eng.release(NET, mac(0), old)
    assert eng.offer(NET, mac(50)) == old  # the only free one


# --- handler: packets in, packets out ------------------------------------------------------


DEFAULT = BootDecision(bootfile="undionly.kpxe")


class Policy:
    def __init__(self, decision: BootDecision | None = DEFAULT) -> None:
        self.decision = decision
        self.seen: list[Client] = []

    def decide(self, client: Client) -> BootDecision | None:
        self.seen.append(client)
        return self.decision

    def render(self, client, path):
        return None


def request_packet(mtype: MessageType, m: str = mac(1), **opts) -> Packet:
    pkt = Packet(op=1, xid=0xABCD, chaddr=mac_to_chaddr(m))
    pkt.options[53] = bytes([mtype])
    for code, value in opts.items():
        pkt.options[int(code.lstrip("o"))] = value
    return decode(encode(pkt))  # through the wire format, as the server sees it


def make_handler(policy=None, mode=Mode.AUTHORITATIVE, subnets=(NET, RELAYED)):
    events: list[Event] = []
    cfg = DhcpServerConfig(interfaces=("s0",), subnets=subnets, mode=mode)
    eng = LeaseEngine(subnets, (), MemoryLeaseStore()) if mode is Mode.AUTHORITATIVE else None
    return Handler(cfg, policy or Policy(), eng, events.append), events


def test_offer_reply_fields_and_quirks_for_uefi_pxe():
    h, events = make_handler()
    out = h.handle(
        request_packet(
            MessageType.DISCOVER, o60=b"PXEClient:Arch:00007:UNDI:003000", o93=b"\0\x07", o61=b"\x01abc"
        ),
        ARR,
    )
    reply = decode(encode(out.packet))
    assert reply.message_type is MessageType.OFFER
    assert reply.yiaddr.startswith("198.18.0.1")
    assert reply.ip_option(54) == "198.18.0.1" and reply.siaddr == "198.18.0.1"
    assert reply.options[67] == b"undionly.kpxe" and reply.file == b"undionly.kpxe"
    # EDK2: PXEClient only together with 43 = {6: 8}
    assert reply.options[60] == b"PXEClient" and reply.options[43] == bytes([6, 1, 8])
    assert reply.options[61] == b"\x01abc"  # RFC 6842 echo
    assert out.dest_ip == reply.yiaddr and out.unicast_mac == mac(1)  # no broadcast flag: unicast
    # One event per packet, its outcome: the DISCOVER is the offer event's (xid, arch, requested)
    assert [e.kind for e in events] == ["dhcp.offer"]
    assert events[0].detail["arch"] == 7 and events[0].ip == reply.yiaddr


def test_http_boot_client_gets_httpclient_and_url():
    h, _ = make_handler(Policy(BootDecision(bootfile="http://198.18.0.1/ipxe.efi")))
    out = h.handle(
        request_packet(MessageType.DISCOVER, o60=b"HTTPClient:Arch:00016:UNDI:003000", o93=b"\0\x10"), ARR
    )
    assert out.packet.options[60] == b"HTTPClient"
    assert out.packet.options[67] == b"http://198.18.0.1/ipxe.efi"
    assert 43 not in out.packet.options


def test_ipxe_client_and_extra_options_as_given():
    url = "http://198.18.0.1/onie-installer-x86_64"
    # RFC 3925: enterprise 42623, data length, sub-option 1 = URL: what an ONIE policy would send
    vivso = struct.pack("!IB", 42623, len(url) + 2) + bytes([1, len(url)]) + url.encode()
    decision = BootDecision(
        bootfile="boot.ipxe", extra_options={114: url.encode(), 125: vivso}, hostname="sw7"
    )
    h, _ = make_handler(Policy(decision))
    out = h.handle(
        request_packet(MessageType.DISCOVER, o77=b"iPXE", o60=b"PXEClient:Arch:00000:UNDI:002001"), ARR
    )
    opts = out.packet.options
    assert 60 not in opts  # iPXE needs no PXE dance
    assert opts[114] == url.encode() and opts[125] == vivso
    assert opts[12] == b"sw7"


def test_option82_echoed_last_and_relay_subnet_chosen_by_giaddr_or_link_selection():
    h, events = make_handler()
    rai = bytes([1, 4]) + b"eth7" + bytes([2, 3]) + b"sw1"
    pkt = request_packet(MessageType.DISCOVER, o82=rai)
    pkt.giaddr = "198.19.0.1"
    out = h.handle(pkt, FROM_RELAY)
    raw = encode(out.packet)
    assert out.packet.yiaddr.startswith("198.19.0.")
    assert (out.dest_ip, out.dest_port) == ("198.19.0.1", 67)
    assert list(out.packet.options)[-1] == 82 and out.packet.options[82] == rai
    assert raw.rstrip(b"\0").endswith(bytes([82, len(rai)]) + rai + b"\xff")
    assert events[-1].detail["circuit_id"] == b"eth7".hex()
    # RFC 3527 link selection overrides giaddr (which then is the relay's own address)
    link = rai + bytes([5, 4, 198, 19, 0, 0])
    pkt = request_packet(MessageType.DISCOVER, mac(2), o82=link)
    pkt.giaddr = RELAY
    out = h.handle(pkt, FROM_RELAY)
    assert out.packet.yiaddr.startswith("198.19.0.") and out.dest_ip == RELAY


def test_reply_fits_option57():
    big = {200 + i: b"x" * 100 for i in range(8)}
    h, _ = make_handler(Policy(BootDecision(bootfile="undionly.kpxe", extra_options=big)))
    out = h.handle(request_packet(MessageType.DISCOVER), ARR)  # no option 57: 576
    assert len(encode(out.packet)) <= 576 - 28
    assert out.packet.options[67] == b"undionly.kpxe"
    out = h.handle(request_packet(MessageType.DISCOVER, mac(3), o57=struct.pack("!H", 1500)), ARR)
    assert all(code in out.packet.options for code in big)


def test_full_dora_renew_release_inform_through_handler():
    h, events = make_handler()
    offer = h.handle(request_packet(MessageType.DISCOVER, o61=b"\x01x"), ARR).packet
    ip = offer.yiaddr
    req = request_packet(MessageType.REQUEST, o50=bytes(map(int, ip.split("."))), o54=bytes([198, 18, 0, 1]))
    ack = h.handle(req, ARR).packet
    assert ack.message_type is MessageType.ACK and ack.yiaddr == ip
    renew = request_packet(MessageType.REQUEST)
    renew.ciaddr = ip
    out = h.handle(renew, Arrival("s0", "198.18.0.1", ip, 68, 67))
    assert out.packet.message_type is MessageType.ACK and (out.dest_ip, out.dest_port) == (ip, 68)
    inform = request_packet(MessageType.INFORM)
    inform.ciaddr = ip
    out = h.handle(inform, ARR)
    assert out.packet.yiaddr == "0.0.0.0" and 51 not in out.packet.options and out.dest_ip == ip
    rel = request_packet(MessageType.RELEASE, o54=bytes([198, 18, 0, 1]))
    rel.ciaddr = ip
    assert h.handle(rel, ARR) is None
    kinds = [e.kind for e in events]
    assert kinds == ["dhcp.offer", "dhcp.ack", "dhcp.ack", "dhcp.ack", "dhcp.release"]
    assert [e.detail.get("state") for e in events[1:3]] == ["selecting", "rebinding"]  # ARR: broadcast
    assert events[3].detail["inform"] is True  # the INFORM is its ACK's event


def test_foreign_server_id_frees_our_offer_and_nak_is_broadcast():
    h, events = make_handler()
    offer = h.handle(request_packet(MessageType.DISCOVER), ARR).packet
    req = request_packet(
        MessageType.REQUEST, o50=bytes(map(int, offer.yiaddr.split("."))), o54=bytes([198, 18, 0, 9])
    )
    assert h.handle(req, ARR) is None
    assert events[-1].detail["other_server"] == "198.18.0.9"
    assert h.engine.offers == {}
    bad = request_packet(MessageType.REQUEST, mac(2), o50=bytes([198, 18, 7, 7]))
    out = h.handle(bad, ARR)
    assert out.packet.message_type is MessageType.NAK and out.dest_ip == "255.255.255.255"


def test_policy_none_is_silent_but_recorded():
    h, events = make_handler(Policy(None))
    assert h.handle(request_packet(MessageType.DISCOVER), ARR) is None
    assert events[-1].kind == "dhcp.ignored" and events[-1].mac == mac(1)


def test_policy_exception_does_not_escape():
    class Broken(Policy):
        def decide(self, client):
            raise RuntimeError("boom")

    h, events = make_handler(Broken())
    assert h.handle(request_packet(MessageType.DISCOVER), ARR) is None
    assert events[-1].kind == "dhcp.ignored"


def test_client_fields_from_packet():
    p = Policy()
    h, _ = make_handler(p)
    uuid = bytes([0]) + bytes(range(16))
    h.handle(
        request_packet(
            MessageType.DISCOVER, o93=b"\0\x09", o77=bytes([4]) + b"onie" + bytes([3]) + b"abc", o97=uuid
        ),
        ARR,
    )
    c = p.seen[-1]
    assert c.arch == 7  # 9 treated as x64 (RFC 4578 erratum)
    assert c.user_class == "onie" and not c.is_ipxe
    assert c.interface == "s0"  # the receiving interface, for the policy's choice of our address
    assert c.uuid == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    h.handle(request_packet(MessageType.DISCOVER, mac(2), o175=b"\x01\x01\x01"), ARR)
    assert p.seen[-1].is_ipxe
    # option 77 without RFC 3004 length bytes (iPXE, busybox `-x 77:`): one plain item (dhcp4.tlv)
    h.handle(request_packet(MessageType.DISCOVER, mac(3), o77=b"iPXE"), ARR)
    assert p.seen[-1].is_ipxe and p.seen[-1].user_class == "iPXE"
    h.handle(request_packet(MessageType.DISCOVER, mac(4), o77=b"onie_dhcp_user_class"), ARR)
    assert p.seen[-1].user_class == "onie_dhcp_user_class"
    # every option rides along as received, for the application to read (ONIE's 60/77/125, say)
    assert p.seen[-1].options[77] == b"onie_dhcp_user_class"


def test_proxy_mode_bios_gets_bootfile_uefi_goes_to_4011():
    h, events = make_handler(mode=Mode.PROXY, subnets=(Subnet("198.18.0.0/24", interface="s0"),))
    guid = bytes([0]) + bytes(range(16))
    bios = h.handle(
        request_packet(MessageType.DISCOVER, o60=b"PXEClient:Arch:00000:UNDI:002001", o93=b"\0\0", o97=guid),
        ARR,
    )
    p = bios.packet
    assert p.yiaddr == "0.0.0.0" and p.ip_option(54) == "198.18.0.1" and p.options[60] == b"PXEClient"
    assert p.options[43] == bytes([6, 1, 8]) and p.file == b"undionly.kpxe" and p.options[97] == guid
    assert bios.dest_ip == "255.255.255.255"
    uefi = h.handle(
        request_packet(MessageType.DISCOVER, mac(2), o60=b"PXEClient:Arch:00007:UNDI:003000", o93=b"\0\x07"),
        ARR,
    )
    assert (
        43 not in uefi.packet.options and uefi.packet.file == b"" and uefi.packet.options[60] == b"PXEClient"
    )
    req = request_packet(MessageType.REQUEST, mac(2), o60=b"PXEClient:Arch:00007:UNDI:003000", o93=b"\0\x07")
    req.ciaddr = "198.18.0.50"
    ack = h.handle(req, Arrival("s0", "198.18.0.1", "198.18.0.50", 68, 4011))
    assert ack.packet.message_type is MessageType.ACK and ack.packet.file == b"undionly.kpxe"
    assert (ack.dest_ip, ack.dest_port) == ("198.18.0.50", 68)
    # a plain DHCP client is not ours in proxy mode
    assert h.handle(request_packet(MessageType.DISCOVER, mac(3)), ARR) is None
    assert events[-1].kind == "dhcp.ignored"


def test_server_id_override_and_tftp_server_options_when_asked():
    h, _events = make_handler()
    rai = bytes([1, 2]) + b"p1" + bytes([11, 4, 198, 19, 0, 1])  # RFC 5107 server-id override
    pkt = request_packet(MessageType.DISCOVER, o82=rai, o55=bytes([1, 3, 66, 67, 150]))
    pkt.giaddr = "198.19.0.1"
    offer = h.handle(pkt, FROM_RELAY).packet
    assert offer.ip_option(54) == "198.19.0.1"
    assert offer.options[66] == b"198.18.0.1" and offer.ip_option(150) == "198.18.0.1"
    req = request_packet(
        MessageType.REQUEST, o82=rai, o50=bytes(map(int, offer.yiaddr.split("."))), o54=bytes([198, 19, 0, 1])
    )
    req.giaddr = "198.19.0.1"
    ack = h.handle(req, FROM_RELAY).packet
    assert ack.message_type is MessageType.ACK and ack.ip_option(54) == "198.19.0.1"
    # not asked: not sent
    assert 66 not in h.handle(request_packet(MessageType.DISCOVER, mac(5)), ARR).packet.options


def test_renewing_and_rebinding_told_apart_by_destination():
    h, events = make_handler()
    offer = h.handle(request_packet(MessageType.DISCOVER), ARR).packet
    ip = offer.yiaddr
    h.handle(
        request_packet(MessageType.REQUEST, o50=bytes(map(int, ip.split("."))), o54=bytes([198, 18, 0, 1])),
        ARR,
    )
    for broadcast, state in ((False, "renewing"), (True, "rebinding")):
        renew = request_packet(MessageType.REQUEST)
        renew.ciaddr = ip
        out = h.handle(renew, Arrival("s0", "198.18.0.1", ip, 68, 67, broadcast=broadcast))
        assert out.packet.message_type is MessageType.ACK
        assert events[-1].detail["state"] == state


def test_reservation_hostname_and_stale_offers_purged():
    events: list[Event] = []
    res = (Reservation("52:54:00:aa:00:07", "198.18.0.7", "rack1-sw7"),)
    cfg = DhcpServerConfig(interfaces=("s0",), subnets=(NET,), reservations=res)
    clock = Clock()
    eng = LeaseEngine(cfg.subnets, res, MemoryLeaseStore(), clock=clock, offer_timeout=10)
    h = Handler(cfg, Policy(BootDecision(bootfile="x")), eng, events.append)
    offer = h.handle(request_packet(MessageType.DISCOVER, "52:54:00:aa:00:07"), ARR).packet
    assert offer.yiaddr == "198.18.0.7" and offer.options[12] == b"rack1-sw7"  # reserved outside the pool
    for i in range(5):
        eng.offer(NET, mac(i))
    clock.now += 11
    assert eng.purge_offers() == 6 and eng.offers == {} and eng.offered_ips == {}


ADDRS = st.sampled_from(
    ["0.0.0.0", "198.18.0.1", "198.18.0.105", "198.19.0.1", "198.19.0.15", "198.18.9.9", "255.255.255.255"]
)
OPTION_VALUES = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"\x01", b"\x03", b"\x07", bytes([198, 18, 0, 105]), bytes([198, 18, 0, 1]), b"PXEClient:Arch:00007",
                     b"HTTPClient:Arch:00016", b"iPXE", bytes([1, 2]) + b"ab" + bytes([5, 4, 198, 19, 0, 0]),
                     bytes([11, 4, 198, 19, 0, 1]), b"\x00\x07", b"\x05\xdc"]),
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    mtype=st.integers(0, 10),
    op=st.sampled_from([1, 1, 1, 2]),
    hlen=st.sampled_from([6, 6, 0, 16, 3]),
    flags=st.sampled_from([0, 0x8000]),
    ciaddr=ADDRS,
    giaddr=ADDRS,
    options=st.dictionaries(
        st.sampled_from([12, 43, 50, 54, 55, 57, 60, 61, 77, 82, 93, 97, 175]), OPTION_VALUES, max_size=8
    ),
    mode=st.sampled_from([Mode.AUTHORITATIVE, Mode.PROXY]),
    port=st.sampled_from([67, 4011]),
    mac_index=st.integers(0, 3),
)
def test_handler_never_raises_on_odd_requests(
    mtype, op, hlen, flags, ciaddr, giaddr, options, mode, port, mac_index
):
    h, _ = make_handler(
        Policy(BootDecision(bootfile="undionly.kpxe", extra_options={114: b"http://x/y"})), mode=mode
    )
    pkt = Packet(
        op=op,
        hlen=hlen,
        flags=flags,
        ciaddr=ciaddr,
        giaddr=giaddr,
        xid=mac_index,
        chaddr=mac_to_chaddr(mac(mac_index)),
    )
    pkt.options[53] = bytes([mtype])
    pkt.options.update(options)
    pkt = decode(encode(pkt))
    out = h.handle(pkt, Arrival("s0", "198.18.0.1", ciaddr, 68, port))
    if out is not None:
        raw = encode(out.packet)
        assert decode(raw).xid == pkt.xid


def test_policy_asked_once_per_exchange_and_ack_matches_offer():
    p = Policy()
    h, _ = make_handler(p)
    offer = h.handle(request_packet(MessageType.DISCOVER, o60=b"PXEClient:Arch:00000"), ARR).packet
    p.decision = BootDecision(bootfile="changed-meanwhile.efi")
    req = request_packet(
        MessageType.REQUEST, o50=bytes(map(int, offer.yiaddr.split("."))), o54=bytes([198, 18, 0, 1])
    )
    ack = h.handle(req, ARR).packet  # same xid as the DISCOVER: the offer's decision holds
    assert ack.options[67] == offer.options[67] == b"undionly.kpxe"
    assert len(p.seen) == 1
    renew = request_packet(MessageType.REQUEST)
    renew.ciaddr, renew.xid = offer.yiaddr, 0x999
    assert h.handle(renew, ARR).packet.options[67] == b"changed-meanwhile.efi"  # a new exchange asks again
    assert len(p.seen) == 2


# --- hardening: relay fields, DECLINE, blind REQUESTs, pool exhaustion (docs/netboot.md) ----------


def ip_bytes(ip: str) -> bytes:
    return bytes(map(int, ip.split(".")))


def test_relay_fields_only_from_listed_relays(caplog):
    h, events = make_handler()
    stranger = Arrival("s0", "198.18.0.1", "198.18.0.66", 68, 67, broadcast=False)
    for i, giaddr in enumerate(("198.19.0.1", "198.18.0.77", RELAY)):  # relayed, a neighbour, the relay
        pkt = request_packet(MessageType.DISCOVER, mac(i))
        pkt.giaddr = giaddr
        assert h.handle(pkt, stranger) is None
    # 82.5 from a listed relay but giaddr elsewhere: we would answer someone else's port 67
    pkt = request_packet(MessageType.DISCOVER, mac(5), o82=bytes([5, 4, 198, 19, 0, 0]))
    pkt.giaddr = "198.18.0.77"
    assert h.handle(pkt, FROM_RELAY) is None
    assert h.refusals.counts["relay_not_listed"] == 4
    assert events == []  # the sender chose the MAC: no device history is written
    logged = [r for r in caplog.records if "is not in `relays:`" in r.getMessage()]
    assert len(logged) == 2  # once per source: 198.18.0.66 and the relay (for the 82.5 case)
    # a directly attached client: option 82 is not believed (82.1, 82.5, 82.11 alike)
    rai = bytes([1, 4]) + b"Eth9" + bytes([5, 4, 198, 19, 0, 0]) + bytes([11, 4, 198, 18, 0, 77])
    p = Policy()
    h, _ = make_handler(p)
    offer = h.handle(request_packet(MessageType.DISCOVER, mac(6), o82=rai), ARR)
    assert offer.packet.yiaddr.startswith("198.18.0.") and offer.packet.ip_option(54) == "198.18.0.1"
    assert offer.dest_port == 68 and p.seen[-1].circuit_id is None
    assert h.refusals.counts["option82_from_client"] == 1


def test_ciaddr_names_a_subnet_only_for_a_routed_unicast_from_it():
    h, _ = make_handler()
    # broadcast DISCOVER claiming a relayed subnet's address: served from its own link
    pkt = request_packet(MessageType.DISCOVER, mac(1))
    pkt.ciaddr = "198.19.0.15"
    assert h.handle(pkt, ARR).packet.yiaddr.startswith("198.18.0.")
    # a relayed client's renewal comes straight to us, from ciaddr: its own subnet, its own lease
    pkt = request_packet(MessageType.DISCOVER, mac(2))
    pkt.giaddr = "198.19.0.1"
    ip = h.handle(pkt, FROM_RELAY).packet.yiaddr
    req = request_packet(MessageType.REQUEST, mac(2), o50=ip_bytes(ip), o54=bytes([198, 18, 0, 1]))
    req.giaddr = "198.19.0.1"
    assert h.handle(req, FROM_RELAY).packet.message_type is MessageType.ACK
    renew = request_packet(MessageType.REQUEST, mac(2))
    renew.ciaddr = ip
    out = h.handle(renew, Arrival("s0", "198.18.0.1", ip, 68, 67, broadcast=False))
    assert out.packet.message_type is MessageType.ACK and out.packet.yiaddr == ip
    # the same renewal broadcast on our link: wrong network, NAK
    out = h.handle(renew, Arrival("s0", "198.18.0.1", "0.0.0.0", 68, 67, broadcast=True))
    assert out.packet.message_type is MessageType.NAK


def test_blind_requests_get_silence_and_are_counted():
    h, events = make_handler()
    for i in range(5):
        init_reboot = request_packet(MessageType.REQUEST, mac(i), o50=ip_bytes(f"198.18.0.{100 + i}"))
        assert h.handle(init_reboot, ARR) is None
    renew = request_packet(MessageType.REQUEST, mac(9))
    renew.ciaddr = "198.18.0.105"
    assert h.handle(renew, Arrival("s0", "198.18.0.1", "198.18.0.105", 68, 67, broadcast=False)) is None
    assert h.refusals.counts == {"request_silent init-reboot": 5, "request_silent renewing": 1}
    assert h.engine.by_mac == {}
    assert [e.kind for e in events] == ["dhcp.ignored"] * 6
    assert [e.detail["state"] for e in events] == ["init-reboot"] * 5 + ["renewing"]


def test_decline_through_the_handler_needs_owner_and_our_server_id(caplog):
    h, events = make_handler()
    offer = h.handle(request_packet(MessageType.DISCOVER, o61=b"\x01me"), ARR).packet
    ip = ip_bytes(offer.yiaddr)
    h.handle(request_packet(MessageType.REQUEST, o50=ip, o54=bytes([198, 18, 0, 1]), o61=b"\x01me"), ARR)
    forged = [
        request_packet(MessageType.DECLINE, mac(2), o50=ip, o54=bytes([198, 18, 0, 1])),  # not the owner
        request_packet(MessageType.DECLINE, o50=ip, o54=bytes([198, 18, 0, 1])),  # no client-id
        request_packet(MessageType.DECLINE, o50=ip, o61=b"\x01me"),  # no server id
        request_packet(MessageType.DECLINE, o50=ip, o54=bytes([198, 18, 0, 9]), o61=b"\x01me"),  # another's
    ]
    forged += [
        request_packet(MessageType.DECLINE, mac(10 + i), o50=ip_bytes(f"198.18.0.{100 + i}"), o54=bytes([198, 18, 0, 1]))
        for i in range(10)
    ]  # fmt: skip
    for pkt in forged:
        assert h.handle(pkt, ARR) is None
    assert h.refusals.counts["decline_refused"] == 14
    assert not [e for e in events if e.kind == "dhcp.decline"]
    assert len([r for r in caplog.records if "ignored DHCPDECLINE" in r.getMessage()]) == 1
    assert h.engine.lease_of(NET, mac(1)).state is LeaseState.BOUND
    ok = request_packet(MessageType.DECLINE, o50=ip, o54=bytes([198, 18, 0, 1]), o61=b"\x01me")
    assert h.handle(ok, ARR) is None
    assert events[-1].kind == "dhcp.decline" and events[-1].detail["quarantined"] is True


def test_pool_exhaustion_is_one_line_a_minute_and_counted(caplog):
    small = Subnet("198.18.0.0/24", pools=(("198.18.0.100", "198.18.0.101"),), interface="s0")
    h, events = make_handler(subnets=(small,))
    clock = Clock()
    h.refusals.clock = clock
    for i in range(2):
        assert h.handle(request_packet(MessageType.DISCOVER, mac(i)), ARR) is not None
    for i in range(2, 50):
        assert h.handle(request_packet(MessageType.DISCOVER, mac(i)), ARR) is None
    lines = [r.getMessage() for r in caplog.records if "exhausted" in r.getMessage()]
    assert lines == [
        "pool of 198.18.0.0/24 exhausted (2 addresses: 0 leased, 2 offered, 0 declined, 0 reserved):"
        " mac=52:54:00:00:00:02 got no offer; widen that subnet's `pool:` in lab.yml or shorten its"
        " `lease_time`"
    ]
    assert h.refusals.counts["pool_exhausted 198.18.0.0/24"] == 48
    clock.now += 61
    h.handle(request_packet(MessageType.DISCOVER, mac(60)), ARR)
    lines = [r.getMessage() for r in caplog.records if "exhausted" in r.getMessage()]
    assert len(lines) == 2 and lines[1].endswith("(47 more like it in the last 60s)")
    assert sum(e.detail.get("reason") == "no free address" for e in events) == 49


def test_reconfigure_serves_the_new_subnet_options_and_relays_at_once():
    """Handler.reconfigure: the remembered subnet options (51/58/59 and 1/3/6/15/28 per subnet and
    lease time) and the remembered subnet of a relay's address follow the new configuration."""
    h, _ = make_handler()
    offer = h.handle(request_packet(MessageType.DISCOVER, mac(3)), ARR)
    assert offer is not None
    assert offer.packet.ip_option(3) == "198.18.0.1" and offer.packet.options[51] == struct.pack("!I", 3600)
    relayed = request_packet(MessageType.DISCOVER, mac(4))
    relayed.giaddr = "198.19.0.1"
    assert h.handle(relayed, FROM_RELAY) is not None
    new_net = Subnet(NET.network, pools=NET.pools, router="198.18.0.254", dns=("198.18.0.53",),
                     lease_time=600, interface="s0")  # fmt: skip
    moved = Subnet(RELAYED.network, pools=RELAYED.pools, relays=("198.18.0.3",))  # another relay
    cfg = DhcpServerConfig(interfaces=("s0",), subnets=(new_net, moved))
    h.reconfigure(cfg, LeaseEngine(cfg.subnets, (), MemoryLeaseStore()))
    again = h.handle(request_packet(MessageType.DISCOVER, mac(5)), ARR)
    assert again is not None
    assert again.packet.ip_option(3) == "198.18.0.254" and again.packet.options[6] == bytes([198, 18, 0, 53])
    assert again.packet.options[51] == struct.pack("!I", 600)
    assert again.packet.options[58] == struct.pack("!I", 300)
    assert h.handle(relayed, FROM_RELAY) is None  # 198.18.0.2 is no longer that subnet's relay


def test_a_discover_storm_sweeps_the_offers_amortised():
    """Thousands of DISCOVERs in flight (a boot storm; clients that take another server's offer):
    the expired-offer sweep runs when the live offers have doubled, not on every DISCOVER past
    4,096 (each of which walked every live offer), and expired offers left meanwhile block no one."""

    class Counting(LeaseEngine):
        sweeps = 0

        def purge_offers(self, now=None):
            Counting.sweeps += 1
            return super().purge_offers(now)

    big = Subnet("198.19.0.0/18", pools=(("198.19.0.10", "198.19.63.250"),), relays=(RELAY,))
    clock = Clock()
    eng = Counting([big], (), MemoryLeaseStore(), clock=clock, offer_timeout=30.0)
    offered = {
        eng.offer(big, f"52:54:00:{i >> 16:02x}:{i >> 8 & 255:02x}:{i & 255:02x}") for i in range(12000)
    }
    assert len(offered) == 12000 and None not in offered  # every client its own address
    assert Counting.sweeps <= 3  # at 4,096, 8,192 (live: doubled) and never per DISCOVER
    clock.now += 31  # every offer expired, none swept yet
    assert eng.offer(big, "52:54:00:ff:ff:01") is not None
    assert eng.request(big, "52:54:00:ff:ff:02", "198.19.0.10", selecting=True).outcome is Outcome.ACK
