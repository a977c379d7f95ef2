"""Rollouts as plain dicts for readers that are not the engine: metrics, the web page, `status`.

`rollout_summaries(store)` is read-only and cheap: two queries whatever the number of rollouts
and devices (the newest rollouts, then one GROUP BY over their devices' stages).
"""

from __future__ import annotations

import time
from typing import Any

from provision.store.rollouts import FINAL_STAGES, RolloutRecord, RolloutStore
from provision.store.sqlite import Store

# Rollout states (docs/rollout.md "States"); the ones no engine moves on from by itself.
ROLLOUT_STATES = ("running", "paused", "stopped", "aborted", "done", "partial")
ENDED_STATES = ("aborted", "done", "partial")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def wave_state(rollout_state: str, counts: dict[str, int]) -> str:
    """pending (nothing started) | running | done (every device final) | the rollout's own state
    (paused, stopped, aborted) for a wave it left part done."""
    total = sum(counts.values())
    final = sum(counts.get(s, 0) for s in FINAL_STAGES)
    if total and final == total:
        return "done"
    if counts.get("pending", 0) == total:
        return "pending"
    if rollout_state in ("paused", "stopped", "aborted"):
        return rollout_state
    return "running"


def wave_dict(index: int, rollout_state: str, counts: dict[str, int]) -> dict[str, Any]:
    """{"index", "devices", "pending", "arming", "installing", "installed", "verified", "failed",
    "skipped", "state"}; `installed` counts every device whose install reported ok (verified
    included), `verified` those also back at the target version."""
    return {
        "index": index,
        "devices": sum(counts.values()),
        "pending": counts.get("pending", 0),
        "arming": counts.get("arming", 0),
        "installing": counts.get("installing", 0),
        "installed": counts.get("installed", 0) + counts.get("verified", 0),
        "verified": counts.get("verified", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "state": wave_state(rollout_state, counts),
    }


def summary(rec: RolloutRecord, waves: dict[int, dict[str, int]]) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "state": rec.state,
        "reason": rec.reason,
        "created": iso(rec.created),
        "created_by": rec.created_by,
        "updated": iso(rec.updated),
        "target": rec.plan.get("target"),
        "waves": [wave_dict(i, rec.state, waves[i]) for i in sorted(waves)],
    }


def rollout_summaries(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` rollouts, newest first: {"id", "name", "state", "reason", "created",
    "created_by", "updated", "target", "waves": [wave_dict...]}. Times are ISO-8601 UTC."""
    rs = RolloutStore(store)
    recs = rs.recent(limit)
    counts = rs.stage_counts([r.id for r in recs])
    return [summary(r, counts.get(r.id, {})) for r in recs]


__all__ = ["ENDED_STATES", "ROLLOUT_STATES", "iso", "rollout_summaries", "summary", "wave_dict", "wave_state"]
