"""A burst's events are delivered once its packets are handled, in order, and a failing event
sink loses no reply. DhcpServer._readable drains a real UDP socket on 127.0.0.1 (a relayed
subnet: replies go unicast to the relay's address on loopback, nothing is broadcast)."""

from __future__ import annotations

import socket

from dhcp4.codec import Packet, decode, encode, mac_to_chaddr
from dhcp4.options import MessageType
from pxe.dhcp.config import DhcpServerConfig, Subnet
from pxe.dhcp.server import DhcpServer
from pxe.policy import BootDecision, Client, Event, RenderedFile

# giaddr picks the subnet (RFC 2131 §4.3.1): the relay's, on loopback; its pool is only numbers
RELAYED = Subnet("127.0.0.0/24", pools=(("127.0.0.10", "127.0.0.20"),), relays=("127.0.0.1",))
RELAY_ADDR = "127.0.0.3"  # giaddr: where the server answers (a socket of this test listens there)


class Policy:
    def __init__(self, seen: list[Event]) -> None:
        self.seen = seen
        self.events_at_decide: list[int] = []

    def decide(self, client: Client) -> BootDecision | None:
        self.events_at_decide.append(len(self.seen))
        return BootDecision(bootfile="undionly.kpxe")

    def render(self, client: Client, path: str) -> RenderedFile | None:
        return None


def discover(i: int) -> bytes:
    pkt = Packet(op=1, xid=0x1000 + i, chaddr=mac_to_chaddr(f"52:54:00:00:01:{i:02x}"), giaddr=RELAY_ADDR)
    pkt.options[53] = bytes([MessageType.DISCOVER])
    return encode(pkt)


def test_a_bursts_events_follow_its_packets_in_order_and_a_failing_sink_loses_no_reply():
    seen: list[Event] = []

    def sink(event: Event) -> None:
        seen.append(event)
        if len(seen) == 1:
            raise RuntimeError("a subscriber's bug")

    policy = Policy(seen)
    server = DhcpServer(DhcpServerConfig(interfaces=("lo",), subnets=(RELAYED,)), policy, None, sink)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ours,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as relay,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        ours.bind(("127.0.0.1", 0))
        ours.setblocking(False)
        relay.bind((RELAY_ADDR, ours.getsockname()[1]))  # replies go to giaddr, our port
        relay.settimeout(2)
        client.bind(("127.0.0.1", 0))
        for i in range(3):
            client.sendto(discover(i), ours.getsockname())
        server._readable(ours, "lo", ours.getsockname()[1])
        replies = [decode(relay.recv(2048)) for _ in range(3)]
    assert policy.events_at_decide == [0, 0, 0]  # no event reached the sink while the burst ran
    assert [(e.kind, e.detail["xid"]) for e in seen] == [
        ("dhcp.offer", f"{0x1000 + i:08x}") for i in range(3)
    ]
    assert sorted(r.xid for r in replies) == [0x1000, 0x1001, 0x1002]  # the sink's failure cost none
    assert all(r.message_type is MessageType.OFFER for r in replies)
