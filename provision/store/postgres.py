"""The shared state of provision in PostgreSQL: what provision.store.sqlite keeps, for several servers.

Why psycopg 3 and not asyncpg: one driver with both a blocking and an asyncio API (the store is
called from the DHCP burst handler, which must not await, and from CLI commands that have no
loop), pipeline mode (a burst's lease rows, events and device rows reach the server in one round
trip), COPY, libpq's own connection strings (`postgresql:///db?host=/run/postgresql`, .pgpass,
service files), maintained by the psycopg2 project, and packaged by Debian (python3-psycopg).
asyncpg is asyncio-only and speaks its own protocol implementation. docs/scale-out.md.

- Migrations: `MIGRATIONS`, counted in `schema_version`, applied in one transaction under an
  advisory lock, so two servers starting at once never race (the second waits, then finds the
  schema current). Append new versions, never edit an applied one.
- Leases: `claim(lease)` makes an address this MAC's in one conditional upsert, committed before
  the ACK; a row held by another MAC (live, not released) is left alone and returned, so two
  servers allocating from one pool never hand out the same address (pxe.dhcp.leases calls it).
  `recall(subnet, mac)` reads a binding another server made (a client of a server that died).
- Events: buffered, written by `commit()`/`flush()` in one INSERT … SELECT FROM unnest(…) per burst.
- Intent: written at once; `data_version` is a counter row bumped by a trigger on `enrolled` and
  `intents` (any server, any CLI), read at most every `version_poll` seconds: the lifecycle's
  refresh() asks it per packet, and a cached integer is as cheap as SQLite's PRAGMA.
- One thread per PgStore (psycopg connections are thread-safe, but the buffers are not).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from provision.store.buffered import BufferedStore, seen_span
from provision.store.location import redact
from provision.store.records import EnrolledRecord, Intent
from provision.store.sqlite import PRUNE_CHUNK, DeviceRecord, StoreError, _json
from pxe.dhcp.leases import Lease, LeaseState, LeaseStoreError
from pxe.policy import Event

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
RETRY_S = 1.0  # after a failed connection attempt, the next one waits this long


class StoreUnavailable(StoreError, LeaseStoreError):
    """The database does not answer (stopped, unreachable): a packet needing it is dropped and
    counted by the DHCP server (pxe.dhcp.leases.LeaseStoreError), the client retries."""


def _pg() -> ModuleType:
    """psycopg, imported on first use: a SQLite user's commands never pay for it."""
    import psycopg  # optional heavy dependency: psycopg (PostgreSQL only; 0.25-0.38 s to import here)

    return psycopg


_instances = itertools.count(1)  # a store's own rows: owner host:pid:n
MIGRATION_LOCK = 0x70726F76  # pg_advisory_xact_lock key while migrating ('prov')
# pg_advisory_xact_lock key taken right before every INSERT INTO events ('evid'): ids are
# allocated and committed in one order across servers, so a reader following ids skips none
# (PgStore._write; docs/scale-out.md, "Event ids")
EVENT_ORDER_LOCK = 0x65766964

MIGRATIONS: tuple[str, ...] = (
    # 1: the SQLite store's migrations 1-3 in one (leases, devices, events, intent, events_last),
    # plus the owner of a lease row (which server wrote it) and the intent version counter.
    """
    CREATE SEQUENCE lease_seq;
    CREATE TABLE leases (
        ip text PRIMARY KEY,  -- one row per address: the constraint that makes claims exclusive
        mac text NOT NULL,
        state text NOT NULL,
        expires double precision NOT NULL,
        hostname text,
        client_id bytea,
        subnet text NOT NULL,
        updated double precision NOT NULL,
        owner text,  -- the server that wrote the row (host:pid:n)
        seq bigint NOT NULL DEFAULT nextval('lease_seq')  -- change order, for claim's catch-up
    );
    CREATE INDEX leases_subnet_mac ON leases (subnet, mac);
    CREATE INDEX leases_seq ON leases (seq);
    CREATE TABLE devices (
        mac text PRIMARY KEY,
        serial text,
        platform text,
        hostname text,
        first_seen double precision NOT NULL,
        last_seen double precision NOT NULL,
        identity jsonb NOT NULL DEFAULT '{}'
    );
    CREATE TABLE events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts double precision NOT NULL,
        kind text NOT NULL,
        mac text,
        ip text,
        detail jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_mac_ts ON events (mac, ts);
    CREATE INDEX events_kind_ts ON events (kind, ts);
    CREATE INDEX events_ts ON events (ts);
    CREATE INDEX events_mac_id ON events (mac, id);
    CREATE TABLE enrolled (
        name text PRIMARY KEY,
        doc jsonb NOT NULL,
        enrolled_at double precision NOT NULL,
        enrolled_by text NOT NULL
    );
    CREATE TABLE intents (
        name text PRIMARY KEY,
        armed boolean NOT NULL DEFAULT false,
        target text,
        install_id text,
        armed_at double precision,
        armed_by text,
        outcome text,
        outcome_at double precision,
        outcome_by text,
        reason text,
        updated double precision NOT NULL
    );
    -- status in a bounded number of queries: the last event of each class per device
    -- (provision.store.sqlite migration 3); a statement trigger, once per batch of events
    CREATE TABLE events_last (
        key text NOT NULL,
        class text NOT NULL,
        id bigint NOT NULL,
        PRIMARY KEY (key, class)
    );
    CREATE FUNCTION events_last_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO events_last (key, class, id)
        SELECT coalesce(n.mac, 'name:' || (n.detail ->> 'name')),
               CASE WHEN n.kind = 'installer.report' AND lower(n.detail ->> 'status') = 'failed'
                    THEN 'installer.report:failed' ELSE n.kind END,
               max(n.id)
        FROM new_rows n
        WHERE n.mac IS NOT NULL
           OR (n.kind LIKE 'device.%' AND jsonb_typeof(n.detail) = 'object'
               AND n.detail ->> 'name' IS NOT NULL)
        GROUP BY 1, 2
        ORDER BY 1, 2  -- one lock order for every server: no deadlock between two batches
        ON CONFLICT (key, class) DO UPDATE SET id = greatest(events_last.id, excluded.id);
        RETURN NULL;
    END $$;
    CREATE TRIGGER events_last_insert AFTER INSERT ON events
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION events_last_keep();
    -- intent changed (any server, any CLI): what data_version reads
    CREATE TABLE state_version (id int PRIMARY KEY CHECK (id = 1), v bigint NOT NULL);
    INSERT INTO state_version VALUES (1, 0);
    CREATE FUNCTION state_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE state_version SET v = v + 1 WHERE id = 1;
        RETURN NULL;
    END $$;
    CREATE TRIGGER enrolled_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON enrolled
        FOR EACH STATEMENT EXECUTE FUNCTION state_version_bump();
    CREATE TRIGGER intents_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON intents
        FOR EACH STATEMENT EXECUTE FUNCTION state_version_bump();
    """,
    # 2: rollouts (docs/rollout.md), as the SQLite store's migration 4; provision.store.rollouts_pg
    """
    CREATE TABLE rollouts (
        id text PRIMARY KEY,
        name text NOT NULL,
        plan text NOT NULL,
        state text NOT NULL,
        reason text,
        created double precision NOT NULL,
        created_by text NOT NULL,
        updated double precision NOT NULL,
        accepted_wave integer NOT NULL DEFAULT -1,
        owner text,
        heartbeat double precision
    );
    CREATE TABLE rollout_devices (
        rollout text NOT NULL,
        name text NOT NULL,
        wave integer NOT NULL,
        position integer NOT NULL,
        stage text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        install_id text,
        armed_event bigint,
        driver_started double precision,
        version_before text,
        note text,
        error text,
        since double precision NOT NULL,
        PRIMARY KEY (rollout, name)
    );
    CREATE INDEX rollout_devices_wave ON rollout_devices (rollout, wave, position);
    CREATE INDEX events_armed_install ON events ((detail ->> 'install_id')) WHERE kind = 'device.armed';
    """,
    # 3: one row per server process, written by every commit that makes its claims durable (see
    # PgStore.claim): which servers share the database and when each last committed.
    """
    CREATE TABLE servers (
        owner text PRIMARY KEY,
        seen double precision NOT NULL
    );
    """,
    # 4: events_mac_ts goes, as in the SQLite store's migration 5: every query by MAC orders by
    # id (events_mac_id), and each index is a b-tree written per event on the DHCP hot path.
    """
    DROP INDEX IF EXISTS events_mac_ts;
    """,
)

# One row per lease in one statement. The WHERE of the conflict arm is the whole race guard: an
# address already in the table changes hands only when it is this MAC's (and not quarantined),
# released, or past its expiry; otherwise nothing is written and RETURNING is empty.
_UPSERT_FROM = """
    INSERT INTO leases AS l (ip, mac, state, expires, hostname, client_id, subnet, updated, owner)
    {source}
    ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, state = excluded.state,
        expires = excluded.expires, hostname = excluded.hostname, client_id = excluded.client_id,
        subnet = excluded.subnet, updated = excluded.updated, owner = excluded.owner,
        seq = nextval('lease_seq')
    WHERE (l.mac = excluded.mac AND (l.state <> 'declined' OR excluded.state = 'declined'))
       OR l.state = 'released' OR l.expires <= excluded.updated
    RETURNING ip
"""
_CLAIM = _UPSERT_FROM.format(source="VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")
# The arrays go in binary (%b): psycopg's text form escapes every element with a regular
# expression, 3 ms for a burst's 64 leases and their events here, against 0.07 ms in binary.
_SAVE_MANY = _UPSERT_FROM.format(
    source="SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::text[], "
    "%b::bytea[], %b::text[], %b::float8[], %b::text[])"
)
_LEASE_COLS = "ip, mac, state, expires, hostname, client_id, subnet, updated"


def _text(value: str | None) -> str | None:
    """PostgreSQL text holds no NUL; a DHCP hostname or an ONIE field from the wire may."""
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def _jsonb(value: Any) -> str:
    # jsonb refuses \u0000 (SQLite's TEXT took it): a NUL in a string becomes U+FFFD
    return _json(value).replace("\\u0000", "\\ufffd")


def _lease(row: Sequence[Any]) -> Lease:
    ip, mac, state, exp, host, cid, sub, upd = row
    return Lease(
        ip=ip, mac=mac, state=LeaseState(state), expires=exp, subnet=sub, hostname=host,
        client_id=bytes(cid) if cid is not None else None, updated=upd,
    )  # fmt: skip


class PgStore(BufferedStore):
    """`PgStore(url)`; the same methods as provision.store.sqlite.Store (provision.store.base),
    plus `claim` and `recall` for shared lease allocation (pxe.dhcp.leases)."""

    _log = log

    def __init__(
        self,
        url: str,
        *,
        event_flush_interval: float = 0.25,
        version_poll: float = 0.5,
        connect_timeout: int = 10,
        recall_fresh: float = 0.1,
    ) -> None:
        self.url = url
        self.path = url  # what api.py compares to find its reader's connection
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{next(_instances)}"
        self._connect_timeout = connect_timeout
        self._down_until = float("-inf")  # no new connection tried before (a failed one: RETRY_S)
        self._down_why = ""
        try:
            self._db = self._connect()
            self._migrate()
        except _pg().Error as exc:
            raise StoreError(f"{redact(url)}: {exc}".strip()) from exc
        self._leases: dict[str, Lease | None] = {}
        self._known: dict[str, str] = {}  # ip -> MAC of the rows this server wrote or read
        self._claimed: Lease | None = None  # written by claim(): its save_lease is a no-op
        self._claim_db: psycopg.Connection[Any] | None = None  # made at the first claim
        self._pending: list[Lease] = []  # claims committed asynchronously since the last durable commit
        self._suspect = False  # a connection was lost since: those claims are checked at the commit
        self.lease_writes = 0  # saves, deletes and claims: pxe.dhcp.server holds the ACKs that made one
        self._wconn: psycopg.Connection[Any] | None = None  # the group-commit writer thread's
        self._grouped = False  # begin_commit was called: the DHCP server commits every burst
        self._taken: tuple[dict[str, Lease | None], list[Event], list[Lease], bool, bool] = (
            {},
            [],
            [],
            False,
            False,
        )
        self._seq = 0  # lease rows up to this change number are known (leases(), claim())
        # Other servers' bindings by (subnet, MAC), for recall(exact=False): one catch-up query
        # per `recall_fresh` seconds answers every DISCOVER of a boot storm (docs/scale-out.md)
        self._others: dict[tuple[str, str], Lease] = {}
        self._others_at: dict[str, tuple[str, str]] = {}  # ip -> its key in _others
        self._caught_up = float("-inf")
        self._seq_lag = 0  # the catch-up reads again from here: a row whose transaction got its
        # seq before a higher one became visible (committed later) is still read, one round on
        self._recall_fresh = recall_fresh
        self._events: list[Event] = []
        self._scheduled = False
        self._event_timer: asyncio.TimerHandle | None = None
        self._event_interval = event_flush_interval
        self._events_flushed = time.monotonic()
        self._version_poll = version_poll
        self._version = 0
        self._version_read = float("-inf")
        self.counters = {
            "events_dropped": 0, "commit_failures": 0, "acks_on_durable": 0, "pruned": 0,
            "claims": 0, "claims_lost": 0, "recalled": 0, "lease_writes_refused": 0,
        }  # fmt: skip
        self._warned: dict[str, float] = {}

    # --- connection ------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        """A new connection; after a failed attempt, none is tried for RETRY_S: while the
        database is down every packet asks, and each attempt would hold the loop (up to
        `connect_timeout` when the host does not answer)."""
        now = time.monotonic()
        if now < self._down_until:
            raise StoreUnavailable(f"{redact(self.url)}: unreachable ({self._down_why}); trying again")
        try:
            conn: psycopg.Connection[Any] = _pg().connect(
                self.url,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                application_name=f"provision {os.getpid()}",
            )
        except _pg().Error as exc:
            self._down_until = time.monotonic() + RETRY_S
            self._down_why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise
        self._down_until = float("-inf")
        return conn

    @property
    def claims_db(self) -> psycopg.Connection[Any]:
        """The claims' own connection: commits there do not wait for the WAL flush
        (synchronous_commit off), so a claim is visible to every server at once, holds no lock
        past its statement, and costs no fsync; commit() makes them durable together."""
        conn = self._claim_db
        if conn is None or conn.closed or conn.broken:
            self._suspect = self._suspect or (conn is not None and bool(self._pending))
            conn = self._claim_db = self._connect()
            conn.execute("SET synchronous_commit = off")
        return conn

    @property
    def db(self) -> psycopg.Connection[Any]:
        """The connection, made again after the server restarted or the link broke (the failing
        statement raised; the next one reconnects)."""
        if self._db.closed or self._db.broken:
            self._suspect = self._suspect or bool(self._pending)
            self._db = self._connect()
        return self._db

    @property
    def _unflushed(self) -> int:
        return len(self._pending)

    @property
    def _where(self) -> str:
        return redact(self.url)

    def _write_errors(self) -> tuple[type[BaseException], ...]:
        return (_pg().Error, StoreError)

    def _grouping(self) -> bool:
        return self._grouped

    # --- schema ----------------------------------------------------------------------------------
    def _migrate(self) -> None:
        db = self._db
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            row = db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{redact(self.url)}: schema version {version} is newer than this provision knows "
                    f"({len(MIGRATIONS)}); upgrade provision"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                db.execute(script.encode())  # no parameters: several statements in one go
                db.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))

    @property
    def schema_version(self) -> int:
        row = self.db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    # --- leases shared between servers -----------------------------------------------------------
    def claim(self, lease: Lease) -> list[Lease]:
        """Make `lease.ip` this MAC's: [] when done. Else nothing was written, and the lease
        holding the address (another MAC's, live) comes first, then every row other servers
        wrote since our last look: one lost claim teaches the engine all of them, instead of one
        NAK per address the other servers took.

        Durable before the ACK, batched: the claim commits at once but asynchronously (its own
        connection), and the DHCP server's commit() at the end of the burst runs one synchronous
        transaction; PostgreSQL's WAL is flushed in order, so that one flush covers every claim
        committed before it, and the replies leave only after it. A claim per ACK with a flush
        each measured 181-219 leases/s on this machine (docs/scale-out.md).

        If the database restarted or failed over since (a lost connection), an asynchronously
        committed claim may be gone: commit() then writes the burst's claims again, under the same
        condition, and withholds the replies if one of them now belongs to someone else."""
        self.counters["claims"] += 1
        try:
            return self._claim_once(lease)
        except StoreError:
            if self._claim_db is None or not self._claim_db.broken:
                raise
            return self._claim_once(lease)  # a restarted or failed-over database: once more

    def _claim_once(self, lease: Lease) -> list[Lease]:
        try:
            db = self.claims_db
            row = db.execute(
                _CLAIM,
                (lease.ip, lease.mac, lease.state.value, lease.expires, _text(lease.hostname),
                 lease.client_id, lease.subnet, lease.updated, self.owner),
                prepare=True,
            ).fetchone()  # fmt: skip
            if row is not None:
                self._known[lease.ip] = lease.mac
                self._claimed = lease
                self._pending.append(lease)
                self.lease_writes += 1
                return []
            held = db.execute(
                f"SELECT {_LEASE_COLS} FROM leases WHERE ip = %s", (lease.ip,), prepare=True
            ).fetchone()
            if held is None:  # deleted between the two statements: try once more
                return self._claim_once(lease)
            news = db.execute(
                f"SELECT {_LEASE_COLS}, seq FROM leases WHERE seq > %s AND owner IS DISTINCT FROM %s "
                "ORDER BY seq",
                (self._seq, self.owner),
            ).fetchall()
        except _pg().Error as exc:
            raise StoreUnavailable(f"{redact(self.url)}: lease claim failed: {exc}") from exc
        self.counters["claims_lost"] += 1
        if news:
            self._seq = max(self._seq, int(news[-1][-1]))
        learn = [_lease(held)] + [_lease(r[:-1]) for r in news if r[0] != held[0]]
        for le in learn:
            self._known[le.ip] = le.mac
        for le in learn[1:]:
            self._learn(le)
        return learn

    def recall(self, subnet: str, mac: str, *, exact: bool = True) -> Lease | None:
        """This MAC's binding on `subnet` in the shared table (another server may have made it).
        `exact=False` (a DISCOVER): from the other servers' rows read at most `recall_fresh`
        seconds ago, one query for a whole burst instead of one per client; the claim at the
        REQUEST still decides, so a stale answer costs at most a new address, never a duplicate."""
        if not exact:
            now = time.monotonic()
            if now - self._caught_up >= self._recall_fresh:
                self._catch_up()
                self._caught_up = now
            found = self._others.get((subnet, mac))
            if found is not None:
                self.counters["recalled"] += 1
                self._known[found.ip] = found.mac
            return found
        try:
            row = self.claims_db.execute(
                f"SELECT {_LEASE_COLS} FROM leases WHERE subnet = %s AND mac = %s AND state <> 'declined' "
                "ORDER BY updated DESC LIMIT 1",
                (subnet, mac),
                prepare=True,
            ).fetchone()
        except _pg().Error as exc:
            raise StoreUnavailable(f"{redact(self.url)}: lease lookup failed: {exc}") from exc
        if row is None:
            return None
        self.counters["recalled"] += 1
        lease = _lease(row)
        self._known[lease.ip] = lease.mac
        return lease

    def _catch_up(self) -> None:
        """Read the lease rows other servers wrote since the last catch-up into `_others`."""
        try:
            rows = self.claims_db.execute(
                f"SELECT {_LEASE_COLS}, seq FROM leases WHERE seq > %s AND owner IS DISTINCT FROM %s "
                "ORDER BY seq",
                (self._seq_lag, self.owner),
                prepare=True,
            ).fetchall()
        except _pg().Error as exc:
            raise StoreUnavailable(f"{redact(self.url)}: lease lookup failed: {exc}") from exc
        self._seq_lag = self._seq
        if rows:
            self._seq = max(self._seq, int(rows[-1][-1]))
        for r in rows:
            self._learn(_lease(r[:-1]))

    def _learn(self, lease: Lease) -> None:
        """Another server's row: the binding recall(exact=False) answers for its MAC."""
        old = self._others_at.pop(lease.ip, None)
        if old is not None and self._others.get(old, lease).ip == lease.ip:
            self._others.pop(old, None)
        if lease.state is LeaseState.DECLINED:
            return
        key = (lease.subnet, lease.mac)
        prev = self._others.get(key)
        if prev is None or prev.updated <= lease.updated:
            self._others[key] = lease
            self._others_at[lease.ip] = key

    # --- writes (buffered) -----------------------------------------------------------------------
    def save_lease(self, lease: Lease) -> None:
        if lease is self._claimed:  # claim() wrote exactly this row already
            self._claimed = None
            self._leases.pop(lease.ip, None)
            return
        super().save_lease(lease)

    def _commit(self, *, with_events: bool, again: bool = True) -> None:
        if not self._leases and not (with_events and self._events) and not self._unflushed:
            return
        unflushed = self._unflushed
        recheck: list[Lease] = []
        lost: list[str] = []
        leases, self._leases = self._leases, {}
        events = self._take_events() if with_events else []
        gone = [(ip, self._known.get(ip)) for ip, le in leases.items() if le is None]
        rows: list[Lease] = []
        try:
            db = self.db
            # After a lost connection the claims are written again (the crash may have taken them)
            recheck = list(self._pending) if self._suspect else []
            rows, written = self._write(db, leases, gone, events, unflushed, recheck)
            del self._pending[:unflushed]
            self._suspect = False
            lost = [le.ip for le in recheck if le.ip not in written]
        except (_pg().Error, StoreError) as exc:
            self._leases = {**leases, **self._leases}
            self._events = events + self._events
            self._bound_events()
            if again and self._db.broken:  # a restarted or failed-over database: once more
                self._commit(with_events=with_events, again=False)
                return
            self.counters["commit_failures"] += 1
            if not leases and not unflushed:  # only telemetry: never a reason to withhold replies
                self._warn(
                    "events", "%s: events not written (%s); %d waiting, %d dropped so far",
                    redact(self.url), exc, len(self._events), self.counters["events_dropped"],
                )  # fmt: skip
                return
            raise StoreError(f"{redact(self.url)}: commit failed: {exc}") from exc
        if lost:  # the rest is committed; these clients' replies must not go
            self.counters["commit_failures"] += 1
            raise self._claims_lost(lost)
        self._after_write(rows, written, gone)

    def _claims_lost(self, lost: list[str]) -> StoreError:
        """Claims made before a lost connection that another server has taken since."""
        return StoreError(
            f"{redact(self.url)}: {len(lost)} lease claim(s) were lost with the connection and "
            f"another client holds {', '.join(lost[:5])} now; the burst's replies are withheld"
        )

    def _after_write(self, rows: list[Lease], written: set[str], gone: list[tuple[str, str | None]]) -> None:
        for le in rows:
            if le.ip in written:
                self._known[le.ip] = le.mac
            else:
                # Another server holds the address (it reclaimed it after our lease ended):
                # our RELEASE/DECLINE of it is moot; its row stays.
                self.counters["lease_writes_refused"] += 1
        for ip, _mac in gone:
            self._known.pop(ip, None)

    def _write(
        self,
        db: psycopg.Connection[Any],
        leases: dict[str, Lease | None],
        gone: list[tuple[str, str | None]],
        events: list[Event],
        claims: int,
        recheck: list[Lease],
    ) -> tuple[list[Lease], set[str]]:
        """One transaction, one round trip (pipeline mode): leases, events, device rows; with
        `claims`, synchronous, so the WAL flush covers them. (The lease rows, the addresses written.)"""
        rows = [le for le in leases.values() if le is not None]
        rows += [le for le in recheck if le.ip not in leases]
        cur = None
        with db.pipeline(), db.transaction():
            if claims:
                # A write, so this commit waits for the WAL flush: the burst's claims with it
                db.execute(
                    "INSERT INTO servers (owner, seen) VALUES (%s, %s) "
                    "ON CONFLICT (owner) DO UPDATE SET seen = excluded.seen",
                    (self.owner, time.time()),
                )
            if gone:
                # Only rows this server knows as the same MAC's: another server may have
                # taken the address since (an expired lease reclaimed there).
                db.execute(
                    "DELETE FROM leases l USING unnest(%b::text[], %b::text[]) d(ip, mac) "
                    "WHERE l.ip = d.ip AND l.mac = d.mac",
                    ([g[0] for g in gone], [g[1] for g in gone]),
                )
            if rows:
                cur = db.execute(
                    _SAVE_MANY,
                    ([le.ip for le in rows], [le.mac for le in rows], [le.state.value for le in rows],
                     [le.expires for le in rows], [_text(le.hostname) for le in rows],
                     [le.client_id for le in rows], [le.subnet for le in rows],
                     [le.updated for le in rows], [self.owner] * len(rows)),
                )  # fmt: skip
            if events:
                seen = seen_span(events)
                if seen:
                    macs = sorted(seen)  # one lock order for every server
                    db.execute(
                        "INSERT INTO devices (mac, first_seen, last_seen) SELECT * FROM "
                        "unnest(%b::text[], %b::float8[], %b::float8[]) ON CONFLICT (mac) DO UPDATE "
                        "SET last_seen = greatest(devices.last_seen, excluded.last_seen)",
                        (macs, [seen[m][0] for m in macs], [seen[m][1] for m in macs]),
                    )
                # Last, under a lock held to the end of COMMIT: event ids come from a sequence at
                # INSERT time but become visible at COMMIT, so without it server A's ids 111-120
                # could be visible while B's 100-110 are not yet, and a reader following ids
                # (the stream, `events --follow`) would move past 110 and never see them.
                # PostgreSQL makes a transaction visible before it releases its locks (xact.c,
                # CommitTransaction: ProcArrayEndTransaction, then the locks), so the next
                # server's ids are taken after ours are visible. Once it holds the lock, a writer
                # needs no row another writer holds while waiting for it (events_last is written
                # only by this INSERT's trigger): no deadlock.
                db.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_ORDER_LOCK,), prepare=True)
                db.execute(
                    "INSERT INTO events (ts, kind, mac, ip, detail) SELECT ts, kind, mac, ip, "
                    "detail::jsonb FROM unnest(%b::float8[], %b::text[], %b::text[], %b::text[], "
                    "%b::text[]) AS e(ts, kind, mac, ip, detail)",
                    ([e.ts for e in events], [_text(e.kind) for e in events], [e.mac for e in events],
                     [e.ip for e in events],
                     [_jsonb(e.detail if type(e.detail) is dict else dict(e.detail)) for e in events]),
                )  # fmt: skip
        return rows, ({r[0] for r in cur.fetchall()} if cur is not None else set())

    # --- group commit (pxe.dhcp.server's writer thread, as the SQLite store's) --------------------
    def begin_commit(self) -> Callable[[], None] | None:
        """Take everything buffered (on the loop thread), claims included, and return the function
        that writes it in one synchronous transaction on the writer thread's own connection: the
        loop goes on handling packets during the WAL flush; the burst's ACKs wait for it. None:
        nothing to write. When the function raises, call `abort_commit()` on the loop thread."""
        self._grouped = True
        if not self._leases and not self._events and not self._pending:
            return None
        leases, self._leases = self._leases, {}
        events = self._take_events()
        pending, self._pending = self._pending, []
        suspect, self._suspect = self._suspect, False
        gone = [(ip, self._known.get(ip)) for ip, le in leases.items() if le is None]
        for le in leases.values():
            if le is not None:
                self._known[le.ip] = le.mac  # (a refused write leaves another MAC's row: no harm)
        for ip, _mac in gone:
            self._known.pop(ip, None)
        self._taken = (leases, events, pending, suspect, False)

        def write() -> None:
            recheck = pending if suspect else []
            conn = self._wconn
            if conn is None or conn.closed or conn.broken:
                recheck = pending  # a new connection: the database may have restarted since
                conn = self._wconn = self._connect()
            try:
                _rows, written = self._write(conn, leases, gone, events, len(pending), recheck)
            except _pg().Error:
                if not conn.broken:
                    raise
                conn = self._wconn = self._connect()  # a restarted or failed-over database: once more
                _rows, written = self._write(conn, leases, gone, events, len(pending), pending)
                recheck = pending
            lost = [le.ip for le in recheck if le.ip not in written]
            if lost:
                self._taken = (leases, events, pending, True, True)  # written, but these claims not
                raise self._claims_lost(lost)

        return write

    def abort_commit(self) -> None:
        """The writer's transaction failed: its rows back in front of what came since, and its
        claims checked again by the synchronous commit that follows (which decides the replies)."""
        leases, events, pending, _suspect, committed = self._taken
        self._taken = ({}, [], [], False, False)
        if not committed:
            self._leases = {**leases, **self._leases}
            self._events = events + self._events
            self._bound_events()
        self._pending = pending + self._pending
        self._suspect = True

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
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (mac) DO UPDATE SET "
            "serial = coalesce(excluded.serial, devices.serial), "
            "platform = coalesce(excluded.platform, devices.platform), "
            "hostname = coalesce(excluded.hostname, devices.hostname), last_seen = excluded.last_seen, "
            "identity = CASE WHEN %s THEN excluded.identity ELSE devices.identity END",
            (mac, _text(serial), _text(platform), _text(hostname), now, now, _jsonb(identity or {}),
             identity is not None),
        )  # fmt: skip

    # --- intent (written at once) ----------------------------------------------------------------
    @property
    def data_version(self) -> int:
        """The intent counter (bumped by any server or CLI writing `enrolled`/`intents`), read at
        most every `version_poll` seconds: the lifecycle asks per packet."""
        now = time.monotonic()
        if now - self._version_read >= self._version_poll:
            self._version_read = now
            try:
                row = self.db.execute("SELECT v FROM state_version WHERE id = 1", prepare=True).fetchone()
            except (_pg().Error, StoreError) as exc:
                # The database is down: the intents last read stand (nothing can change them
                # meanwhile that we could read); the DHCP server reports the outage itself.
                self._warn("version", "%s: intent version not read (%s)", redact(self.url), exc)
                return self._version
            self._version = int(row[0]) if row else 0
        return self._version

    def _write_now(self, sql: str, args: Sequence[object]) -> int:
        self.flush()
        cur = self.db.execute(sql, args)
        self._version_read = float("-inf")  # our own write: read the counter afresh
        return cur.rowcount

    def enroll(self, name: str, doc: dict[str, Any], by: str) -> None:
        self._write_now(
            "INSERT INTO enrolled (name, doc, enrolled_at, enrolled_by) VALUES (%s, %s::jsonb, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
            (name, _jsonb(doc), time.time(), by),
        )

    def unenroll(self, name: str) -> bool:
        with self.db.transaction():
            gone = self._write_now("DELETE FROM enrolled WHERE name = %s", (name,))
            self._write_now("DELETE FROM intents WHERE name = %s", (name,))
        return gone > 0

    def enrolled(self) -> list[EnrolledRecord]:
        rows = self.db.execute("SELECT name, doc, enrolled_at, enrolled_by FROM enrolled ORDER BY name")
        return [EnrolledRecord(n, d, at, by) for n, d, at, by in rows]

    def arm(self, name: str, target: str | None, install_id: str, by: str) -> None:
        now = time.time()
        self._write_now(
            "INSERT INTO intents (name, armed, target, install_id, armed_at, armed_by, updated) "
            "VALUES (%s, true, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET armed = true, "
            "target = excluded.target, install_id = excluded.install_id, armed_at = excluded.armed_at, "
            "armed_by = excluded.armed_by, outcome = NULL, outcome_at = NULL, outcome_by = NULL, "
            "reason = NULL, updated = excluded.updated",
            (name, target, install_id, now, by, now),
        )

    def end_arming(
        self, name: str, outcome: str, by: str, reason: str | None = None, install_id: str | None = None
    ) -> bool:
        """Disarm with why; with `install_id`, only that arming (as the SQLite store)."""
        now = time.time()
        sql = (
            "INSERT INTO intents (name, armed, outcome, outcome_at, outcome_by, reason, updated) "
            "VALUES (%s, false, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET armed = false, "
            "outcome = excluded.outcome, outcome_at = excluded.outcome_at, "
            "outcome_by = excluded.outcome_by, reason = excluded.reason, updated = excluded.updated"
        )
        args: list[object] = [name, outcome, now, by, _text(reason), now]
        if install_id is not None:
            sql += " WHERE intents.install_id IS NOT DISTINCT FROM %s AND intents.armed"
            args.append(install_id)
        return self._write_now(sql, args) > 0

    def intents(self) -> dict[str, Intent]:
        rows = self.db.execute(
            "SELECT name, armed, target, install_id, armed_at, armed_by, outcome, outcome_at, "
            "outcome_by, reason, updated FROM intents"
        )
        return {r[0]: Intent(r[0], bool(r[1]), *r[2:]) for r in rows}

    # --- reads -----------------------------------------------------------------------------------
    def leases(self) -> list[Lease]:
        self.flush()
        rows = self.db.execute(f"SELECT {_LEASE_COLS}, seq, owner FROM leases ORDER BY ip").fetchall()
        found = [_lease(r[:-2]) for r in rows]
        self._known.update((le.ip, le.mac) for le in found)
        self._seq = max([self._seq, *(int(r[-2]) for r in rows)])
        for le, r in zip(found, rows, strict=True):
            if r[-1] != self.owner:
                self._learn(le)
        return found

    def devices(self) -> list[DeviceRecord]:
        self.flush()
        rows = self.db.execute(
            "SELECT mac, serial, platform, hostname, first_seen, last_seen, identity FROM devices ORDER BY mac"
        )
        return [DeviceRecord(m, s, p, h, f, la, i or {}) for m, s, p, h, f, la, i in rows]

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
            where.append("mac = %s")
            args.append(mac)
        if kinds:
            where.append("kind = ANY(%s)")
            args.append(list(kinds))
        if since is not None:
            where.append("ts >= %s")
            args.append(since)
        sql = "SELECT ts, kind, mac, ip, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(int(limit))
        rows = list(self.db.execute(sql, args))
        rows.reverse()
        return [Event(kind=k, mac=m, ip=ip, detail=d, ts=ts) for ts, k, m, ip, d in rows]

    def last_event_per_device(self) -> dict[str, Event]:
        self.flush()
        rows = self.db.execute(
            "SELECT DISTINCT ON (mac) ts, kind, mac, ip, detail FROM events WHERE mac IS NOT NULL "
            "ORDER BY mac, id DESC"
        )
        return {m: Event(kind=k, mac=m, ip=ip, detail=d, ts=ts) for ts, k, m, ip, d in rows}

    def last_events(self, keys: Iterable[str] | None = None) -> dict[str, list[Event]]:
        """{device key: the last event of each class}, for `keys` or every device (bounded)."""
        self.flush()
        sql = (
            "SELECT l.key, e.id, e.ts, e.kind, e.mac, e.ip, e.detail FROM events_last l "
            "JOIN events e ON e.id = l.id"
        )
        args: list[object] = []
        if keys is not None:
            sql += " WHERE l.key = ANY(%s)"
            args.append(sorted(set(keys)))
        found: dict[str, list[Event]] = {}
        for key, _id, ts, kind, mac, ip, detail in self.db.execute(sql + " ORDER BY e.id", args):
            found.setdefault(key, []).append(Event(kind=kind, mac=mac, ip=ip, detail=detail, ts=ts))
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
        """(id, event) pairs, oldest first (as the SQLite store's)."""
        self.flush()
        where: list[str] = []
        args: list[object] = []
        for clause, value in (
            ("mac = %s", mac),
            ("ts >= %s", since),
            ("id > %s", after),
            ("id < %s", before),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        if kinds:
            where.append("kind = ANY(%s)")
            args.append(list(kinds))
        sql = "SELECT id, ts, kind, mac, ip, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id {'ASC' if after is not None else 'DESC'} LIMIT %s"
        args.append(int(limit))
        rows = list(self.db.execute(sql, args))
        if after is None:
            rows.reverse()
        return [(i, Event(kind=k, mac=m, ip=ip, detail=d, ts=ts)) for i, ts, k, m, ip, d in rows]

    # --- retention -------------------------------------------------------------------------------
    def prune_events(
        self, keep_per_device: int, keep_days: float, chunk: int = PRUNE_CHUNK
    ) -> tuple[int, bool]:
        """As the SQLite store's: older than `keep_days`, then beyond `keep_per_device` per MAC,
        about `chunk` rows per call; the last event of each class of a device stays."""
        try:
            return self._prune(keep_per_device, keep_days, chunk)
        except _pg().Error as exc:
            raise StoreError(f"{redact(self.url)}: prune failed: {exc}") from exc

    def _prune(self, keep_per_device: int, keep_days: float, chunk: int) -> tuple[int, bool]:
        self.flush()
        keep_last = " AND NOT EXISTS (SELECT 1 FROM events_last l WHERE l.id = events.id)"
        cutoff = time.time() - keep_days * 86400
        db = self.db
        deleted = db.execute(
            f"DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < %s{keep_last} LIMIT %s)",
            (cutoff, chunk),
        ).rowcount
        if deleted < chunk:
            over = db.execute(
                "SELECT mac FROM events GROUP BY mac HAVING count(*) > %s LIMIT 100", (keep_per_device,)
            ).fetchall()
            for (mac,) in over:
                row = db.execute(
                    "SELECT id FROM events WHERE mac IS NOT DISTINCT FROM %s ORDER BY id DESC LIMIT 1 OFFSET %s",
                    (mac, keep_per_device),
                ).fetchone()
                if row is None:
                    continue
                deleted += db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE mac IS NOT DISTINCT FROM %s "
                    f"AND id <= %s{keep_last} LIMIT %s)",
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
            self._db.close()
            for conn in (self._claim_db, self._wconn):
                if conn is not None:
                    conn.close()


__all__ = ["MIGRATIONS", "PgStore"]
