"""What `provision status` and `/api/v1/status` show: one row per device, its lifecycle state and
since when, what it reported (serial, platform, NOS version), its lease and last error.

The schema is documented in docs/lifecycle.md ("status --json"); `STATUS_VERSION` changes when a
field changes meaning or goes away (new fields do not change it). Times are ISO-8601 UTC strings.

Bounded work whatever the history: the leases, the devices table and the intents are one query
each, and a device's events are read as the last event of each class (the store's `events_last`,
migration 3), never its whole history. A page (`limit`, `after`) reads the events of its own rows
only.

The state is the lifecycle's (provision.devices.lifecycle `Lifecycle.state`); rows are the
inventory's devices (lab.yml's and the enrolled ones, matched to what was seen by serial first,
then by MAC) and one row per MAC seen that no device claims.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from provision.config.inventory import Device, Inventory
from provision.devices.lifecycle import KIND_INSTALLING, Lifecycle, State
from provision.onie.progress import KIND_FETCHED, KIND_REPORT, REPORT_STATUS_OK, stage_of
from pxe.policy import Event

STATUS_VERSION = 1
EVENTS_VERSION = 1
FETCH_KINDS = ("tftp.sent", "http.sent")
STATE_CODES = tuple(s.value for s in State)
_CHUNK = 200  # rows whose events are read per query when a filter needs the state of many rows


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds (events of one second stay ordered): 2026-12-05T00:37:28.123Z."""
    if ts is None:
        return None
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{whole}.{int((ts % 1) * 1000):03d}Z"


def parse_time(text: str) -> float:
    """A time a caller gives: ISO-8601 (2026-12-05T00:37:28Z, offset or not) or unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    value = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.timestamp()


def event_dict(e: Event, event_id: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": iso(e.ts),
        "kind": e.kind,
        "mac": e.mac,
        "ip": e.ip,
        "detail": dict(e.detail),
    }
    if event_id is not None:
        out["id"] = event_id
    return out


@dataclass(frozen=True)
class Filters:
    """`provision status --state --platform --name --mac` (globs; several values: any of them)."""

    states: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    macs: tuple[str, ...] = ()

    @property
    def by_row(self) -> bool:
        return bool(self.states or self.platforms)

    def keeps_candidate(self, cand: _Candidate) -> bool:
        if self.names and not (cand.name and _any_glob(cand.name, self.names)):
            return False
        globs = tuple(g.lower() for g in self.macs)
        return not self.macs or any(_any_glob(m, globs) for m in cand.macs)

    def keeps_row(self, row: dict[str, Any]) -> bool:
        if self.states and row["state"] not in self.states:
            return False
        platform = row["platform"]
        return not self.platforms or bool(platform and _any_glob(platform, self.platforms))


def _any_glob(value: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, g) for g in globs)


@dataclass
class _Candidate:
    """A row before its events are read: an inventory device and/or the MACs seen for it."""

    cursor: str  # the sort key, and what `after=` takes: d:<name> for devices, u:<mac> for the rest
    device: Device | None
    macs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return self.device.name if self.device else None

    @property
    def keys(self) -> list[str]:
        return [*self.macs, *([f"name:{self.device.name}"] if self.device else [])]


def _candidates(inventory: Inventory, records: dict[str, Any], leases: dict[str, Any]) -> list[_Candidate]:
    by_name = {d.name: _Candidate(f"d:{d.name}", d, list(d.all_macs)) for d in inventory.devices}
    unknown: dict[str, _Candidate] = {}
    for mac in sorted(set(records) | set(leases)):
        rec = records.get(mac)
        dev = inventory.find(mac=mac, serial=rec.serial if rec else None)
        if dev is None:
            unknown[mac] = _Candidate(f"u:{mac}", None, [mac])
        elif mac not in by_name[dev.name].macs:
            by_name[dev.name].macs.append(mac)
    return sorted([*by_name.values(), *unknown.values()], key=lambda c: c.cursor)


def snapshot(
    store: Any,
    lab: Inventory | None = None,
    now: float | None = None,
    *,
    limit: int | None = None,
    after: str | None = None,
    filters: Filters | None = None,
) -> dict[str, Any]:
    """The status document (docs/lifecycle.md "status --json"). `lab`: lab.yml's devices (the
    enrolled ones come from the store); `limit`/`after`: one page, `next` names the following."""
    now = time.time() if now is None else now
    filters = filters or Filters()
    fleet = Lifecycle(store, lab or Inventory([]))
    inventory = fleet.inventory
    leases: dict[str, Any] = {}
    for lease in store.leases():
        old = leases.get(lease.mac)
        if old is None or lease.updated > old.updated:
            leases[lease.mac] = lease
    records = {d.mac: d for d in store.devices()}
    candidates = [c for c in _candidates(inventory, records, leases) if filters.keeps_candidate(c)]
    if after is not None:
        candidates = [c for c in candidates if c.cursor > after]
    rows: list[dict[str, Any]] = []
    taken = 0
    step = limit if limit is not None and not filters.by_row else _CHUNK
    while taken < len(candidates) and (limit is None or len(rows) < limit):
        chunk = candidates[taken : taken + step]
        taken += len(chunk)
        events = store.last_events(k for c in chunk for k in c.keys)
        for cand in chunk:
            row = _row(cand, fleet, records, leases, events, now)
            if filters.keeps_row(row):
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    taken = candidates.index(cand) + 1
                    break
    more = taken < len(candidates)
    return {
        "version": STATUS_VERSION,
        "generated": iso(now),
        "devices": rows,
        "next": rows[-1]["cursor"] if more and rows else None,
    }


def _latest(events: Iterable[Event]) -> dict[str, Event]:
    """The latest event per class, over the device's keys (MACs and name)."""
    out: dict[str, Event] = {}
    for e in events:
        cls = e.kind
        if e.kind == KIND_REPORT and str(e.detail.get("status") or "").lower() == "failed":
            cls = KIND_REPORT + ":failed"
        if cls not in out or e.ts >= out[cls].ts:
            out[cls] = e
    return out


def _row(
    cand: _Candidate,
    fleet: Lifecycle,
    records: dict[str, Any],
    leases: dict[str, Any],
    events_by_key: dict[str, list[Event]],
    now: float,
) -> dict[str, Any]:
    dev = cand.device
    last = _latest(e for k in cand.keys for e in events_by_key.get(k, ()))
    evs = sorted(last.values(), key=lambda e: e.ts)
    recs = [records[m] for m in cand.macs if m in records]
    rec = max(recs, key=lambda r: r.last_seen) if recs else None
    mine = [leases[m] for m in cand.macs if m in leases]
    lease = max(mine, key=lambda le: le.updated) if mine else None
    mac = (
        (dev.mac if dev and dev.mac else None) or (rec.mac if rec else None) or (lease.mac if lease else None)
    )
    if mac is None and cand.macs:
        mac = cand.macs[0]
    state, since, error = fleet.state(dev, evs)
    if dev is None and since is None and rec is not None:
        since = rec.first_seen
    report = last.get(KIND_REPORT)
    failed = last.get(KIND_REPORT + ":failed")
    fetched = last.get(KIND_FETCHED)
    nos = _nos(report, failed, fetched)
    reported_serial = rec.serial if rec else None
    reported_platform = rec.platform if rec else None
    for e in (fetched, failed, report):
        if e is not None:
            reported_serial = reported_serial or _text(e.detail.get("serial"))
            reported_platform = reported_platform or _text(e.detail.get("platform"))
    fetch = max((last[k] for k in FETCH_KINDS if k in last), key=lambda e: e.ts, default=None)
    last_event = evs[-1] if evs else None
    intent = fleet.intent(dev.name) if dev else None
    installing = last.get(KIND_INSTALLING)
    return {
        "cursor": cand.cursor,
        "name": dev.name if dev else None,
        "mac": mac,
        "macs": sorted(set(cand.macs)),
        "known": dev is not None,
        "source": dev.source if dev else None,
        "role": dev.role if dev else None,
        "hostname": (lease.hostname if lease else None)
        or (rec.hostname if rec else None)
        or (dev.hostname if dev else None),
        "ip": lease.ip if lease else (dev.ip if dev else None),
        "serial": (dev.serial if dev else None) or reported_serial,
        "platform": reported_platform or (dev.platform if dev else None),
        "switch_port": (dev.switch_port if dev else None) or circuit_id(evs),
        "nos": nos,
        "state": state.value,
        "since": iso(since),
        "error": error,
        "arming": None
        if intent is None
        else {
            "armed": intent.armed,
            "target": intent.target,
            "install_id": intent.install_id,
            "armed_at": iso(intent.armed_at),
            "armed_by": intent.armed_by,
            "outcome": intent.outcome,
            "outcome_at": iso(intent.outcome_at),
            "outcome_by": intent.outcome_by,
            "reason": intent.reason,
        },
        "installing": None if installing is None else _text(installing.detail.get("what")),
        "stage": stage_of(evs).value,
        "lease": None
        if lease is None
        else {
            "state": lease.state.value,
            "expires": iso(lease.expires),
            "expired": lease.expires < now,
            "subnet": lease.subnet,
        },
        "seen": None if rec is None else {"first": iso(rec.first_seen), "last": iso(rec.last_seen)},
        "last_event": None
        if last_event is None
        else {"kind": last_event.kind, "time": iso(last_event.ts), "ip": last_event.ip},
        "last_fetch": None
        if fetch is None
        else {
            "path": fetch.detail.get("path"),
            "protocol": fetch.kind.split(".")[0],
            "bytes": fetch.detail.get("bytes"),
            "time": iso(fetch.ts),
        },
    }


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _nos(report: Event | None, failed: Event | None, fetched: Event | None) -> dict[str, Any] | None:
    """The NOS the device runs or is getting: the installer's own report of a finished install
    first, else what it was handed (the catalog's header of that installer)."""
    for e in (report, failed, fetched):
        if e is None:
            continue
        name, version = _text(e.detail.get("nos")), _text(e.detail.get("version"))
        if name or version:
            ok = e.kind == KIND_REPORT and str(e.detail.get("status") or "").lower() == REPORT_STATUS_OK
            return {"name": name, "version": version, "from": e.kind, "installed": ok}
    return None


def circuit_id(events: Iterable[Event]) -> str | None:
    """The switch port a device hangs off, from the newest DHCP event that carried option 82
    (pxe records circuit_id as hex; the ONIE policy reads it as text, NULs and spaces trimmed)."""
    for e in sorted(events, key=lambda e: e.ts, reverse=True):
        raw = e.detail.get("circuit_id") if e.kind.startswith("dhcp.") else None
        if not raw:
            continue
        try:
            text = bytes.fromhex(str(raw)).decode("utf-8", "replace").strip("\0 ")
        except ValueError:
            continue
        if text:
            return text
    return None


__all__ = [
    "EVENTS_VERSION",
    "STATE_CODES",
    "STATUS_VERSION",
    "Filters",
    "circuit_id",
    "event_dict",
    "iso",
    "parse_time",
    "snapshot",
]
