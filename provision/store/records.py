"""What the store keeps of intent, as plain records: the SQLite store returns them, the lifecycle
(provision.devices.lifecycle) reads them, and a PostgreSQL store would return the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Intent:
    """One known device's arming (the store's `intents` table)."""

    name: str
    armed: bool
    target: str | None = None  # what was armed: an installer pin / NOS version, or a boot entry
    install_id: str | None = None  # one per arming; callback tokens are keyed on it
    armed_at: float | None = None
    armed_by: str | None = None
    outcome: str | None = None  # why the last arming ended: installed | failed | disarmed
    outcome_at: float | None = None
    outcome_by: str | None = None
    reason: str | None = None
    updated: float = 0.0


@dataclass(frozen=True)
class EnrolledRecord:
    """A device enrolled with `provision devices enroll|import` (the store's `enrolled` table)."""

    name: str
    doc: dict[str, Any]  # lab.yml's device keys
    enrolled_at: float
    enrolled_by: str
