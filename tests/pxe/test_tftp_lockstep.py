"""pxe.tftp.transfer at windowsize 1, block by block: the fast path (`_arm`, `_lockstep_plan`)
sends exactly DATA n for ACK n-1, across segments of shared packets and the 16-bit block number
rollover, with and without pxe.tftp.blocks (real UDP sockets on 127.0.0.1, no mocks; the real
clients are in test_tftp.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxe.tftp import packets as P
from pxe.tftp.blocks import SEGMENT, BlockCache
from pxe.tftp.readers import Readers
from pxe.tftp.transfer import Limits, Negotiated, Outcome, ReadTransfer, Result, Source


@contextlib.contextmanager
def _transfer(path: Path, blksize: int, shared: bool) -> Iterator[tuple[ReadTransfer, socket.socket, list]]:
    """A started windowsize-1 transfer of `path` on a loop that is not running (its handler is
    called by hand, once per datagram), and the client's socket."""
    loop = asyncio.new_event_loop()
    readers = Readers(loop)
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    source = Source.from_file(fd, st.st_size, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    results: list[Result] = []
    try:
        client.bind(("127.0.0.1", 0))
        ours.bind(("127.0.0.1", 0))
        client.connect(ours.getsockname())
        ours.connect(client.getsockname())
        ours.setblocking(False)
        client.settimeout(5)
        blocks = BlockCache(64 << 20).acquire(source.identity, blksize) if shared else None
        transfer = ReadTransfer(
            loop,
            ours,
            source,
            Negotiated(blksize, 1, 1.0, {}),
            Limits(),
            lambda _t, result: results.append(result),
            readers=readers,
            blocks=blocks,
        )
        transfer.start()
        yield transfer, client, results
    finally:
        for s in (client, ours):
            s.close()
        source.close()
        readers.close()
        loop.close()


def _word(packet: bytes) -> int:
    """A datagram's first 4 bytes as the fast path reads them."""
    return memoryview(packet[:4]).cast("I")[0]


def _lockstep(path: Path, blksize: int, shared: bool, duplicate_at: int = 0, repeat_at: int = 0) -> None:
    data = path.read_bytes()
    last = len(data) // blksize + 1
    with _transfer(path, blksize, shared) as (transfer, client, results):
        for block in range(1, last + 1):
            got = client.recv(65536)
            assert got == P.build_data(block, data[(block - 1) * blksize : block * blksize]), block
            # and the fast path waits for this block's ACK (the final one is left to `_on_ack`)
            assert transfer._expect == (_word(P.build_ack(block)) if block < last else -1), block
            if block == repeat_at:
                # The ACK "lost": the timer repeats DATA `block`; the ACK after it re-arms the
                # fast path in the middle of the file (`_arm`), and the blocks after must follow.
                transfer.last_progress -= 60
                transfer._on_timer()
                assert client.recv(65536) == got and transfer.retransmits == 1
            client.send(P.build_ack(block))
            transfer._on_readable()  # the ACK is in our socket already (loopback)
            if block == duplicate_at:
                # RFC 1123 §4.2.3.1: a duplicate ACK is never answered (the Sorcerer's Apprentice)
                client.send(P.build_ack(block))
                transfer._on_readable()
                assert client.recv(65536) == P.build_data(
                    block + 1, data[block * blksize : (block + 1) * blksize]
                )
                client.setblocking(False)
                with pytest.raises(BlockingIOError):
                    client.recv(65536)
                client.settimeout(5)
                client.send(P.build_ack(block + 1))
                transfer._on_readable()
                break
        else:
            assert transfer.done and [r.outcome for r in results] == [Outcome.COMPLETE]
            assert results[0].bytes_sent == len(data) and results[0].retransmits == bool(repeat_at)
            return
        assert not transfer.done


@pytest.mark.parametrize("shared", [True, False], ids=["shared-packets", "per-transfer"])
def test_every_block_across_segments_then_the_final_ack_completes(tmp_path, shared):
    blksize = 8
    for size in (0, 5, blksize * SEGMENT - 1, blksize * SEGMENT, blksize * (2 * SEGMENT + 3) + 5):
        (tmp_path / "f").write_bytes(os.urandom(size))
        _lockstep(tmp_path / "f", blksize, shared)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-packets", "per-transfer"])
def test_block_numbers_wrap_past_65535(tmp_path, shared):
    (tmp_path / "f").write_bytes(os.urandom(8 * 65_600 + 3))  # 65,601 blocks: wraps 65535 -> 0
    _lockstep(tmp_path / "f", 8, shared, repeat_at=65_000)


def test_a_duplicate_ack_gets_no_data(tmp_path):
    (tmp_path / "f").write_bytes(os.urandom(8 * 300))
    _lockstep(tmp_path / "f", 8, True, duplicate_at=130)


def test_an_ack_drained_outside_an_epoll_round_is_stamped_now(tmp_path):
    """The fast path stamps progress with the readers' clock of the round; `drain()` (the
    listener, before it takes an RRQ for a repeat) runs outside any round, so it reads the clock
    first: an old stamp would make the next timer count a retry and resend a block for nothing."""
    (tmp_path / "f").write_bytes(os.urandom(8 * 10))
    with _transfer(tmp_path / "f", 8, True) as (transfer, client, _results):
        client.recv(65536)  # DATA 1
        readers = transfer.readers
        assert readers is not None
        readers.now -= 60  # the last epoll round was a minute ago
        client.send(P.build_ack(1))
        transfer.drain()
        assert client.recv(65536)[:4] == P.build_data(2, b"")[:4]  # answered by the fast path
        assert transfer.last_progress >= readers.clock() - 1
        transfer._on_timer()  # not due: no retry, no repeat
        assert transfer.retries == 0 and transfer.retransmits == 0


def test_after_repeats_the_next_ack_brings_back_the_first_timeout_and_the_fast_path(tmp_path):
    """A block lost twice: the repeats back off (x2 from the second), the fast path is off while
    they last; the ACK that ends them (the general path) restores the first timeout, pulls the
    timer in to it and re-arms the fast path, so the next lost block is repeated after the first
    timeout again and not the backed-off one (a client as impatient as tftpy, 3 s, would give
    up otherwise: `ReadTransfer._recovered`). The timer is called by hand, the loop not run."""
    data = os.urandom(8 * 10)
    (tmp_path / "f").write_bytes(data)
    with _transfer(tmp_path / "f", 8, True) as (transfer, client, _results):
        loop = transfer.loop
        first = transfer.timeout
        client.recv(65536)  # DATA 1
        client.send(P.build_ack(1))
        transfer._on_readable()
        data2 = client.recv(65536)
        assert data2 == P.build_data(2, data[8:16])
        for repeat in (1, 2):  # DATA 2 "lost" twice: the timer repeats it
            transfer.last_progress -= 60
            transfer._on_timer()
            assert client.recv(65536) == data2 and transfer.retries == repeat
        assert transfer.timeout == 2 * first and transfer._expect == -1
        client.send(P.build_ack(2))
        transfer._on_readable()
        assert client.recv(65536) == P.build_data(3, data[16:24])
        assert transfer.retries == 0 and transfer.timeout == first
        assert transfer._timer is not None and transfer._timer.when() - loop.time() <= first + 0.05
        assert transfer._expect == _word(P.build_ack(3))  # the fast path is armed again
