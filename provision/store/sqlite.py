"""The embedded state of provision: leases, devices and events in one SQLite file (stdlib only).

- Schema migrations from day one: `PRAGMA user_version` counts the entries of `MIGRATIONS` applied;
  new versions append to the list, never edit an applied one.
- WAL journal: readers (status views, another `provision` process) never block the server.
- Writes are buffered and committed in one transaction by `commit()`: the DHCP server calls it once
  per burst of packets, BEFORE its replies leave, so an ACK is never sent for a lease a crash could
  lose (`kill -9` included; with `synchronous=FULL`, the default, power loss too). Events added
  outside such a burst are committed on the next turn of the asyncio loop, or at once when no loop
  runs. One thread only: the server's loop (sqlite3 objects are not shared across threads).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import EXIT_ENV, ProvisionError
from provision.store.buffered import BufferedStore, seen_span
from provision.store.records import EnrolledRecord, Intent
from pxe.dhcp.leases import Lease, LeaseState
from pxe.policy import Event

log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE leases (
        ip TEXT PRIMARY KEY,
        mac TEXT NOT NULL,
        state TEXT NOT NULL,
        expires REAL NOT NULL,
        hostname TEXT,
        client_id BLOB,
        subnet TEXT NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX leases_mac ON leases(mac);
    CREATE TABLE devices (
        mac TEXT PRIMARY KEY,
        serial TEXT,
        platform TEXT,
        hostname TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        identity TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,  -- no AUTOINCREMENT: it writes sqlite_sequence on every insert
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        mac TEXT,
        ip TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_mac_ts ON events(mac, ts);
    CREATE INDEX events_kind_ts ON events(kind, ts);
    CREATE INDEX events_ts ON events(ts);
    """,
    # 2: intent (docs/lifecycle.md): devices enrolled by `provision devices enroll|import`, and each
    # known device's arming. Written at once (not buffered): another process (the CLI) writes them
    # while `provision serve` reads, and an arming must never be lost.
    """
    CREATE TABLE enrolled (
        name TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        enrolled_at REAL NOT NULL,
        enrolled_by TEXT NOT NULL
    );
    CREATE TABLE intents (
        name TEXT PRIMARY KEY,
        armed INTEGER NOT NULL DEFAULT 0,
        target TEXT,
        install_id TEXT,
        armed_at REAL,
        armed_by TEXT,
        outcome TEXT,
        outcome_at REAL,
        outcome_by TEXT,
        reason TEXT,
        updated REAL NOT NULL
    );
    """,
    # 3: status in a bounded number of queries (docs/lifecycle.md "status --json"): the last event of
    # each class per device, kept by a trigger, so a status view never reads a device's history.
    # The key is the MAC, or `name:<name>` for a lifecycle event without one; the class is the
    # kind, a failed installer report being its own class (it is what "last error" shows).
    # events_mac_id: one device's events by id (the /api/v1/events cursor) without a sort.
    """
    CREATE TABLE events_last (
        key TEXT NOT NULL,
        class TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (key, class)
    ) WITHOUT ROWID;
    CREATE TRIGGER events_last_insert AFTER INSERT ON events
    WHEN new.mac IS NOT NULL OR (new.kind LIKE 'device.%' AND json_valid(new.detail)
                                 AND json_extract(new.detail, '$.name') IS NOT NULL)
    BEGIN
        INSERT OR REPLACE INTO events_last (key, class, id) VALUES (
            coalesce(new.mac, 'name:' || json_extract(new.detail, '$.name')),
            CASE WHEN new.kind = 'installer.report' AND json_valid(new.detail)
                      AND lower(json_extract(new.detail, '$.status')) = 'failed'
                 THEN 'installer.report:failed' ELSE new.kind END,
            new.id);
    END;
    INSERT OR REPLACE INTO events_last (key, class, id)
        SELECT mac, CASE WHEN kind = 'installer.report' AND json_valid(detail)
                              AND lower(json_extract(detail, '$.status')) = 'failed'
                         THEN 'installer.report:failed' ELSE kind END, max(id)
        FROM events WHERE mac IS NOT NULL GROUP BY 1, 2;
    CREATE INDEX events_mac_id ON events(mac, id);
    """,
    # 4: rollouts (docs/rollout.md): one row per rollout (its resolved plan, state, an operator's
    # request) and one per device of it (wave, stage, the arming it is waiting on). Written at each
    # transition BEFORE acting, so `provision rollout resume` after a kill -9 knows what was done.
    # Read and written by provision.store.rollouts.RolloutStore.
    """
    CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        plan TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        created REAL NOT NULL,
        created_by TEXT NOT NULL,
        updated REAL NOT NULL,
        accepted_wave INTEGER NOT NULL DEFAULT -1,
        owner TEXT,
        heartbeat REAL
    );
    CREATE TABLE rollout_devices (
        rollout TEXT NOT NULL,
        name TEXT NOT NULL,
        wave INTEGER NOT NULL,
        position INTEGER NOT NULL,
        stage TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        install_id TEXT,
        armed_event INTEGER,
        driver_started REAL,
        version_before TEXT,
        note TEXT,
        error TEXT,
        since REAL NOT NULL,
        PRIMARY KEY (rollout, name)
    ) WITHOUT ROWID;
    CREATE INDEX rollout_devices_wave ON rollout_devices(rollout, wave, position);
    """,
    # 5: events_mac_ts goes. Every query by MAC orders by id, which events_mac_id (3) serves, and
    # each index is a b-tree written per event on the DHCP hot path: about 10 us a lease
    # (bench/dhcp.py, docs/netboot.md "Performance: the DHCP hot path").
    """
    DROP INDEX IF EXISTS events_mac_ts;
    """,
    # 6: leases_mac goes. No query reads leases by MAC (the lease engine loads the table once, by
    # address, and looks MACs up in memory; the full-disk check reads by address), and MACs are
    # random keys: each lease wrote a leaf page of its own, about 1.5 us a lease of the group
    # commit's CPU (docs/netboot.md "Performance: the DHCP hot path").
    """
    DROP INDEX IF EXISTS leases_mac;
    """,
)

VERSION_POLL_S = 0.1  # data_version under group commit: an arming is seen within this
PRUNE_CHUNK = 5000  # events deleted per statement, so a prune never holds the loop for long
GROUP_EVENTS_AT = 1024  # buffered events a group commit takes even before they are due
BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another process's write lock (SQLITE_BUSY after)


def _statements(script: str) -> list[str]:
    """A migration's statements: split at ';' where a statement is complete (a trigger's body
    holds semicolons of its own)."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending)
    return out


class StoreError(ProvisionError, RuntimeError):
    """The database is unusable (newer schema than this provision knows, not a database...).

    Exit 3: the state file is part of the environment. Still a RuntimeError, as it always was.
    """

    exit_code = EXIT_ENV


@dataclass(frozen=True)
class DeviceRecord:
    mac: str
    serial: str | None
    platform: str | None
    hostname: str | None
    first_seen: float
    last_seen: float
    identity: dict[str, Any]


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray):
        return obj.hex()
    return str(obj)


_encoder = json.JSONEncoder(default=_default, separators=(",", ":"), ensure_ascii=False)


def _c_encoder() -> Callable[[Any], str] | None:
    """The stdlib's C encoder built once, with the settings of `_encoder`: JSONEncoder.encode
    builds it again for every call, which is a third of encoding an event's detail (4.5 -> 2.8
    us; one per lease, on the group commit's writer). No circular check: a detail is a tree (a
    cycle raises RecursionError instead of ValueError). None where the interpreter has no C
    encoder or it answers otherwise than `_encoder` (then that is used)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    quote = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or quote is None:
        return None
    try:
        chunks = make(None, _default, quote, None, ":", ",", False, False, True)
        sample = {"a": [1, 2.5, None, True], "b": "é\n", "c": {"d": b"\x01"}, "e": float("nan")}
        if "".join(chunks(sample, 0)) != _encoder.encode(sample):
            return None
    except (TypeError, ValueError):  # another signature (a Python this was not written for)
        return None

    def encode(obj: Any) -> str:
        return "".join(chunks(obj, 0))

    return encode


_json: Callable[[Any], str] = _c_encoder() or _encoder.encode


ROWS_PER_STATEMENT = 64  # the most rows one INSERT of _insert_rows binds (64 x 8 < 999 variables)


@functools.cache
def _values_sql(head: str, width: int, rows: int, tail: str) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return f"{head} VALUES {','.join([one] * rows)}{tail}"


def _insert_rows(db: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]], tail: str = "") -> None:
    """`head VALUES (?..),(?..)... tail` for `rows`, many rows a statement: executemany steps
    one statement per row, about 1 us a row more (2.2 -> 1.3 us for an event row, 4.4 -> 3.5
    for a lease, in-memory). Chunks of 64, 32, ... 1 rows, so a table has at most 7 statement
    texts, all kept prepared in the connection's statement cache."""
    if not rows:
        return
    width = len(rows[0])
    size = ROWS_PER_STATEMENT
    done = 0
    while done < len(rows):
        while size > len(rows) - done:
            size //= 2
        chunk = rows[done : done + size]
        db.execute(_values_sql(head, width, size, tail), [value for row in chunk for value in row])
        done += size


def _write(db: sqlite3.Connection, leases: dict[str, Lease | None], events: list[Event]) -> None:
    """One transaction: the buffered leases (None: deleted) and events; rolled back on error."""
    db.execute("BEGIN")
    try:
        _statements_of(db, leases, events)
    except BaseException:
        _rollback(db)
        raise
    _commit(db)


def _statements_of(db: sqlite3.Connection, leases: dict[str, Lease | None], events: list[Event]) -> None:
    """A transaction's statements, in the transaction the caller began."""
    gone = [(ip,) for ip, lease in leases.items() if lease is None]
    if gone:
        db.executemany("DELETE FROM leases WHERE ip=?", gone)
    rows = [
        (le.ip, le.mac, le.state.value, le.expires, le.hostname, le.client_id, le.subnet, le.updated)
        for le in leases.values()
        if le is not None
    ]
    _insert_rows(db, "INSERT OR REPLACE INTO leases", rows)
    if events:
        _insert_rows(
            db, "INSERT INTO events (ts, kind, mac, ip, detail)",
            [(e.ts, e.kind, e.mac, e.ip, _json(e.detail if type(e.detail) is dict else dict(e.detail)))
             for e in events],
        )  # fmt: skip
        seen = seen_span(events)
        _insert_rows(
            db, "INSERT INTO devices (mac, first_seen, last_seen)",
            [(mac, first, last) for mac, (first, last) in seen.items()],
            " ON CONFLICT(mac) DO UPDATE SET last_seen=max(last_seen, excluded.last_seen)",
        )  # fmt: skip


def _commit(db: sqlite3.Connection) -> None:
    """COMMIT the open transaction, or roll it back and raise."""
    try:
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:  # (some errors, SQLITE_FULL among them, have rolled it back already)
        db.execute("ROLLBACK")


def _begun_here(db: sqlite3.Connection, leases: dict[str, Lease | None], events: list[Event]) -> bool:
    """Begin the group commit's transaction and run its statements on the calling (loop) thread,
    when the write lock is free at once: True, and only the COMMIT (the WAL write and its fsync)
    is left for the writer. False, with nothing begun, when another process holds the lock (a
    `provision` command writing) or a statement failed: the writer then runs the whole
    transaction and waits for the lock there, never the loop."""
    db.execute("PRAGMA busy_timeout=0")
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        return False
    finally:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        _statements_of(db, leases, events)
    except sqlite3.Error:
        _rollback(db)
        return False
    except BaseException:
        _rollback(db)
        raise
    return True


class Store(BufferedStore):
    """`Store(path)`; implements pxe.dhcp.LeaseStore and is an EventSink (`store(event)`)."""

    _log = log

    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", event_flush_interval: float = 0.25
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF"):
            raise ValueError("synchronous must be FULL, NORMAL or OFF")
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # After a checkpoint the WAL file is cut back to this: a burst leaves no giant file.
            self.db.execute("PRAGMA journal_size_limit=16777216")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        self._leases: dict[str, Lease | None] = {}  # ip -> lease to save, or None to delete
        self.lease_writes = 0  # save/delete calls so far: tells a caller whether a packet wrote one
        self._wdb: sqlite3.Connection | None = None  # the group-commit writer's (begin_commit)
        self._synchronous = synchronous.upper()
        self._events: list[Event] = []
        self._scheduled = False
        self._event_timer: asyncio.TimerHandle | None = None
        self._event_interval = event_flush_interval
        self._events_flushed = time.monotonic()
        self.counters = {"events_dropped": 0, "commit_failures": 0, "acks_on_durable": 0, "pruned": 0}
        self._warned: dict[str, float] = {}
        self._taken: tuple[dict[str, Lease | None], list[Event]] = ({}, [])
        self._version = 0
        self._version_read = float("-inf")

    # --- schema -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"schema version {version} is newer than this provision knows ({len(MIGRATIONS)}); upgrade provision"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={number}")
                self.db.execute("COMMIT")
            except Exception:
                self.db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    # --- writes (buffered: provision.store.buffered) --------------------------------------------
    @property
    def _where(self) -> str:
        return str(self.path)

    def _write_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def _grouping(self) -> bool:
        return self._wdb is not None  # (a group-committing server commits after every burst)

    def _commit(self, *, with_events: bool) -> None:
        if not self._leases and not (with_events and self._events):
            return
        leases, self._leases = self._leases, {}
        events = self._take_events() if with_events else []
        try:
            _write(self.db, leases, events)
        except BaseException as exc:
            # Put the rows back; the caller decides what to do. Leases are all kept; events up to
            # EVENTS_BUFFER_MAX, the oldest dropped first (counted, logged once a minute).
            self._leases = {**leases, **self._leases}
            self._events = events + self._events
            self._bound_events()
            self.counters["commit_failures"] += 1
            if isinstance(exc, sqlite3.Error) and not leases:
                # Only events were to be written: telemetry, never a reason to withhold a reply
                # (an OFFER writes no lease). They wait, bounded, for the next commit.
                self._warn(
                    "events", "%s: events not written (%s); %d waiting, %d dropped so far",
                    self.path, exc, len(self._events), self.counters["events_dropped"],
                )  # fmt: skip
                return
            if isinstance(exc, sqlite3.Error) and events:
                # Leases are state, events telemetry: try the leases alone (a disk too full for
                # a burst of events may still take a few lease rows in freed pages).
                self._events, held = [], self._events
                try:
                    self._commit(with_events=False)
                except sqlite3.Error:
                    pass
                else:
                    self._events = held + self._events
                    self._bound_events()
                    return
                self._events = held + self._events
            if isinstance(exc, sqlite3.Error) and self._leases and self._only_renewals():
                # The disk is full but every pending lease is a renewal of a binding the file
                # already holds for long enough: the ACK may go (docs/security.md "Full disk").
                self.counters["acks_on_durable"] += 1
                self._warn(
                    "renewals", "%s: cannot write (%s); answering renewals of leases already on disk "
                    "(%d pending); new leases wait for space", self.path, exc, len(self._leases),
                )  # fmt: skip
                return
            raise

    # --- group commit (the DHCP server's writer thread) ------------------------------------------
    def begin_commit(self) -> Callable[[], None] | None:
        """Take everything buffered (on the loop thread), begin its transaction on the writer's
        connection and run its statements here when SQLite's write lock is free at once, and
        return the function that finishes it (the COMMIT; or, when nothing could begin here, the
        whole transaction) for ONE other thread to run (pxe.dhcp.server's writer): the loop goes
        on during the fsync, and what it buffers meanwhile goes in the next transaction (group
        commit; a burst's ACKs still wait for theirs). None: nothing to write. When the function
        raises, call `abort_commit()` on the loop thread: the rows go back to the buffers, and
        `commit()` then applies its full-disk rules."""
        # Events are telemetry (BufferedStore.add_event): they ride along when due, not in every
        # burst's transaction. Their rows dirty pages all over three b-trees keyed by MAC (about
        # 10 KB of WAL a lease in 64-lease transactions); written a few hundred at a time they
        # share those pages, and the burst's COMMIT, which its ACKs wait for, stays small.
        # Due at half their interval, so that the store's own timer (the full interval, on the
        # loop) does not fire while the server commits anyway.
        due = (
            len(self._events) >= GROUP_EVENTS_AT
            or time.monotonic() - self._events_flushed >= self._event_interval / 2
        )
        if not self._leases and not (due and self._events):
            return None
        leases, self._leases = self._leases, {}
        events = self._take_events() if due else []
        self._taken = (leases, events)
        if self._wdb is None:
            self._wdb = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._wdb.execute(f"PRAGMA synchronous={self._synchronous}")
            self._wdb.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        wdb = self._wdb
        # The statements run here, on the loop, and the writer only commits: the writer then
        # needs the GIL once before its fsync rather than for every statement, so that fsync
        # overlaps the loop's next work (the burst's events) instead of waiting for the loop to
        # go idle (docs/netboot.md "Performance"). The CPU is the same on either thread.
        if _begun_here(wdb, leases, events):
            return functools.partial(_commit, wdb)
        return functools.partial(_write, wdb, leases, events)

    def abort_commit(self) -> None:
        """The writer's transaction failed: its rows back in front of what came since (the
        `commit()` that follows counts the failure if it fails too)."""
        if self._wdb is not None:  # a transaction begun here and never committed
            _rollback(self._wdb)
        leases, events = self._taken
        self._taken = ({}, [])
        self._leases = {**leases, **self._leases}
        self._events = events + self._events
        self._bound_events()

    def _only_renewals(self) -> bool:
        """Whether every pending lease write may wait: a delete (the row stays, which holds the
        address longer, never shorter), or the same binding (IP, MAC, state) as on disk with a
        stored expiry that covers the client until its next renewal (T1, half the new lease,
        RFC 2131 §4.4.5): after a crash, the file still protects the address until the client
        asks again."""
        now = time.time()
        for ip, lease in self._leases.items():
            if lease is None:
                continue
            row = self.db.execute("SELECT mac, state, expires FROM leases WHERE ip=?", (ip,)).fetchone()
            if row is None or row[0] != lease.mac or row[1] != lease.state.value:
                return False
            if row[2] < now + (lease.expires - now) / 2:
                return False
        return True

    def upsert_device(
        self,
        mac: str,
        *,
        serial: str | None = None,
        platform: str | None = None,
        hostname: str | None = None,
        identity: dict[str, Any] | None = None,
    ) -> None:
        """Record what we learnt of a device; fields left None keep their stored value."""
        now = time.time()
        self.flush()
        self.db.execute(
            "INSERT INTO devices (mac, serial, platform, hostname, first_seen, last_seen, identity) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT(mac) DO UPDATE SET "
            "serial=coalesce(excluded.serial, serial), platform=coalesce(excluded.platform, platform), "
            "hostname=coalesce(excluded.hostname, hostname), last_seen=excluded.last_seen, "
            "identity=CASE WHEN ? IS NULL THEN identity ELSE excluded.identity END",
            (
                mac,
                serial,
                platform,
                hostname,
                now,
                now,
                _json(identity or {}),
                None if identity is None else 1,
            ),
        )

    # --- intent (written at once) --------------------------------------------------------------
    @property
    def data_version(self) -> int:
        """Changes when ANOTHER connection commits (SQLite's PRAGMA data_version): how a running
        server notices that `provision devices arm` wrote an intent, without polling tables.
        Under group commit (begin_commit) the writer's own transactions change it too, and the
        lifecycle asks per packet: then it is read at most every VERSION_POLL_S."""
        if self._wdb is not None:
            now = time.monotonic()
            if now - self._version_read < VERSION_POLL_S:
                return self._version
            self._version_read = now
        self._version = int(self.db.execute("PRAGMA data_version").fetchone()[0])
        return self._version

    def _write_now(self, sql: str, args: Sequence[object]) -> int:
        self.flush()
        cur = self.db.execute(sql, args)
        return cur.rowcount

    def enroll(self, name: str, doc: dict[str, Any], by: str) -> None:
        self._write_now(
            "INSERT INTO enrolled (name, doc, enrolled_at, enrolled_by) VALUES (?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET doc=excluded.doc",
            (name, _json(doc), time.time(), by),
        )

    def unenroll(self, name: str) -> bool:
        gone = self._write_now("DELETE FROM enrolled WHERE name=?", (name,))
        self._write_now("DELETE FROM intents WHERE name=?", (name,))
        return gone > 0

    def enrolled(self) -> list[EnrolledRecord]:
        rows = self.db.execute("SELECT name, doc, enrolled_at, enrolled_by FROM enrolled ORDER BY name")
        return [EnrolledRecord(n, json.loads(d), at, by) for n, d, at, by in rows]

    def arm(self, name: str, target: str | None, install_id: str, by: str) -> None:
        now = time.time()
        self._write_now(
            "INSERT INTO intents (name, armed, target, install_id, armed_at, armed_by, updated) "
            "VALUES (?,1,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET armed=1, target=excluded.target, "
            "install_id=excluded.install_id, armed_at=excluded.armed_at, armed_by=excluded.armed_by, "
            "outcome=NULL, outcome_at=NULL, outcome_by=NULL, reason=NULL, updated=excluded.updated",
            (name, target, install_id, now, by, now),
        )

    def end_arming(
        self, name: str, outcome: str, by: str, reason: str | None = None, install_id: str | None = None
    ) -> bool:
        """Disarm with why (installed | failed | disarmed). With `install_id`, only that arming:
        a late report of an older install never ends a newer arming. False when nothing changed."""
        now = time.time()
        sql = (
            "INSERT INTO intents (name, armed, outcome, outcome_at, outcome_by, reason, updated) "
            "VALUES (?,0,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET armed=0, outcome=excluded.outcome, "
            "outcome_at=excluded.outcome_at, outcome_by=excluded.outcome_by, reason=excluded.reason, "
            "updated=excluded.updated"
        )
        args: list[object] = [name, outcome, now, by, reason, now]
        if install_id is not None:
            sql += " WHERE intents.install_id IS ? AND intents.armed=1"
            args.append(install_id)
        return self._write_now(sql, args) > 0

    def intents(self) -> dict[str, Intent]:
        rows = self.db.execute(
            "SELECT name, armed, target, install_id, armed_at, armed_by, outcome, outcome_at, "
            "outcome_by, reason, updated FROM intents"
        )
        return {r[0]: Intent(r[0], bool(r[1]), *r[2:]) for r in rows}

    # --- reads --------------------------------------------------------------------------------
    def leases(self) -> list[Lease]:
        self.flush()
        rows = self.db.execute(
            "SELECT ip, mac, state, expires, hostname, client_id, subnet, updated FROM leases ORDER BY ip"
        )
        return [
            Lease(
                ip=ip,
                mac=mac,
                state=LeaseState(state),
                expires=exp,
                subnet=sub,
                hostname=host,
                client_id=cid,
                updated=upd,
            )
            for ip, mac, state, exp, host, cid, sub, upd in rows
        ]

    def devices(self) -> list[DeviceRecord]:
        self.flush()
        rows = self.db.execute(
            "SELECT mac, serial, platform, hostname, first_seen, last_seen, identity FROM devices ORDER BY mac"
        )
        return [DeviceRecord(m, s, p, h, f, la, json.loads(i or "{}")) for m, s, p, h, f, la, i in rows]

    def events(
        self,
        mac: str | None = None,
        kinds: Sequence[str] | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events oldest first; with `limit`, the most recent `limit` of them."""
        self.flush()
        where: list[str] = []
        args: list[object] = []
        if mac is not None:
            where.append("mac=?")
            args.append(mac)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        if since is not None:
            where.append("ts>=?")
            args.append(since)
        sql = "SELECT ts, kind, mac, ip, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = list(self.db.execute(sql, args))
        rows.reverse()
        return [Event(kind=k, mac=m, ip=ip, detail=json.loads(d), ts=ts) for ts, k, m, ip, d in rows]

    def last_event_per_device(self) -> dict[str, Event]:
        self.flush()
        rows = self.db.execute(
            "SELECT e.ts, e.kind, e.mac, e.ip, e.detail FROM events e "
            "JOIN (SELECT mac, max(id) AS id FROM events WHERE mac IS NOT NULL GROUP BY mac) last "
            "ON e.id = last.id ORDER BY e.mac"
        )
        return {m: Event(kind=k, mac=m, ip=ip, detail=json.loads(d), ts=ts) for ts, k, m, ip, d in rows}

    def last_events(self, keys: Iterable[str] | None = None) -> dict[str, list[Event]]:
        """{device key: the last event of each class} (migration 3), for `keys` or every device.
        A key is a MAC, or `name:<name>` for lifecycle events without one. A bounded read: one
        row per device and class, however long a device's history is."""
        self.flush()
        sql = (
            "SELECT l.key, e.id, e.ts, e.kind, e.mac, e.ip, e.detail FROM events_last l "
            "JOIN events e ON e.id = l.id"
        )
        chunks: list[list[str]] = [[]] if keys is None else []
        if keys is not None:
            wanted = sorted(set(keys))
            chunks = [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
        found: dict[str, list[Event]] = {}
        for chunk in chunks:
            where, args = (
                ("", []) if keys is None else (f" WHERE l.key IN ({','.join('?' * len(chunk))})", chunk)
            )
            for key, _id, ts, kind, mac, ip, detail in self.db.execute(sql + where + " ORDER BY e.id", args):
                found.setdefault(key, []).append(
                    Event(kind=kind, mac=mac, ip=ip, detail=json.loads(detail), ts=ts)
                )
        return found

    def event_page(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        mac: str | None = None,
        kinds: Sequence[str] | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[tuple[int, Event]]:
        """(id, event) pairs, oldest first: with `after`, the first `limit` events after that id
        (follow a log); otherwise the last `limit` before `before` (or the newest)."""
        self.flush()
        where: list[str] = []
        args: list[object] = []
        for clause, value in (("mac=?", mac), ("ts>=?", since), ("id>?", after), ("id<?", before)):
            if value is not None:
                where.append(clause)
                args.append(value)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        sql = "SELECT id, ts, kind, mac, ip, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id {'ASC' if after is not None else 'DESC'} LIMIT ?"
        args.append(int(limit))
        rows = list(self.db.execute(sql, args))
        if after is None:
            rows.reverse()
        return [(i, Event(kind=k, mac=m, ip=ip, detail=json.loads(d), ts=ts)) for i, ts, k, m, ip, d in rows]

    # --- retention ------------------------------------------------------------------------------
    def prune_events(
        self, keep_per_device: int, keep_days: float, chunk: int = PRUNE_CHUNK
    ) -> tuple[int, bool]:
        """Delete events older than `keep_days`, and beyond the newest `keep_per_device` of each
        MAC (events without a MAC count as one device). At most about `chunk` rows per call:
        returns (deleted, more to do), so the caller yields to the loop between calls. The last
        event of each class of a device (status's `events_last`, when that table exists) stays."""
        self.flush()
        keep_last = ""
        has_last = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='events_last'"
        ).fetchone()
        if has_last:
            keep_last = " AND id NOT IN (SELECT id FROM events_last)"
        cutoff = time.time() - keep_days * 86400
        deleted = self.db.execute(
            f"DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < ?{keep_last} LIMIT ?)",
            (cutoff, chunk),
        ).rowcount
        if deleted < chunk:
            over = self.db.execute(
                "SELECT mac FROM events GROUP BY mac HAVING count(*) > ? LIMIT 100", (keep_per_device,)
            ).fetchall()
            for (mac,) in over:
                row = self.db.execute(
                    "SELECT id FROM events WHERE mac IS ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (mac, keep_per_device),
                ).fetchone()
                if row is None:
                    continue
                deleted += self.db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE mac IS ? AND id <= ?"
                    f"{keep_last} LIMIT ?)",
                    (mac, row[0], chunk - deleted),
                ).rowcount
                if deleted >= chunk:
                    break
        self.counters["pruned"] += deleted
        return deleted, deleted >= chunk

    def close(self) -> None:
        if self._event_timer is not None:
            self._event_timer.cancel()
            self._event_timer = None
        try:
            self.flush()
        finally:
            if self._wdb is not None:
                self._wdb.close()
            self.db.close()
