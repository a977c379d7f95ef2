"""pxe.tftp.readers: many transfer sockets behind one loop reader (real sockets, no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

from pxe.tftp.readers import HOLD, WAIT, Readers

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
