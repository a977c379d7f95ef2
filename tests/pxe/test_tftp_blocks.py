"""pxe.tftp.blocks: the DATA packets shared by every transfer of a file (real files; the server
side, with curl, is in test_tftp.py)."""

from __future__ import annotations

import os
from pathlib import Path

from pxe.tftp import packets as P
from pxe.tftp.blocks import SEGMENT, BlockCache, Blocks
from pxe.tftp.transfer import Source


def _source(path: Path) -> Source:
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    return Source.from_file(fd, st.st_size, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))


def test_packets_are_the_rfc_1350_data_packets_across_segments_and_the_rollover(tmp_path):
    blksize = 8
    for size in (0, 5, blksize * (SEGMENT + 3), blksize * 70_000 + 3):  # the last wraps 65535 -> 0
        data = os.urandom(size)
        (tmp_path / "f").write_bytes(data)
        source = _source(tmp_path / "f")
        blocks = Blocks(size, blksize)
        try:
            assert blocks.last_block == size // blksize + 1
            for block in range(1, blocks.last_block + 1):
                packet = blocks.packet(block, source)
                assert packet == P.data_header(block) + data[(block - 1) * blksize : block * blksize]
            assert blocks.packet(blocks.last_block, source)[4:] == data[(blocks.last_block - 1) * blksize :]
        finally:
            source.close()


def test_a_file_that_shrank_is_not_shared(tmp_path):
    (tmp_path / "f").write_bytes(b"a" * 4096)
    source = _source(tmp_path / "f")
    try:
        os.truncate(tmp_path / "f", 100)
        blocks = Blocks(4096, 512)
        assert blocks.packet(1, source) == P.data_header(1) + b"a" * 100
        assert not blocks.complete and blocks.segments[0] is None
    finally:
        source.close()


def test_cache_shares_by_file_and_blksize_within_its_capacity():
    one, other = (1, 2, 10_000, 7), (1, 3, 10_000, 7)
    cache = BlockCache(capacity=20_000)  # room for one 10 kB file, not two
    a = cache.acquire(one, 1468)
    assert a is not None and cache.acquire(one, 1468) is a and a.users == 2
    assert cache.acquire(one, 512) is None  # no room beside `a`, which is in use
    cache.release(a)
    cache.release(a)
    b = cache.acquire(other, 1468)  # `a` unused now: dropped for it
    assert b is not None and b is not a and len(cache) == 1
    assert cache.reserved == b.reserved <= cache.capacity
    assert cache.acquire((1, 3, 10_000, 8), 1468) is None  # rewritten (new mtime): b still in use
    assert cache.acquire((1, 4, 10**6, 1), 1468) is None  # larger than the whole cache
    assert BlockCache(0).acquire(one, 1468) is None  # off
    assert cache.acquire(None, 1468) is None  # rendered content: never shared
