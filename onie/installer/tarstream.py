"""A reproducible tar writer that streams members through a hash into a file, in constant memory.

Headers come from the standard library's TarInfo (PAX format: no size limit, and no extended
header unless a field needs one); mtime/uid/gid/uname/gname are fixed so that the same inputs
give the same bytes.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

BLOCK = 512
CHUNK = 1024 * 1024


class HashingWriter:
    """Writes to `out` and feeds the same bytes to SHA-256; counts them."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.sha256 = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        self.out.write(data)
        self.count += len(data)


def _info(name: str, size: int, mode: int, mtime: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size if kind == tarfile.REGTYPE else 0
    info.mode = mode
    info.mtime = mtime
    info.type = kind
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def write_dir(w: HashingWriter, name: str, mtime: int) -> None:
    w.write(_info(name.rstrip("/") + "/", 0, 0o755, mtime, tarfile.DIRTYPE))


def write_bytes(w: HashingWriter, name: str, data: bytes, mode: int, mtime: int) -> None:
    w.write(_info(name, len(data), mode, mtime))
    w.write(data)
    _pad(w, len(data))


def write_file(
    w: HashingWriter,
    name: str,
    source: Path,
    mode: int,
    mtime: int,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Stream one file in; raise if it changes size while we read it (the archive would lie)."""
    size = source.stat().st_size
    w.write(_info(name, size, mode, mtime))
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    with open(source, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            if done + n > size:
                raise OSError(f"{source} grew while the installer was being built")
            w.write(view[:n])
            done += n
            if on_chunk:
                on_chunk(n)
    if done != size:
        raise OSError(f"{source} shrank while the installer was being built ({done} of {size} bytes)")
    _pad(w, size)
    return size


def write_end(w: HashingWriter) -> None:
    w.write(bytes(2 * BLOCK))  # end-of-archive: two zero blocks (POSIX.1-2001 ustar)


def _pad(w: HashingWriter, size: int) -> None:
    rest = -size % BLOCK
    if rest:
        w.write(bytes(rest))
