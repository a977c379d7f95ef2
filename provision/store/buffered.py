"""The write buffer both state stores share (provision.store.sqlite.Store, provision.store.postgres.PgStore).

Leases and events are buffered in memory and written by the store's own `_commit(with_events=)`:
- a lease write is committed before the DHCP server's replies leave (its group commit, or the
  next turn of the loop, or at once when no loop runs);
- events are telemetry: written at most `event_flush_interval` seconds later in bigger
  transactions, or when `_FLUSH_AT` of them wait; while writes fail they stay buffered up to
  EVENTS_BUFFER_MAX (the oldest dropped beyond, counted), and a failure is logged once a minute
  through the store module's own logger (`_log`), so operators keep filtering on its name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import ClassVar, Self

from pxe.dhcp.leases import Lease
from pxe.policy import Event

_FLUSH_AT = 2000  # buffered rows that force a commit even inside a burst
# Events waiting while commits fail (a full disk, a database down): the oldest go beyond this,
# counted; leases are never dropped (docs/security.md "Full disk").
EVENTS_BUFFER_MAX = 50_000
WARN_EVERY_S = 60.0  # a failing commit or a dropped event: logged once a minute, counted always


def seen_span(events: Iterable[Event]) -> dict[str, tuple[float, float]]:
    """MAC -> (first, last) event time in a batch: the devices table's first_seen and last_seen."""
    seen: dict[str, tuple[float, float]] = {}
    for e in events:
        mac = e.mac
        if mac:
            ts = e.ts
            span = seen.get(mac)
            if span is None:  # (most MACs of a batch: one event each, no min/max to call)
                seen[mac] = (ts, ts)
            elif ts < span[0] or ts > span[1]:
                seen[mac] = (min(span[0], ts), max(span[1], ts))
    return seen


class BufferedStore:
    """What Store and PgStore do alike with their buffers. A subclass sets these attributes in
    its __init__ and implements `_commit`, `leases`, `close`, `_where`, `_write_errors` and
    `_grouping`."""

    _log: ClassVar[logging.Logger]  # the subclass module's logger
    counters: dict[str, int]
    lease_writes: int
    _leases: dict[str, Lease | None]  # ip -> lease to save, or None to delete
    _events: list[Event]
    _scheduled: bool
    _event_timer: asyncio.TimerHandle | None
    _event_interval: float
    _events_flushed: float
    _warned: dict[str, float]

    # --- what a subclass provides -----------------------------------------------------------
    def _commit(self, *, with_events: bool) -> None:
        raise NotImplementedError

    def leases(self) -> list[Lease]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def _where(self) -> str:
        """The store as messages name it (the file, or the URL without its password)."""
        raise NotImplementedError

    def _write_errors(self) -> tuple[type[BaseException], ...]:
        """What a failed write raises: logged by _flush_quietly, not raised into an event's emitter."""
        raise NotImplementedError

    def _grouping(self) -> bool:
        """Is the DHCP server's group commit under way (begin_commit called)? Then a lease
        write needs no commit of its own: the server commits after every burst."""
        raise NotImplementedError

    # --- writes (buffered) --------------------------------------------------------------------
    def save_lease(self, lease: Lease) -> None:
        self._leases[lease.ip] = lease
        self.lease_writes += 1
        self._lease_pending()

    def delete_lease(self, ip: str) -> None:
        self._leases[ip] = None
        self.lease_writes += 1
        self._lease_pending()

    def add_event(self, event: Event) -> None:
        """Buffer an event. Events are telemetry, leases are state: events are written at most
        `event_flush_interval` seconds later (in bigger, cheaper transactions), leases at the next
        commit(). A `kill -9` can lose that last fraction of a second of events, never a lease."""
        self._events.append(event)
        if len(self._events) >= _FLUSH_AT:
            self._flush_quietly()
        elif self._event_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush_quietly()  # no loop: nobody else will, so now
                return
            self._event_timer = loop.call_later(self._event_interval, self._timed_flush)

    __call__ = add_event  # a store is an EventSink

    def _lease_pending(self) -> None:
        if self._scheduled or self._grouping():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.commit()
            return
        self._scheduled = True
        loop.call_soon(self._scheduled_commit)

    def _scheduled_commit(self) -> None:
        self._scheduled = False
        self.commit()

    def _timed_flush(self) -> None:
        self._event_timer = None
        self._flush_quietly()

    def _warn(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned[key] = now
            self._log.warning(message, *args)

    def _flush_quietly(self) -> None:
        """Events on a timer or a full buffer: a failure is logged (once a minute), not raised
        into whoever emitted the event; the events stay buffered (bounded) for the next try."""
        try:
            self.flush()
        except self._write_errors() as exc:
            self._warn(
                "events", "%s: events not written (%s); %d waiting, %d dropped so far",
                self._where, exc, len(self._events), self.counters["events_dropped"],
            )  # fmt: skip

    def _take_events(self) -> list[Event]:
        """The buffered events, for a transaction about to write them: the buffer starts over,
        and their interval (the timer included) counts from now."""
        events, self._events = self._events, []
        self._events_flushed = time.monotonic()
        if self._event_timer is not None:
            self._event_timer.cancel()
            self._event_timer = None
        return events

    def _bound_events(self) -> None:
        over = len(self._events) - EVENTS_BUFFER_MAX
        if over > 0:
            del self._events[:over]
            self.counters["events_dropped"] += over
            self._warn(
                "dropped", "%s: commits failing; dropped the %d oldest unwritten events "
                "(%d in all); leases are kept", self._where, over, self.counters["events_dropped"],
            )  # fmt: skip

    def flush(self) -> None:
        """Write everything buffered, events included."""
        self._commit(with_events=True)

    def commit(self) -> None:
        """Make the buffered leases durable (events ride along when their interval is due)."""
        due = time.monotonic() - self._events_flushed >= self._event_interval
        self._commit(with_events=due)

    # --- reads, lifetime ----------------------------------------------------------------------
    def load_leases(self) -> Iterable[Lease]:
        return self.leases()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
