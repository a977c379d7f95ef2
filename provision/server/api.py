"""The /api/v1 routes `provision serve` adds to pxe's HTTP server (the caller owns its routes).

- GET /api/v1/status?limit=&after=&state=&platform=&name=&mac=
                                          -> what `provision status --json` prints, one page
- GET /api/v1/events?mac=&kind=&since=&limit=&after=&before=
                                          -> events oldest first, one page (docs/lifecycle.md)
  Both read the store in a worker thread, on a connection of their own (WAL: readers never block
  the server), in a bounded number of queries: polling them never holds up DHCP. At most
  `READS_QUEUED` reads wait at once; more get 503 and Retry-After.
- GET|POST /api/v1/report?stage=&status=&nos=&version=&platform=&serial=&mac=&message=&token=
  The installer's progress callback (GET because busybox wget may lack --post-data; POST with
  a JSON object of the same fields also accepted) -> Event("installer.report", mac, ip=peer,
  detail={fields given, install_id}) and 200 {"ok": true}. With lab.yml `onie.report: false`:
  404 and no event (the installer's reports are best-effort, so it goes on installing). Guarded
  by provision.server.reports (docs/security.md): 429 over the source's rate, 401 without a
  good token of a running install, 403 from an address that is not the device's lease.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from onie.platform import normalise_mac
from provision.config.inventory import Inventory
from provision.devices.lifecycle import Lifecycle
from provision.devices.status import EVENTS_VERSION, STATE_CODES, Filters, event_dict, parse_time, snapshot
from provision.onie.progress import KIND_REPORT
from provision.server.access import Refusals
from provision.server.reports import RateLimiter, ReportAuth, capped_fields
from provision.store.base import StateStore as Store
from provision.store.base import open_store
from pxe.policy import Event, EventSink

log = logging.getLogger(__name__)
EVENTS_DEFAULT_LIMIT = 100
EVENTS_MAX_LIMIT = 10000
STATUS_DEFAULT_LIMIT = 500
STATUS_MAX_LIMIT = 5000
READS_QUEUED = 4  # status/events reads running or waiting; more are told to retry (503)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({**extra, "error": message}, status=status)


class Api:
    def __init__(
        self,
        store: Callable[[], Any],
        inventory: Inventory,
        events: EventSink,
        accept_reports: bool = True,
        fleet: Lifecycle | None = None,
        report_auth: ReportAuth | None = None,
        report_limit: RateLimiter | None = None,
    ) -> None:
        self._store = store  # the open store (None while stopping)
        self._inventory = inventory
        self.fleet = fleet
        self.events = events
        self.accept_reports = accept_reports
        # None: every report is believed (an Api built alone, in a test); serve always sets both
        self.report_auth = report_auth
        self.report_limit = report_limit
        self.report_refusals = report_auth.refusals if report_auth is not None else Refusals()
        self.report_counters = {"accepted": 0, "rate_limited": 0, "fields_cut": 0}
        # One reader thread: reads queue behind each other instead of competing with the loop.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-read")
        self._reads = 0
        self._local = threading.local()

    def close(self) -> None:
        """Stop the reader thread, closing its own connection to the store in that thread."""

        def close_store() -> None:
            store: Store | None = getattr(self._local, "store", None)
            if store is not None:
                store.close()
                self._local.store = None

        try:
            self._reader.submit(close_store).result(timeout=5)
        except Exception as exc:  # a read still running past 5 s: the thread ends with the process
            log.warning("status reader did not close its store: %s", exc)
        self._reader.shutdown(wait=False)

    @property
    def inventory(self) -> Inventory:
        """lab.yml's devices and the enrolled ones (the lifecycle's view when there is one)."""
        return self.fleet.inventory if self.fleet is not None else self._inventory

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/status", self.status),
            web.get("/api/v1/events", self.recent_events),
            web.get("/api/v1/report", self.report),
            web.post("/api/v1/report", self.report),
        ]

    @property
    def lab(self) -> Inventory:
        """lab.yml's devices (the enrolled ones are read from the store with the rest)."""
        return self.fleet.lab if self.fleet is not None else self._inventory

    def _read_store(self, path: Any) -> Store:
        """The reader thread's own connection (sqlite3 objects stay in the thread that made them;
        a PostgreSQL store gets its own connection too: reads never queue behind the DHCP path)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None or store.path != path:
            if store is not None:
                store.close()
            store = self._local.store = open_store(path)
        return store

    async def _off_loop(self, fn: Callable[[Any], Any]) -> Any:
        """Run `fn(reader store)` in the reader thread; None when the server is stopping; raises
        web.HTTPServiceUnavailable when too many reads wait."""
        live = self._store()
        if live is None:
            return None
        if self._reads >= READS_QUEUED:
            raise web.HTTPServiceUnavailable(
                text=_dumps({"error": "busy: too many status/events reads at once"}),
                content_type="application/json",
                headers={"Retry-After": "1"},
            )
        live.flush()  # what the server buffered (at most event_flush_interval old) is visible too
        path = live.path
        self._reads += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._reader, lambda: fn(self._read_store(path))
            )
        finally:
            self._reads -= 1

    async def read(self, fn: Callable[[Any], Any]) -> Any:  # fn takes a StateStore
        """`fn(reader store)` off the loop, sharing the API's reader and its bound (the web page's
        reads, provision.server.web); None when the server is stopping."""
        return await self._off_loop(fn)

    async def status(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = _limit(q.get("limit"), STATUS_DEFAULT_LIMIT, STATUS_MAX_LIMIT)
        except ValueError:
            return _error(400, "limit must be an integer")
        states = tuple(q.getall("state", []))
        bad = [s for s in states if s not in STATE_CODES]
        if bad:
            return _error(400, f"unknown state {bad[0]!r}: use one of {', '.join(STATE_CODES)}")
        filters = Filters(
            states=states,
            platforms=tuple(q.getall("platform", [])),
            names=tuple(q.getall("name", [])),
            macs=tuple(q.getall("mac", [])),
        )
        lab, after = self.lab, q.get("after") or None
        snap = await self._off_loop(lambda st: snapshot(st, lab, limit=limit, after=after, filters=filters))
        if snap is None:
            return _error(503, "the server is stopping")
        return web.json_response(snap, dumps=_dumps)

    async def recent_events(self, request: web.Request) -> web.Response:
        q = request.query
        mac = None
        if q.get("mac"):
            mac = normalise_mac(q["mac"])
            if mac is None:
                return _error(400, f"bad mac {q['mac']!r}: use aa:bb:cc:dd:ee:ff")
        try:
            since = parse_time(q["since"]) if q.get("since") else None
        except ValueError:
            return _error(400, "since must be an ISO-8601 time (2026-01-31T12:00:00Z) or unix seconds")
        try:
            limit = _limit(q.get("limit"), EVENTS_DEFAULT_LIMIT, EVENTS_MAX_LIMIT)
            after = int(q["after"]) if q.get("after") else None
            before = int(q["before"]) if q.get("before") else None
        except ValueError:
            return _error(400, "limit, after and before must be integers (after/before: an event id)")
        if after is not None and before is not None:
            return _error(400, "give after= (newer events) or before= (older ones), not both")
        kinds = tuple(q.getall("kind", []))

        def read(st: Store) -> list[tuple[int, Event]]:
            return st.event_page(after=after, before=before, mac=mac, kinds=kinds, since=since, limit=limit)

        page = await self._off_loop(read)
        if page is None:
            return _error(503, "the server is stopping")
        body = {
            "version": EVENTS_VERSION,
            "events": [event_dict(e, i) for i, e in page],
            # Poll with after=<next> for what comes later; page back with before=<prev>.
            "next": page[-1][0] if page else after,
            "prev": page[0][0] if page else None,
        }
        return web.json_response(body, dumps=_dumps)

    async def report(self, request: web.Request) -> web.Response:
        if not self.accept_reports:
            # 404, not 403: the endpoint is switched off, not forbidden to this caller. The
            # installer's report() ignores any failure, so the install itself is unaffected.
            return _error(404, "progress reports are switched off here", ok=False)
        if self.report_limit is not None and not self.report_limit.allow(request.remote or "?"):
            self.report_counters["rate_limited"] += 1
            self.report_refusals.refuse(
                "report_429", "report rate limit: refused a report from %s", request.remote or "?"
            )
            return _error(429, "too many reports from this address; slow down", ok=False)
        source: Mapping[str, Any]
        if request.method == "POST":
            try:
                body = await request.json()
            except Exception:
                return _error(400, "body must be a JSON object", ok=False)
            if not isinstance(body, dict):
                return _error(400, "body must be a JSON object", ok=False)
            source = body
        else:
            source = request.query
        fields, cut = capped_fields(source)
        self.report_counters["fields_cut"] += cut
        mac = None
        if fields.get("mac"):
            mac = normalise_mac(fields["mac"])
            if mac is None:
                return _error(400, "bad mac: use aa:bb:cc:dd:ee:ff", ok=False)
            fields["mac"] = mac
        if not fields.get("stage") and not fields.get("status"):
            return _error(400, "give at least stage= or status=", ok=False)
        detail: dict[str, str] = dict(fields)
        verdict = None
        if self.report_auth is not None:
            token = source.get("token")
            verdict = self.report_auth.check(request.remote, str(token) if token else None, fields)
            if verdict.status != 200:
                self.report_auth.refused(verdict, request.remote)
                return _error(verdict.status, verdict.error or "refused", ok=False)
            if verdict.mac is not None and mac is not None and verdict.mac != mac:
                detail["reported_mac"] = mac  # what the installer said; the token says whose
            mac = verdict.mac or mac
            if mac is not None:
                detail["mac"] = mac
            if verdict.install_id:
                detail["install_id"] = verdict.install_id  # the lifecycle ends that arming only
        self.report_counters["accepted"] += 1
        self.events(Event(kind=KIND_REPORT, mac=mac, ip=request.remote, detail=detail))
        if verdict is not None and self.report_auth is not None:
            self.report_auth.done(verdict, fields)
        return web.json_response({"ok": True})


def _limit(raw: str | None, default: int, most: int) -> int:
    return max(1, min(int(raw) if raw else default, most))
