"""BMC operations recorded as events, so `provision serve`'s /metrics can show their latency and
errors although they run in other processes (`provision power|boot|bmc info`, a rollout's BMC
driver): one `bmc.operation` event per target and operation in the state store, which serve reads
incrementally at scrape time (provision.server.metrics, docs/observability.md "Metrics").

The event carries only bounded fields: the operation (a name from our own commands), the
protocol (redfish | ipmi), ok, seconds and the error's kind (one of our exception class names),
plus the target's name for the device's timeline. No BMC address, user or message text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from provision.bmc.runner import TargetResult
from provision.bmc.target import BmcTarget
from provision.config.lab import load_lab
from provision.errors import ProvisionError
from provision.store.base import is_url, open_store, redact
from pxe.policy import Event

log = logging.getLogger(__name__)

KIND_BMC_OPERATION = "bmc.operation"
_NAME = re.compile(r"[^a-z0-9-]+")


def operation_name(text: str) -> str:
    """`power cycle` -> `power-cycle`: lower case, letters, digits and dashes, at most 32."""
    return _NAME.sub("-", text.lower()).strip("-")[:32] or "unknown"


def operation_event(operation: str, target: BmcTarget, result: TargetResult, mac: str | None = None) -> Event:
    detail: dict[str, object] = {
        "name": result.name,
        "operation": operation_name(operation),
        "protocol": target.protocol,
        "ok": result.ok,
        "seconds": round(result.seconds, 3),
    }
    if not result.ok:
        detail["error"] = result.error_kind or "Error"
    return Event(KIND_BMC_OPERATION, mac=mac, detail=detail)


def state_db(state_dir: str | Path | None, lab: str | Path | None) -> str | Path | None:
    """Where `provision power|boot|bmc info` record: --state-dir's database, else the state store
    of the lab file given with -i (its `state:` PostgreSQL URL or its SQLite file); a
    devices-only inventory names none: nothing is recorded."""
    if state_dir:
        return Path(state_dir) / "provision.db"
    if not lab:
        return None
    try:
        return load_lab(Path(lab), check_files=False).state_location
    except ProvisionError:
        return None


def record(
    location: str | Path | None, operation: str, done: Iterable[tuple[BmcTarget, TargetResult]]
) -> int:
    """Write one event per (target, result) to the state store at `location`, if `provision
    serve` made one there (a missing SQLite file is not created: without a server nobody reads
    them). Never raises: the BMC operation itself has succeeded or failed already. Returns how
    many were written."""
    if location is None or (not is_url(location) and not Path(location).is_file()):
        return 0
    n = 0
    try:
        with open_store(location) as store:
            for target, result in done:
                store.add_event(operation_event(operation, target, result))
                n += 1
            store.flush()
    except Exception as exc:  # a locked or damaged store (StoreError, sqlite3, OSError): say so, go on
        log.warning("BMC operations not recorded in %s: %s", redact(location), exc)
        return 0
    return n


__all__ = ["KIND_BMC_OPERATION", "operation_event", "operation_name", "record"]
