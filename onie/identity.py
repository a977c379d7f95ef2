"""Who an ONIE switch says it is: the pieces ONIE's discovery sends over DHCP and HTTP."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OnieIdentity:
    """Any field may be unknown (None): DHCP carries some pieces, HTTP headers others."""

    platform: str | None = None  # <arch>-<vendor>_<machine>-r<rev>, e.g. x86_64-accton_as7712_32x-r0
    vendor_machine: str | None = None  # <vendor>_<machine>
    arch: str | None = None
    revision: str | None = None
    switch_asic: str | None = None
    serial: str | None = None
    mac: str | None = None
    vendor_id: str | None = None  # IANA enterprise number as ONIE sends it
    onie_version: str | None = None
    operation: str | None = None  # os-install | onie-update
