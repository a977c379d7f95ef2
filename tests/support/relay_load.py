"""A DHCP relay standing for many clients, forwarding to SEVERAL servers (as dhcrelay with two
`-s` servers does): the load generator of the scale-out test (tests/provision/store/
test_scale_out_netns.py). Run inside the load namespace:

    python -m tests.support.relay_load dora   --servers A,B --giaddr G --clients N --out F
    python -m tests.support.relay_load rebind --servers A,B --giaddr G --leases F --out F2

`dora`: every client DISCOVERs to all servers, takes the first OFFER, REQUESTs it from all
(option 54 names the chosen server, so the others drop their offer); a NAK, or no ACK after two
REQUESTs, sends it back to DISCOVER (RFC 2131 §3.1, what real clients do when their server
died); 2 s without an answer retransmits; 8 tries and the client is lost. Writes progress lines
("acked N") on stdout, so the test can kill a server mid-load, then a JSON result.
`rebind`: every client of a `dora` result sends a REBINDING REQUEST (ciaddr = its address, no
option 50/54, RFC 2131 §4.4.5) to all servers; the answer (ACK and the address, or NAK) per client.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import select
import socket
import sys
import time

from dhcp4.codec import DecodeError, Packet, decode, encode
from dhcp4.options import (
    BOOTREQUEST,
    OPT_CLIENT_ARCH,
    OPT_MESSAGE_TYPE,
    OPT_REQUESTED_IP,
    OPT_SERVER_ID,
    OPT_VENDOR_CLASS,
    MessageType,
)

PXE_VENDOR_CLASS = b"PXEClient:Arch:00000:UNDI:002001"  # a BIOS PXE ROM, as bench/dhcp.py's clients
OFFER_WAIT = 0.3  # seconds a client waits for its preferred server's OFFER once another came


def _packet(
    mac: bytes, xid: int, giaddr: str, mtype: MessageType, opts: dict[int, bytes], ciaddr: str = "0.0.0.0"
) -> bytes:
    pkt = Packet(op=BOOTREQUEST, xid=xid, hops=1, giaddr=giaddr, ciaddr=ciaddr, chaddr=mac.ljust(16, b"\0"))
    pkt.options[OPT_MESSAGE_TYPE] = bytes((mtype,))
    pkt.options.update(opts)
    pkt.options[OPT_VENDOR_CLASS] = PXE_VENDOR_CLASS
    pkt.options[OPT_CLIENT_ARCH] = b"\x00\x00"  # BIOS [RFC 4578 §2.1]
    return encode(pkt)


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", 67))  # a relay's port: the servers answer giaddr:67
    sock.setblocking(False)
    return sock


def _recv(sock: socket.socket, wait: float) -> list[tuple[Packet, str]]:
    out: list[tuple[Packet, str]] = []
    ready, _, _ = select.select([sock], [], [], wait)
    if not ready:
        return out
    for _ in range(256):
        try:
            data, (src, _port) = sock.recvfrom(4096)
        except BlockingIOError:
            break
        with contextlib.suppress(DecodeError):
            out.append((decode(data), src))
    return out


def dora(servers: list[str], giaddr: str, n: int, window: int, cap: float, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    macs = [bytes([0x02, 0x5C]) + rng.randbytes(4) for _ in range(n)]
    sock = _socket()
    queue = list(range(n))[::-1]
    # xid -> [client, packet, sent at, tries, stage (DISCOVER/REQUEST), chosen server,
    #         (another server's OFFER, when it came) while waiting for the preferred one]
    inflight: dict[int, list] = {}
    acked: dict[str, str] = {}  # mac -> ip
    by: dict[str, str] = {}  # mac -> server that ACKed
    naks = retransmits = lost = 0
    xid = rng.randrange(1 << 31)
    start = time.monotonic()

    def send(entry: list) -> None:
        for s in servers:
            with contextlib.suppress(OSError):
                sock.sendto(entry[1], (s, 67))
        entry[2] = time.monotonic()

    def request(entry: list, offer: Packet) -> None:
        opts = {
            OPT_REQUESTED_IP: socket.inet_aton(offer.yiaddr),
            OPT_SERVER_ID: offer.options[OPT_SERVER_ID],
        }
        entry[1] = _packet(macs[entry[0]], offer.xid, giaddr, MessageType.REQUEST, opts)
        entry[3], entry[4], entry[5] = 1, "R", socket.inet_ntoa(offer.options[OPT_SERVER_ID])
        entry[6] = None
        send(entry)

    def discover(idx: int) -> None:
        nonlocal xid
        xid = (xid + 1) & 0xFFFFFFFF
        entry = [idx, _packet(macs[idx], xid, giaddr, MessageType.DISCOVER, {}), 0.0, 1, "D", None, None]
        inflight[xid] = entry
        send(entry)

    while (queue or inflight) and time.monotonic() - start < cap:
        while queue and len(inflight) < window:
            discover(queue.pop())
        for pkt, src in _recv(sock, 0.02):
            entry = inflight.get(pkt.xid)
            if entry is None:
                continue
            idx, mtype = entry[0], pkt.message_type
            if mtype is MessageType.OFFER and entry[4] == "D":
                # RFC 2131 4.4.1 lets a client wait for several OFFERs and choose: each client
                # prefers servers[idx % n] and takes another's OFFER only after OFFER_WAIT, so every
                # server gets its share of the load whichever one answers faster on a busy machine.
                if src == servers[idx % len(servers)]:
                    request(entry, pkt)
                elif entry[6] is None:
                    entry[6] = (pkt, time.monotonic())
            elif mtype is MessageType.ACK and entry[4] == "R":
                del inflight[pkt.xid]
                acked[macs[idx].hex(":")] = pkt.yiaddr
                by[macs[idx].hex(":")] = src
                print(f"acked {len(acked)}", flush=True)
            elif mtype is MessageType.NAK and entry[4] == "R":
                naks += 1
                del inflight[pkt.xid]
                queue.append(idx)
        now = time.monotonic()
        for x, entry in list(inflight.items()):
            if entry[4] == "D" and entry[6] is not None and now - entry[6][1] > OFFER_WAIT:
                request(entry, entry[6][0])
            elif now - entry[2] > 2.0:
                if entry[3] >= 8:
                    del inflight[x]
                    lost += 1
                elif entry[4] == "R" and entry[3] >= 2:  # the chosen server is silent: start over
                    del inflight[x]
                    discover(entry[0])
                else:
                    entry[3] += 1
                    retransmits += 1
                    send(entry)
    sock.close()
    lost += len(inflight) + len(queue)
    return {"acked": acked, "by": by, "naks": naks, "retransmits": retransmits, "lost": lost,
            "seconds": time.monotonic() - start}  # fmt: skip


def rebind(servers: list[str], giaddr: str, leases: dict[str, str], cap: float) -> dict[str, object]:
    sock = _socket()
    pending: dict[int, tuple[str, str, bytes]] = {}
    for i, (mac, ip) in enumerate(leases.items()):
        pkt = _packet(
            bytes.fromhex(mac.replace(":", "")), 0x5000_0000 + i, giaddr, MessageType.REQUEST, {}, ciaddr=ip
        )
        pending[0x5000_0000 + i] = (mac, ip, pkt)
    answers: dict[str, list[str]] = {}
    start = time.monotonic()
    tries = 0
    while pending and tries < 4 and time.monotonic() - start < cap:
        tries += 1
        for _x, (_mac, _ip, pkt) in list(pending.items())[:]:
            for s in servers:
                with contextlib.suppress(OSError):
                    sock.sendto(pkt, (s, 67))
        deadline = time.monotonic() + 2.0
        while pending and time.monotonic() < deadline:
            for reply, _src in _recv(sock, 0.05):
                item = pending.pop(reply.xid, None)
                if item is None:
                    continue
                kind = reply.message_type.name if reply.message_type else "?"
                answers[item[0]] = [kind, reply.yiaddr]
    sock.close()
    return {"answers": answers, "unanswered": sorted(m for m, _, _ in pending.values())}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["dora", "rebind"])
    ap.add_argument("--servers", required=True)
    ap.add_argument("--giaddr", required=True)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--cap", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--leases")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    servers = a.servers.split(",")
    if a.phase == "dora":
        result = dora(servers, a.giaddr, a.clients, a.window, a.cap, a.seed)
    else:
        with open(a.leases) as f:
            result = rebind(servers, a.giaddr, json.load(f)["acked"], a.cap)
    with open(a.out, "w") as f:
        json.dump(result, f)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
