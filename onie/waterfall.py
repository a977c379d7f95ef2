"""ONIE's default installer names and TFTP waterfall, and which entry a request path is (pure).

Sources: rootconf/default/lib/onie/functions `onie_default_filenames`/`get_default_filenames`
(each name bare, then with `.bin`), bin/exec_installer `waterfall` (MAC directory, hex-IP prefixes
of 8 down to 1 characters, then the names at the root) and `http_download`.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, replace

from onie.identity import OnieIdentity
from onie.platform import complete, split_platform


class Operation(enum.Enum):
    """What ONIE is looking for; sent as ONIE-OPERATION and decides the file name prefix."""

    INSTALL = "os-install"
    UPDATE = "onie-update"

    @property
    def prefix(self) -> str:
        return "onie-installer" if self is Operation.INSTALL else "onie-updater"


class NameKind(enum.Enum):
    """The default names of ONIE's waterfall, most precise first (functions `onie_default_filenames`)."""

    PLATFORM = "platform"  # <prefix>-<arch>-<vendor>_<machine>-r<rev>
    ARCH_MACHINE = "arch-machine"  # <prefix>-<arch>-<vendor>_<machine>
    MACHINE = "machine"  # <prefix>-<vendor>_<machine>
    ARCH_ASIC = "arch-asic"  # <prefix>-<arch>-<switch_asic>
    ARCH = "arch"  # <prefix>-<arch>
    BARE = "bare"  # <prefix>


class Place(enum.Enum):
    """Where in a TFTP/HTTP tree a waterfall entry sits."""

    ROOT = "root"
    MAC_DIR = "mac-dir"  # <mac-with-dashes>/<name>
    IP_DIR = "ip-dir"  # <IP in hex, 8..1 chars>/<name>


IMAGE_SUFFIXES: tuple[str, ...] = (".bin",)  # functions `onie_image_suffixes`


@dataclass(frozen=True)
class WaterfallEntry:
    """One path ONIE asks for, and why: the name's kind, suffix, directory and its rank in order."""

    path: str  # relative to the server root, e.g. 00-11-22-33-44-55/onie-installer-x86_64-kvm_x86_64-r0
    name: str  # the file name alone
    kind: NameKind
    suffix: str  # "" or ".bin"
    place: Place
    operation: Operation
    rank: int  # 0 = the first thing ONIE asks for in this list


def operation_of(identity: OnieIdentity | None) -> Operation:
    if identity is not None and identity.operation == Operation.UPDATE.value:
        return Operation.UPDATE
    return Operation.INSTALL


def _base_names(identity: OnieIdentity, operation: Operation) -> list[tuple[NameKind, str]]:
    """ONIE's six names for this identity, skipping those that need a field we do not know."""
    ident = complete(identity)
    p = operation.prefix
    arch, machine, asic = ident.arch, ident.vendor_machine, ident.switch_asic
    names: list[tuple[NameKind, str | None]] = [
        (NameKind.PLATFORM, f"{p}-{ident.platform}" if ident.platform else None),
        (NameKind.ARCH_MACHINE, f"{p}-{arch}-{machine}" if arch and machine else None),
        (NameKind.MACHINE, f"{p}-{machine}" if machine else None),
        (NameKind.ARCH_ASIC, f"{p}-{arch}-{asic}" if arch and asic else None),
        (NameKind.ARCH, f"{p}-{arch}" if arch else None),
        (NameKind.BARE, p),
    ]
    return [(kind, name) for kind, name in names if name]


def default_names(
    identity: OnieIdentity,
    operation: Operation = Operation.INSTALL,
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
) -> tuple[WaterfallEntry, ...]:
    """ONIE's default file names in its order: each name bare, then with each suffix (`.bin`)."""
    out: list[WaterfallEntry] = []
    for kind, name in _base_names(identity, operation):
        for suffix in ("", *suffixes):
            full = name + suffix
            out.append(WaterfallEntry(full, full, kind, suffix, Place.ROOT, operation, len(out)))
    return tuple(out)


def mac_dir(mac: str) -> str:
    """`00-11-22-33-44-55`: the MAC as ONIE writes the waterfall directory (case as given)."""
    return mac.replace(":", "-")


def ip_hex(ip: str) -> str:
    """The IPv4 address as 8 upper-case hex digits (`printf %02X%02X%02X%02X`), e.g. C6120002."""
    return ipaddress.IPv4Address(ip).packed.hex().upper()


def tftp_waterfall(
    identity: OnieIdentity,
    ip: str | None,
    operation: Operation = Operation.INSTALL,
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
) -> tuple[WaterfallEntry, ...]:
    """Every path of ONIE's TFTP waterfall, in order (exec_installer `waterfall`).

    `<mac-with-dashes>/<primary name>`, then `<IP in hex, 8 chars … 1 char>/<primary name>`, then
    every default name at the root. ONIE puts only the primary (most precise, bare) name in the
    directories.
    """
    ident = complete(identity)
    out: list[WaterfallEntry] = []
    names = _base_names(ident, operation)
    if names and names[0][0] is NameKind.PLATFORM:
        kind, primary = names[0]
        if ident.mac:
            path = f"{mac_dir(ident.mac)}/{primary}"
            out.append(WaterfallEntry(path, primary, kind, "", Place.MAC_DIR, operation, len(out)))
        if ip:
            hexip = ip_hex(ip)
            for n in range(8, 0, -1):
                path = f"{hexip[:n]}/{primary}"
                out.append(WaterfallEntry(path, primary, kind, "", Place.IP_DIR, operation, len(out)))
    for entry in default_names(ident, operation, suffixes):
        out.append(replace(entry, rank=len(out)))
    return tuple(out)


def normalise_path(path: str) -> str:
    """A request path as a waterfall path: no leading '/', no query, '\\' read as '/'."""
    path = path.split("?", 1)[0].split("#", 1)[0].replace("\\", "/")
    return "/".join(p for p in path.split("/") if p not in ("", "."))


_HEX_DIR_RE = re.compile(r"[0-9A-Fa-f]{1,8}")
_MAC_DIR_RE = re.compile(r"[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}")


def match_request(
    path: str,
    identity: OnieIdentity,
    ip: str | None = None,
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
) -> WaterfallEntry | None:
    """Which entry of this switch's waterfall `path` is, or None when it is not one of its names.

    Any of ONIE's default names for this identity (installer or updater form, bare or with a
    suffix) matches at the root, in the switch's MAC directory (case-insensitive) and in a hex-IP
    prefix directory (of `ip` when given). Another platform's name does not match: the caller
    answers "not found" so that ONIE moves on to its next name.
    """
    rel = normalise_path(path)
    directory, _, name = rel.rpartition("/")
    ident = complete(identity)
    place = Place.ROOT
    if directory:
        if "/" in directory:
            return None
        if _MAC_DIR_RE.fullmatch(directory):
            if ident.mac and directory.lower().replace("-", ":") != ident.mac.lower():
                return None
            place = Place.MAC_DIR
        elif _HEX_DIR_RE.fullmatch(directory):
            if ip and not ip_hex(ip).startswith(directory.upper()):
                return None
            place = Place.IP_DIR
        else:
            return None
    for operation in (operation_of(ident), *(op for op in Operation if op is not operation_of(ident))):
        for entry in default_names(ident, operation, suffixes):
            if entry.name == name:
                return WaterfallEntry(rel, name, entry.kind, entry.suffix, place, operation, entry.rank)
    return None


def platform_from_name(name: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> str | None:
    """The platform an exact name spells (`onie-installer-<platform>[.bin]`), else None."""
    base = normalise_path(name).rpartition("/")[2]
    for suffix in suffixes:
        if suffix and base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    for operation in Operation:
        head = operation.prefix + "-"
        if base.startswith(head) and split_platform(base[len(head) :]):
            return base[len(head) :]
    return None


def installer_file_name(platform: str) -> str:
    """The file `provision onie-installer` writes for a platform: `onie-installer-<platform>.bin`."""
    return f"{Operation.INSTALL.prefix}-{platform}{IMAGE_SUFFIXES[0]}"
