"""What `provision serve` says it serves, at start and after each reload: one log line per topic
(interfaces, subnets, devices, boot entries, installers per platform), so an operator reading the
log sees at once that the file they edited is the one being served."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from provision.config.lab import LabConfig
from provision.devices.lifecycle import Lifecycle
from provision.server.hostnet import InterfaceAddress
from provision.server.router import Router

MAX_LISTED = 8  # names per line before "and N more": a rack of 48 switches stays one line


def _some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def summary_lines(
    cfg: LabConfig, ifaces: Sequence[InterfaceAddress], fleet: Lifecycle, router: Router | None
) -> list[str]:
    lines = [
        "interfaces: "
        + (", ".join(f"{i.ifname} {i.address}/{i.network.prefixlen}" for i in ifaces) or "none")
    ]
    for s in cfg.subnets:
        size = sum(int(p.last) - int(p.first) + 1 for p in s.pools)
        where = f"on {s.interface}" if s.interface else "relayed"
        pools = ", ".join(f"{p.first}-{p.last}" for p in s.pools) or "no pool (reserved addresses only)"
        lines.append(f"subnet {s.network} {where}: {size} pool addresses ({pools})")
    inventory = fleet.inventory
    roles = Counter(d.role or "unset" for d in inventory.devices)
    stored = sum(1 for d in inventory.devices if d.source == "store")
    armed = [d.name for d in inventory.devices if (i := fleet.intent(d.name)) is not None and i.armed]
    always = [d.name for d in inventory.devices if d.install == "always"]
    lines.append(
        f"devices: {len(inventory.devices)} ("
        + ", ".join(f"{n} {role}" for role, n in sorted(roles.items()))
        + f"; {stored} enrolled in the store); armed: {_some(armed) or 'none'}"
        + (f"; install always: {_some(always)}" if always else "")
    )
    entries = [f"{e.name} ({'/'.join(a.value for a in e.kernels)})" for e in cfg.boot.entries.values()]
    lines.append(
        f"boot entries: {_some(entries) or 'none'}; default {cfg.boot.default or '-'}; "
        f"unknown machines: {cfg.boot.unknown.value}"
    )
    onie = router.onie if router is not None else None
    if onie is not None:
        by_platform: dict[str, list[str]] = {}
        for entry in onie.catalog.entries():
            by_platform.setdefault(entry.platform or "generic name", []).append(entry.label)
        found = "; ".join(f"{p}: {_some(sorted(names))}" for p, names in sorted(by_platform.items()))
        lines.append(
            f"onie: {onie.settings.discovery.value} discovery, unknown switches "
            f"{'install' if fleet.unknown_install else 'ignored'}; installers in "
            f"{onie.settings.installers}: {found or 'none found'}"
        )
    return lines


def summary_fields(line: str, phase: str) -> dict[str, Any]:
    """`extra=` of a summary line (provision.logs): its topic (the line's first word: interfaces,
    subnet, devices, boot, onie) and whether it was logged at start or after a reload."""
    return {"fields": {"summary": line.split(":", 1)[0].split(" ", 1)[0], "phase": phase}}
