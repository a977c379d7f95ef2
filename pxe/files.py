"""Safe resolution of a requested path under a read-only root, shared by TFTP and HTTP.

A boot server hands files to anyone on the wire who asks, so a request must never reach outside
the root: not with `..`, an absolute path, Windows separators, a NUL byte, or a symlink inside the
root that points out of it. The final check is on the fully resolved path (symlinks followed), so
a link that stays inside the root is fine and one that leaves it is refused.
"""

from __future__ import annotations

import enum
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_PATH_LENGTH = 1024  # longer than any real boot path; bounds the work a request can cause


class Refusal(enum.Enum):
    """Why a request was not turned into a file. Front ends map these to their own errors."""

    NOT_FOUND = "not-found"  # TFTP error 1, HTTP 404
    OUTSIDE_ROOT = "outside-root"  # TFTP error 2 (access violation), HTTP 403
    BAD_NAME = "bad-name"  # NUL, overlong, empty: TFTP error 2, HTTP 400/403
    NOT_A_FILE = "not-a-file"  # a directory, device or fifo: TFTP error 1, HTTP 404


class PathRefused(Exception):
    def __init__(self, reason: Refusal, requested: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.requested = requested


@dataclass(frozen=True)
class ResolvedFile:
    path: Path  # absolute, symlinks resolved, inside the root
    size: int
    relative: str  # the normalised request, '/'-separated, no leading slash


def normalise(requested: str) -> str:
    """The request as a root-relative, '/'-separated path, or PathRefused.

    A leading '/' means "from the root" (as tftpd-hpa -s and every HTTP server read it): `/etc/passwd`
    is looked up as ROOT/etc/passwd, never the host's. Backslashes are separators (PXE ROMs written
    for Windows servers send `boot\\x64\\wdsnbp.com`; dnsmasq converts them the same way), which also
    means `..\\..\\x` is caught by the `..` rule below.
    """
    if not requested:
        raise PathRefused(Refusal.BAD_NAME, requested, "empty file name")
    if len(requested) > MAX_PATH_LENGTH:
        raise PathRefused(Refusal.BAD_NAME, requested[:64], "file name too long")
    if "\x00" in requested:
        raise PathRefused(Refusal.BAD_NAME, requested, "NUL in file name")
    parts = [p for p in requested.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathRefused(Refusal.OUTSIDE_ROOT, requested, "'..' in file name")
    if not parts:
        raise PathRefused(Refusal.NOT_A_FILE, requested, "names the root directory")
    return "/".join(parts)


def resolve(root: Path | str, requested: str) -> ResolvedFile:
    """The regular file `requested` names under `root`, or PathRefused.

    Blocking (realpath and stat): cheap on a local disk; callers serving from slow storage can run
    it in an executor.
    """
    relative = normalise(requested)
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, relative))
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise PathRefused(Refusal.OUTSIDE_ROOT, requested, "resolves outside the root (symlink)")
    try:
        st = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):
        raise PathRefused(Refusal.NOT_FOUND, requested, "file not found") from None
    except PermissionError:
        raise PathRefused(Refusal.OUTSIDE_ROOT, requested, "permission denied") from None
    except OSError as exc:  # ELOOP, ENAMETOOLONG: a hostile name, not our problem to explain
        raise PathRefused(Refusal.BAD_NAME, requested, exc.strerror or "bad file name") from None
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused(Refusal.NOT_A_FILE, requested, "not a regular file")
    return ResolvedFile(path=Path(real), size=st.st_size, relative=relative)
