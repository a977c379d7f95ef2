"""The TFTP listener: receives requests on the well-known port and starts transfers.

recv -> validate -> ask the policy -> start a transfer; every failure on the way becomes an ERROR
packet and a `tftp.error` event, never an exception that leaves this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pxe.counters import Transfers
from pxe.files import PathRefused, Refusal, resolve
from pxe.limits import Bounds, Gate
from pxe.logsafe import safe
from pxe.policy import Client, Event, EventSink, Policy, RenderedFile, Service
from pxe.tftp import packets as P
from pxe.tftp.blocks import BlockCache
from pxe.tftp.readers import Readers
from pxe.tftp.transfer import Limits, Outcome, ReadTransfer, Result, Source, negotiate

log = logging.getLogger(__name__)

TFTP_PORT = 69  # [RFC 1350 §4]
NETASCII_MAX = 16 * 1024 * 1024  # netascii is converted in memory; boot files are sent as octet
SOCKET_BUFFER = 4 * 1024 * 1024  # room for a 64-block window at large blksize


ANY_ADDRESS = "0.0.0.0"


@dataclass(frozen=True)
class TftpConfig:
    root: Path
    bind_addr: str = ANY_ADDRESS
    port: int = TFTP_PORT
    interface: str | None = None  # SO_BINDTODEVICE: answer on this link only (needs root)
    limits: Limits = field(default_factory=Limits)
    # Transfers at once, and from one source address. Each holds a socket and (for a file) its
    # descriptor: 2 per transfer is what the caller's RLIMIT_NOFILE must leave room for. Beyond
    # either cap an RRQ gets ERROR 0 "server busy" and no transfer: one client cannot take every
    # slot, and a flood from many cannot run the process out of descriptors.
    max_transfers: int = 1000
    max_per_client: int = 8
    # Memory for the DATA packets of files being served, shared by their transfers
    # (pxe.tftp.blocks): a boot storm's file is read and framed once, not once per machine.
    # 0 turns it off; a file larger than this is read per transfer as it goes out.
    cache_bytes: int = 128 * 1024 * 1024


_REFUSAL_CODES = {
    Refusal.NOT_FOUND: P.ErrorCode.FILE_NOT_FOUND,
    Refusal.NOT_A_FILE: P.ErrorCode.FILE_NOT_FOUND,
    Refusal.OUTSIDE_ROOT: P.ErrorCode.ACCESS_VIOLATION,
    Refusal.BAD_NAME: P.ErrorCode.ACCESS_VIOLATION,
}
# A request answered with an ERROR before any transfer, by the result it is counted under.
_RESULT_OF_CODE: dict[int, str] = {
    P.ErrorCode.FILE_NOT_FOUND: "not-found",
    P.ErrorCode.ACCESS_VIOLATION: "forbidden",
}


def _netascii(data: bytes) -> bytes:
    # [RFC 1350 appendix, RFC 764] CR -> CR NUL, LF -> CR LF.
    return data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")


def _udp_socket(addr: str, port: int, interface: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((addr, port))
    except BaseException:
        sock.close()
        raise
    return sock


class TftpServer:
    """Running server. Create with `start_tftp`; `close()` stops listening and ends transfers."""

    def __init__(
        self,
        config: TftpConfig,
        policy: Policy | None,
        events: EventSink | None,
        resolve_mac: Callable[[str], str | None] | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.events = events
        self.resolve_mac = resolve_mac
        self.loop = asyncio.get_running_loop()
        self.sock = _udp_socket(config.bind_addr, config.port, config.interface)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.transfers: dict[tuple[str, int], ReadTransfer] = {}
        self.gate = Gate(config.max_transfers, config.max_per_client)
        self.bounds = Bounds(log)
        # Counters of every bound reached (and refusals), for the observability export.
        self.stats = self.bounds.stats
        self.counters = Transfers()  # requests and transfers by result, bytes, durations
        self._meta: dict[ReadTransfer, tuple[str, str, str | None]] = {}
        self._requests: dict[ReadTransfer, P.Request] = {}  # what started each transfer
        self.readers = Readers(self.loop)  # every transfer's socket, behind one loop reader
        self.blocks = BlockCache(config.cache_bytes)
        self.loop.add_reader(self.sock.fileno(), self._on_readable)

    @property
    def port(self) -> int:
        return self.address[1]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for transfer in list(self.transfers.values()):
            transfer.cancel()
        self.readers.close()

    # -- events ------------------------------------------------------------------------------
    def _emit(self, kind: str, mac: str | None, ip: str, **detail: object) -> None:
        if self.events is None:
            return
        try:
            self.events(Event(kind=kind, mac=mac or None, ip=ip, detail=detail))
        except Exception:
            log.exception("tftp: event sink failed for %s", kind)

    def _error(self, peer: tuple[str, int], code: int, message: str, path: str, mac: str | None) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(P.build_error(code, message), peer)
        self.counters.refused(_RESULT_OF_CODE.get(code, "error"))
        self._emit("tftp.error", mac, peer[0], path=path, code=int(code), message=message, by="server")

    # -- requests ----------------------------------------------------------------------------
    def _on_readable(self) -> None:
        for _ in range(64):  # drain a burst (a boot storm) but let transfers run in between
            try:
                data, peer = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors surface here on Linux; not fatal
                log.debug("tftp: recvfrom: %s", exc)
                continue
            try:
                self._on_packet(data, peer)
            except Exception:  # the last line of defence: one request never kills the server
                if self.bounds.hit(
                    "tftp.internal_error", "tftp: unexpected error handling a packet from %s", peer[0]
                ):
                    log.exception("tftp: the first such error's traceback")

    def _on_packet(self, data: bytes, peer: tuple[str, int]) -> None:
        try:
            packet = P.parse(data)
        except P.MalformedPacket as exc:
            self.bounds.hit(
                "tftp.malformed",
                "tftp: malformed packet from %s:%s: %s",
                peer[0],
                peer[1],
                exc,
                level=logging.INFO,
                burst=10,
            )
            # Answer only things that look like a request; never answer an ERROR (no loops).
            if data[:2] in (b"\x00\x01", b"\x00\x02"):
                self._error(peer, P.ErrorCode.ILLEGAL_OPERATION, f"malformed request: {exc}", "", None)
            return
        if not isinstance(packet, P.Request):
            # ACK/DATA/ERROR to port 69 belong to no transfer [RFC 1350 §4: unknown TID].
            if not isinstance(packet, P.Error):
                with contextlib.suppress(OSError):
                    self.sock.sendto(P.build_error(P.ErrorCode.UNKNOWN_TID, "unknown transfer ID"), peer)
            return
        if packet.opcode == P.OP_RRQ and not self._admissible(packet, peer):
            return
        mac = self.resolve_mac(peer[0]) if self.resolve_mac else None
        self._emit(
            "tftp.request",
            mac,
            peer[0],
            path=packet.filename,
            port=peer[1],
            op="write" if packet.opcode == P.OP_WRQ else "read",
            mode=packet.mode.value,
            options=dict(packet.options),
        )
        if packet.opcode == P.OP_WRQ:
            self._error(
                peer, P.ErrorCode.ACCESS_VIOLATION, "access violation: read-only server", packet.filename, mac
            )
            return
        if packet.mode is P.Mode.MAIL:
            self._error(peer, P.ErrorCode.ILLEGAL_OPERATION, "mail mode not supported", packet.filename, mac)
            return
        existing = self.transfers.get(peer)
        if existing is not None:
            # The event loop gives no order between datagrams on two sockets: what the client
            # sent to the transfer's port before this RRQ (EDK2's ERROR 8 ending its tsize probe)
            # may still be unread there. Handle it first, or a finished transfer looks alive.
            existing.drain()
            existing = self.transfers.get(peer)
        if existing is not None and existing.at_first_packet and self._requests.get(existing) == packet:
            # The client repeated its RRQ: our first packet was lost (or is slow). Resend it from
            # the same transfer; a second transfer from another port would only earn an ERROR 5.
            # Only the same request is a repeat: another one (other file, mode or options) from
            # the same port supersedes the old transfer, which `_start` cancels.
            existing.resend_first()
            return
        source = self._open(packet, peer, mac)
        if source is None:
            return
        self._start(packet, peer, mac, source)

    def _admissible(self, packet: P.Request, peer: tuple[str, int]) -> bool:
        """The caps, checked before any work (no event, no policy call, no file opened): a
        refused RRQ gets ERROR 0 and costs one counter increment; the log gets one line a
        minute per cap. A repeat of a live transfer's RRQ, or one that supersedes the transfer
        on the same port, takes no new slot."""
        existing = self.transfers.get(peer)
        if existing is not None and not existing.done:
            return True
        refused = self.gate.admit(peer[0])
        if refused == "total" and peer[0] not in self.gate.by_source and self._evict_idle():
            refused = self.gate.admit(peer[0])
        if refused is None:
            self.gate.release(peer[0])  # counted in for real by _start, once a transfer exists
            return True
        if refused == "total":
            self.bounds.hit(
                "tftp.busy_total",
                "tftp: %s transfers running (the cap): refusing new requests, the latest from %s",
                self.config.max_transfers,
                peer[0],
            )
        else:
            self.bounds.hit(
                "tftp.busy_per_client",
                "tftp: %s already has %s transfers (the per-client cap): refusing more, asked %s",
                peer[0],
                self.config.max_per_client,
                packet.filename,
            )
        with contextlib.suppress(OSError):
            self.sock.sendto(P.build_error(P.ErrorCode.NOT_DEFINED, "server busy"), peer)
        return False

    def _evict_idle(self) -> bool:
        """At the total cap, a source with no transfer yet takes the slot of the oldest transfer
        that never got past its first packet (an RRQ nobody ACKs: what a flood is made of; a
        real client's transfer is moving and is never chosen). Without this, idle RRQs from
        many addresses would lock every new client out until they time out."""
        for transfer in self.transfers.values():
            if transfer.at_first_packet and not transfer.done:
                ip = self._meta.get(transfer, ("?", "", None))[0]
                self.bounds.hit(
                    "tftp.evicted_idle",
                    "tftp: at the cap, ended an idle transfer to %s (no ACK yet) to serve a new client",
                    ip,
                )
                transfer.abort("server busy")
                return True
        return False

    def _open(self, packet: P.Request, peer: tuple[str, int], mac: str | None) -> Source | None:
        path = packet.filename
        rendered: RenderedFile | None = None
        if self.policy is not None:
            client = Client(
                mac=mac or "",
                service=Service.TFTP,
                ip=peer[0],
                path=path,
                server_ip=self.config.bind_addr if self.config.bind_addr != ANY_ADDRESS else None,
                interface=self.config.interface,
            )
            try:
                rendered = self.policy.render(client, path)
            except Exception:
                log.exception("tftp: policy.render failed for %s from %s", safe(path), peer[0])
                self._error(peer, P.ErrorCode.NOT_DEFINED, "internal error", path, mac)
                return None
        try:
            if rendered is not None and not rendered.found:
                self._error(peer, P.ErrorCode.FILE_NOT_FOUND, "file not found", path, mac)
                return None
            if rendered is not None and rendered.content is not None:
                content = rendered.content
                if packet.mode is P.Mode.NETASCII:
                    content = _netascii(content)
                return Source.from_bytes(content)
            if rendered is not None and rendered.path is not None:
                # The policy chose this file itself: no root confinement applies to it.
                real, size = str(rendered.path), os.stat(rendered.path).st_size
            else:
                found = resolve(self.config.root, path)
                real, size = str(found.path), found.size
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
            st = os.fstat(fd)  # what was opened: its size now, and its identity for the cache
            size = st.st_size
        except PathRefused as exc:
            self._error(peer, _REFUSAL_CODES[exc.reason], str(exc), path, mac)
            return None
        except FileNotFoundError:
            self._error(peer, P.ErrorCode.FILE_NOT_FOUND, "file not found", path, mac)
            return None
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self._out_of_descriptors(peer, path)
                return None
            self._error(peer, P.ErrorCode.ACCESS_VIOLATION, exc.strerror or "cannot open", path, mac)
            return None
        if packet.mode is P.Mode.NETASCII:
            try:
                if size > NETASCII_MAX:
                    self._error(
                        peer, P.ErrorCode.NOT_DEFINED, "file too large for netascii; use octet", path, mac
                    )
                    return None
                return Source.from_bytes(_netascii(os.pread(fd, size, 0)))
            finally:
                os.close(fd)
        return Source.from_file(fd, size, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))

    def _out_of_descriptors(self, peer: tuple[str, int], path: str) -> None:
        """The process hit its descriptor limit (the caps leave room, so something else holds
        many): refuse like a cap, one line a minute, never an exception."""
        self.bounds.hit(
            "tftp.no_descriptors",
            "tftp: out of file descriptors (RLIMIT_NOFILE): refusing %s from %s; lower max_transfers "
            "or raise the limit",
            path,
            peer[0],
            level=logging.ERROR,
        )
        with contextlib.suppress(OSError):
            self.sock.sendto(P.build_error(P.ErrorCode.NOT_DEFINED, "server busy"), peer)

    def _start(self, packet: P.Request, peer: tuple[str, int], mac: str | None, source: Source) -> None:
        opts = negotiate(packet.options, source.size, self.config.limits)
        if opts.declined_timeout:
            self.bounds.hit(
                "tftp.timeout_declined",
                "tftp: %s asked timeout=%s, above the %s s we accept: option declined (RFC 2349)",
                peer[0],
                packet.options.get(P.OPT_TIMEOUT),
                self.config.limits.max_timeout,
                level=logging.INFO,
            )
        try:
            sock = _udp_socket(self.config.bind_addr, 0, self.config.interface)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.connect(peer)
        except OSError as exc:
            source.close()
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self._out_of_descriptors(peer, packet.filename)
                return
            self._error(
                peer,
                P.ErrorCode.NOT_DEFINED,
                f"cannot open transfer socket: {exc.strerror}",
                packet.filename,
                mac,
            )
            return
        transfer = ReadTransfer(
            self.loop,
            sock,
            source,
            opts,
            self.config.limits,
            self._on_done,
            readers=self.readers,
            blocks=self.blocks.acquire(source.identity, opts.blksize),
        )
        old = self.transfers.pop(peer, None)
        if old is not None:
            old.cancel()
        if self.gate.admit(peer[0]) is not None:  # cannot happen after _admissible; be safe
            transfer.cancel()
            return
        self.transfers[peer] = transfer
        self._meta[transfer] = (peer[0], packet.filename, mac)
        self._requests[transfer] = packet
        transfer.start()

    def _on_done(self, transfer: ReadTransfer, result: Result) -> None:
        if transfer.blocks is not None:
            self.blocks.release(transfer.blocks)
        meta = self._meta.pop(transfer, None)
        ip, path, mac = meta or ("", "", None)
        if meta is not None:
            self.gate.release(ip)
        self._requests.pop(transfer, None)
        if result.outcome is not Outcome.CANCELLED:
            # EDK2's tsize probe (ERROR 8 before any data) is expected: counted apart from errors
            probe = result.error_code == P.ErrorCode.OPTION_REFUSED and result.bytes_sent == 0
            name = "size-probe" if probe else result.outcome.value
            self.counters.done(name, result.bytes_sent, result.seconds, result.retransmits)
        for key, value in list(self.transfers.items()):
            if value is transfer:
                del self.transfers[key]
        if result.outcome is Outcome.EXPIRED:
            self.bounds.hit(
                "tftp.lifetime",
                "tftp: transfer of %s to %s ended: past its lifetime (%s s + 1 s per %s bytes)",
                path,
                ip,
                self.config.limits.lifetime,
                self.config.limits.min_rate,
            )
        if result.outcome in (Outcome.COMPLETE, Outcome.UNCONFIRMED):
            self._emit(
                "tftp.sent",
                mac,
                ip,
                path=path,
                bytes=result.bytes_sent,
                seconds=round(result.seconds, 6),
                blksize=result.blksize,
                windowsize=result.windowsize,
                retransmits=result.retransmits,
                confirmed=result.outcome is Outcome.COMPLETE,  # False: the final ACK never came
            )
            return
        if result.outcome is Outcome.CANCELLED:
            return
        self._emit(
            "tftp.error",
            mac,
            ip,
            path=path,
            by="client" if result.outcome is Outcome.CLIENT_ERROR else "server",
            outcome=result.outcome.value,
            code=result.error_code,
            message=result.error_message,
            bytes=result.bytes_sent,
            # EDK2 asks tsize, reads the OACK, then ends with ERROR 8 and re-requests: expected.
            size_probe=result.error_code == P.ErrorCode.OPTION_REFUSED and result.bytes_sent == 0,
        )


async def start_tftp(
    config: TftpConfig,
    policy: Policy | None = None,
    events: EventSink | None = None,
    resolve_mac: Callable[[str], str | None] | None = None,
) -> TftpServer:
    """Listen on `config.bind_addr:config.port` (port 0 picks one: see `server.port`)."""
    return TftpServer(config, policy, events, resolve_mac)
