"""recv → validate → Client → policy.decide(client) → reply. No sockets here (see server.py).

Two handlers behind one `handle(packet, arrival)`, chosen once at start (smee's shape):
authoritative (addresses + boot information, RFC 2131 §4.3) and proxyDHCP (boot information only,
PXE 2.1 §2.2; pixiecore README "booting"). Every step emits an event; the policy's None means
"not ours": silence, but a `dhcp.ignored` event so that unknown machines are still recorded.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from dhcp4.codec import ZERO_IP, Packet
from dhcp4.options import (
    ARCH_EFI_ARM32,
    ARCH_EFI_ARM64,
    ARCH_EFI_IA32,
    ARCH_EFI_X64,
    BOOTREQUEST,
    CLIENT_PORT,
    FLAG_BROADCAST,
    OPT_HOSTNAME,
    OPT_MESSAGE_TYPE,
    OPT_PARAM_REQUEST,
    OPT_RELAY_AGENT,
    OPT_REQUESTED_IP,
    OPT_SERVER_ID,
    OPT_VENDOR_CLASS,
    OPT_VENDOR_SPECIFIC,
    RAI_LINK_SELECTION,
    RAI_SERVER_ID_OVERRIDE,
    MessageType,
)
from dhcp4.tlv import parse_suboptions
from pxe.dhcp import replies
from pxe.dhcp.clientinfo import client_from_packet
from pxe.dhcp.config import DhcpServerConfig, Mode, Subnet
from pxe.dhcp.leases import Decline, LeaseEngine, Outcome
from pxe.dhcp.refusals import Refusals
from pxe.policy import BootDecision, Client, Event, EventSink, Policy, Service

log = logging.getLogger("pxe.dhcp")
BROADCAST = "255.255.255.255"
# Option 93 values whose firmware follows the EDK2 proxyDHCP path to port 4011 (docs/netboot.md).
UEFI_PXE_ARCHES = frozenset({ARCH_EFI_IA32, ARCH_EFI_X64, ARCH_EFI_ARM32, ARCH_EFI_ARM64})
_REMEMBER_MAX = 8192  # remembered OFFER decisions before expired ones are swept
_NO_RAI: Mapping[int, bytes] = MappingProxyType({})
_CONTAINING_MAX = 4096  # addresses whose subnet is remembered (relays, renewing clients)


# Members by plain module names: `MessageType.ACK` is a metaclass lookup, eight times the cost
# of a global, and a packet's path tests its type several times.
_DISCOVER, _OFFER, _REQUEST, _DECLINE, _ACK, _NAK, _RELEASE, _INFORM = (
    MessageType.DISCOVER,
    MessageType.OFFER,
    MessageType.REQUEST,
    MessageType.DECLINE,
    MessageType.ACK,
    MessageType.NAK,
    MessageType.RELEASE,
    MessageType.INFORM,
)
_PROXY = Mode.PROXY
_SILENT_ANSWER, _NAK_ANSWER = Outcome.SILENT, Outcome.NAK


class Arrival(NamedTuple):
    """Where a datagram came in: our interface, its address there, the sender, our port. (A
    NamedTuple, immutable like the frozen dataclass it was, at a tenth of its cost per packet.)"""

    interface: str
    local_ip: str | None
    src_ip: str
    src_port: int
    local_port: int
    broadcast: bool = True  # sent to 255.255.255.255 (IP_PKTINFO), as opposed to unicast to us


@dataclass
class Outgoing:
    """A reply and where it goes. `unicast_mac`: send to dest_ip at that MAC, which needs a
    neighbour entry first (the client has no address yet to answer ARP) [RFC 2131 §4.1]."""

    packet: Packet
    dest_ip: str
    dest_port: int
    interface: str
    unicast_mac: str | None = None


class Handler:
    def __init__(
        self, config: DhcpServerConfig, policy: Policy, engine: LeaseEngine | None, events: EventSink
    ) -> None:
        self.config = config
        self.policy = policy
        self.engine = engine
        self.events = events
        self.service = Service.PROXYDHCP if config.mode is Mode.PROXY else Service.DHCP
        self._subnets = config.subnets
        self._all_relays = frozenset(r for s in config.subnets for r in s.relays)
        self._on_link: dict[tuple[str, str | None], tuple[Subnet, ...]] = {}
        self._containing: dict[str, Subnet | None] = {}  # address -> its subnet, see _subnet_containing
        self.refusals = Refusals()
        self.counts: dict[tuple[MessageType, int], int] = {}  # see handle()
        # (mac, xid) -> the OFFER's Client, decision, expiry and event detail (_who: the same
        # for the REQUEST of that exchange, which has the same xid and Client)
        self._offered: dict[
            tuple[str, int], tuple[Client, BootDecision, float, dict[str, object] | None]
        ] = {}
        self._who_of: Packet | None = None
        self._who_detail: dict[str, object] = {}

    def reconfigure(self, config: DhcpServerConfig, engine: LeaseEngine | None) -> None:
        """New subnets and reservations (DhcpServer.reconfigure); offers in flight are kept, so a
        client between OFFER and REQUEST is answered as it would have been."""
        self.config = config
        self.engine = engine
        self._subnets = config.subnets
        self._all_relays = frozenset(r for s in config.subnets for r in s.relays)
        self._on_link = {}
        self._containing = {}
        replies.forget_cached()

    # --- helpers ---------------------------------------------------------------------------
    def _who(self, pkt: Packet, client: Client | None) -> dict[str, object]:
        """The event detail every event of this packet shares (computed once per packet)."""
        if self._who_of is pkt:
            return self._who_detail
        if client is None:
            who: dict[str, object] = {"xid": f"{pkt.xid:08x}"}
        else:
            who = {
                "xid": f"{pkt.xid:08x}",
                "arch": client.arch,
                "vendor_class": client.vendor_class,
                "user_class": client.user_class,
            }
            if client.relay:
                who["relay"] = client.relay
            if client.circuit_id is not None:
                who["circuit_id"] = client.circuit_id.hex()
            if client.remote_id is not None:
                who["remote_id"] = client.remote_id.hex()
        self._who_of, self._who_detail = pkt, who
        return who

    def emit(
        self, kind: str, pkt: Packet, client: Client | None, ip: str | None = None, **detail: object
    ) -> None:
        base = dict(self._who_detail if self._who_of is pkt else self._who(pkt, client))
        for key, value in detail.items():
            if value is not None:
                base[key] = value
        try:
            self.events(Event(kind, pkt.mac, ip, base))  # positional: kind mac ip detail (ts: now)
        except Exception:  # an event sink failing must not take DHCP down
            log.exception("event sink failed for %s mac=%s xid=%08x", kind, pkt.mac, pkt.xid)

    def _subnet_containing(self, ip: str | None) -> Subnet | None:
        """Remembered per address (a relay's giaddr comes with every packet it relays), at most
        _CONTAINING_MAX of them, forgotten on reconfigure()."""
        if not ip or ip == ZERO_IP:
            return None
        memo = self._containing
        if ip in memo:
            return memo[ip]
        try:
            addr = int.from_bytes(socket.inet_aton(ip), "big")
        except OSError:
            return None
        found = None
        for subnet in self._subnets:
            if subnet.contains(addr):
                found = subnet
                break
        if len(memo) >= _CONTAINING_MAX:
            memo.clear()
        memo[ip] = found
        return found

    @staticmethod
    def relay_agent(pkt: Packet) -> dict[int, bytes]:
        """Option 82's sub-options [RFC 3046 §2.0], parsed once per packet."""
        raw = pkt.options.get(OPT_RELAY_AGENT)
        return parse_suboptions(raw) if raw is not None else {}

    def route(self, pkt: Packet, arrival: Arrival) -> tuple[Subnet | None, Mapping[int, bytes]] | None:
        """The subnet a packet is served from and the option 82 we believe; None: refused.

        Relay fields are believed only from the relays the subnet names (`Subnet.relays`, by IP
        source address): a host on the boot LAN could otherwise set giaddr or 82.5 to take
        leases from a relayed subnet, or giaddr/82.11 to make us send to another host's port 67.
        Option 82 is inserted by relays only [RFC 3046 §2.1]: from a directly attached client
        (giaddr 0) it is dropped whole, 82.1 circuit-id included (it names a device's switch
        port). Refusals are counted and logged once a minute per source (pxe.dhcp.refusals).
        """
        rai = self.relay_agent(pkt) if OPT_RELAY_AGENT in pkt.options else _NO_RAI
        if pkt.giaddr == ZERO_IP:
            if rai:
                self.refusals.count("option82_from_client")
                rai = _NO_RAI
            return self._direct_subnet(pkt, arrival), rai
        src = arrival.src_ip
        link = rai.get(RAI_LINK_SELECTION)
        by_link = link is not None and len(link) == 4
        # RFC 3527: 82.5 names the client's subnet, giaddr then only where to answer
        subnet = self._subnet_containing(socket.inet_ntoa(link) if link and by_link else pkt.giaddr)
        if subnet is None:
            relays = self._all_relays
            trusted = src in relays
        else:
            relays = subnet.relay_set
            # with 82.5, giaddr (where we answer) must be a listed relay too
            trusted = src in relays and (not by_link or pkt.giaddr == src or pkt.giaddr in relays)
        if not trusted:
            self.refusals.count("relay_not_listed")
            self.refusals.warn(
                ("relay", src),
                "ignored DHCP packet relayed from %s on %s (giaddr %s%s, mac=%s): %s is not in `relays:`"
                " of %s; if it is your relay, list it there in lab.yml",
                src, arrival.interface, pkt.giaddr, ", link selection" if by_link else "", pkt.mac, src,
                subnet.network if subnet is not None else "any subnet",
            )  # fmt: skip
            return None
        return subnet, rai

    def _direct_subnet(self, pkt: Packet, arrival: Arrival) -> Subnet | None:
        """A directly attached client is served from its link's subnet. ciaddr picks another
        subnet only when the packet is a routed unicast from that very address (a relayed
        client renewing straight to us, RFC 2131 §4.4.5); else a host could name any subnet."""
        on_link = self._link_subnets(arrival)
        if pkt.ciaddr != ZERO_IP:
            found = self._subnet_containing(pkt.ciaddr)
            if found is not None and (
                found in on_link or (not arrival.broadcast and arrival.src_ip == pkt.ciaddr)
            ):
                return found
        return on_link[0] if on_link else None

    def _link_subnets(self, arrival: Arrival) -> tuple[Subnet, ...]:
        key = (arrival.interface, arrival.local_ip)
        found = self._on_link.get(key)
        if found is None:
            found = tuple(s for s in self._subnets if s.interface == arrival.interface)
            if not found:
                mine = self._subnet_containing(arrival.local_ip)
                found = (mine,) if mine is not None else ()
            if len(self._on_link) > 64:
                self._on_link.clear()
            self._on_link[key] = found
        return found

    @staticmethod
    def server_id(rai: Mapping[int, bytes], server_ip: str) -> str:
        """Option 54 for this request: the relay's server-id override (RFC 5107: the relay then
        receives renewals and forwards them to us), else our address (also siaddr)."""
        if not rai:
            return server_ip
        override = rai.get(RAI_SERVER_ID_OVERRIDE)
        if override is not None and len(override) == 4:
            return socket.inet_ntoa(override)
        return server_ip

    def server_ip(self, subnet: Subnet | None, arrival: Arrival) -> str | None:
        """Our address the clients reach: the subnet's configured one, else the link's."""
        if subnet is not None and subnet.server_ip:
            return subnet.server_ip
        return arrival.local_ip

    def decide(self, client: Client, pkt: Packet) -> BootDecision | None:
        try:
            return self.policy.decide(client)
        except Exception:
            log.exception("policy failed mac=%s xid=%08x: treating as not ours", pkt.mac, pkt.xid)
            return None

    def _remember(self, pkt: Packet, client: Client, decision: BootDecision) -> None:
        """Keep the OFFER's decision for the REQUEST of the same exchange (same xid, RFC 2131
        §4.4.1): the ACK then carries what the OFFER promised, and the policy runs once per DORA."""
        now = time.monotonic()
        if len(self._offered) >= _REMEMBER_MAX:
            for key in [k for k, v in self._offered.items() if v[2] < now]:
                del self._offered[key]
            if len(self._offered) >= _REMEMBER_MAX:
                self._offered.clear()  # a flood of DISCOVERs that never REQUEST: forget them all
        who = self._who_detail if self._who_of is pkt else None
        self._offered[(client.mac, pkt.xid)] = (client, decision, now + self.config.offer_timeout, who)

    def _reserved_name(self, reply: Packet, mac: str) -> None:
        if OPT_HOSTNAME not in reply.options and self.engine is not None:
            name = self.engine.hostname_of(mac)
            if name:
                reply.options[OPT_HOSTNAME] = name.encode()

    @staticmethod
    def destination(pkt: Packet, reply: Packet, arrival: Arrival, mtype: MessageType) -> Outgoing:
        """RFC 2131 §4.1, in its order."""
        if pkt.giaddr != ZERO_IP:
            return Outgoing(reply, pkt.giaddr, arrival.local_port, arrival.interface)
        if mtype is _NAK:
            return Outgoing(reply, BROADCAST, CLIENT_PORT, arrival.interface)
        if pkt.ciaddr != ZERO_IP:
            return Outgoing(reply, pkt.ciaddr, CLIENT_PORT, arrival.interface)
        if pkt.flags & FLAG_BROADCAST or reply.yiaddr == ZERO_IP:
            return Outgoing(reply, BROADCAST, CLIENT_PORT, arrival.interface)
        return Outgoing(reply, reply.yiaddr, CLIENT_PORT, arrival.interface, unicast_mac=pkt.mac)

    # --- entry ------------------------------------------------------------------------------
    def handle(self, pkt: Packet, arrival: Arrival) -> Outgoing | None:
        if pkt.op != BOOTREQUEST or pkt.hlen == 0:
            return None
        mtype = pkt.message_type
        if mtype is None:
            return None
        refused = self.refusals.total
        if self.config.mode is _PROXY:
            out = self._proxy(pkt, mtype, arrival)
        else:
            out = self._authoritative(pkt, mtype, arrival)
        # Packets by (type, the reply's option 53 | 0 no reply | -1 refused): one dict increment,
        # read by an exporter (provision's /metrics)
        if out is not None:
            key = (mtype, out.packet.options[OPT_MESSAGE_TYPE][0])
        else:
            key = (mtype, -1 if self.refusals.total != refused else 0)
        self.counts[key] = self.counts.get(key, 0) + 1
        return out

    # --- authoritative ------------------------------------------------------------------------
    def _authoritative(self, pkt: Packet, mtype: MessageType, arrival: Arrival) -> Outgoing | None:
        engine = self.engine
        assert engine is not None
        routed = self.route(pkt, arrival)
        if routed is None:
            return None
        subnet, rai = routed
        server_ip = self.server_ip(subnet, arrival)
        mac = pkt.mac
        cached = self._offered.pop((mac, pkt.xid), None) if mtype is _REQUEST else None
        if cached is not None:
            if cached[2] < time.monotonic():
                cached = None
            elif cached[3] is not None:
                self._who_of, self._who_detail = pkt, cached[3]
        # The Client is built once per packet (and kept from OFFER to REQUEST of one exchange).
        client = (
            cached[0]
            if cached is not None
            else client_from_packet(pkt, self.service, arrival.interface, server_ip, rai)
        )
        if subnet is None or subnet.network not in engine.pools:
            self.emit("dhcp.ignored", pkt, client, reason="no subnet for this link or relay", type=mtype.name)
            return None
        if server_ip is None:
            log.warning("no server address on %s for subnet %s", arrival.interface, subnet.network)
            return None
        requested = pkt.ip_option(OPT_REQUESTED_IP)
        sid = self.server_id(rai, server_ip)
        if mtype is _DISCOVER:
            # One event per packet, its outcome (offer or ignored): the DISCOVER itself is in it
            decision = self.decide(client, pkt)
            if decision is None:
                self.emit("dhcp.ignored", pkt, client, reason="policy: not ours")
                return None
            ip = engine.offer(subnet, mac, requested, decision.ip)
            if ip is None:
                self._no_address(pkt, client, subnet, decision)
                return None
            reply = replies.base_reply(pkt, _OFFER, sid)
            reply.yiaddr = ip
            replies.add_lease_options(reply, subnet, decision.lease_time or subnet.lease_time)
            replies.add_boot_options(reply, client, decision, server_ip, pkt.options.get(OPT_PARAM_REQUEST))
            self._reserved_name(reply, mac)
            self.emit("dhcp.offer", pkt, client, ip, note=decision.note or None, requested=requested)
            self._remember(pkt, client, decision)
            return self.destination(pkt, replies.finish(reply, pkt), arrival, _OFFER)
        if mtype is _REQUEST:
            return self._request(
                pkt, arrival, subnet, server_ip, sid, client, requested, cached and cached[1]
            )
        if mtype is _DECLINE:
            self._decline(pkt, client, subnet, requested, (server_ip, sid))
            return None
        if mtype is _RELEASE:
            ok = engine.release(subnet, pkt.mac, pkt.ciaddr)
            self.emit("dhcp.release", pkt, client, pkt.ciaddr, released=ok)
            return None
        if mtype is _INFORM:
            decision = self.decide(client, pkt)
            if decision is None:
                self.emit("dhcp.ignored", pkt, client, reason="policy: not ours")
                return None
            # RFC 2131 §4.3.5: no yiaddr, no lease time; configuration only.
            reply = replies.base_reply(pkt, _ACK, sid)
            reply.ciaddr = pkt.ciaddr
            replies.add_network_options(reply, subnet)
            replies.add_boot_options(reply, client, decision, server_ip, pkt.options.get(OPT_PARAM_REQUEST))
            self.emit("dhcp.ack", pkt, client, pkt.ciaddr, inform=True)
            return self.destination(pkt, replies.finish(reply, pkt), arrival, _ACK)
        return None

    def _no_address(self, pkt: Packet, client: Client, subnet: Subnet, decision: BootDecision) -> None:
        """No offer possible: one warning a minute per subnet (or per pinned address), counted."""
        engine = self.engine
        assert engine is not None
        fixed = decision.ip or (r.ip if (r := engine.reserved_by_mac.get(pkt.mac)) else None)
        if fixed is not None:
            self.refusals.count("fixed_address_unavailable")
            self.refusals.warn(
                ("fixed", fixed),
                "cannot offer %s to its device mac=%s: another client holds it or it is not on %s",
                fixed, pkt.mac, subnet.network,
            )  # fmt: skip
        else:
            self.refusals.count(f"pool_exhausted {subnet.network}")
            key = ("pool", subnet.network)
            if self.refusals.due(key):  # the usage count walks the pool: only when it is logged
                self.refusals.warn(
                    key,
                    "pool of %s exhausted (%s): mac=%s got no offer; widen that subnet's `pool:` in"
                    " lab.yml or shorten its `lease_time`",
                    subnet.network, engine.pool_usage(subnet), pkt.mac,
                )  # fmt: skip
            else:
                self.refusals.warn(key, "")  # not due: counted as suppressed, nothing logged
        self.emit("dhcp.ignored", pkt, client, reason="no free address", subnet=subnet.network)

    def _decline(
        self,
        pkt: Packet,
        client: Client,
        subnet: Subnet,
        requested: str | None,
        ours: tuple[str, str],
    ) -> None:
        """RFC 2131 §4.3.3, honoured only from the lease's owner (LeaseEngine.decline). A refused
        DECLINE records no event: its sender chose the MAC, and would write another device's
        history; it is counted and logged once a minute per subnet."""
        engine = self.engine
        assert engine is not None
        server_id = pkt.ip_option(OPT_SERVER_ID)
        if requested is None or server_id not in ours:
            # RFC 2131 table 5: a DECLINE carries 50 and 54; 54 not ours: for another server
            result = None
            why = "no requested address (option 50)" if requested is None else f"server id {server_id}"
        else:
            result = engine.decline(subnet, pkt.mac, requested, client.client_id)
            why = result.value
        if result is Decline.QUARANTINED:
            self.refusals.warn(
                ("declined", subnet.network),
                "address conflict: mac=%s declined %s (another host answers ARP for it); quarantined %ds",
                pkt.mac, requested, int(self.config.decline_quarantine),
            )  # fmt: skip
            self.emit("dhcp.decline", pkt, client, requested, quarantined=True)
            return
        if result is Decline.RESERVED:
            self.refusals.count("decline_reserved")
            self.refusals.warn(
                ("declined", requested),
                "address conflict: mac=%s declined its reserved %s; not quarantined (there is no other"
                " address for it): find the host answering ARP for %s",
                pkt.mac, requested, requested,
            )  # fmt: skip
            self.emit("dhcp.decline", pkt, client, requested, quarantined=False, reason=why)
            return
        self.refusals.count("decline_refused")
        self.refusals.warn(
            ("decline", subnet.network),
            "ignored DHCPDECLINE from mac=%s for %s on %s: %s",
            pkt.mac, requested, subnet.network, why,
        )  # fmt: skip

    def _request(
        self,
        pkt: Packet,
        arrival: Arrival,
        subnet: Subnet,
        server_ip: str,
        sid: str,
        client: Client,
        requested: str | None,
        offered: BootDecision | None = None,
    ) -> Outgoing | None:
        engine = self.engine
        assert engine is not None
        mac = pkt.mac
        server_id = pkt.ip_option(OPT_SERVER_ID)
        selecting = server_id is not None
        if selecting:
            state = "selecting"
            if server_id not in (server_ip, sid):
                engine.forget_offer(subnet, mac)
                self.emit("dhcp.request", pkt, client, requested, state=state, other_server=server_id)
                return None
            ip = requested
        elif pkt.ciaddr != ZERO_IP:
            # RFC 2131 §4.3.2: RENEWING is unicast to us, REBINDING broadcast (or relayed).
            state = "rebinding" if arrival.broadcast or pkt.giaddr != ZERO_IP else "renewing"
            ip = pkt.ciaddr
        else:
            state = "init-reboot"
            ip = requested
        if ip is None:
            self.emit("dhcp.ignored", pkt, client, reason="no requested address (option 50)", state=state)
            return None
        decision = offered if selecting and offered is not None else self.decide(client, pkt)
        if decision is None:
            self.emit("dhcp.ignored", pkt, client, reason="policy: not ours")
            return None
        answer = engine.request(
            subnet,
            mac,
            ip,
            selecting=selecting,
            fixed=decision.ip,
            lease_time=decision.lease_time,
            hostname=decision.hostname or engine.hostname_of(mac) or pkt.text_option(OPT_HOSTNAME),
            client_id=client.client_id,
        )
        if answer.outcome is _SILENT_ANSWER:
            self.refusals.count(f"request_silent {state}")
            self.emit("dhcp.ignored", pkt, client, ip, reason=answer.reason, state=state)
            return None
        if answer.outcome is _NAK_ANSWER:
            self.emit("dhcp.nak", pkt, client, ip, reason=answer.reason, state=state)
            nak = replies.nak(pkt, sid, answer.reason)
            return self.destination(pkt, nak, arrival, _NAK)
        reply = replies.base_reply(pkt, _ACK, sid)
        reply.ciaddr = pkt.ciaddr
        reply.yiaddr = answer.ip or ZERO_IP
        replies.add_lease_options(reply, subnet, answer.lease_time)
        replies.add_boot_options(reply, client, decision, server_ip, pkt.options.get(OPT_PARAM_REQUEST))
        self._reserved_name(reply, mac)
        self.emit(
            "dhcp.ack",
            pkt,
            client,
            answer.ip,
            state=state,
            lease_time=answer.lease_time,
            note=decision.note or None,
        )
        return self.destination(pkt, replies.finish(reply, pkt), arrival, _ACK)

    # --- proxyDHCP ----------------------------------------------------------------------------
    def _proxy(self, pkt: Packet, mtype: MessageType, arrival: Arrival) -> Outgoing | None:
        on_4011 = arrival.local_port == self.config.proxy_port
        wanted = _REQUEST if on_4011 else _DISCOVER
        if mtype is not wanted:
            return None
        routed = self.route(pkt, arrival)
        if routed is None:
            return None
        subnet, rai = routed
        server_ip = self.server_ip(subnet, arrival)
        client = client_from_packet(pkt, self.service, arrival.interface, server_ip, rai)
        vc = client.vendor_class or ""
        if not vc.startswith(("PXEClient", "HTTPClient")):
            self.emit("dhcp.ignored", pkt, client, reason="proxyDHCP answers PXE/HTTP boot clients only")
            return None
        if server_ip is None:
            return None
        decision = self.decide(client, pkt)
        if decision is None:
            self.emit("dhcp.ignored", pkt, client, reason="policy: not ours", proxy=True)
            return None
        if not decision.bootfile:
            self.emit("dhcp.ignored", pkt, client, reason="policy gave no bootfile", proxy=True)
            return None
        reply = replies.base_reply(pkt, _ACK if on_4011 else _OFFER, server_ip)
        reply.siaddr = decision.next_server or server_ip
        binl = client.arch in UEFI_PXE_ARCHES and not client.is_ipxe and vc.startswith("PXEClient")
        if on_4011 or not binl:
            # BIOS, iPXE and HTTP boot: the bootfile now; UEFI PXE gets it on port 4011.
            replies.add_boot_options(reply, client, decision, server_ip, pkt.options.get(OPT_PARAM_REQUEST))
            if on_4011:
                reply.options.pop(OPT_VENDOR_SPECIFIC, None)
        if not client.is_http_boot:
            # ProxyDHCP offers are recognised by 60 = PXEClient [PXE 2.1 §2.2]; outside the BINL
            # path it goes with 43 = {6: 8} (docs/netboot.md "EDK2 quirks"), iPXE included.
            reply.options[OPT_VENDOR_CLASS] = replies.VC_PXE
            if not binl and not on_4011:
                reply.options[OPT_VENDOR_SPECIFIC] = replies.PXE_SKIP_DISCOVERY
        if on_4011:
            reply.ciaddr = pkt.ciaddr
        reply = replies.finish(reply, pkt, echo_uuid=True)
        kind = "dhcp.ack" if on_4011 else "dhcp.offer"
        self.emit(
            kind, pkt, client, proxy=True, bootfile=decision.bootfile if (on_4011 or not binl) else None
        )
        if on_4011:
            return Outgoing(reply, arrival.src_ip, arrival.src_port, arrival.interface)
        return self.destination(pkt, reply, arrival, _OFFER)


__all__ = ["Arrival", "Handler", "Outgoing"]
