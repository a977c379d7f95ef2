"""Reply packets: boot information from a BootDecision, firmware quirks, size limits, echoes.

Firmware quirks live here (docs/netboot.md "EDK2 quirks"):
- UEFI HTTP boot discards an offer unless it echoes option 60 starting with `HTTPClient` and
  carries the URL in option 67 or `file` [edk2 HttpBootDhcp4.c].
- EDK2 treats option 60 `PXEClient` WITHOUT option 43 as a BINL offer and goes to port 4011; so
  `PXEClient` is only ever sent together with 43 = {6: 0x08} ("use this bootfile") [PxeBcDhcp4.c].
- EDK2 ignores option 66: the TFTP server is siaddr [PxeBcDhcp4.c].
- Option 52 is never used; replies stay within option 57 (default 576) by dropping what the client
  did not ask for first [RFC 2131 §4.1, RFC 2132 §9.10].
"""

from __future__ import annotations

import logging
import struct

from dhcp4.codec import ZERO_IP, Packet, encoded_size, ip_bytes, ip_list
from dhcp4.options import (
    BOOTREPLY,
    DEFAULT_MAX_SIZE,
    HEADER_LEN,
    OPT_BOOTFILE,
    OPT_BROADCAST,
    OPT_CLIENT_ID,
    OPT_CLIENT_UUID,
    OPT_DNS,
    OPT_DOMAIN,
    OPT_HOSTNAME,
    OPT_LEASE_TIME,
    OPT_MAX_SIZE,
    OPT_MESSAGE,
    OPT_MESSAGE_TYPE,
    OPT_PARAM_REQUEST,
    OPT_REBINDING_T2,
    OPT_RELAY_AGENT,
    OPT_RENEWAL_T1,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    OPT_TFTP_SERVER,
    OPT_TFTP_SERVER_ADDRESS,
    OPT_VENDOR_CLASS,
    OPT_VENDOR_SPECIFIC,
    PXE_DISCOVERY_CONTROL,
    PXE_DISCOVERY_USE_BOOTFILE,
    MessageType,
)
from pxe.dhcp.config import Subnet
from pxe.policy import BootDecision, Client

log = logging.getLogger("pxe.dhcp")
VC_PXE = b"PXEClient"
VC_HTTP = b"HTTPClient"
_IP_UDP_HEADERS = 28  # option 57 counts the whole IP datagram [RFC 2131 §2: 576 = 20+8+236+312]
# Never dropped to fit the size limit: without them the reply is useless or wrong.
_ESSENTIAL = frozenset(
    {OPT_MESSAGE_TYPE, OPT_SERVER_ID, OPT_LEASE_TIME, OPT_SUBNET_MASK, OPT_CLIENT_ID, OPT_RELAY_AGENT,
     OPT_VENDOR_CLASS, OPT_VENDOR_SPECIFIC, OPT_BOOTFILE, OPT_RENEWAL_T1, OPT_REBINDING_T2}
)  # fmt: skip
_DEFAULT_BUDGET = DEFAULT_MAX_SIZE - _IP_UDP_HEADERS - HEADER_LEN  # options bytes without 57
PXE_SKIP_DISCOVERY = bytes((PXE_DISCOVERY_CONTROL, 1, PXE_DISCOVERY_USE_BOOTFILE))


def max_reply_size(request: Packet) -> int:
    raw = request.options.get(OPT_MAX_SIZE)
    size = struct.unpack("!H", raw)[0] if raw is not None and len(raw) == 2 else DEFAULT_MAX_SIZE
    return max(size, DEFAULT_MAX_SIZE)


_MESSAGE_TYPE_BYTES = {mtype: bytes((mtype,)) for mtype in MessageType}


def base_reply(request: Packet, mtype: MessageType, server_ip: str) -> Packet:
    """Header fields every reply copies from the request, plus 53 and 54 [RFC 2131 table 3]."""
    # Positional, in Packet's field order (keywords cost more than the rest of this function):
    # op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr sname file options
    return Packet(
        BOOTREPLY, request.htype, request.hlen, 0, request.xid, 0, request.flags,
        ZERO_IP, ZERO_IP, ZERO_IP, request.giaddr, request.chaddr, b"", b"",
        {OPT_MESSAGE_TYPE: _MESSAGE_TYPE_BYTES[mtype], OPT_SERVER_ID: ip_bytes(server_ip)},
    )  # fmt: skip


_LEASE_TIMES = struct.Struct("!III")
_LEASE_MEMO_MAX = 64  # lease times remembered per subnet (a policy could give each device its own)


def add_lease_options(reply: Packet, subnet: Subnet, lease_time: int) -> None:
    """51, 58, 59 then the subnet's own options, from one dict per (subnet, lease time)."""
    entry = _cached_entry(subnet)
    per_time = entry[3]
    options = per_time.get(lease_time)
    if options is None:
        # T1 = 0.5 and T2 = 0.875 of the lease: the RFC 2131 §4.4.5 defaults, said explicitly
        raw = _LEASE_TIMES.pack(lease_time, lease_time // 2, lease_time * 7 // 8)
        options = {OPT_LEASE_TIME: raw[0:4], OPT_RENEWAL_T1: raw[4:8], OPT_REBINDING_T2: raw[8:12]}
        options.update(entry[2])
        if len(per_time) >= _LEASE_MEMO_MAX:
            per_time.clear()
        per_time[lease_time] = options
    reply.options.update(options)


def add_network_options(reply: Packet, subnet: Subnet) -> None:
    reply.options.update(network_options(subnet))


# id(subnet) -> (the subnet, its options without and with 28, lease time -> 51/58/59 and those
# with 28): keyed by identity, since hashing the frozen dataclass (all its fields) cost more than
# building the options did. A reconfigured server has new Subnet objects: new entries.
_STATIC: dict[int, tuple[Subnet, dict[int, bytes], dict[int, bytes], dict[int, dict[int, bytes]]]] = {}


def _cached_entry(
    subnet: Subnet,
) -> tuple[Subnet, dict[int, bytes], dict[int, bytes], dict[int, dict[int, bytes]]]:
    hit = _STATIC.get(id(subnet))
    if hit is None or hit[0] is not subnet:
        static = subnet_static(subnet)
        network = {code: value for code, value in static.items() if code != OPT_BROADCAST}
        if len(_STATIC) >= 1024:  # subnets of lab files reloaded many times over
            _STATIC.clear()
        hit = _STATIC[id(subnet)] = (subnet, network, {**network, OPT_BROADCAST: static[OPT_BROADCAST]}, {})
    return hit


def _cached(subnet: Subnet) -> tuple[dict[int, bytes], dict[int, bytes]]:
    hit = _cached_entry(subnet)
    return hit[1], hit[2]


def subnet_static(subnet: Subnet) -> dict[int, bytes]:
    """Option bytes that never change for a subnet (network_options, add_lease_options cache them)."""
    net = subnet.net
    cached = {OPT_SUBNET_MASK: ip_bytes(str(net.netmask))}
    if subnet.router:
        cached[OPT_ROUTER] = ip_bytes(subnet.router)
    if subnet.dns:
        cached[OPT_DNS] = ip_list(subnet.dns)
    if subnet.domain:
        cached[OPT_DOMAIN] = subnet.domain.encode()
    cached[OPT_BROADCAST] = ip_bytes(str(net.broadcast_address))
    return cached


def network_options(subnet: Subnet) -> dict[int, bytes]:
    return _cached(subnet)[0]


_BOOT_MEMO_MAX = 1024
# (id(decision), server_ip, option 55, option 60, iPXE) -> (the decision, siaddr, file, options,
# a copy of its extra_options): what add_boot_options writes is a function of these alone, and a
# policy hands the same decision object to every client of a kind (provision's BootPolicy
# remembers its decisions). The decision is kept and compared by identity, so a new decision is
# never mistaken for an old one; its frozen fields cannot change, but `extra_options` is a
# mapping its policy may still edit ("written as given"): the copy is compared on each use.
_BOOT_MEMO: dict[
    tuple[int, str, bytes | None, str | None, bool],
    tuple[BootDecision, str | None, bytes | None, dict[int, bytes], dict[int, bytes]],
] = {}


def add_boot_options(
    reply: Packet, client: Client, decision: BootDecision, server_ip: str, request_prl: bytes | None = None
) -> None:
    """Boot information of the decision, shaped for the firmware that asks."""
    key: tuple[int, str, bytes | None, str | None, bool] | None
    key = (id(decision), server_ip, request_prl, client.vendor_class, client.is_ipxe)
    try:
        hit = _BOOT_MEMO.get(key)
    except TypeError:  # an unhashable option 55 (a bytearray an embedding program built)
        hit = key = None
    if hit is None or hit[0] is not decision or hit[4] != decision.extra_options:
        hit = (
            decision,
            *boot_options(client, decision, server_ip, request_prl),
            dict(decision.extra_options),
        )
        if key is not None:
            if len(_BOOT_MEMO) >= _BOOT_MEMO_MAX:
                _BOOT_MEMO.clear()
            _BOOT_MEMO[key] = hit
    _, siaddr, bootfile, options, _ = hit
    if siaddr is not None:
        reply.siaddr = siaddr
    if bootfile is not None:
        reply.file = bootfile
    reply.options.update(options)


def forget_cached() -> None:
    """Drop the remembered subnet and boot options (Handler.reconfigure: a new configuration
    brings new Subnet objects anyway; this frees the old ones at once)."""
    _STATIC.clear()
    _BOOT_MEMO.clear()


def boot_options(
    client: Client, decision: BootDecision, server_ip: str, request_prl: bytes | None = None
) -> tuple[str | None, bytes | None, dict[int, bytes]]:
    """What add_boot_options writes: siaddr and `file` (None: left as they are), then options."""
    options: dict[int, bytes] = {}
    siaddr = file = None
    if decision.hostname:
        options[OPT_HOSTNAME] = decision.hostname.encode()
    if decision.bootfile:
        bootfile = decision.bootfile.encode()
        siaddr = decision.next_server or server_ip
        if len(bootfile) <= 128:
            file = bootfile
        options[OPT_BOOTFILE] = bootfile
        asked = request_prl or b""  # option 55's codes, one a byte: `in` tests one code
        if OPT_TFTP_SERVER in asked:  # ONIE's TFTP waterfall reads 66 and 150; EDK2 ignores them
            options[OPT_TFTP_SERVER] = siaddr.encode()
        if OPT_TFTP_SERVER_ADDRESS in asked:
            options[OPT_TFTP_SERVER_ADDRESS] = ip_bytes(siaddr)
        if client.is_http_boot:
            options[OPT_VENDOR_CLASS] = VC_HTTP
        elif client.vendor_class and client.vendor_class.startswith("PXEClient") and not client.is_ipxe:
            options[OPT_VENDOR_CLASS] = VC_PXE
            options[OPT_VENDOR_SPECIFIC] = PXE_SKIP_DISCOVERY
    elif decision.next_server:
        siaddr = decision.next_server
    for code, value in decision.extra_options.items():
        options[code] = bytes(value)
    return siaddr, file, options


def finish(reply: Packet, request: Packet, *, echo_uuid: bool = False) -> Packet:
    """Echoes (61 always [RFC 6842], 97 for proxyDHCP), 82 moved last verbatim [RFC 3046 §2.2],
    then drop options the client did not ask for until the reply fits its option 57."""
    opts = reply.options
    if OPT_CLIENT_ID in request.options:
        opts[OPT_CLIENT_ID] = request.options[OPT_CLIENT_ID]
    if echo_uuid and OPT_CLIENT_UUID in request.options:
        opts[OPT_CLIENT_UUID] = request.options[OPT_CLIENT_UUID]
    opts.pop(OPT_RELAY_AGENT, None)
    if OPT_RELAY_AGENT in request.options:
        opts[OPT_RELAY_AGENT] = request.options[OPT_RELAY_AGENT]
    budget = (
        _DEFAULT_BUDGET
        if OPT_MAX_SIZE not in request.options
        else max_reply_size(request) - _IP_UDP_HEADERS - HEADER_LEN
    )
    # An upper bound first, at C speed: a value of n bytes takes at most 2 + n + 2 * (n // 255)
    # (encoded_size's exact count, RFC 3396 §6 splitting included) and floors only add up to less.
    total = sum(map(len, opts.values()))
    if 5 + total + 2 * len(opts) + 2 * (total // 255) > budget and encoded_size(opts) > budget:
        asked = set(request.options.get(OPT_PARAM_REQUEST, b""))
        droppable = [c for c in opts if c not in _ESSENTIAL and c not in asked]
        droppable += [c for c in opts if c not in _ESSENTIAL and c in asked]
        for code in reversed(droppable):
            if encoded_size(opts) <= budget:
                break
            del opts[code]
        if OPT_RELAY_AGENT in opts:  # keep 82 last after any deletion
            opts[OPT_RELAY_AGENT] = opts.pop(OPT_RELAY_AGENT)
    return reply


def nak(request: Packet, server_ip: str, message: str) -> Packet:
    """DHCPNAK: no yiaddr, no lease; broadcast flag set so a relay broadcasts it [RFC 2131 §4.1]."""
    reply = base_reply(request, MessageType.NAK, server_ip)
    reply.flags |= 0x8000
    if message:
        reply.options[OPT_MESSAGE] = message.encode()[:200]
    return finish(reply, request)


__all__ = [
    "VC_HTTP",
    "VC_PXE",
    "ZERO_IP",
    "add_boot_options",
    "add_lease_options",
    "add_network_options",
    "base_reply",
    "finish",
    "max_reply_size",
    "nak",
]
