"""DATA packets of hot files, built once and shared by every transfer of the file.

A boot storm is the same few files (a NBP, a kernel) fetched by hundreds of machines at once,
nearly all at the same blksize. The DATA packet for block n of a file at a blksize is the same
bytes for every one of those transfers (the wire block number is n mod 2**16), so the server
builds it once: per `SEGMENT` blocks, on the first transfer that needs them, from one pread.
Each transfer then sends `packets[n]` as is: no read, header packing or copy per block, and
one copy of the file in memory instead of a read-ahead buffer per transfer.

An entry is keyed by what `fstat` says of the open file (device, inode, size, mtime) plus the
blksize: a file replaced or rewritten gets a new entry, and transfers already running keep the
entry they started with (what they would have read from the descriptor they hold). The memory
is bounded: an entry reserves its full size when created, entries no transfer uses are dropped
oldest first to make room, and a file that does not fit is served as before (`Source.read`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from pxe.tftp.packets import build_data

SEGMENT_SHIFT = 7
SEGMENT = 1 << SEGMENT_SHIFT  # blocks built per pread (188 KiB at blksize 1468)
SEGMENT_MASK = SEGMENT - 1
PACKET_OVERHEAD = 48  # bytes beyond the payload per packet: 4 of header, a bytes object, a list slot

Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


class Reader(Protocol):
    def pread(self, offset: int, n: int) -> bytes: ...


class Blocks:
    """The DATA packets of one file at one blksize; `packet(n)` is block n's (1-based)."""

    def __init__(self, size: int, blksize: int) -> None:
        self.size = size
        self.blksize = blksize
        self.last_block = size // blksize + 1  # a short (maybe empty) block ends the file
        self.segments: list[list[bytes] | None] = [None] * ((self.last_block >> SEGMENT_SHIFT) + 1)
        self.users = 0  # transfers holding this entry
        self.complete = True  # False once a read came up short: never shared again

    @property
    def reserved(self) -> int:
        return self.size + self.last_block * PACKET_OVERHEAD

    def packet(self, block: int, reader: Reader) -> bytes:
        index = block - 1
        return self.segment(index >> SEGMENT_SHIFT, reader)[index & SEGMENT_MASK]

    def segment(self, number: int, reader: Reader) -> list[bytes]:
        """The packets of blocks number * SEGMENT + 1 on (SEGMENT of them, fewer in the last)."""
        segment = self.segments[number]
        return segment if segment is not None else self.fill(number, reader)

    def fill(self, number: int, reader: Reader) -> list[bytes]:
        """Build segment `number` from one read of the file."""
        first = number * SEGMENT + 1  # its first block
        last = min(first + SEGMENT - 1, self.last_block)
        blksize, offset = self.blksize, (first - 1) * self.blksize
        want = max(0, min(self.size, last * blksize) - offset)
        data = reader.pread(offset, want)
        segment = [
            build_data(block, data[(block - first) * blksize : (block - first + 1) * blksize])
            for block in range(first, last + 1)
        ]
        if len(data) == want:
            self.segments[number] = segment
        else:
            # The file shrank under us: this transfer gets what is there (its client sees the
            # file end early, as it would reading the descriptor), nobody else gets it.
            self.complete = False
        return segment


class BlockCache:
    """Shared `Blocks` by file identity and blksize, within `capacity` bytes (0: off)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.reserved = 0
        self._entries: OrderedDict[tuple[Identity, int], Blocks] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self, identity: Identity | None, blksize: int) -> Blocks | None:
        """The entry for this file at this blksize (created if it fits), or None: serve it
        without. Each acquired entry is `release`d when its transfer ends."""
        if identity is None or self.capacity <= 0:
            return None
        key = (identity, blksize)
        entry = self._entries.get(key)
        if entry is not None and entry.complete:
            self._entries.move_to_end(key)
            entry.users += 1
            return entry
        if entry is not None:
            self._drop(key)
        entry = Blocks(identity[2], blksize)
        if entry.reserved > self.capacity or not self._make_room(entry.reserved):
            return None
        self._entries[key] = entry
        self.reserved += entry.reserved
        entry.users += 1
        return entry

    def release(self, entry: Blocks) -> None:
        entry.users -= 1

    def _make_room(self, need: int) -> bool:
        if self.reserved + need <= self.capacity:
            return True
        for key in [k for k, e in self._entries.items() if e.users <= 0]:  # oldest first
            self._drop(key)
            if self.reserved + need <= self.capacity:
                return True
        return False

    def _drop(self, key: tuple[Identity, int]) -> None:
        entry = self._entries.pop(key)
        self.reserved -= entry.reserved


__all__ = ["SEGMENT", "BlockCache", "Blocks", "Identity"]
