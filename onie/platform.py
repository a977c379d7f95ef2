"""ONIE platform strings and identity helpers shared by discovery and the name waterfall (pure)."""

from __future__ import annotations

import re
from dataclasses import replace

from onie.identity import OnieIdentity

_PLATFORM_RE = re.compile(r"(?P<arch>[A-Za-z0-9_]+)-(?P<machine>[A-Za-z0-9_.-]+?)-r(?P<rev>[A-Za-z0-9]+)")


def platform_name(arch: str, vendor_machine: str, revision: str | int) -> str:
    """`<arch>-<vendor>_<machine>-r<rev>` as machine.conf's onie_platform spells it."""
    return f"{arch}-{vendor_machine}-r{revision}"


def split_platform(platform: str) -> tuple[str, str, str] | None:
    """(arch, vendor_machine, revision) of a platform string, or None if it is not one."""
    m = _PLATFORM_RE.fullmatch(platform)
    if not m:
        return None
    return m["arch"], m["machine"], m["rev"]


def complete(identity: OnieIdentity) -> OnieIdentity:
    """Fill platform from arch+machine+rev, or those from platform, where one side is missing."""
    changes: dict[str, str] = {}
    if identity.platform:
        parts = split_platform(identity.platform)
        if parts:
            arch, machine, rev = parts
            if not identity.arch:
                changes["arch"] = arch
            if not identity.vendor_machine:
                changes["vendor_machine"] = machine
            if not identity.revision:
                changes["revision"] = rev
    elif identity.arch and identity.vendor_machine and identity.revision:
        changes["platform"] = platform_name(identity.arch, identity.vendor_machine, identity.revision)
    return replace(identity, **changes) if changes else identity


_MAC_COLONS = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_MAC_BARE = re.compile(r"[0-9a-f]{12}")


def normalise_mac(mac: str) -> str | None:
    """aa:bb:cc:dd:ee:ff from any case with ':' or '-' separators (EEPROMs are often upper-case)."""
    text = mac.strip().lower().replace("-", ":")
    if _MAC_COLONS.fullmatch(text):  # (compiled: asked for every DHCP ack's event)
        return text
    if _MAC_BARE.fullmatch(text):
        return ":".join(text[i : i + 2] for i in range(0, 12, 2))
    return None


def _merge(base: OnieIdentity, more: OnieIdentity) -> OnieIdentity:
    """Fields of `more` fill the gaps of `base` (the first source to say something wins)."""
    changes = {k: v for k, v in vars(more).items() if v is not None and getattr(base, k) is None}
    return replace(base, **changes) if changes else base


def merge(base: OnieIdentity, more: OnieIdentity) -> OnieIdentity:
    """Public form of `_merge`: e.g. HTTP headers completed by what DHCP said earlier."""
    return complete(_merge(base, more))
