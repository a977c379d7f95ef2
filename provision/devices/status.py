"""What `provision status` shows: per device, its lease and what it last fetched, from the store.

A device's state is derived from its events (docs/architecture.md "Events"), never stored twice. Used by the
CLI (rich table or --json) and by the HTTP API's /api/v1/status while serving.
"""

from __future__ import annotations

import time
from typing import Any

from provision.config.inventory import Inventory
from provision.devices.lifecycle import Lifecycle
from provision.onie.progress import stage_of
from pxe.policy import Event

FETCH_KINDS = ("tftp.sent", "http.sent")


def event_dict(e: Event) -> dict[str, Any]:
    return {"ts": e.ts, "kind": e.kind, "mac": e.mac, "ip": e.ip, "detail": dict(e.detail)}


def snapshot(
    store: Any, inventory: Inventory | None = None, now: float | None = None, fleet: Lifecycle | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    inventory = inventory or Inventory([])
    leases = {lease.mac: lease for lease in store.leases()}
    records = {d.mac: d for d in store.devices()}
    last = store.last_event_per_device()
    macs = set(leases) | set(records) | set(last)
    for dev in inventory.devices:
        macs.update(dev.all_macs)
    rows = []
    for mac in sorted(macs):
        known = inventory.by_mac(mac)
        lease = leases.get(mac)
        rec = records.get(mac)
        fetched = store.events(mac=mac, kinds=list(FETCH_KINDS), limit=1)
        fetch = fetched[-1] if fetched else None
        ev = last.get(mac)
        row: dict[str, Any] = {
            "mac": mac,
            "name": known.name if known else None,
            "hostname": (lease.hostname if lease else None)
            or (rec.hostname if rec else None)
            or (known and known.hostname),
            "ip": lease.ip if lease else (known.ip if known else None),
            "lease": None
            if lease is None
            else {
                "state": lease.state.value,
                "expires": lease.expires,
                "expired": lease.expires < now,
                "subnet": lease.subnet,
            },
            "last_event": None if ev is None else {"kind": ev.kind, "ts": ev.ts, "ip": ev.ip},
            "last_fetch": None
            if fetch is None
            else {
                "path": fetch.detail.get("path"),
                "protocol": fetch.kind.split(".")[0],
                "bytes": fetch.detail.get("bytes"),
                "ts": fetch.ts,
            },
            "known": known is not None,
        }
        try:
            # OnieStage's str() is its label ("installer fetched"), made for this column.
            row["stage"] = str(stage_of(store.events(mac=mac)))
        except Exception as exc:  # a stage function bug must not hide the table
            row["stage"] = f"? ({exc})"
        rows.append(row)
    return {"devices": rows, "generated": now}
