"""The rollout tables in PostgreSQL (migration 2 of provision.store.postgres): RolloutStore's
methods in PostgreSQL's SQL, so a rollout is run, paused and watched from any server or CLI
sharing the database. `RolloutStore(store)` returns one of these for a PgStore (registered in
provision.store.rollouts.BACKENDS on import; provision.store.base imports this module)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from provision.store.postgres import PgStore
from provision.store.rollouts import (
    _DEVICE_COLS,
    _DEVICE_FIELDS,
    _ROLLOUT_COLS,
    BACKENDS,
    RolloutDevice,
    RolloutRecord,
    RolloutStore,
    _rollout,
)
from pxe.policy import Event


class PgRolloutStore(RolloutStore):
    """Every write is committed at once (the PgStore's connection is in autocommit)."""

    def __init__(self, store: Any) -> None:
        assert isinstance(store, PgStore)
        self.pg = store
        self.store = store  # type: ignore[assignment]  # flush() and event_page() are the same

    def create(
        self,
        rollout_id: str,
        name: str,
        plan: Mapping[str, Any],
        devices: Iterable[tuple[str, int, int]],
        by: str,
        state: str = "running",
    ) -> None:
        now = time.time()
        self.pg.flush()
        db = self.pg.db
        with db.transaction():  # a rollout is never half written
            db.execute(
                f"INSERT INTO rollouts ({_ROLLOUT_COLS}) VALUES (%s,%s,%s,%s,NULL,%s,%s,%s,-1,NULL,NULL)",
                (rollout_id, name, json.dumps(plan, sort_keys=True), state, now, by, now),
            )
            rows = [(rollout_id, n, wave, pos, now) for n, wave, pos in devices]
            if rows:
                with db.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO rollout_devices ({_DEVICE_COLS}) "
                        "VALUES (%s,%s,%s,%s,'pending',0,NULL,NULL,NULL,NULL,NULL,NULL,%s)",
                        rows,
                    )

    def get(self, rollout_id: str) -> RolloutRecord | None:
        row = self.pg.db.execute(
            f"SELECT {_ROLLOUT_COLS} FROM rollouts WHERE id = %s", (rollout_id,)
        ).fetchone()
        return _rollout(row) if row else None

    def find(self, prefix: str) -> list[RolloutRecord]:
        rows = self.pg.db.execute(
            f"SELECT {_ROLLOUT_COLS} FROM rollouts WHERE starts_with(id, %s) ORDER BY created", (prefix,)
        )
        return [_rollout(r) for r in rows]

    def recent(self, limit: int = 50) -> list[RolloutRecord]:
        rows = self.pg.db.execute(
            f"SELECT {_ROLLOUT_COLS} FROM rollouts ORDER BY created DESC, id DESC LIMIT %s", (limit,)
        )
        return [_rollout(r) for r in rows]

    def set_state(
        self, rollout_id: str, state: str, reason: str | None = None, expect: Sequence[str] | None = None
    ) -> bool:
        sql = "UPDATE rollouts SET state = %s, reason = %s, updated = %s WHERE id = %s"
        args: list[object] = [state, reason, time.time(), rollout_id]
        if expect is not None:
            sql += " AND state = ANY(%s)"
            args.append(list(expect))
        changed = self.pg.db.execute(sql, args).rowcount > 0
        if changed:
            self._said_state(rollout_id, state, reason)
        return changed

    def accept_wave(self, rollout_id: str, wave: int) -> None:
        self.pg.db.execute(
            "UPDATE rollouts SET accepted_wave = greatest(accepted_wave, %s), updated = %s WHERE id = %s",
            (wave, time.time(), rollout_id),
        )

    def claim(self, rollout_id: str, owner: str | None) -> None:
        self.pg.db.execute(
            "UPDATE rollouts SET owner = %s, heartbeat = %s WHERE id = %s",
            (owner, time.time() if owner else None, rollout_id),
        )

    def heartbeat(self, rollout_id: str) -> None:
        self.pg.db.execute("UPDATE rollouts SET heartbeat = %s WHERE id = %s", (time.time(), rollout_id))

    def devices(self, rollout_id: str) -> list[RolloutDevice]:
        rows = self.pg.db.execute(
            f"SELECT {_DEVICE_COLS} FROM rollout_devices WHERE rollout = %s ORDER BY wave, position",
            (rollout_id,),
        )
        return [RolloutDevice(*r) for r in rows]

    def device(self, rollout_id: str, name: str) -> RolloutDevice | None:
        row = self.pg.db.execute(
            f"SELECT {_DEVICE_COLS} FROM rollout_devices WHERE rollout = %s AND name = %s", (rollout_id, name)
        ).fetchone()
        return RolloutDevice(*row) if row else None

    def update_device(self, rollout_id: str, name: str, **fields: Any) -> None:
        unknown = set(fields) - _DEVICE_FIELDS
        if unknown:
            raise ValueError(f"not rollout_devices columns: {sorted(unknown)}")
        if "stage" in fields:
            fields.setdefault("since", time.time())
        cols = ", ".join(f"{k} = %s" for k in fields)  # names checked against _DEVICE_FIELDS above
        self.pg.db.execute(
            f"UPDATE rollout_devices SET {cols} WHERE rollout = %s AND name = %s",
            [*fields.values(), rollout_id, name],
        )
        if "stage" in fields:
            self._said_stage(rollout_id, name, fields)

    def stage_counts(self, rollout_ids: Sequence[str]) -> dict[str, dict[int, dict[str, int]]]:
        if not rollout_ids:
            return {}
        rows = self.pg.db.execute(
            "SELECT rollout, wave, stage, count(*) FROM rollout_devices WHERE rollout = ANY(%s) "
            "GROUP BY 1, 2, 3",
            (list(rollout_ids),),
        )
        out: dict[str, dict[int, dict[str, int]]] = {}
        for rollout, wave, stage, n in rows:
            out.setdefault(rollout, {}).setdefault(wave, {})[stage] = n
        return out

    def last_event_id(self) -> int:
        self.pg.flush()
        row = self.pg.db.execute("SELECT max(id) FROM events").fetchone()
        return int(row[0] or 0) if row else 0

    def armed_event_id(self, install_id: str, after: int = 0) -> int | None:
        self.pg.flush()
        row = self.pg.db.execute(
            "SELECT min(id) FROM events WHERE kind = 'device.armed' AND id > %s "
            "AND jsonb_typeof(detail) = 'object' AND detail ->> 'install_id' = %s",
            (after, install_id),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def events_after(self, after: int, kinds: Sequence[str], limit: int = 1000) -> list[tuple[int, Event]]:
        return self.pg.event_page(after=after, kinds=kinds, limit=limit)


BACKENDS[PgStore] = PgRolloutStore

__all__ = ["PgRolloutStore"]
