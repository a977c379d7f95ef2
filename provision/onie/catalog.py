"""The installers folder as a catalog: which file fits which ONIE platform, and pins by name or version.

A file fits a platform when its header says so (`target_platform=`, written by `provision
onie-installer`; see onie/installer) or, for installers made elsewhere (SONiC, ONIE's demo), when its
name follows ONIE's convention `onie-installer-<platform>.bin`. Without either, a headerless file
named as one of ONIE's generic default names fits every switch that asks that name
(`for_identity`, docs/onie.md "Which file a switch gets"). Only the first 256 KiB are read (the
header); checksums are `provision inspect`'s job, not the serving path's. Entries are cached by
(size, mtime), so a rebuilt installer is picked up on the next request. The folder is listed again
when its own mtime changes (a file added, removed or renamed over: `provision onie-installer`
writes a temporary file and renames it) and otherwise at most once per `RELIST_S` (a file copied
over in place changes no folder mtime); the file chosen for a switch is stat'ed once more and
re-read if it changed, and is refused if it no longer fits. A DHCP storm costs two stat calls per
DISCOVER and one folder listing a second, not a listing per DISCOVER.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from onie.discovery import (
    OnieIdentity,
    Operation,
    complete,
    default_names,
    platform_from_name,
    split_platform,
)

HEAD_LIMIT = 256 * 1024
RELIST_S = 1.0  # the longest a file copied over in place can go unseen (unless it is the one chosen)
_VAR = re.compile(rb"^([a-z_0-9]+)=(.*?)\s*$", re.MULTILINE)
_HEADER_KEYS = {b"target_platform", b"image_platform", b"nos_name", b"nos_version"}
INSTALLER_SUFFIXES = (".bin", ".sh", ".run")


@dataclass(frozen=True)
class CatalogEntry:
    path: Path
    name: str  # file name in the folder
    platform: str | None  # from the header, else from the name
    platform_from_header: bool
    nos_name: str | None
    nos_version: str | None
    size: int
    mtime: float

    @property
    def label(self) -> str:
        nos = " ".join(x for x in (self.nos_name, self.nos_version) if x)
        return f"{self.name} ({nos})" if nos else self.name


@dataclass(frozen=True)
class Choice:
    """The installer chosen for a switch, or why there is none (`entry` None, `reason` says why)."""

    entry: CatalogEntry | None
    reason: str  # "pinned by serial in inventory", "platform default", "no installer for ..."


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def read_header_vars(path: Path) -> dict[str, str]:
    """`name=value` lines of a shell installer's header that say what it is for."""
    with open(path, "rb") as f:
        head = f.read(HEAD_LIMIT)
    if not head.startswith(b"#!"):
        return {}
    out: dict[str, str] = {}
    for m in _VAR.finditer(head):
        if m.group(1) in _HEADER_KEYS and m.group(1).decode() not in out:
            out[m.group(1).decode()] = _unquote(m.group(2))
    return out


def _looks_like_installer(name: str) -> bool:
    """An installer suffix, or one of ONIE's bare default names (`onie-installer-x86_64`: ONIE asks
    each name without a suffix first, so a plain file server holds such files)."""
    if name.startswith("."):  # hidden, and `provision onie-installer`'s temporary files
        return False
    bare = name == _PREFIX or (name.startswith(_PREFIX + "-") and "." not in name)
    return bare or name.endswith(INSTALLER_SUFFIXES)


_PREFIX = Operation.INSTALL.prefix


class Catalog:
    def __init__(self, folder: Path | None):
        self.folder = folder
        self._cache: dict[str, tuple[tuple[int, float], CatalogEntry]] = {}
        self._listing: tuple[tuple[int, int], list[CatalogEntry]] | None = None
        self._listed_at = 0.0
        self.clock = time.monotonic
        self.scans = 0  # folder listings so far (the tests count them)

    def entries(self) -> list[CatalogEntry]:
        """Every installer-looking regular file in the folder (not recursive), sorted by name."""
        if self.folder is None:
            return []
        try:
            st = os.stat(self.folder)
        except OSError:
            return []
        if not stat.S_ISDIR(st.st_mode):
            return []
        key = (st.st_mtime_ns, st.st_ino)
        now = self.clock()
        if self._listing is not None and self._listing[0] == key and now - self._listed_at < RELIST_S:
            return self._listing[1]
        self.scans += 1
        self._listed_at = now
        out: list[CatalogEntry] = []
        with os.scandir(self.folder) as it:
            for de in it:
                if not de.is_file() or not _looks_like_installer(de.name):
                    continue
                entry = self._entry(Path(de.path), de.stat())
                if entry is not None:
                    out.append(entry)
        out.sort(key=lambda e: e.name)
        self._listing = (key, out)
        return out

    def _fresh(self, entry: CatalogEntry) -> CatalogEntry | None:
        """The entry as the file is now: re-read when it was copied over in place since listing."""
        try:
            st = entry.path.stat()
        except OSError:
            self._listing = None
            return None
        if (st.st_size, st.st_mtime) == (entry.size, entry.mtime):
            return entry
        self._listing = None
        return self._entry(entry.path, st)

    def _entry(self, path: Path, st: os.stat_result) -> CatalogEntry | None:
        key = (st.st_size, st.st_mtime)
        cached = self._cache.get(path.name)
        if cached and cached[0] == key:
            return cached[1]
        try:
            header = read_header_vars(path)
        except OSError:
            return None
        from_header = header.get("target_platform") or header.get("image_platform") or None
        if from_header and not split_platform(from_header):
            from_header = None
        entry = CatalogEntry(
            path=path,
            name=path.name,
            platform=from_header or platform_from_name(path.name),
            platform_from_header=bool(from_header),
            nos_name=header.get("nos_name") or None,
            nos_version=header.get("nos_version") or None,
            size=st.st_size,
            mtime=st.st_mtime,
        )
        self._cache[path.name] = (key, entry)
        return entry

    def for_platform(self, platform: str) -> CatalogEntry | None:
        """The platform's default: the file named by convention, else the newest that says it fits."""
        canonical = f"onie-installer-{platform}.bin"
        # Twice at most: when the chosen file changed in place since the listing (another
        # platform's installer copied over it, or gone), `_fresh` drops the listing and the
        # second pass chooses among what fits now. Never hand out a file that no longer fits.
        for _ in range(2):
            fits = [e for e in self.entries() if e.platform == platform]
            if not fits:
                return None
            chosen = next((e for e in fits if e.name == canonical), None)
            fresh = self._fresh(chosen or max(fits, key=lambda e: (e.mtime, e.name)))
            if fresh is not None and fresh.platform == platform:
                return fresh
        return None

    def for_identity(
        self, platform: str, arch: str | None = None, asic: str | None = None
    ) -> CatalogEntry | None:
        """The installer for a switch when nothing pins one, most specific first, as ONIE asks.

        1. A file whose header names this platform, or named `onie-installer-<platform>[.bin]`
           (`for_platform`: the conventional name first, else the newest).
        2. A file whose header names no platform, named as one of the switch's generic default
           names, in the order of ONIE's waterfall (docs/onie.md "The installer-name waterfall"):
           `onie-installer-<arch>-<vendor>_<machine>`, `-<vendor>_<machine>`, `-<arch>-<asic>`,
           `-<arch>`, `onie-installer`; each bare before `.bin`, as ONIE tries them.
        A file whose header names another platform never fits by its name. `arch` defaults to the
        platform's; `asic` (ONIE's `onie_switch_asic`, from the hardware profile) adds the
        `<arch>-<asic>` name, which is skipped when unknown.
        """
        entry = self.for_platform(platform)
        if entry is not None:
            return entry
        identity = complete(OnieIdentity(platform=platform, arch=arch, switch_asic=asic))
        rank = {w.name: w.rank for w in default_names(identity, Operation.INSTALL)}
        # Same two passes as for_platform: a file changed in place since the listing is re-read,
        # and one that gained a header for another platform is not handed out.
        for _ in range(2):
            fits = [e for e in self.entries() if not e.platform_from_header and e.name in rank]
            if not fits:
                return None
            fresh = self._fresh(min(fits, key=lambda e: rank[e.name]))
            if fresh is not None and not fresh.platform_from_header:
                return fresh
        return None

    def resolve_pin(self, pin: str, platform: str | None) -> Choice:
        """A pin is a file name in the folder (or an absolute path), a NOS version, or `name-version`.

        A pinned file whose header names another platform is refused: installing a NOS built for
        another machine is the one mistake this server must not make.
        """
        entry: CatalogEntry | None = None
        candidate = Path(pin)
        if candidate.is_absolute() and candidate.is_file():
            entry = self._entry(candidate, candidate.stat())
        else:
            by_name = {e.name: e for e in self.entries()}
            entry = by_name.get(pin)
            if entry is None:
                matches = [
                    e
                    for e in by_name.values()
                    if (platform is None or e.platform == platform)
                    and pin
                    in (e.nos_version, f"{e.nos_name}-{e.nos_version}", f"{e.nos_name} {e.nos_version}")
                ]
                if matches:
                    entry = max(matches, key=lambda e: (e.mtime, e.name))
        if entry is not None:
            entry = self._fresh(entry)
        if entry is None:
            where = f" in {self.folder}" if self.folder else ""
            return Choice(None, f"pinned installer {pin!r} not found{where}")
        if platform and entry.platform and entry.platform != platform:
            return Choice(None, f"pinned installer {entry.name} is for {entry.platform}, not {platform}")
        return Choice(entry, f"pinned to {pin}")
