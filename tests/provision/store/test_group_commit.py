"""The SQLite store's group commit (what `provision serve`'s DHCP server uses under load): a
transaction written by another thread while the loop buffers the next one, and a failed one
put back for the synchronous commit. On a real SQLite file, read back by another connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from provision.store.sqlite import GROUP_EVENTS_AT, Store
from pxe.dhcp.leases import Lease, LeaseState
from pxe.policy import Event


def lease(ip: str, mac: str) -> Lease:
    return Lease(ip=ip, mac=mac, state=LeaseState.BOUND, expires=2e9, subnet="198.18.0.0/24", updated=1.0)


def on_disk(db) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT ip, mac FROM leases ORDER BY ip").fetchall()
    finally:
        con.close()


def _run(write) -> None:
    """A transaction's remaining work on another thread, as the DHCP server's writer runs it."""
    t = threading.Thread(target=write)
    t.start()
    t.join(10)


def test_a_taken_batch_is_written_by_another_thread_while_the_next_one_gathers(tmp_path):
    asyncio.run(_taken_batch(tmp_path))  # on a running loop, as in the server


async def _taken_batch(tmp_path) -> None:
    db = tmp_path / "p.db"
    with Store(db, event_flush_interval=0) as store:  # events due at once: they ride along
        assert store.begin_commit() is None  # nothing buffered: no transaction
        before = store.lease_writes
        store.save_lease(lease("198.18.0.10", "52:54:00:00:00:01"))
        store.add_event(Event("dhcp.ack", mac="52:54:00:00:00:01", ip="198.18.0.10"))
        assert store.lease_writes == before + 1
        write = store.begin_commit()
        assert write is not None
        # The next burst's lease, buffered while the first transaction is in flight
        store.save_lease(lease("198.18.0.11", "52:54:00:00:00:02"))
        _run(write)
        assert on_disk(db) == [("198.18.0.10", "52:54:00:00:00:01")]
        con = sqlite3.connect(db)
        assert con.execute("SELECT kind, mac FROM events").fetchall() == [("dhcp.ack", "52:54:00:00:00:01")]
        con.close()
        write = store.begin_commit()
        assert write is not None
        _run(write)
    assert on_disk(db) == [("198.18.0.10", "52:54:00:00:00:01"), ("198.18.0.11", "52:54:00:00:00:02")]


def test_a_failed_batch_goes_back_in_front_of_newer_rows(tmp_path):
    asyncio.run(_failed_batch(tmp_path))


async def _failed_batch(tmp_path) -> None:
    db = tmp_path / "p.db"
    with Store(db) as store:
        store.save_lease(lease("198.18.0.10", "52:54:00:00:00:01"))
        write = store.begin_commit()
        assert write is not None
        store.save_lease(lease("198.18.0.10", "52:54:00:00:00:09"))  # newer row, same address
        store.save_lease(lease("198.18.0.12", "52:54:00:00:00:03"))
        store.abort_commit()  # as if `write` had raised (a full disk)
        store.commit()
        assert on_disk(db) == [("198.18.0.10", "52:54:00:00:00:09"), ("198.18.0.12", "52:54:00:00:00:03")]


def test_the_loop_never_waits_for_another_processes_write_lock(tmp_path):
    asyncio.run(_locked_elsewhere(tmp_path))


async def _locked_elsewhere(tmp_path) -> None:
    """begin_commit runs a transaction's statements on the loop thread only when the write lock
    is free at once. Held by another connection (a `provision` command writing), it returns at
    once and the writer thread waits for the lock, then writes the whole transaction."""
    db = tmp_path / "p.db"
    with Store(db) as store:
        other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held
        store.save_lease(lease("198.18.0.10", "52:54:00:00:00:01"))
        started = time.monotonic()
        write = store.begin_commit()
        assert write is not None
        assert time.monotonic() - started < 1.0  # not the 5 s busy timeout
        assert store._wdb is not None and not store._wdb.in_transaction  # nothing begun here
        done = threading.Event()

        def run() -> None:
            write()
            done.set()

        t = threading.Thread(target=run)
        t.start()
        assert not done.wait(0.3)  # the writer waits for the lock
        other.execute("COMMIT")
        t.join(10)
        assert done.is_set()
        other.close()
        assert on_disk(db) == [("198.18.0.10", "52:54:00:00:00:01")]
        # The lock free again: the next transaction's statements run on the loop and leave
        # the writer only the COMMIT; another connection sees nothing before it.
        store.save_lease(lease("198.18.0.11", "52:54:00:00:00:02"))
        write = store.begin_commit()
        assert write is not None
        assert store._wdb is not None and store._wdb.in_transaction  # begun on this thread
        assert on_disk(db) == [("198.18.0.10", "52:54:00:00:00:01")]
        _run(write)
    assert on_disk(db) == [("198.18.0.10", "52:54:00:00:00:01"), ("198.18.0.11", "52:54:00:00:00:02")]


def test_events_ride_along_only_when_due(tmp_path):
    asyncio.run(_events_when_due(tmp_path))


def _events_on_disk(db) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        con.close()


async def _events_when_due(tmp_path) -> None:
    """A burst's transaction holds its leases; buffered events join it half their flush
    interval after the last write of events, or once GROUP_EVENTS_AT wait. None is lost: the
    store's close writes what is left."""
    db = tmp_path / "p.db"
    with Store(db, event_flush_interval=2.0) as store:
        store.save_lease(lease("198.18.0.10", "52:54:00:00:00:01"))
        store.add_event(Event("dhcp.ack", mac="52:54:00:00:00:01", ip="198.18.0.10"))
        write = store.begin_commit()  # just opened: the events are not due
        assert write is not None
        _run(write)
        assert on_disk(db) == [("198.18.0.10", "52:54:00:00:00:01")] and _events_on_disk(db) == 0
        assert store.begin_commit() is None  # events alone, not due: no transaction
        await asyncio.sleep(1.05)  # past half the interval
        store.save_lease(lease("198.18.0.11", "52:54:00:00:00:02"))
        write = store.begin_commit()
        assert write is not None
        _run(write)
        assert _events_on_disk(db) == 1
        for n in range(GROUP_EVENTS_AT):  # a full batch is taken at once, due or not
            store.add_event(
                Event("dhcp.ack", mac=f"52:54:00:00:{n >> 8:02x}:{n & 255:02x}", ip="198.18.0.12")
            )
        write = store.begin_commit()
        assert write is not None
        _run(write)
        assert _events_on_disk(db) == 1 + GROUP_EVENTS_AT
        store.add_event(Event("dhcp.ack", mac="52:54:00:00:00:03", ip="198.18.0.13"))
    assert _events_on_disk(db) == 2 + GROUP_EVENTS_AT  # close() wrote the last one
