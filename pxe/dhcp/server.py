"""The DHCP server on an asyncio loop: one socket per interface, batched durable commits.

Each interface gets its own socket on 0.0.0.0:67 with SO_BINDTODEVICE, so nothing is served on
interfaces the caller did not name and broadcasts leave by the right link. The socket is read
with `loop.add_reader` and drained up to `max_batch` datagrams per wake-up: all of them are
handled; replies that wrote no lease leave at once, the others wait for ONE transaction that makes
their leases durable (`store.begin_commit()`, run by a writer thread while the loop goes on, or
`store.commit()` on the loop when the store cannot). That is "durable before the ACK" at the cost
of one commit per burst rather than per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import ClassVar

from dhcp4.codec import DecodeError, decode, encode
from pxe.dhcp.config import DhcpServerConfig, Mode
from pxe.dhcp.handler import BROADCAST, Arrival, Handler, Outgoing
from pxe.dhcp.leases import LeaseEngine, LeaseStore, LeaseStoreError, MemoryLeaseStore
from pxe.netif import ipv4_address
from pxe.policy import Event, EventSink, Policy

COMMIT_LOG_EVERY_S = 60.0  # a failing store (a full disk, a database down): logged once a minute
log = logging.getLogger("pxe.dhcp")
_SIOCSARP = 0x8955  # <linux/sockios.h>
_ARPHRD_ETHER = 1  # <linux/if_arp.h>
_ATF_COM = 0x02  # <linux/if_arp.h>: completed entry
_RECV_SIZE = 65535
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # <linux/in.h>; Python exports it only from 3.12
_ANC_SIZE = socket.CMSG_SPACE(12)  # struct in_pktinfo
_BROADCAST_BYTES = b"\xff\xff\xff\xff"


_IPPROTO_IP = socket.IPPROTO_IP  # a module attribute read per datagram: read once


def _to_broadcast(anc: list[tuple[int, int, bytes]]) -> bool:
    """Was the datagram sent to 255.255.255.255? (in_pktinfo.ipi_addr, the header destination)"""
    for level, kind, data in anc:
        if level == _IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return bool(data[8:12] == _BROADCAST_BYTES)
    return True


def _open_socket(ifname: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DhcpStartError(OSError):
    """A socket could not be opened; `str()` names the interface, the port and a likely fix."""

    _HINTS: ClassVar[dict[int, str]] = {
        errno.ENODEV: "no such interface: check the name (ip -br link)",
        errno.EADDRINUSE: "another DHCP server (dnsmasq, isc-dhcp-server, kea) holds the port on it",
        errno.EACCES: "binding port 67 and SO_BINDTODEVICE need root or CAP_NET_BIND_SERVICE+CAP_NET_RAW",
        errno.EPERM: "binding port 67 and SO_BINDTODEVICE need root or CAP_NET_BIND_SERVICE+CAP_NET_RAW",
    }

    def __init__(self, interface: str, port: int, cause: OSError) -> None:
        hint = self._HINTS.get(cause.errno or 0, "")
        super().__init__(cause.errno, f"cannot listen on {interface} UDP port {port}: {cause.strerror}"
                         + (f" ({hint})" if hint else ""))  # fmt: skip
        self.interface = interface
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)


class _Neighbours:
    """Neighbour (ARP) entries so that a unicast reply reaches a client that has no address yet and
    so cannot answer ARP [RFC 2131 §4.1]. SIOCSARP is one synchronous ioctl: pyroute2's IPRoute
    refuses to run inside a running asyncio loop, and `ip neigh` would fork per reply."""

    def add(self, ifname: str, ip: str, mac: str) -> bool:
        try:
            hw = bytes.fromhex(mac.replace(":", ""))
            req = struct.pack(
                "=HH4s8sH14si16s16s",
                socket.AF_INET, 0, socket.inet_aton(ip), b"",  # arp_pa: sockaddr_in
                _ARPHRD_ETHER, hw,  # arp_ha
                _ATF_COM,  # arp_flags: a complete entry (the kernel ages it out like any other)
                b"",  # arp_netmask
                ifname.encode()[:15],  # arp_dev
            )  # fmt: skip
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                fcntl.ioctl(s.fileno(), _SIOCSARP, req)
            return True
        except (OSError, ValueError, struct.error) as exc:
            log.debug("neighbour %s at %s on %s not set: %s", ip, mac, ifname, exc)
            return False

    def close(self) -> None:
        pass


class DhcpServer:
    """Use `start_dhcp()`; `close()` stops it (sockets closed, pending commit done)."""

    def __init__(
        self, config: DhcpServerConfig, policy: Policy, store: LeaseStore | None, events: EventSink
    ) -> None:
        self.config = config
        self.store: LeaseStore = store if store is not None else MemoryLeaseStore()
        engine = self._engine(config)
        self.engine = engine
        self.events = events
        # A burst's events, delivered in order once its packets are handled (_deliver): the
        # subscribers (a log line, a store row, the lifecycle) then run back to back rather than
        # between two packets, which costs less per event (docs/netboot.md "Performance").
        self._burst: list[Event] | None = None
        self.handler = Handler(config, policy, engine, self._event)
        self._socks: list[tuple[socket.socket, str, int]] = []
        self._addr: dict[str, str | None] = {}
        self._neigh = _Neighbours()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = {"received": 0, "bad": 0, "replied": 0, "errors": 0}
        self._failure_logged: dict[str, float] = {}  # "commit" | "unavailable" -> when last logged
        self._store_down = 0  # packets dropped since the store last failed to answer
        # Group commit (LeaseStore.begin_commit): one writer thread, one transaction at a time.
        self._writer: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], None], list[tuple[socket.socket, Outgoing]]] | None
        ] = queue.SimpleQueue()
        self._writing = False
        self._held: list[tuple[socket.socket, Outgoing]] = []
        self._dirty = False  # leases written since the last transaction began

    def _engine(self, config: DhcpServerConfig) -> LeaseEngine | None:
        """The lease engine (authoritative mode); leases come from the store."""
        if config.mode is not Mode.AUTHORITATIVE:
            return None
        return LeaseEngine(
            config.subnets,
            config.reservations,
            self.store,
            offer_timeout=config.offer_timeout,
            decline_quarantine=config.decline_quarantine,
            authoritative=config.authoritative,
        )

    def reconfigure(self, config: DhcpServerConfig) -> None:
        """New subnets, pools and reservations without a restart (a reloaded lab file): sockets,
        leases and offers in flight are kept, and no packet waits (the loop runs this between two
        packets). Interfaces, ports and mode are bound to sockets: those need a restart."""
        fixed = ("interfaces", "mode", "port", "proxy_port")
        changed = [k for k in fixed if getattr(config, k) != getattr(self.config, k)]
        if changed:
            raise ValueError(f"{', '.join(changed)} cannot change without a restart")
        engine = self._engine(config)
        if engine is not None and self.engine is not None:
            engine.offers.update(self.engine.offers)
            engine.offered_ips.update(self.engine.offered_ips)
        self.config = config
        self.engine = engine
        self.handler.reconfigure(config, engine)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ports = [self.config.port]
        if self.config.mode is Mode.PROXY:
            ports.append(self.config.proxy_port)
        for ifname in self.config.interfaces:
            self._addr[ifname] = ipv4_address(ifname)
            for port in ports:
                try:
                    sock = _open_socket(ifname, port)
                except OSError as exc:
                    self.close()
                    raise DhcpStartError(ifname, port, exc) from exc
                self._socks.append((sock, ifname, port))
                self._loop.add_reader(sock.fileno(), self._readable, sock, ifname, port)
        log.info("dhcp %s on %s", self.config.mode.value, ", ".join(self.config.interfaces))
        for subnet in self.config.subnets:
            if subnet.interface is None and not subnet.relays:
                log.warning(
                    "subnet %s is not on any of our links and names no `relays:`: relayed requests"
                    " for it are ignored; list the relays' addresses (docs/netboot.md)",
                    subnet.network,
                )

    def close(self) -> None:
        for sock, _, _ in self._socks:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()
        self._neigh.close()
        if self._writer is not None:
            self._jobs.put(None)
            self._writer.join()  # the transaction in flight ends before the store closes
            self._writer = None
        with contextlib.suppress(Exception):
            self.store.commit()

    def _local_ip(self, ifname: str) -> str | None:
        ip = self._addr.get(ifname)
        if ip is None:  # the address may have been added after we started
            ip = self._addr[ifname] = ipv4_address(ifname)
        return ip

    def _event(self, event: Event) -> None:
        burst = self._burst
        if burst is not None:
            burst.append(event)
        else:
            self.events(event)

    def _deliver(self, burst: list[Event]) -> None:
        events = self.events
        for event in burst:
            try:
                events(event)
            except Exception:  # an event sink failing must not take DHCP down
                log.exception("event sink failed for %s mac=%s", event.kind, event.mac)

    def _readable(self, sock: socket.socket, ifname: str, port: int) -> None:
        out: list[tuple[socket.socket, Outgoing]] = []
        store = self.store
        start = store.lease_writes
        free: list[tuple[socket.socket, Outgoing]] = []  # replies that wrote no lease
        burst: list[Event] = []
        self._burst = burst
        try:
            self._handle_all(sock, ifname, port, out, free)
        except BaseException:  # (each packet's errors are caught inside): what was seen is told
            self._burst = None
            self._deliver(burst)
            raise
        self._burst = None
        writes = store.lease_writes
        # OFFERs and NAKs of unchanged leases owe nothing to the disk: out at once. The rest
        # wait for the transaction that holds their leases (_group_commit). Events alone
        # start no transaction: they ride along, or go on the store's own timer. The
        # transaction starts before the burst's events are delivered, so that its fsync runs
        # while the subscribers do (their rows go in the next transaction).
        for s, reply in free:
            self._send(s, reply)
        self._held.extend(out)
        self._dirty = self._dirty or writes != start
        if not self._writing and self._dirty:
            self._group_commit()
        self._deliver(burst)

    def _handle_all(
        self,
        sock: socket.socket,
        ifname: str,
        port: int,
        out: list[tuple[socket.socket, Outgoing]],
        free: list[tuple[socket.socket, Outgoing]],
    ) -> None:
        """Up to max_batch datagrams: each handled; its reply into `out` when it wrote a lease
        (it waits for the commit), else into `free`."""
        store = self.store
        writes = store.lease_writes
        for _ in range(self.config.max_batch):
            try:
                data, anc, _flags, (src_ip, src_port) = sock.recvmsg(_RECV_SIZE, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("recv on %s: %s", ifname, exc)
                break
            self.stats["received"] += 1
            try:
                pkt = decode(data)
            except DecodeError as exc:
                self.stats["bad"] += 1
                log.debug("dropped %d bytes from %s:%s on %s: %s", len(data), src_ip, src_port, ifname, exc)
                continue
            try:
                local_ip = self._addr.get(ifname) or self._local_ip(ifname)
                arrival = Arrival(ifname, local_ip, src_ip, src_port, port, _to_broadcast(anc))
                reply = self.handler.handle(pkt, arrival)
            except LeaseStoreError as exc:
                self._store_failed(exc)
                continue
            except Exception:
                self.stats["errors"] += 1
                log.exception(
                    "failed on packet mac=%s xid=%08x from %s on %s", pkt.mac, pkt.xid, src_ip, ifname
                )
                continue
            before, writes = writes, store.lease_writes
            if reply is not None:
                (out if writes != before else free).append((sock, reply))

    def _group_commit(self) -> None:
        """Start the writer on what the store buffered; the held replies leave when it is done.
        Packets handled meanwhile buffer their leases for the next transaction, so a burst of
        clients shares one fsync and the loop never waits on the disk (docs/netboot.md)."""
        write = self.store.begin_commit()
        held, self._held = self._held, []
        self._dirty = False
        if write is None:
            self._commit_then_send(held)
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_forever, name="dhcp-commit", daemon=True)
            self._writer.start()
        self._writing = True
        self._jobs.put((write, held))
        # Let the writer take the GIL now, while it needs it to start the COMMIT, rather than
        # after the interpreter's switch interval (5 ms): its fsync then overlaps our next work.
        # One server pinned to one core (taskset) otherwise idled ~10% of a DHCP storm waiting
        # on the disk (docs/netboot.md "Performance").
        os.sched_yield()

    def _write_forever(self) -> None:
        """The writer thread: one transaction at a time, each reported back to the loop (a plain
        queue and call_soon_threadsafe: an executor's futures cost more than the commit's CPU)."""
        loop = self._loop
        assert loop is not None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            write, held = job
            try:
                write()
                failed: BaseException | None = None
            except BaseException as exc:
                failed = exc
            try:
                loop.call_soon_threadsafe(self._written, failed, held)
            except RuntimeError:  # the loop is closed: close() commits what is left
                return

    def _written(self, failed: BaseException | None, held: list[tuple[socket.socket, Outgoing]]) -> None:
        self._writing = False
        if not self._socks:
            return  # closed meanwhile: close() committed what was left
        if failed is not None:
            # The writer's transaction failed: its rows go back, and the synchronous commit
            # decides (the full-disk rules of the store); nothing is sent on a failure there.
            self.store.abort_commit()
            self._commit_then_send(held)
        else:
            self._store_back()
            for s, reply in held:
                self._send(s, reply)
        if self._dirty and self._socks:
            self._group_commit()

    def _commit_then_send(self, out: list[tuple[socket.socket, Outgoing]]) -> None:
        try:
            self.store.commit()
        except Exception as exc:
            # Not durable: send nothing rather than ACK leases a crash could lose. A full disk
            # fails every burst: one line a minute (the first with its traceback), all counted.
            self.stats["commit_failed"] = self.stats.get("commit_failed", 0) + 1
            self.stats["withheld"] = self.stats.get("withheld", 0) + len(out)
            self._log_failure(
                "commit", "lease store commit failed (%s); %d replies withheld (%d bursts so far)",
                exc, len(out), self.stats["commit_failed"],
            )  # fmt: skip
            return
        self._store_back()
        for s, reply in out:
            self._send(s, reply)

    def _store_failed(self, exc: LeaseStoreError) -> None:
        """A packet the store could not serve (its database is down): dropped, the client
        retries. Every packet fails while it lasts: one line a minute, the first with its
        traceback, all counted (stats["store_unavailable"], /metrics)."""
        self.stats["store_unavailable"] = self.stats.get("store_unavailable", 0) + 1
        self._store_down += 1
        self._log_failure(
            "unavailable", "lease store unavailable (%s): packets dropped until it answers, clients "
            "retry (%d dropped so far)", exc, self.stats["store_unavailable"],
        )  # fmt: skip

    def _log_failure(self, what: str, message: str, *args: object) -> None:
        """A failing store fails every burst or packet while it lasts: one line a minute per
        kind of failure, the first with its traceback (called from the except clause)."""
        now = time.monotonic()
        last = self._failure_logged.get(what)
        if last is None or now - last >= COMMIT_LOG_EVERY_S:
            self._failure_logged[what] = now
            log.error(message, *args, exc_info=last is None)

    def _store_back(self) -> None:
        if self._store_down:
            log.warning("lease store answers again: %d packets were dropped meanwhile", self._store_down)
            self._store_down = 0

    def _send(self, sock: socket.socket, reply: Outgoing) -> None:
        try:
            data = encode(reply.packet)
        except Exception:
            log.exception("cannot encode reply mac=%s xid=%08x", reply.packet.mac, reply.packet.xid)
            return
        dest = reply.dest_ip
        if reply.unicast_mac is not None and not self._neigh.add(reply.interface, dest, reply.unicast_mac):
            dest = BROADCAST
        try:
            sock.sendto(data, (dest, reply.dest_port))
            self.stats["replied"] += 1
        except OSError as exc:
            if dest != BROADCAST and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EINVAL):
                with contextlib.suppress(OSError):
                    sock.sendto(data, (BROADCAST, reply.dest_port))
                    self.stats["replied"] += 1
                    return
            log.warning("send to %s:%s failed mac=%s: %s", dest, reply.dest_port, reply.packet.mac, exc)


async def start_dhcp(
    config: DhcpServerConfig, policy: Policy, lease_store: LeaseStore | None, events: EventSink
) -> DhcpServer:
    """Load the leases, bind the sockets and serve on the running loop until `.close()`."""
    server = DhcpServer(config, policy, lease_store, events)
    server.start()
    return server
