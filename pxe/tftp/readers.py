"""Many transfer sockets behind one event-loop reader.

A boot storm is hundreds of transfers at windowsize 1: every block is one ACK in and one DATA
out, so what the loop spends per readable socket is the server's throughput. With one
`loop.add_reader` per socket, asyncio turns each readiness into a selector-key lookup, a handle
queued on its ready list and a `Context.run` call before our code runs. Here the transfer
sockets sit in one epoll set of their own, whose descriptor is the only one the loop watches
(an epoll descriptor is itself pollable, level-triggered): one loop callback drains up to
`BATCH` ready sockets at a time, calls each one's handler directly, and keeps going while more
traffic arrives within `WAIT`, for at most `HOLD` (see `_on_ready`). In a boot storm (`STORM`
transfers or more in flight) a round that found few of them ready pauses `COALESCE` before the
next, as a NIC coalesces interrupts: the next round then serves many per wake-up. Measured in
bench/tftp.py and docs/netboot.md "Performance".

Linux only (epoll), like the rest of the boot services; elsewhere `Readers` falls back to the
loop's own `add_reader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

BATCH = 256  # ready sockets handled per epoll round
HOLD = 0.002  # s: longest one loop callback keeps handling transfer traffic
WAIT = 0.001  # s: how long it waits for more within HOLD (epoll's resolution: 1 ms)
STORM = 32  # transfers in flight from which a thin round pauses before the next (see _on_ready)
COALESCE = 0.00005  # s: that pause (the kernel's default timer slack makes it 50-100 us)


class Readers:
    """`add(fd, handler)` / `remove(fd)`: `handler()` runs whenever `fd` is readable."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._handlers: dict[int, Callable[[], None]] = {}
        # The loop's clock (asyncio's own `time()` is a Python frame around time.monotonic: call
        # that directly when the loop has not replaced it), read once per epoll round: `now` is
        # when this round's events came in, what a handler stamps its progress with instead of
        # reading the clock itself once per datagram. Stale by at most one round (< HOLD + WAIT
        # plus the round's handlers), nothing next to a retransmit timeout of a second.
        base_time = asyncio.BaseEventLoop.time
        self.clock = time.monotonic if getattr(type(loop), "time", None) is base_time else loop.time
        self.now = self.clock()
        # Whether `now` is kept (epoll); without it handlers read the clock themselves.
        self.clocked = False
        self.pause: Callable[[float], None] = time.sleep  # (a test counts the pauses)
        self._epoll: select.epoll | None = None
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            loop.add_reader(self._epoll.fileno(), self._on_ready)
            self.clocked = True

    def add(self, fd: int, handler: Callable[[], None]) -> None:
        if self._epoll is None:
            self.loop.add_reader(fd, handler)
            return
        self._handlers[fd] = handler
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        """Before the socket is closed (a closed descriptor's number is soon another's)."""
        if self._epoll is None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
            return
        if self._handlers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def _on_ready(self) -> None:
        assert self._epoll is not None
        handlers, poll, clock = self._handlers, self._epoll.poll, self.clock
        # Stay while traffic flows: at windowsize 1 the next ACK is a round trip away (tens of
        # µs on a LAN), and going back to the loop for it cost a whole loop turn per block
        # (selector, handle, callback: more Python than the block itself). So after the first
        # round this waits up to WAIT for more, in this epoll set, and gives the loop back when
        # that wait comes up empty or after HOLD: the loop's other work (RRQs, DHCP, HTTP,
        # timers) waits at most HOLD + WAIT.
        #
        # In a boot storm the server and its clients share the CPUs, and the next round would
        # start as soon as one more ACK is in: a wake-up, an epoll call and a round for one or
        # two blocks. With STORM or more transfers in flight, a round that found fewer than a
        # quarter of them ready pauses COALESCE first, so the ones on their way arrive and the
        # next round serves them together. bench/tftp.py, 100 windowsize-1 transfers on 2
        # CPUs: 8.7 -> 6.1-6.8 ms of server CPU per MiB. With 8 transfers it cost throughput
        # (each block waits out the pause for nothing), hence only from STORM on.
        wait = 0.0
        until = clock() + HOLD
        while True:
            events = poll(wait, BATCH)
            if not events:
                return
            self.now = clock()
            for fd, _mask in events:
                # A handler earlier in this batch may have ended (and removed) this one's transfer.
                handler = handlers.get(fd)
                if handler is not None:
                    try:
                        handler()
                    except Exception:  # as asyncio would for a reader of its own: log, go on
                        log.exception("tftp: a transfer's reader failed")
            if clock() >= until:
                return
            wait = WAIT
            n = len(handlers)
            if n >= STORM and 4 * len(events) < n:
                self.pause(COALESCE)

    def close(self) -> None:
        if self._epoll is None:
            return
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        self._handlers.clear()


__all__ = ["BATCH", "COALESCE", "HOLD", "STORM", "WAIT", "Readers"]
