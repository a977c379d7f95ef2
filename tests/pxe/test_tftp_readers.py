"""pxe.tftp.readers: many transfer sockets behind one loop reader (real sockets, no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

from pxe.tftp.readers import COALESCE, HOLD, STORM, WAIT, Readers

Pair = tuple[socket.socket, socket.socket]  # our "transfer" socket (non-blocking), its peer


@contextlib.contextmanager
def _readers(pairs: int) -> Iterator[tuple[Readers, list[Pair]]]:
    """Readers on the running loop and `pairs` datagram socket pairs, all closed afterwards."""
    readers = Readers(asyncio.get_running_loop())
    made = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(pairs)]
    for ours, _ in made:
        ours.setblocking(False)
    try:
        yield readers, made
    finally:
        readers.close()
        for pair in made:
            for s in pair:
                s.close()


async def _removal() -> None:
    got: list[str] = []
    done = asyncio.Event()
    with _readers(2) as (readers, [(a, a_peer), (b, b_peer)]):

        def on_a() -> None:
            got.append(a.recv(16).decode())
            readers.remove(b.fileno())  # ends the other "transfer" within the same batch
            done.set()

        def on_b() -> None:
            got.append(b.recv(16).decode())

        readers.add(a.fileno(), on_a)
        readers.add(b.fileno(), on_b)
        b_peer.send(b"b")
        a_peer.send(b"a")
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.05)  # another loop turn: b's datagram is still there, unread
        assert "a" in got
        if got == ["a"]:  # a ran first: b was removed before its turn
            assert b.recv(16) == b"b"
        readers.remove(a.fileno())
        a_peer.send(b"again")
        await asyncio.sleep(0.05)
        assert a.recv(16) == b"again"  # no handler ran for it: still queued


async def _failure() -> None:
    seen = asyncio.Event()
    with _readers(2) as (readers, [(a, a_peer), (b, b_peer)]):

        def broken() -> None:
            a.recv(16)
            raise RuntimeError("bug")

        def fine() -> None:
            b.recv(16)
            seen.set()

        readers.add(a.fileno(), broken)
        readers.add(b.fileno(), fine)
        a_peer.send(b"x")
        b_peer.send(b"y")
        await asyncio.wait_for(seen.wait(), 5)
        await asyncio.sleep(0.05)


def test_each_ready_socket_runs_its_handler_and_a_removed_one_does_not():
    asyncio.run(_removal())


def test_a_failing_handler_does_not_stop_the_others(caplog):
    asyncio.run(_failure())
    assert "a transfer's reader failed" in caplog.text


async def _busy() -> float:
    """A socket that is readable again as soon as its handler runs (the peer answers every
    datagram at once, as a fast client's ACK does): the loop must still get its turns."""
    loop = asyncio.get_running_loop()
    handled = 0
    with _readers(1) as (readers, [(a, a_peer)]):

        def on_a() -> None:
            nonlocal handled
            a.recv(16)
            handled += 1
            a_peer.send(b"ack")

        readers.add(a.fileno(), on_a)
        a_peer.send(b"ack")
        start = loop.time()
        fired = loop.create_future()
        loop.call_later(0.01, lambda: fired.set_result(loop.time()))
        late = await asyncio.wait_for(fired, 5) - start - 0.01
        assert handled > 10  # the handler was busy all along
        return late


def test_a_busy_transfer_socket_leaves_the_loop_its_turns():
    late = asyncio.run(_busy())
    # The timer waited at most one HOLD + WAIT (plus scheduling slack on a loaded machine).
    assert late < HOLD + WAIT + 0.05


async def _pauses(transfers: int, ready: int) -> list[float]:
    """The pauses `_on_ready` takes when `ready` of `transfers` registered sockets are readable."""
    with _readers(transfers) as (readers, pairs):
        pauses: list[float] = []
        readers.pause = pauses.append  # counted, not slept: the behaviour, not the timing
        handled = 0
        done = asyncio.Event()

        def handler(sock: socket.socket) -> None:
            nonlocal handled
            sock.recv(16)
            handled += 1
            if handled == ready:
                done.set()

        for ours, _ in pairs:
            readers.add(ours.fileno(), lambda s=ours: handler(s))
        for _, peer in pairs[:ready]:
            peer.send(b"ack")
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(WAIT * 3)  # the round after, which finds nothing, has ended
        return pauses


def test_a_thin_round_in_a_storm_pauses_before_the_next():
    # A storm (STORM transfers or more) with one of them ready: the round pauses once before
    # polling again, so more ACKs come in for the next round.
    assert asyncio.run(_pauses(STORM + 8, 1)) == [COALESCE]
    # Most of them ready at once: that round was worth its wake-up, no pause.
    assert asyncio.run(_pauses(STORM + 8, STORM)) == []
    # Few transfers (a lab, one machine booting): never, each block would wait for nothing.
    assert asyncio.run(_pauses(8, 1)) == []
