"""Rollout state in the store (docs/rollout.md): the `rollouts` and `rollout_devices` tables of
migration 4, read and written here and nowhere else, so a PostgreSQL store mirrors these methods.

Every write is committed at once (autocommit on the Store's connection): the engine writes a
transition BEFORE acting on it, and another process (`provision rollout pause|continue|abort`,
`status`) must see it. State changes that race with another process are compare-and-set
(`set_state(..., expect=...)`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provision.store.sqlite import Store
from pxe.policy import Event

# Device stages (docs/rollout.md "Stages"); the last three are final.
STAGES = ("pending", "arming", "installing", "installed", "verified", "failed", "skipped")
FINAL_STAGES = ("verified", "failed", "skipped")
KIND_ROLLOUT_STATE = "rollout.state"  # detail: rollout, state, reason
KIND_ROLLOUT_DEVICE = "rollout.device"  # detail: rollout, name, stage, wave, attempt, note|error


@dataclass(frozen=True)
class RolloutRecord:
    id: str
    name: str
    plan: dict[str, Any]  # the resolved plan (provision.rollout.plan.Plan.to_doc)
    state: str  # running | paused | stopped | aborted | done | partial
    reason: str | None
    created: float
    created_by: str
    updated: float
    accepted_wave: int  # gates of waves up to this one were overridden by `continue`
    owner: str | None  # host:pid of the engine running it
    heartbeat: float | None  # when that engine last said it was alive


@dataclass(frozen=True)
class RolloutDevice:
    rollout: str
    name: str
    wave: int
    position: int
    stage: str
    attempts: int
    install_id: str | None  # the arming this device waits on (its current attempt's)
    armed_event: int | None  # id of that arming's device.armed event: older events never count
    driver_started: float | None  # when driver.arm was called for this attempt (at most once)
    version_before: str | None  # what the driver said it ran before ("" = it could not tell)
    note: str | None
    error: str | None
    since: float  # when it entered its stage (stage timeouts run from here, across resumes)


_ROLLOUT_COLS = "id, name, plan, state, reason, created, created_by, updated, accepted_wave, owner, heartbeat"
_DEVICE_COLS = (
    "rollout, name, wave, position, stage, attempts, install_id, armed_event, driver_started, "
    "version_before, note, error, since"
)
_DEVICE_FIELDS = frozenset(_DEVICE_COLS.replace(" ", "").split(",")) - {"rollout", "name"}


def _rollout(row: Sequence[Any]) -> RolloutRecord:
    return RolloutRecord(row[0], row[1], json.loads(row[2]), *row[3:])


BACKENDS: dict[type, type[RolloutStore]] = {}  # store class -> its RolloutStore, besides SQLite's


class RolloutStore:
    """The rollout tables on a Store's connection (one thread, like the Store itself)."""

    def __new__(cls, store: Any) -> RolloutStore:
        # Another store's rollouts (provision.store.rollouts_pg registers PostgreSQL's in BACKENDS)
        impl = BACKENDS.get(type(store)) if cls is RolloutStore else None
        return super().__new__(impl or cls)

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    # -- rollouts ---------------------------------------------------------------------------------
    def create(
        self,
        rollout_id: str,
        name: str,
        plan: Mapping[str, Any],
        devices: Iterable[tuple[str, int, int]],
        by: str,
        state: str = "running",
    ) -> None:
        """A new rollout and its devices ((name, wave, position) each, stage pending), in one
        transaction: a rollout is never half written."""
        now = time.time()
        self.store.flush()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                f"INSERT INTO rollouts ({_ROLLOUT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rollout_id,
                    name,
                    json.dumps(plan, sort_keys=True),
                    state,
                    None,
                    now,
                    by,
                    now,
                    -1,
                    None,
                    None,
                ),
            )
            self.db.executemany(
                f"INSERT INTO rollout_devices ({_DEVICE_COLS}) VALUES (?,?,?,?,?,0,NULL,NULL,NULL,NULL,NULL,NULL,?)",
                [(rollout_id, n, wave, pos, "pending", now) for n, wave, pos in devices],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def get(self, rollout_id: str) -> RolloutRecord | None:
        row = self.db.execute(f"SELECT {_ROLLOUT_COLS} FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
        return _rollout(row) if row else None

    def find(self, prefix: str) -> list[RolloutRecord]:
        """Rollouts whose id starts with `prefix` (an operator types the first few characters)."""
        rows = self.db.execute(
            f"SELECT {_ROLLOUT_COLS} FROM rollouts WHERE id >= ? AND id < ? ORDER BY created",
            (prefix, prefix + "\U0010ffff"),
        )
        return [_rollout(r) for r in rows]

    def recent(self, limit: int = 50) -> list[RolloutRecord]:
        """The newest `limit` rollouts, newest first."""
        rows = self.db.execute(
            f"SELECT {_ROLLOUT_COLS} FROM rollouts ORDER BY created DESC, id DESC LIMIT ?", (limit,)
        )
        return [_rollout(r) for r in rows]

    def set_state(
        self, rollout_id: str, state: str, reason: str | None = None, expect: Sequence[str] | None = None
    ) -> bool:
        """Move the rollout to `state`; with `expect`, only from one of those states (another
        process may have moved it first). False when nothing changed."""
        sql = "UPDATE rollouts SET state=?, reason=?, updated=? WHERE id=?"
        args: list[object] = [state, reason, time.time(), rollout_id]
        if expect is not None:
            sql += f" AND state IN ({','.join('?' * len(expect))})"
            args.extend(expect)
        changed = self.db.execute(sql, args).rowcount > 0
        if changed:
            self._said_state(rollout_id, state, reason)
        return changed

    def accept_wave(self, rollout_id: str, wave: int) -> None:
        """`continue` after a gate stopped wave `wave`: its failures are accepted, the next goes."""
        self.db.execute(
            "UPDATE rollouts SET accepted_wave=max(accepted_wave, ?), updated=? WHERE id=?",
            (wave, time.time(), rollout_id),
        )

    def claim(self, rollout_id: str, owner: str | None) -> None:
        """`owner` (host:pid) runs the rollout from now (None: nobody does)."""
        self.db.execute(
            "UPDATE rollouts SET owner=?, heartbeat=? WHERE id=?",
            (owner, time.time() if owner else None, rollout_id),
        )

    def heartbeat(self, rollout_id: str) -> None:
        self.db.execute("UPDATE rollouts SET heartbeat=? WHERE id=?", (time.time(), rollout_id))

    # -- devices ----------------------------------------------------------------------------------
    def devices(self, rollout_id: str) -> list[RolloutDevice]:
        rows = self.db.execute(
            f"SELECT {_DEVICE_COLS} FROM rollout_devices WHERE rollout=? ORDER BY wave, position",
            (rollout_id,),
        )
        return [RolloutDevice(*r) for r in rows]

    def device(self, rollout_id: str, name: str) -> RolloutDevice | None:
        row = self.db.execute(
            f"SELECT {_DEVICE_COLS} FROM rollout_devices WHERE rollout=? AND name=?", (rollout_id, name)
        ).fetchone()
        return RolloutDevice(*row) if row else None

    def update_device(self, rollout_id: str, name: str, **fields: Any) -> None:
        """Set the given columns of one device row; a new `stage` restarts its `since` clock."""
        unknown = set(fields) - _DEVICE_FIELDS
        if unknown:
            raise ValueError(f"not rollout_devices columns: {sorted(unknown)}")
        if "stage" in fields:
            fields.setdefault("since", time.time())
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(
            f"UPDATE rollout_devices SET {cols} WHERE rollout=? AND name=?",
            [*fields.values(), rollout_id, name],
        )
        if "stage" in fields:
            self._said_stage(rollout_id, name, fields)

    # -- what the rollout says: events, like every lifecycle transition (docs/rollout.md) ---------
    def _said_state(self, rollout_id: str, state: str, reason: str | None) -> None:
        """A `rollout.state` event: the event stream, the web page and `/metrics` follow a
        rollout's pause, gate stop, abort and end without polling its table."""
        detail = {"rollout": rollout_id, "state": state, "reason": reason}
        self.store.add_event(Event(KIND_ROLLOUT_STATE, detail=detail))
        self.store.flush()

    def _said_stage(self, rollout_id: str, name: str, fields: Mapping[str, Any]) -> None:
        """A `rollout.device` event per stage a device enters, on its timeline: what the
        rollout did to it and when ("armed by the rollout", "verified at 2.0")."""
        row = self.device(rollout_id, name)
        detail: dict[str, Any] = {"rollout": rollout_id, "name": name, "stage": fields["stage"]}
        if row is not None:
            detail.update(wave=row.wave, attempt=row.attempts)
        for key in ("note", "error", "install_id"):
            if fields.get(key):
                detail[key] = fields[key]
        self.store.add_event(Event(KIND_ROLLOUT_DEVICE, detail=detail))
        self.store.flush()

    def stage_counts(self, rollout_ids: Sequence[str]) -> dict[str, dict[int, dict[str, int]]]:
        """{rollout: {wave: {stage: count}}} for several rollouts in one query (the summaries)."""
        if not rollout_ids:
            return {}
        rows = self.db.execute(
            "SELECT rollout, wave, stage, count(*) FROM rollout_devices "
            f"WHERE rollout IN ({','.join('?' * len(rollout_ids))}) GROUP BY 1, 2, 3",
            list(rollout_ids),
        )
        out: dict[str, dict[int, dict[str, int]]] = {}
        for rollout, wave, stage, n in rows:
            out.setdefault(rollout, {}).setdefault(wave, {})[stage] = n
        return out

    # -- events the engine reads ------------------------------------------------------------------
    def last_event_id(self) -> int:
        """The newest event's id (0 with none): events after it happened after this call."""
        self.store.flush()
        row = self.db.execute("SELECT max(id) FROM events").fetchone()
        return int(row[0] or 0)

    def armed_event_id(self, install_id: str, after: int = 0) -> int | None:
        """The id of the `device.armed` event of arming `install_id` (None: not written yet)."""
        self.store.flush()
        row = self.db.execute(
            "SELECT min(id) FROM events WHERE kind='device.armed' AND id > ? AND json_valid(detail) "
            "AND json_extract(detail, '$.install_id') = ?",
            (after, install_id),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def events_after(self, after: int, kinds: Sequence[str], limit: int = 1000) -> list[tuple[int, Event]]:
        """(id, event) of `kinds` after event id `after`, oldest first, at most `limit`."""
        return self.store.event_page(after=after, kinds=kinds, limit=limit)


__all__ = [
    "FINAL_STAGES",
    "KIND_ROLLOUT_DEVICE",
    "KIND_ROLLOUT_STATE",
    "STAGES",
    "RolloutDevice",
    "RolloutRecord",
    "RolloutStore",
]
