"""One read transfer: option negotiation and the per-transfer state machine.

Each transfer owns a UDP socket on its own ephemeral port, connected to the client (RFC 1350 §4:
the pair of ports is the transfer ID; connecting lets the kernel drop strays and report ICMP
port-unreachable when the client has gone). The socket is driven with plain non-blocking
`send`/`recv_into` from a reader callback (the server's `pxe.tftp.readers.Readers`: one epoll set
for every transfer socket; `loop.add_reader` when a transfer runs alone) rather than a
DatagramTransport: at windowsize 1 each block costs one ACK round trip, so per-packet overhead
is the throughput, and an in-order ACK is answered in the reader callback itself. One timer per
transfer, re-armed lazily (the timer checks when progress was last seen) instead of being
cancelled and rescheduled on every ACK.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import enum
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, count, islice, repeat

from pxe.tftp import packets as P
from pxe.tftp.blocks import SEGMENT_MASK, SEGMENT_SHIFT, Blocks, Identity
from pxe.tftp.readers import Readers

log = logging.getLogger(__name__)

# [RFC 2348] blksize valid range; 512 is RFC 1350's fixed size.
DEFAULT_BLKSIZE = 512
MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464
# [RFC 7440] windowsize valid range is 1..65535; we clamp to 64 (u-root does the same): beyond that
# a single loss costs a large go-back and socket buffers overflow.
MAX_WINDOWSIZE = 64
# [RFC 2349] timeout option: 1..255 seconds.
MIN_TIMEOUT, MAX_TIMEOUT = 1, 255

# UDP generic segmentation offload [Linux udp(7), UDP_SEGMENT since 4.18]: one sendmsg carries
# up to 64 datagrams of one size, at most 64 KiB in all.
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000

OACK_QUIET_EXPIRIES = 2  # timer expiries in WAIT_OACK_ACK that do not resend (see _on_timer)
OACK_QUIET_S = 4.0  # and at least this long without a word from the client, whatever the timeout

_OP_ACK = P.OP_ACK

READ_CHUNK = 256 * 1024  # file bytes read per pread at most: one syscall per ~180 blocks at 1468


@dataclass(frozen=True)
class Limits:
    max_blksize: int = MAX_BLKSIZE
    max_windowsize: int = MAX_WINDOWSIZE
    timeout: float = 1.0  # our retransmit timeout when the client does not ask for one
    retries: int = 5  # retransmissions of one packet/window before the transfer is abandoned
    # The largest `timeout` option we accept. RFC 2349 lets a server only accept the client's
    # value as is or decline the option (leave it out of the OACK); a larger ask is declined
    # and our `timeout` applies. At 255 s an unanswered OACK held a transfer for 30+ minutes.
    max_timeout: int = 10
    # A transfer ends (ERROR 0 "transfer took too long") after `lifetime` seconds plus one second
    # per `min_rate` bytes of the file: a client ACKing just often enough to stay alive cannot
    # hold a slot forever, and a large file on a slow link still gets its time.
    lifetime: float = 300.0
    min_rate: int = 128 * 1024

    def deadline(self, size: int) -> float:
        """Seconds a transfer of `size` bytes may last."""
        return self.lifetime + size / max(1, self.min_rate)


@dataclass(frozen=True)
class Negotiated:
    blksize: int
    windowsize: int
    timeout: float
    oack: dict[str, str]  # options acknowledged; empty: no OACK, data starts at block 1
    declined_timeout: bool = False  # the client asked a timeout above Limits.max_timeout


def negotiate(requested: dict[str, str], size: int, limits: Limits) -> Negotiated:
    """Options to accept [RFC 2347]: unknown or invalid ones are left out of the OACK (the RFC's
    way of declining); out-of-range sizes are clamped to what we allow."""
    oack: dict[str, str] = {}
    blksize, windowsize, timeout = DEFAULT_BLKSIZE, 1, limits.timeout

    def number(name: str) -> int | None:
        value = requested.get(name)
        # isascii: latin-1 decoding makes "\xb2" ("²") a str.isdigit() that int() rejects.
        if value is None or not (value.isascii() and value.isdigit()) or len(value) > 10:
            return None
        return int(value)

    if (n := number(P.OPT_BLKSIZE)) is not None and n >= MIN_BLKSIZE:
        blksize = min(n, limits.max_blksize, MAX_BLKSIZE)
        oack[P.OPT_BLKSIZE] = str(blksize)
    declined_timeout = False
    if (n := number(P.OPT_TIMEOUT)) is not None and MIN_TIMEOUT <= n <= MAX_TIMEOUT:
        if n <= limits.max_timeout:
            timeout = float(n)
            oack[P.OPT_TIMEOUT] = str(n)
        else:
            declined_timeout = True  # [RFC 2349] not in the OACK: our default timeout applies
    if number(P.OPT_TSIZE) is not None and size > 0:
        # [RFC 2349] the client sends 0 in an RRQ; we answer with the real size. Not for an empty
        # file: curl 7.88 rejects "tsize 0" in an OACK as invalid and aborts, so decline instead.
        oack[P.OPT_TSIZE] = str(size)
    if (n := number(P.OPT_WINDOWSIZE)) is not None and n >= 1:
        windowsize = min(n, limits.max_windowsize)
        oack[P.OPT_WINDOWSIZE] = str(windowsize)
    return Negotiated(blksize, windowsize, timeout, oack, declined_timeout)


class Source:
    """The bytes of one transfer: a file read in chunks (page cache hits; no mmap so a file
    truncated under us cannot SIGBUS the server) or content rendered in memory.

    The read-ahead is lazy: the first read takes only what was asked (one block, or one window),
    each refill doubles up to READ_CHUNK, and `drop_cache` lets a stalled transfer hold nothing.
    A fixed 256 KiB read for block 1 made every idle RRQ cost 256 KiB (1,000 RRQs: +253 MiB)."""

    def __init__(
        self,
        size: int,
        fd: int | None = None,
        content: bytes | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.size = size
        # What fstat said of the open file (pxe.tftp.blocks shares packets by it); None: the
        # bytes are this transfer's own (rendered content, netascii).
        self.identity = identity
        self._fd = fd
        self._buf = memoryview(content) if content is not None else memoryview(b"")
        self._buf_off = 0 if content is not None else -1
        self._chunk = 0  # the next read-ahead size; grows while the transfer moves

    @classmethod
    def from_bytes(cls, content: bytes) -> Source:
        return cls(len(content), content=content)

    @classmethod
    def from_file(cls, fd: int, size: int, identity: Identity | None = None) -> Source:
        return cls(size, fd=fd, identity=identity)

    def pread(self, offset: int, n: int) -> bytes:
        """`n` bytes at `offset` (fewer at the end), not through the read-ahead."""
        if self._fd is None:
            return bytes(self._buf[offset : offset + n])
        return os.pread(self._fd, n, offset)

    def read(self, offset: int, n: int) -> bytes | memoryview:
        start = offset - self._buf_off
        if self._buf_off < 0 or start < 0 or start + n > len(self._buf):
            if self._fd is None:
                return b""
            data = os.pread(self._fd, max(n, self._chunk), offset)
            self._chunk = min(READ_CHUNK, max(self._chunk * 2, n * 2))
            self._buf, self._buf_off, start = memoryview(data), offset, 0
        return self._buf[start : start + n]

    def drop_cache(self) -> None:
        """Forget the read-ahead (file-backed only): the next read takes just what it needs."""
        if self._fd is not None:
            self._buf, self._buf_off, self._chunk = memoryview(b""), -1, 0

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class State(enum.Enum):
    WAIT_OACK_ACK = "wait-oack-ack"  # OACK sent, waiting for ACK 0 [RFC 2347]
    SENDING = "sending"
    DONE = "done"


class Outcome(enum.Enum):
    COMPLETE = "complete"
    UNCONFIRMED = "unconfirmed"  # all sent, then silence or the client's port closed
    CLIENT_ERROR = "client-error"  # the client sent ERROR (EDK2's tsize probe ends this way)
    TIMEOUT = "timeout"
    PEER_GONE = "peer-gone"  # ICMP port unreachable
    EXPIRED = "expired"  # past Limits.deadline(size): the client was told with ERROR 0
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    bytes_sent: int  # file bytes the client acknowledged
    seconds: float
    blksize: int
    windowsize: int
    error_code: int | None = None
    error_message: str = ""
    retransmits: int = 0


_SENDING = State.SENDING
# Every transfer receives into this one buffer (one loop thread; a datagram is handled before
# the next is read): `recv(65536)` allocated and shrank a 64 KiB object per ACK.
_RX = bytearray(65536)
# Its first 4 bytes as one native-endian word: the expected ACK is recognised by one comparison.
_RX_WORD = memoryview(_RX).cast("I")
# os.write on the connected socket's descriptor is send() without flags; it skips socket.send's
# generic argument parsing, once per block.
_WRITE = os.write


@functools.cache
def _ack_words() -> tuple[int, ...]:
    """`_RX_WORD[0]` of ACK n (00 04 hi lo on the wire [RFC 1350 §5]) at index n, for every n.
    Built once, at the first lockstep transfer: 2.6 MB, and a lookup per block instead of
    computing the word (a function call and big-int arithmetic: 6x the time)."""
    return tuple(array.array("I", b"".join(P.build_ack(n) for n in range(1 << 16))))


class ReadTransfer:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        source: Source,
        opts: Negotiated,
        limits: Limits,
        on_done: Callable[[ReadTransfer, Result], None],
        gso: bool = True,
        readers: Readers | None = None,
        blocks: Blocks | None = None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.readers = readers
        self.source = source
        self.opts = opts
        self.limits = limits
        self.on_done = on_done
        self.blksize = opts.blksize
        self.window = opts.windowsize
        self.last_block = source.size // opts.blksize + 1  # a short (maybe empty) block ends it
        self.base = 1  # lowest unacknowledged block (unbounded; the wire carries it mod 2**16)
        self.sent_upto = 0
        self.state = State.WAIT_OACK_ACK if opts.oack else State.SENDING
        self.started = time.monotonic()
        self.expires = loop.time() + limits.deadline(source.size)
        self.retries = 0
        self.retransmits = 0
        self.timeout = opts.timeout
        self.last_progress = loop.time()
        self._heard = self.last_progress  # the OACK went out, or the client last spoke
        self._timer: asyncio.TimerHandle | None = None
        self._oack = P.build_oack(opts.oack) if opts.oack else b""
        # GSO only pays when a window holds several packets that each fit one segment.
        self._gso = gso and opts.windowsize > 1 and opts.blksize + 4 <= GSO_MAX_BYTES // 2
        # Windowsize 1 (every PXE ROM that does not ask for more): `_on_readable` answers an
        # in-order ACK with the next block itself, in one call (see there). It stamps progress
        # with the readers' clock of the round (`Readers.now`): behind epoll only.
        self._lockstep = opts.windowsize == 1 and readers is not None and readers.clocked
        self._acks = _ack_words() if self._lockstep else ()
        # This file's DATA packets, shared with its other transfers (pxe.tftp.blocks), or None:
        # each packet is built from `source.read` as it goes out.
        self.blocks = blocks
        self._recv_into, self._fd = sock.recv_into, sock.fileno()
        # The lockstep fast path's state (`_arm`): the ACK word it waits for (-1: none), the
        # DATA packet that answers it, and what follows (`_lockstep_plan`), ending in `_end`.
        self._expect = -1
        self._next: bytes = b""
        self._plan: Iterator[tuple[int, int, bytes]] = iter(())
        self._end = (self.last_block, -1, b"")

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.readers is not None:
            self.readers.add(self.sock.fileno(), self._on_readable)
        else:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
        if self.state is State.WAIT_OACK_ACK:
            self._send(self._oack)
        else:
            self._send_window()
        self._timer = self.loop.call_later(self.timeout, self._on_timer)

    @property
    def at_first_packet(self) -> bool:
        """Nothing acknowledged yet: a repeated RRQ from the client's port belongs to us."""
        return self.state is State.WAIT_OACK_ACK or (self.base == 1 and self.sent_upto <= 1)

    def resend_first(self) -> None:
        """The client repeated its RRQ: our OACK (or DATA 1) was lost. Answer it now."""
        self._progress()  # the client is alive: restart the quiet period
        self._heard = self.loop.time()
        if self.state is State.WAIT_OACK_ACK:
            self.retransmits += 1
            self._send(self._oack)
        elif self.state is State.SENDING:
            self.retransmits += 1
            self._send_window()

    def drain(self) -> None:
        """Handle every datagram already waiting on this transfer's port, now.

        The listener calls this before it reads an RRQ from our client as a repeat of the one
        that started us: an ERROR the client sent here first must end the transfer before that
        decision (the loop may run port 69's reader before ours). Rare, so peeking costs
        nothing that matters; the per-ACK path is untouched. Outside an epoll round, so the
        readers' clock is read first: the fast path stamps progress with it."""
        if self.readers is not None and self.readers.clocked:
            self.readers.now = self.readers.clock()
        while self.state is not State.DONE:
            try:
                self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                # The peek consumed a pending ICMP port unreachable: the client is gone.
                self._finish(Outcome.PEER_GONE)
                return
            self._on_readable()

    def cancel(self) -> None:
        self._finish(Outcome.CANCELLED)

    def abort(self, message: str) -> None:
        """End it now, telling the client (ERROR 0 `message`)."""
        self._send(P.build_error(P.ErrorCode.NOT_DEFINED, message))
        self._finish(Outcome.CANCELLED, None, message)

    @property
    def done(self) -> bool:
        """True once `_finish` ran. A method call can get there (`_send` on ICMP port
        unreachable), so read this after one rather than a `self.state` narrowed before it."""
        return self.state is State.DONE

    def _finish(self, outcome: Outcome, code: int | None = None, message: str = "") -> None:
        if self.state is State.DONE:
            return
        if (
            outcome in (Outcome.TIMEOUT, Outcome.PEER_GONE)
            and self.state is State.SENDING
            and self.sent_upto >= self.last_block
            and (self.base > 1 or bool(self.opts.oack))  # and it has ACKed something
        ):
            # The last block went out and then the client fell silent or closed its port: most
            # likely it has the file and its final ACK was lost. Clients need not dally after
            # that ACK [RFC 1350 §6] and atftp and tftpy do not, so this is common on lossy links.
            outcome = Outcome.UNCONFIRMED
        acked = min(self.source.size, max(0, (self.base - 1) * self.blksize))
        if outcome in (Outcome.COMPLETE, Outcome.UNCONFIRMED):
            acked = self.source.size
        self.state = State.DONE
        self._expect, self._next, self._plan = -1, b"", iter(())
        if self._timer is not None:
            self._timer.cancel()
        if self.readers is not None:
            self.readers.remove(self.sock.fileno())
        else:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.source.close()
        result = Result(
            outcome,
            acked,
            time.monotonic() - self.started,
            self.blksize,
            self.window,
            code,
            message,
            self.retransmits,
        )
        try:
            self.on_done(self, result)
        except Exception:  # a bad callback must not take the loop down
            log.exception("tftp: on_done callback failed")

    # -- I/O -------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except BlockingIOError:
            pass  # socket buffer full: same as a lost packet, the timer resends
        except ConnectionRefusedError:
            self._finish(Outcome.PEER_GONE)
        except OSError as exc:
            log.debug("tftp: send failed: %s", exc)

    def _send_window(self) -> None:
        end = min(self.base + self.window - 1, self.last_block)
        try:
            if self._gso and end > self.base:
                self._send_gso(self.base, end)
            else:
                self._send_each(self.base, end)
        except BlockingIOError:
            pass  # socket buffer full: the rest of the window is "lost"; the timer resends
        except ConnectionRefusedError:
            self._finish(Outcome.PEER_GONE)
            return
        except OSError as exc:
            log.debug("tftp: send failed: %s", exc)
        if end > self.sent_upto:
            self.sent_upto = end
        self._arm()

    def _arm(self) -> None:
        """Prepare `_on_readable`'s fast path for the ACK of the block in flight, or turn it off.
        Only in lockstep (windowsize 1), with no repeats outstanding (the general path resets
        the back-off on the next ACK) and a block after this one; `_send_window` calls this
        after each send, `_finish` turns it off."""
        base = self.base
        if (
            self._lockstep
            and self.state is _SENDING
            and self.sent_upto == base < self.last_block
            and not self.retries
        ):
            self._expect = self._acks[base & 0xFFFF]
            self._next = self._packet(base + 1)
            self._plan = self._lockstep_plan(base + 1)
        else:
            self._expect, self._next, self._plan = -1, b"", iter(())

    def _lockstep_plan(self, first: int) -> Iterator[tuple[int, int, bytes]]:
        """For each block b from `first` to the one before the last: (b, the word of ACK b, DATA
        b + 1), what the fast path moves to once DATA b is out. Made of C iterators only (zip,
        count, islice, chain; a segment's packets are built when its first is reached), so
        one `next` per block replaces the bytecode that computed the three."""
        acks = self._acks
        # Skipping to `first` costs up to 65,535 steps in C (~0.3 ms), once per `_arm`.
        words = islice(chain.from_iterable(repeat(acks)), first & 0xFFFF, None)
        return zip(count(first), words, self._packets_from(first + 1))

    def _packets_from(self, block: int) -> Iterator[bytes]:
        """DATA `block` to DATA `last_block`, in order."""
        blocks = self.blocks
        if block > self.last_block:
            return iter(())
        if blocks is None:
            return map(self._packet, range(block, self.last_block + 1))
        source, index = self.source, block - 1
        first, last = index >> SEGMENT_SHIFT, (self.last_block - 1) >> SEGMENT_SHIFT
        rest = (blocks.segment(number, source) for number in range(first + 1, last + 1))
        head = islice(blocks.segment(first, source), index & SEGMENT_MASK, None)
        return chain(head, chain.from_iterable(rest))

    def _payload(self, block: int) -> bytes | memoryview:
        offset = (block - 1) * self.blksize
        n = min(self.blksize, self.source.size - offset) if offset < self.source.size else 0
        return self.source.read(offset, n)

    def _packet(self, block: int) -> bytes:
        """DATA `block`, header included."""
        if self.blocks is not None:
            return self.blocks.packet(block, self.source)
        return P.data_header(block) + self._payload(block)

    def _send_each(self, first: int, last: int) -> None:
        send, packet = self.sock.send, self._packet
        for block in range(first, last + 1):
            send(packet(block))

    def _send_gso(self, first: int, last: int) -> None:
        """A window in few syscalls: UDP GSO (Linux >= 4.18) cuts one buffer of equal-sized
        datagrams into packets below the socket layer; only the final block may be shorter,
        which GSO allows for the last segment. Measured: the per-packet send() syscall, not
        Python, was where a windowed transfer spent its time."""
        segment = self.blksize + 4
        per_call = max(1, min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // segment))
        packet = self._packet
        cmsg = [(socket.SOL_UDP, UDP_SEGMENT, segment.to_bytes(2, "little"))]
        block = first
        while block <= last:
            stop = min(last, block + per_call - 1)
            parts = [packet(b) for b in range(block, stop + 1)]
            try:
                self.sock.sendmsg(parts, cmsg)
            except OSError as exc:
                if isinstance(exc, BlockingIOError | ConnectionRefusedError):
                    raise
                # EMSGSIZE (segment larger than the path MTU), no GSO in this kernel: send
                # this transfer's packets one by one from now on (IP fragments big blocks).
                log.debug("tftp: UDP GSO unavailable (%s); sending per packet", exc)
                self._gso = False
                self._send_each(block, last)
                return
            block = stop + 1

    def _on_readable(self) -> None:
        try:
            got = self._recv_into(_RX)
        except BlockingIOError:
            return
        except ConnectionRefusedError:
            self._finish(Outcome.PEER_GONE)
            return
        except OSError as exc:
            log.debug("tftp: recv failed: %s", exc)
            return
        if _RX_WORD[0] == self._expect and got >= 4:
            # Windowsize 1, the ACK of the block in flight (`_arm` set both `_expect` and the
            # DATA packet that answers it): `_on_ack` + `_progress` + `_send_window` inlined,
            # the packet sent first and the bookkeeping done while the client reads it. In a
            # boot storm this runs once per block of every transfer, and at windowsize 1 the
            # time from ACK to DATA is the rate (docs/netboot.md "Performance"). Anything else
            # takes the general path below.
            try:
                _WRITE(self._fd, self._next)
            except BlockingIOError:
                pass  # socket buffer full: same as a lost packet, the timer resends
            except ConnectionRefusedError:
                self._finish(Outcome.PEER_GONE)
                return
            except OSError as exc:
                log.debug("tftp: send failed: %s", exc)
            # The next step (after the one before the last block: `_end`, whose ACK word -1
            # matches nothing, so the final ACK takes `_on_ack`, which ends the transfer).
            base, self._expect, self._next = next(self._plan, self._end)
            self.base = self.sent_upto = base
            self.last_progress = self.readers.now  # type: ignore[union-attr]  # see _lockstep
            return
        rx = _RX
        if got >= 4 and rx[0] == 0 and rx[1] == _OP_ACK:
            self._on_ack((rx[2] << 8) | rx[3])
            return
        try:
            packet = P.parse(bytes(rx[:got]))
        except P.MalformedPacket:
            return  # garbage from the client's port: ignore, the transfer goes on
        if isinstance(packet, P.Error):
            self._finish(Outcome.CLIENT_ERROR, packet.code, packet.message)
        # Anything else (DATA, a request on our TID) is not part of a read transfer: ignore it.

    def _on_ack(self, wire: int) -> None:
        if self.state is State.WAIT_OACK_ACK:
            if wire != 0:
                return
            self.state = State.SENDING
            self._progress()
            self._send_window()
            return
        if self.state is not State.SENDING:
            return
        # Map the 16-bit number onto the unbounded block count: valid ACKs lie in
        # [base-1, sent_upto], at most a window (<= 64) wide, so this is unambiguous across the
        # rollover (65535 -> 0) that files larger than 65535 blocks need.
        acked = self.base - 1 + ((wire - (self.base - 1)) & 0xFFFF)
        if acked < self.base or acked > self.sent_upto:
            # A duplicate of an ACK already seen (or a stale one): never answer it with data, or
            # each duplicate doubles the traffic from then on (the Sorcerer's Apprentice bug, RFC
            # 1123 §4.2.3.1). A real loss is repaired by the timer.
            return
        if acked >= self.last_block:
            self._finish(Outcome.COMPLETE)
            return
        self.base = acked + 1
        self._progress()
        # [RFC 7440 §4] an ACK for a block before the end of the window means the client saw a
        # gap; sending from base again covers both that and the normal "window done" case.
        self._send_window()

    def _progress(self) -> None:
        self.last_progress = self.loop.time()
        if self.retries:
            self._recovered()

    def _recovered(self) -> None:
        """The client answered after repeats: back to the first timeout, and pull the timer in.
        The timer was armed for the backed-off interval (up to 4x); left as it was, the next
        lost block got its first repeat only that late (4 s at the default), past tftpy's 3 s
        of patience, which the 10%-loss test in tests/pxe/test_tftp_netns.py saw."""
        self.retries = 0
        self.timeout = self.opts.timeout
        if self._timer is not None and self.state is not State.DONE:
            self._timer.cancel()
            self._timer = self.loop.call_later(self.timeout, self._on_timer)

    def _expire(self) -> None:
        self._send(P.build_error(P.ErrorCode.NOT_DEFINED, "transfer took too long"))
        self._finish(Outcome.EXPIRED, None, "transfer took too long")

    def _on_timer(self) -> None:
        if self.state is State.DONE:
            return
        now = self.loop.time()
        if now >= self.expires:
            self._expire()
            return
        due = min(self.last_progress + self.timeout, self.expires)
        if now < due:
            self._timer = self.loop.call_later(due - now, self._on_timer)
            return
        if self.retries >= self.limits.retries:
            self._finish(Outcome.TIMEOUT, None, f"no ACK after {self.retries} retransmissions")
            return
        self.retries += 1
        # Back off (x2 per retry, capped at 4x) so a slow client is not flooded with repeats, but
        # only from the second repeat on: RFC 1123 §4.2.3.1 forbids answering a duplicate ACK, so
        # this timer is all that repairs a lost DATA, and clients give up early (tftpy: 3 s of
        # silence). Backing off at once sent a lost block's repeats at +1 s and +3 s, and a second
        # loss outlived tftpy (seen in CI on a 10%-loss link).
        if self.retries > 1:
            self.timeout = min(self.timeout * 2, self.opts.timeout * 4)
        self.last_progress = now
        if self.state is State.WAIT_OACK_ACK:
            # The client drives recovery here: it repeats its RRQ if our OACK was lost (answered
            # by `resend_first`) and its ACK 0 if that was lost. A second OACK reaching a client
            # that already sent ACK 0 makes atftp ("unexpected OACK") and tftpy abort, seen on a
            # 10%-loss link; so our timer resends only after the client has been silent through
            # OACK_QUIET_EXPIRIES expiries (1+1+2 s at the default timeout: past the usual 1-3 s
            # client timeouts), as a last resort; and never before OACK_QUIET_S of silence: at a
            # 0.5 s timeout the expiries alone resent at 2 s, inside tftpy's 3 s of patience,
            # and tftpy, whose ACK 0 had been lost twice, aborted on the second OACK.
            if self.retries > OACK_QUIET_EXPIRIES and now - self._heard >= OACK_QUIET_S - 0.01:
                self.retransmits += 1
                self._send(self._oack)
        else:
            self.retransmits += 1
            self._send_window()
        # The client is silent: hold no read-ahead while it is (the resend above re-read what
        # it needed; the next ACK, if any, reads again).
        self.source.drop_cache()
        if not self.done:
            self._timer = self.loop.call_later(
                min(self.timeout, max(0.0, self.expires - now)), self._on_timer
            )
