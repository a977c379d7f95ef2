"""DHCPv4 for network boot: authoritative server or proxyDHCP, on the caller's asyncio loop.

    from pxe.dhcp import DhcpServerConfig, Subnet, Reservation, Mode, start_dhcp
    config = DhcpServerConfig(
        interfaces=("eth1",),
        subnets=(Subnet("198.18.0.0/24", pools=(("198.18.0.100", "198.18.0.199"),),
                        router="198.18.0.1", interface="eth1"),),
        reservations=(Reservation("52:54:00:00:00:01", "198.18.0.10", "sw1"),),
    )
    server = await start_dhcp(config, policy, lease_store, events)   # policy.decide(client)
    ...
    server.close()

- `policy.decide(client) -> BootDecision | None` is asked on DISCOVER, INFORM, and on REQUEST
  unless the REQUEST continues one of our offers (same xid: the offer's decision is reused, so the
  ACK carries what was offered). None means "not ours": silence plus a `dhcp.ignored` event.
  `BootDecision.ip` pins an address (like a `Reservation`); `lease_time`, `hostname` (option 12),
  `bootfile` (67 + file), `next_server` (siaddr) and `extra_options` {code: bytes}, written as
  given (a vendor answer such as ONIE's 114/125 rides there), go into OFFER and ACK.
- `lease_store` implements `LeaseStore` (load_leases / save_lease / delete_lease / commit, and
  for group commit lease_writes / begin_commit / abort_commit); no reply that wrote a lease leaves
  before its lease is durable. `MemoryLeaseStore` forgets on exit.
- `events` receives one `pxe.Event` per packet, its outcome: dhcp.offer, dhcp.ack, dhcp.nak,
  dhcp.ignored (with the reason), dhcp.decline, dhcp.release, or dhcp.request (a REQUEST for
  another server's offer). Detail: xid, arch, vendor_class, relay, ... and the request's
  `requested` address and `state` (selecting, renewing, rebinding, init-reboot). A lease is
  two events, not four: the DISCOVER and REQUEST are in their answers (a store writes half the
  rows; docs/netboot.md "Events"). The events of a burst (the datagrams one wake-up drains) are
  delivered in order once its packets are handled and its OFFERs sent, before its ACKs wait for
  the commit: the sink's work runs back to back, and a policy deciding within the burst has not
  seen them yet. A sink that raises is logged; no reply is lost to it.
- `Mode.PROXY`: no addresses; answers PXE/HTTP boot clients on 67 and UEFI on 4011.
- `start_dhcp` raises `DhcpStartError` (an OSError naming interface, port and a likely fix) when a
  socket cannot be opened: missing interface, port taken by another DHCP server, no privileges.
- `client_from_packet(pkt, service, ...)` builds the `pxe.Client` (once per packet, every option
  in `Client.options`); `dhcp4.codec.decode/encode` the bytes.
"""

from dhcp4.codec import DecodeError, Packet, decode, encode
from dhcp4.options import MessageType
from pxe.dhcp.clientinfo import client_from_packet
from pxe.dhcp.config import DhcpServerConfig, Mode, Reservation, Subnet
from pxe.dhcp.leases import Lease, LeaseEngine, LeaseState, LeaseStore, MemoryLeaseStore
from pxe.dhcp.server import DhcpServer, DhcpStartError, start_dhcp

__all__ = [
    "DecodeError",
    "DhcpServer",
    "DhcpServerConfig",
    "DhcpStartError",
    "Lease",
    "LeaseEngine",
    "LeaseState",
    "LeaseStore",
    "MemoryLeaseStore",
    "MessageType",
    "Mode",
    "Packet",
    "Reservation",
    "Subnet",
    "client_from_packet",
    "decode",
    "encode",
    "start_dhcp",
]
