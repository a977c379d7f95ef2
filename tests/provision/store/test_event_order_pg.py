"""Readers tail the events table by id (GET /api/v1/stream, GET /api/v1/events?after=ID): they
must never skip an id another server commits late. Several PgStores ("servers") write events at
once; a reader follows `event_page(after=cursor)` as the stream does (docs/scale-out.md, "Event
ids")."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from provision.store.postgres import PgStore
from pxe.policy import Event

pytestmark = pytest.mark.postgres

# Widens the race window deterministically: the slow writer's transaction stays open ~10 ms after
# its INSERT took its ids (the statement trigger runs inside the INSERT, before COMMIT), so the
# fast writer commits higher ids meanwhile. Without ordered ids the reader sees those, moves its
# cursor past the slow batch and never sees it. A test-only trigger in the test's own database.
HOLD_OPEN = """
CREATE FUNCTION test_hold_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE kind = 'test.slow') THEN
        PERFORM pg_sleep(0.01);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER test_hold_open AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION test_hold_open();
"""
SLOW_BATCHES, SLOW_SIZE, FAST_SIZE = 150, 20, 10  # 3,000 events from the slow writer alone


def test_a_reader_following_ids_sees_every_event_of_concurrent_servers(pg_url):
    slow, fast, reader = PgStore(pg_url), PgStore(pg_url), PgStore(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(HOLD_OPEN.encode())
    done = threading.Event()
    failed: list[BaseException] = []

    def write(store: PgStore, kind: str, size: int, batches: int | None) -> None:
        try:
            n = 0
            while (batches is None and not done.is_set()) or (batches is not None and n < batches):
                store._events.extend(Event(kind, None, None, {"n": n, "i": i}) for i in range(size))
                store.flush()
                n += 1
        except BaseException as exc:
            failed.append(exc)
        finally:
            if batches is not None:
                done.set()

    seen: list[int] = []
    cursor = 0

    def follow() -> None:
        nonlocal cursor
        page = reader.event_page(after=cursor, limit=1000)
        seen.extend(i for i, _e in page)
        if page:
            cursor = max(cursor, max(i for i, _e in page))

    threads = [
        threading.Thread(target=write, args=(slow, "test.slow", SLOW_SIZE, SLOW_BATCHES)),
        threading.Thread(target=write, args=(fast, "test.fast", FAST_SIZE, None)),
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        while not done.is_set():
            follow()
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
    follow()  # what committed since the last page
    follow()
    elapsed = time.monotonic() - started
    assert not failed, failed
    with psycopg.connect(pg_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")]
        kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    for store in (slow, fast, reader):
        store.close()
    # both wrote, interleaved (the fast writer's batches went in while the slow one ran)
    assert kinds["test.slow"] == SLOW_BATCHES * SLOW_SIZE, kinds
    assert kinds["test.fast"] >= 10 * FAST_SIZE, (kinds, elapsed)
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    missed = sorted(set(ids) - set(seen))
    assert not missed, f"the reader skipped {len(missed)} of {len(ids)} events, e.g. ids {missed[:10]}"
