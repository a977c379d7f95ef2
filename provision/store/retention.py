"""Event retention: a periodic prune (lab.yml `events:`), never a delete per insert.

Every `prune_every` seconds: events older than `keep_days` go, then each MAC's beyond its newest
`keep_per_device`, in chunks of `PRUNE_CHUNK` with the loop free between them, so DHCP is never
held up for longer than one chunk's delete. The file does not shrink (SQLite reuses the freed
pages), so under a steady flood it stops growing once retention bites (bench/report_flood.py).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from provision.config.security import EventRetention
from provision.store.base import StateStore as Store
from provision.store.sqlite import StoreError

log = logging.getLogger("provision.store")


def prune_once(store: Store, retention: EventRetention) -> int:
    """Everything due now, at once (tests, and `provision` commands that run without a loop)."""
    total = 0
    more = True
    while more:
        deleted, more = store.prune_events(retention.keep_per_device, retention.keep_days)
        total += deleted
    return total


async def prune_forever(store_of: Callable[[], Store | None], retention: EventRetention) -> None:
    """Run until cancelled; `store_of()` None (stopping) skips a round."""
    while True:
        await asyncio.sleep(retention.prune_every)
        total = 0
        more = True
        try:
            while more:
                store = store_of()
                if store is None:
                    break
                deleted, more = store.prune_events(retention.keep_per_device, retention.keep_days)
                total += deleted
                await asyncio.sleep(0)  # let DHCP in between two chunks
        except (sqlite3.Error, StoreError) as exc:
            log.warning("event retention: prune failed (%s); next try in %d s", exc, retention.prune_every)
            continue
        if total:
            log.info(
                "event retention: deleted %d events (keep %d per device, %d days)",
                total, retention.keep_per_device, retention.keep_days,
            )  # fmt: skip


__all__ = ["prune_forever", "prune_once"]
