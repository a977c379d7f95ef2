"""GET /api/v1/stream: the store's events as Server-Sent Events (docs/observability.md "Event
stream"), what `provision status --watch` and the web page follow.

    GET /api/v1/stream?mac=&kind=&name=&after=      (Last-Event-ID: <id> as a header, too)
    -> 200 Content-Type: text/event-stream
       id: <the event's store id>
       event: <kind, e.g. device.installing>
       data: <one-line JSON: an item of GET /api/v1/events (provision.devices.status.event_dict)>
       (blank line)
       ": keepalive" comments every `keepalive` seconds (15)

Filters: `mac=` one MAC; `kind=` (repeatable) a kind or a glob (`device.*`); `name=` (repeatable)
a device name or glob: its MACs' events and the lifecycle's events naming it. With Last-Event-ID
or `after=` the events after that id are replayed from the store first, then the stream goes on
live; without, it starts at the newest event.

One tail for every subscriber: a task reads the events table after the last id it saw, in a
thread of its own on a connection of its own (WAL: a reader never blocks the server), and fans
the rows out. So events written by another process (`provision devices arm`, a rollout) are
streamed as well as the server's own. The in-process EventBus wakes the tail at once (`publish`);
the store buffers the server's events for up to its flush interval, which the tail then flushes,
so the server's own events arrive within about a tenth of a second; other processes' events
within the poll interval (0.5 s).

Bounds: at most `max_subscribers` streams (more: 503 and Retry-After); each subscriber's queue
holds `queue_size` events: one that falls behind gets `event: overflow` and is closed, and
reconnects with Last-Event-ID (EventSource does so itself) without losing an event. `close()` ends
every stream cleanly (serve's shutdown); a reload leaves them running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from onie.platform import normalise_mac
from provision.config.inventory import Inventory
from provision.devices.status import event_dict
from provision.store.base import open_store
from pxe.policy import Event

log = logging.getLogger(__name__)

PATH = "/api/v1/stream"
KEEPALIVE_S = 15.0
POLL_S = 0.5  # other processes' events: the tail reads at least this often
WAKE_DELAY_S = 0.05  # after a publish, gather the rest of a burst before reading
MAX_SUBSCRIBERS = 64
QUEUE_SIZE = 1000
PAGE = 500  # rows per read (tail and replay)
RETRY_AFTER_S = 5
GONE_CHECK_S = 1.0  # how often a quiet stream checks that its client is still connected


@dataclass(frozen=True)
class StreamFilter:
    mac: str | None = None
    kinds: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def exact_kinds(self) -> tuple[str, ...] | None:
        """The kinds for the store's query, or None when a glob needs a match in Python."""
        return None if any(c in k for k in self.kinds for c in "*?[") else self.kinds

    def macs_named(self, inventory: Inventory) -> frozenset[str]:
        if not self.names:
            return frozenset()
        return frozenset(
            m.lower()
            for d in inventory.devices
            if any(fnmatch.fnmatchcase(d.name, g) for g in self.names)
            for m in d.all_macs
        )

    def keeps(self, event: Event, named: frozenset[str]) -> bool:
        if self.mac is not None and (event.mac or "").lower() != self.mac:
            return False
        if self.kinds and not any(fnmatch.fnmatchcase(event.kind, k) for k in self.kinds):
            return False
        if self.names:
            name = event.detail.get("name")
            by_name = isinstance(name, str) and any(fnmatch.fnmatchcase(name, g) for g in self.names)
            if not by_name and (event.mac or "").lower() not in named:
                return False
        return True


@dataclass(eq=False)
class Subscriber:
    filter: StreamFilter
    start: int  # the tail delivers events after this id; the handler replays up to it
    queue: asyncio.Queue[tuple[int, Event] | None]
    overflowed: bool = False
    closed: bool = False
    named: frozenset[str] = field(default_factory=frozenset)


def frame(event_id: int, event: Event) -> bytes:
    """One SSE message. `data` is one line (json.dumps escapes newlines); the kind is ours, but
    a CR or LF in it would end the field, so they go."""
    kind = event.kind.replace("\r", " ").replace("\n", " ")
    data = json.dumps(event_dict(event, event_id), default=str)
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n".encode()


def overflow_frame(last_sent: int | None) -> bytes:
    # No id: the client's Last-Event-ID stays the last event it really got.
    data = json.dumps({"error": "too far behind: reconnect with Last-Event-ID", "last_id": last_sent})
    return f"event: overflow\ndata: {data}\n\n".encode()


KEEPALIVE = b": keepalive\n\n"


class EventStream:
    """The /api/v1/stream route and its tail. `publish` is an EventBus subscriber."""

    def __init__(
        self,
        store: Callable[[], Any],
        inventory: Callable[[], Inventory],
        *,
        keepalive: float = KEEPALIVE_S,
        poll: float = POLL_S,
        max_subscribers: int = MAX_SUBSCRIBERS,
        queue_size: int = QUEUE_SIZE,
        opener: Callable[[Any], Any] = open_store,
    ) -> None:
        self._live = store  # the server's store (None while stopping)
        self._inventory = inventory
        self._open = opener  # a path or URL -> a store of our own (SQLite or PostgreSQL)
        self.keepalive = keepalive
        self.poll = poll
        self.max_subscribers = max_subscribers
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.counters = {"connected": 0, "refused": 0, "overflowed": 0, "sent": 0}
        self._last: int | None = None  # the newest id the tail has read (None: not yet read)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._published = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-read")
        self._local = threading.local()

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PATH, self.handle)]

    # -- the tail ----------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """The server emitted an event: read soon (it is in the store's buffer, flushed then)."""
        if self.subscribers and not self._closed:
            self._published = True
            if threading.get_ident() == self._loop_thread:
                self._wake.set()
            elif self._loop is not None:  # an event emitted from a worker thread
                self._loop.call_soon_threadsafe(self._wake.set)

    def _store_in_thread(self, path: Path | str) -> Any:
        store = getattr(self._local, "store", None)
        if store is None or store.path != path:
            if store is not None:
                store.close()
            store = self._local.store = self._open(path)
        return store

    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        """`fn(this thread's store)` in the stream's reader thread; None when the server stops."""
        live = self._live()
        if live is None or self._closed:
            return None
        path = live.path
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, lambda: fn(self._store_in_thread(path))
        )

    async def _newest_id(self) -> int:
        page = await self._read(lambda st: st.event_page(limit=1))
        return page[-1][0] if page else 0

    async def _tail_once(self) -> None:
        """Read what is new since the last read and hand it to every subscriber."""
        async with self._lock:
            await self._catch_up()

    async def _catch_up(self) -> None:
        """(Under the lock.) Fan out every row after `_last`; the first time, only find the newest."""
        if self._last is None:
            self._last = await self._newest_id()
            return
        while not self._closed:
            after = self._last

            def read(st: Any, after: int = after) -> list[tuple[int, Event]]:
                rows: list[tuple[int, Event]] = st.event_page(after=after, limit=PAGE)
                return rows

            page: list[tuple[int, Event]] | None = await self._read(read)
            if not page:
                return
            self._last = page[-1][0]
            self._fan_out(page)
            if len(page) < PAGE:
                return

    def _fan_out(self, page: Sequence[tuple[int, Event]]) -> None:
        inventory = None
        for sub in list(self.subscribers):
            if sub.overflowed or sub.closed:
                continue
            if sub.filter.names:
                inventory = inventory or self._inventory()
                sub.named = sub.filter.macs_named(inventory)
            for event_id, event in page:
                if event_id <= sub.start or not sub.filter.keeps(event, sub.named):
                    continue
                if sub.queue.qsize() >= self.queue_size:
                    # What was queued is sent, then `overflow`: the client resumes after the last
                    # event it got, so nothing is lost (the queue itself is unbounded only so
                    # that the None ending the handler always fits).
                    sub.overflowed = True
                    self.counters["overflowed"] += 1
                    sub.queue.put_nowait(None)
                    break
                sub.queue.put_nowait((event_id, event))

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
            self._wake.clear()
            if self._closed:
                return
            if not self.subscribers:
                self._last = None  # nobody listens: the next one starts from the newest
                continue
            if self._published:
                self._published = False
                await asyncio.sleep(WAKE_DELAY_S)
                live = self._live()
                if live is not None:
                    # The server's buffered events (docs/observability.md: the latency this saves)
                    with contextlib.suppress(Exception):
                        live.flush()
            try:
                await self._tail_once()
            except Exception:
                log.exception("event stream: reading the store failed; next try in %.1f s", self.poll)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._task = self._loop.create_task(self._run(), name="event stream tail")

    # -- one subscriber ----------------------------------------------------------------------
    def _parse(self, request: web.Request) -> tuple[StreamFilter, int | None] | web.Response:
        q = request.query
        mac = None
        if q.get("mac"):
            mac = normalise_mac(q["mac"])
            if mac is None:
                return _error(400, f"bad mac {q['mac']!r}: use aa:bb:cc:dd:ee:ff")
        raw_after = request.headers.get("Last-Event-ID") or q.get("after") or None
        try:
            after = int(raw_after) if raw_after else None
        except ValueError:
            return _error(400, "Last-Event-ID and after= must be an event id (an integer)")
        filt = StreamFilter(mac=mac, kinds=tuple(q.getall("kind", [])), names=tuple(q.getall("name", [])))
        return filt, after

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parsed = self._parse(request)
        if isinstance(parsed, web.Response):
            return parsed
        filt, after = parsed
        if self._closed or self._live() is None:
            return _error(503, "the server is stopping")
        self._ensure_running()
        async with self._lock:  # the cap checked where the subscriber is added: no race past it
            if len(self.subscribers) >= self.max_subscribers:
                self.counters["refused"] += 1
                return _error(
                    503,
                    f"too many event streams ({self.max_subscribers}); try again later",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            # What the server buffered, and what is in the store, goes to those already here: the
            # new one starts at the newest event (or replays from its Last-Event-ID).
            live = self._live()
            if live is not None:
                with contextlib.suppress(Exception):
                    live.flush()
            await self._catch_up()
            start = self._last if self._last is not None else 0
            # After a prune of the newest rows SQLite may reuse ids: a Last-Event-ID ahead of the
            # store gets only what comes after it.
            sub = Subscriber(filt, max(start, after or 0), asyncio.Queue())
            self.subscribers.add(sub)
        self.counters["connected"] += 1
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # a proxy in front must not buffer the stream
            }
        )
        last_sent = after
        try:
            await resp.prepare(request)
            if after is not None and after < start:
                last_sent = await self._replay(resp, filt, after, start)
            quiet_since = time.monotonic()
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), min(self.keepalive, GONE_CHECK_S))
                except TimeoutError:
                    # aiohttp does not cancel a handler whose client left: look, so that its
                    # slot is freed within a second, not at the next keepalive
                    if request.transport is None or request.transport.is_closing():
                        break
                    if time.monotonic() - quiet_since >= self.keepalive:
                        await resp.write(KEEPALIVE)
                        quiet_since = time.monotonic()
                    continue
                if item is None:
                    break
                quiet_since = time.monotonic()
                await resp.write(frame(*item))
                self.counters["sent"] += 1
                last_sent = item[0]
            if sub.overflowed:
                await resp.write(overflow_frame(last_sent))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await resp.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            sub.closed = True
            self.subscribers.discard(sub)
        return resp

    async def _replay(self, resp: web.StreamResponse, filt: StreamFilter, after: int, upto: int) -> int:
        """The events in (after, upto] from the store, in pages; the tail sends those after."""
        kinds = filt.exact_kinds
        named = filt.macs_named(self._inventory()) if filt.names else frozenset()
        cursor = after
        while cursor < upto and not self._closed:
            start = cursor

            def page_of(st: Any, start: int = start) -> list[tuple[int, Event]]:
                page: list[tuple[int, Event]] = st.event_page(
                    after=start, before=upto + 1, mac=filt.mac, kinds=kinds, limit=PAGE
                )
                return page

            rows: list[tuple[int, Event]] | None = await self._read(page_of)
            if not rows:
                break
            for event_id, event in rows:
                if filt.keeps(event, named):
                    await resp.write(frame(event_id, event))
                    self.counters["sent"] += 1
            cursor = rows[-1][0]
            if len(rows) < PAGE:
                break
        return upto

    # -- shutdown ----------------------------------------------------------------------------
    async def close(self) -> None:
        """End every stream (each handler writes its EOF), stop the tail, close the reader's store.
        What the server said last (serve.stopped) is flushed and sent first."""
        live = self._live()
        if self.subscribers and live is not None and not self._closed:
            with contextlib.suppress(Exception):
                live.flush()
                await self._tail_once()
        self._closed = True
        self._wake.set()
        for sub in list(self.subscribers):
            sub.closed = True
            sub.queue.put_nowait(None)  # its handler sends what is queued, then ends
        for _ in range(50):  # handlers finish their last write (at most 0.5 s)
            if not self.subscribers:
                break
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

        def close_store() -> None:
            store = getattr(self._local, "store", None)
            if store is not None:
                store.close()
                self._local.store = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._reader, close_store)
        except Exception as exc:
            log.warning("event stream: its reader did not close its store: %s", exc)
        self._reader.shutdown(wait=False)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


__all__ = ["KEEPALIVE_S", "MAX_SUBSCRIBERS", "PATH", "EventStream", "StreamFilter", "frame"]
