"""The SQLite store's group commit (what `provision serve`'s DHCP server uses under load): a
transaction written by another thread while the loop buffers the next one, and a failed one
put back for the synchronous commit. On a real SQLite file, read back by another connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from provision.store.sqlite import Store
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


def test_a_taken_batch_is_written_by_another_thread_while_the_next_one_gathers(tmp_path):
    asyncio.run(_taken_batch(tmp_path))  # on a running loop, as in the server


async def _taken_batch(tmp_path) -> None:
    db = tmp_path / "p.db"
    with Store(db) as store:
        assert store.begin_commit() is None  # nothing buffered: no transaction
        before = store.lease_writes
        store.save_lease(lease("198.18.0.10", "52:54:00:00:00:01"))
        store.add_event(Event("dhcp.ack", mac="52:54:00:00:00:01", ip="198.18.0.10"))
        assert store.lease_writes == before + 1
        write = store.begin_commit()
        assert write is not None
        # The next burst's lease, buffered while the first transaction is in flight
        store.save_lease(lease("198.18.0.11", "52:54:00:00:00:02"))
        t = threading.Thread(target=write)
        t.start()
        t.join(10)
        assert on_disk(db) == [("198.18.0.10", "52:54:00:00:00:01")]
        con = sqlite3.connect(db)
        assert con.execute("SELECT kind, mac FROM events").fetchall() == [("dhcp.ack", "52:54:00:00:00:01")]
        con.close()
        write = store.begin_commit()
        assert write is not None
        t = threading.Thread(target=write)
        t.start()
        t.join(10)
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
