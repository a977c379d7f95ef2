"""Open the state database the way `provision serve` must: checked, never silently short.

- The WAL is read BEFORE SQLite opens the file (opening replays and may then drop it): its
  header and each frame's cumulative checksum are checked as SQLite does (sqlite.org/fileformat2,
  "Checksum Algorithm"). SQLite replays frames up to the last commit frame before the first bad
  checksum and ignores the rest without a word; frames of the current WAL generation (same
  salts) beyond that point are transactions that were committed and are now lost. That count is
  logged as an error (a bit flip in the WAL once lost 300 of 300 leases with no message at all).
- `PRAGMA quick_check` after opening: a damaged file is copied aside
  (`provision.db.damaged-<UTC time>`, with its -wal) and serve stops with exit 3 and what to do,
  never a traceback.
- A state file that cannot be written (read-only file, folder or file system) says so, with the
  fix for that, not "move it aside".
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from provision.store.sqlite import Store, StoreError

log = logging.getLogger("provision.store")

WAL_MAGIC_LE = 0x377F0682  # checksums over little-endian words
WAL_MAGIC_BE = 0x377F0683  # ... big-endian words
WAL_HEADER = 32
FRAME_HEADER = 24
WAL_CHECK_MAX = (
    256 * 1024 * 1024
)  # bigger WALs: only their size is reported (journal_size_limit keeps them small)


@dataclass(frozen=True)
class WalReport:
    """What the WAL held before SQLite opened it."""

    frames: int  # frames of the current generation (the header's salts), in file order
    applied: int  # frames SQLite will replay: up to the last commit frame before a bad checksum
    bad_frame: int | None = None  # 1-based index of the first frame whose checksum fails
    header_bad: bool = False  # the WAL header itself is damaged: SQLite ignores the whole file
    uncommitted: int = 0  # valid frames after the last commit (a transaction cut by a crash)

    @property
    def lost(self) -> int:
        """Frames of committed transactions SQLite will not replay."""
        return self.frames - self.applied - self.uncommitted


def _checksum(data: bytes, big: bool, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack((">" if big else "<") + f"{len(data) // 4}I", data)
    mask = 0xFFFFFFFF
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & mask
        s1 = (s1 + words[i + 1] + s0) & mask
    return s0, s1


def inspect_wal(db_path: Path) -> WalReport | None:
    """None when there is no WAL (or an empty one); else what it holds and what SQLite will use."""
    wal = Path(f"{db_path}-wal")
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return None
    if size < WAL_HEADER:
        return None
    with wal.open("rb") as f:
        header = f.read(WAL_HEADER)
        magic, _version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", header)
        frame_size = FRAME_HEADER + page_size if 512 <= page_size <= 65536 else 0
        if magic not in (WAL_MAGIC_LE, WAL_MAGIC_BE) or not frame_size:
            frames = (size - WAL_HEADER) // (FRAME_HEADER + 4096)
            return WalReport(frames=frames, applied=0, header_bad=frames > 0)
        big = magic == WAL_MAGIC_BE
        s0, s1 = _checksum(header[:24], big, 0, 0)
        total = (size - WAL_HEADER) // frame_size
        if (s0, s1) != (c1, c2):
            return WalReport(frames=total, applied=0, header_bad=total > 0)
        if size > WAL_CHECK_MAX:
            log.warning("%s: %d bytes, too big to check frame by frame", wal, size)
            return WalReport(frames=total, applied=total)
        frames = applied = valid = 0
        bad: int | None = None
        for index in range(1, total + 1):
            frame = f.read(frame_size)
            if len(frame) < frame_size:
                break
            _page, commit_size, fs1, fs2, fc1, fc2 = struct.unpack(">6I", frame[:FRAME_HEADER])
            if (fs1, fs2) != (salt1, salt2):
                break  # an older generation's frame: the current one ends here
            frames = index
            if bad is not None:
                continue
            s0, s1 = _checksum(frame[:8], big, s0, s1)
            s0, s1 = _checksum(frame[FRAME_HEADER:], big, s0, s1)
            if (s0, s1) != (fc1, fc2):
                bad = index
                continue
            valid = index
            if commit_size:
                applied = index
    uncommitted = valid - applied if bad is None else 0
    return WalReport(frames=frames, applied=applied, bad_frame=bad, uncommitted=uncommitted)


def _copy_aside(db_path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    copy = db_path.with_name(f"{db_path.name}.damaged-{stamp}")
    shutil.copy2(db_path, copy)
    for suffix in ("-wal",):
        side = Path(f"{db_path}{suffix}")
        if side.exists():
            shutil.copy2(side, Path(f"{copy}{suffix}"))
    return copy


def _damaged(db_path: Path, what: str) -> StoreError:
    try:
        copy: Path | None = _copy_aside(db_path)
    except OSError as exc:
        log.error("could not copy %s aside: %s", db_path, exc)
        copy = None
    kept = f"a copy is kept at {copy}" if copy else "no copy could be made (see the log)"
    return StoreError(
        f"{db_path}: the state database is damaged ({what}); {kept}",
        f"restore {db_path} from a backup; or salvage what is readable with "
        f"`sqlite3 {copy or db_path} .recover | sqlite3 NEW.db` and put NEW.db in its place; or "
        f"delete {db_path} (and {db_path}-wal) to start with no leases, intents or history",
    )


def _writable_error(db_path: Path, exc: sqlite3.Error) -> StoreError | None:
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc).lower()
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return StoreError(
            f"{db_path}: the state database cannot be written ({exc})",
            f"make {db_path} and its folder writable by the user running provision serve "
            "(chmod u+w, or remount the file system read-write), or pick another --state-dir",
        )
    if name == "SQLITE_CANTOPEN" or "unable to open" in text:
        return StoreError(
            f"{db_path}: the state database cannot be opened ({exc})",
            f"check that {db_path.parent} exists and is writable (SQLite makes {db_path.name}-wal "
            "and -shm files beside it), or pick another --state-dir",
        )
    if name == "SQLITE_FULL" or "disk is full" in text:
        return StoreError(
            f"{db_path}: the disk holding the state database is full ({exc})",
            f"free space on the file system of {db_path.parent}",
        )
    return None


def open_checked(db_path: Path, **kwargs: object) -> Store:
    """The store, after checking the WAL and the file; StoreError (exit 3) with a fix otherwise."""
    wal = None
    wal_copy: Path | None = None
    if db_path.exists():
        try:
            wal = inspect_wal(db_path)
        except OSError as exc:
            log.warning("%s-wal: cannot read it to check it: %s", db_path, exc)
    if wal is not None and (wal.header_bad or wal.lost > 0):
        # Copied before SQLite opens the file: its next write starts the WAL over.
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        wal_copy = db_path.with_name(f"{db_path.name}-wal.damaged-{stamp}")
        try:
            shutil.copy2(f"{db_path}-wal", wal_copy)
        except OSError as exc:
            log.error("could not copy %s-wal aside: %s", db_path, exc)
            wal_copy = None
    try:
        store = Store(db_path, **kwargs)  # type: ignore[arg-type]
    except StoreError as exc:
        cause = exc.__cause__
        if isinstance(cause, sqlite3.Error):
            specific = _writable_error(db_path, cause)
            if specific is not None:
                raise specific from None
            if isinstance(cause, sqlite3.DatabaseError) and not isinstance(cause, sqlite3.OperationalError):
                raise _damaged(db_path, str(cause)) from None
        raise
    try:
        rows = [r[0] for r in store.db.execute("PRAGMA quick_check(20)")]
    except sqlite3.DatabaseError as exc:
        rows = [str(exc)]
    if rows != ["ok"]:
        store.db.close()
        raise _damaged(db_path, "quick_check: " + "; ".join(rows[:3]))
    if wal is not None and (wal.header_bad or wal.lost > 0):
        if wal.header_bad:
            what = f"its header is damaged, so none of its {wal.frames} frames were applied"
        else:
            what = (
                f"frame {wal.bad_frame} fails its checksum, so {wal.lost} of {wal.frames} frames of "
                "committed transactions were not applied"
            )
        log.error(
            "%s-wal: %s: recent changes (leases, intents, events) are LOST; the database opened as it "
            "was before them. Check leases and armings (`provision status`, `provision devices "
            "list`); the damaged WAL was copied to %s",
            db_path, what, wal_copy or "(no copy could be made)",
        )  # fmt: skip
        store.counters["wal_frames_lost"] = wal.lost if not wal.header_bad else wal.frames
    return store


__all__ = ["WalReport", "inspect_wal", "open_checked"]
