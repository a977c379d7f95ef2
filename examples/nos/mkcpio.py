#!/usr/bin/env python3
"""Write a reproducible newc cpio (the initramfs format) without root: device nodes included.

Usage: mkcpio.py OUT.cpio ENTRY...   where ENTRY is one of
  dir:PATH  file:PATH=SRC[:MODE]  link:PATH=TARGET  cdev:PATH=MAJOR,MINOR
Every entry gets uid/gid 0 and mtime SOURCE_DATE_EPOCH (else 0), so the same inputs give the same bytes.
"""

import os
import sys
from pathlib import Path

MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def header(
    ino: int, mode: int, size: int, name: str, rdev: tuple[int, int] = (0, 0), nlink: int = 1
) -> bytes:
    fields = [ino, mode, 0, 0, nlink, MTIME, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    out = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
    return out + b"\0" * (-len(out) % 4)


def main(out_path: str, entries: list[str]) -> None:
    with open(out_path, "wb") as out:
        for ino, entry in enumerate(sorted(entries, key=lambda e: e.split(":", 1)[1].split("=")[0]), 1):
            kind, rest = entry.split(":", 1)
            path, _, arg = rest.partition("=")
            if kind == "dir":
                out.write(header(ino, 0o040755, 0, path, nlink=2))
            elif kind == "file":
                src, _, mode = arg.partition(":")
                data = Path(src).read_bytes()
                out.write(header(ino, 0o100000 | int(mode or "644", 8), len(data), path))
                out.write(data + b"\0" * (-len(data) % 4))
            elif kind == "link":
                data = arg.encode()
                out.write(header(ino, 0o120777, len(data), path) + data + b"\0" * (-len(data) % 4))
            elif kind == "cdev":
                major, minor = (int(x) for x in arg.split(","))
                out.write(header(ino, 0o020600, 0, path, (major, minor)))
            else:
                sys.exit(f"mkcpio: unknown entry kind {kind!r}")
        out.write(header(0, 0, 0, "TRAILER!!!"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
