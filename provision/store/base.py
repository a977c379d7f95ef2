"""What provision uses of its state store, and `open_store(location)` choosing the backend.

Two backends keep the same records (docs/scale-out.md):
- SQLite (provision.store.sqlite): a file, the default; one `provision serve` owns it.
- PostgreSQL (provision.store.postgres): `postgresql://…` (lab.yml `state:`, or `--db URL`); several
  `provision serve` instances share it, and lease addresses are claimed in it (`claim`), so two
  servers allocating from one pool never hand out the same address.

Every caller outside provision/store goes through `StateStore`; a new method needed by a caller
is added here and to both backends (tests/provision/test_store_backends.py runs the same
behavioural tests against both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from provision.store import rollouts_pg  # RolloutStore(a PgStore) is a PgRolloutStore
from provision.store.location import POSTGRES_SCHEMES, is_url, redact
from provision.store.postgres import PgStore
from provision.store.records import EnrolledRecord, Intent
from provision.store.sqlite import Store
from pxe.dhcp.leases import Lease
from pxe.policy import Event


@runtime_checkable
class StateStore(Protocol):
    """Leases (pxe.dhcp.LeaseStore), events (an EventSink), devices, intents and retention."""

    counters: dict[str, int]
    lease_writes: int  # lease writes so far: the DHCP server holds the replies that made one

    @property
    def path(self) -> Path | str: ...  # the SQLite file, or the PostgreSQL URL
    @property
    def schema_version(self) -> int: ...

    # leases: buffered until commit(), which the DHCP server calls before its replies leave
    def load_leases(self) -> Iterable[Lease]: ...
    def save_lease(self, lease: Lease) -> None: ...
    def delete_lease(self, ip: str) -> None: ...
    def commit(self) -> None: ...
    def flush(self) -> None: ...
    # group commit (pxe.dhcp.LeaseStore): the burst's transaction on the DHCP writer thread
    def begin_commit(self) -> Callable[[], None] | None: ...
    def abort_commit(self) -> None: ...

    # events (buffered, written in batches) and devices
    def add_event(self, event: Event) -> None: ...
    def __call__(self, event: Event) -> None: ...
    def upsert_device(
        self,
        mac: str,
        *,
        serial: str | None = None,
        platform: str | None = None,
        hostname: str | None = None,
        identity: dict[str, Any] | None = None,
    ) -> None: ...

    # intent (docs/lifecycle.md), written at once; data_version changes when another
    # connection (the CLI, another server) changed it, and is cheap enough to ask per packet
    @property
    def data_version(self) -> int: ...
    def enroll(self, name: str, doc: dict[str, Any], by: str) -> None: ...
    def unenroll(self, name: str) -> bool: ...
    def enrolled(self) -> list[EnrolledRecord]: ...
    def arm(self, name: str, target: str | None, install_id: str, by: str) -> None: ...
    def end_arming(
        self, name: str, outcome: str, by: str, reason: str | None = None, install_id: str | None = None
    ) -> bool: ...
    def intents(self) -> dict[str, Intent]: ...

    # reads
    def leases(self) -> list[Lease]: ...
    def devices(self) -> list[Any]: ...  # DeviceRecord
    def events(
        self,
        mac: str | None = None,
        kinds: Sequence[str] | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[Event]: ...
    def last_events(self, keys: Iterable[str] | None = None) -> dict[str, list[Event]]: ...
    def event_page(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        mac: str | None = None,
        kinds: Sequence[str] | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[tuple[int, Event]]: ...

    # retention
    def prune_events(self, keep_per_device: int, keep_days: float, chunk: int = ...) -> tuple[int, bool]: ...

    def close(self) -> None: ...
    def __enter__(self) -> StateStore: ...
    def __exit__(self, *exc: object) -> None: ...


def open_store(location: str | Path, **kw: Any) -> StateStore:
    """SQLite for a path (or ':memory:'), PostgreSQL for a `postgresql://` URL (migrated on open)."""
    if is_url(location):
        return PgStore(str(location), **kw)
    return Store(location, **kw)


__all__ = ["POSTGRES_SCHEMES", "StateStore", "is_url", "open_store", "redact", "rollouts_pg"]
