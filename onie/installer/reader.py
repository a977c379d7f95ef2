"""Read an installer back: which format, for which platform, what it carries, is it intact.

Understands our own format and ONIE's demo "sharch" format (build-config/scripts/onie-mk-demo.sh:
a shell header, a line `exit_marker`, then a tar whose SHA-1 the header holds in payload_sha1=).
Constant memory: the payload is hashed in chunks and the tar listing seeks over member data.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from pathlib import Path

from onie.installer.model import InstallerFormat, InstallerInfo, Member

HEAD_LIMIT = 256 * 1024  # our header is ~5 KiB; ONIE's sharch header ~3 KiB
_VAR = re.compile(rb"^([a-z_0-9]+)=(.*?)\s*$", re.MULTILINE)
SHARCH_MARKER = b"\nexit_marker\n"
OUR_MARKER = b"\n__PROVISION_PAYLOAD_BELOW__\n"


class NotAnInstaller(ValueError):
    pass


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1].replace("'\"'\"'", "'")
    return text


def _hash_from(path: Path, offset: int, algo: str) -> tuple[str, int]:
    h = hashlib.new(algo)
    size = 0
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        buf = bytearray(1024 * 1024)
        while n := f.readinto(buf):
            h.update(memoryview(buf)[:n])
            size += n
    return h.hexdigest(), size


def _members(path: Path, offset: int) -> tuple[tuple[Member, ...], str | None]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            with tarfile.open(fileobj=f, mode="r:") as tar:
                return tuple(Member(m.name, m.size) for m in tar if m.isfile()), None
    except (tarfile.TarError, OSError, EOFError) as exc:
        return (), f"payload is not a readable tar: {exc}"


def inspect(path: Path | str) -> InstallerInfo:
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(HEAD_LIMIT)
    if not head.startswith(b"#!"):
        raise NotAnInstaller(f"{path} does not start with #! (an ONIE installer is a shell script)")
    cookie = b"ONIE-UPDATER-COOKIE" in b"\n".join(head.split(b"\n")[:100])
    if (end := head.find(OUR_MARKER)) >= 0:
        fmt, algo, offset = InstallerFormat.PROVISION, "sha256", end + len(OUR_MARKER)
    elif (end := head.find(SHARCH_MARKER)) >= 0:
        fmt, algo, offset = InstallerFormat.SHARCH, "sha1", end + len(SHARCH_MARKER)
    else:
        raise NotAnInstaller(f"{path}: no payload marker (__PROVISION_PAYLOAD_BELOW__ or exit_marker)")
    variables = {m.group(1).decode(): _unquote(m.group(2)) for m in _VAR.finditer(head[:end])}
    problems: list[str] = []
    expected = variables.get("payload_sha256" if algo == "sha256" else "payload_sha1", "").strip()
    actual, size = _hash_from(path, offset, algo)
    ok = expected.lower() == actual
    if not expected:
        problems.append(f"header names no payload_{algo}")
    elif not ok:
        problems.append(f"payload {algo} is {actual}, header says {expected}")
    if fmt is InstallerFormat.PROVISION:
        want_size = int(variables.get("payload_size", "-1") or -1)
        want_offset = int(variables.get("payload_offset", "-1") or -1)
        if want_offset != offset:
            ok = False
            problems.append(f"payload starts at byte {offset}, header says {want_offset}")
        if want_size != size:
            ok = False
            problems.append(f"payload is {size} bytes, header says {want_size}")
    members, tar_problem = _members(path, offset)
    if tar_problem:
        problems.append(tar_problem)
    if cookie:
        problems.append("ONIE-UPDATER-COOKIE in the first 100 lines: ONIE treats this as an updater")
    platform = variables.get("target_platform") or variables.get("image_platform") or None
    return InstallerInfo(
        path=path,
        format=fmt,
        checksum_ok=ok,
        checksum_kind=algo,
        expected=expected,
        actual=actual,
        payload_offset=offset,
        payload_size=size,
        members=members,
        platform=platform,
        arch=variables.get("target_arch") or (platform.split("-", 1)[0] if platform else None),
        nos_name=variables.get("nos_name") or None,
        nos_version=variables.get("nos_version") or None,
        has_updater_cookie=cookie,
        problems=tuple(problems),
    )
