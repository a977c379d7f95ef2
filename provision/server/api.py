"""The /api/v1 routes `provision serve` adds to pxe's HTTP server (the caller owns its routes).

- GET /api/v1/status                      -> what `provision status --json` prints
- GET /api/v1/events?mac=&since=&limit=   -> recent events, newest last
- GET|POST /api/v1/report?stage=&status=&nos=&version=&platform=&serial=&mac=&message=
  The ONIE installer's progress callback (GET because busybox wget may lack --post-data; POST with
  a JSON object of the same fields also accepted) -> Event("installer.report", mac, ip=peer,
  detail={fields given}) and 200 {"ok": true}. With lab.yml `onie.report: false`: 404 and no
  event (the installer's reports are best-effort, so it goes on installing).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from onie.platform import normalise_mac
from provision.config.inventory import Inventory
from provision.devices.lifecycle import Lifecycle
from provision.devices.status import event_dict, snapshot
from provision.onie.progress import KIND_REPORT
from pxe.policy import Event, EventSink

REPORT_FIELDS = ("stage", "status", "nos", "version", "platform", "serial", "mac", "message")
REPORT_MAX_VALUE = 2048
EVENTS_DEFAULT_LIMIT = 100
EVENTS_MAX_LIMIT = 10000


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
    ) -> None:
        self._store = store  # the open store (None while stopping)
        self._inventory = inventory
        self.fleet = fleet
        self.events = events
        self.accept_reports = accept_reports

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

    async def status(self, request: web.Request) -> web.Response:
        store = self._store()
        if store is None:
            return _error(503, "the server is stopping")
        return web.json_response(snapshot(store, self.inventory, fleet=self.fleet), dumps=_dumps)

    async def recent_events(self, request: web.Request) -> web.Response:
        store = self._store()
        if store is None:
            return _error(503, "the server is stopping")
        q = request.query
        mac = None
        if q.get("mac"):
            mac = normalise_mac(q["mac"])
            if mac is None:
                return _error(400, f"bad mac {q['mac']!r}: use aa:bb:cc:dd:ee:ff")
        try:
            since = float(q["since"]) if q.get("since") else None
            limit = int(q.get("limit") or EVENTS_DEFAULT_LIMIT)
        except ValueError:
            return _error(400, "since must be a number (unix time), limit an integer")
        limit = max(1, min(limit, EVENTS_MAX_LIMIT))
        found = store.events(mac=mac, since=since, limit=limit)
        return web.json_response({"events": [event_dict(e) for e in found]}, dumps=_dumps)

    async def report(self, request: web.Request) -> web.Response:
        if not self.accept_reports:
            # 404, not 403: the endpoint is switched off, not forbidden to this caller. The
            # installer's report() ignores any failure, so the install itself is unaffected.
            return _error(404, "progress reports are switched off here", ok=False)
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
        fields: dict[str, str] = {}
        for key in REPORT_FIELDS:
            value = source.get(key)
            if value is not None:
                fields[key] = str(value)[:REPORT_MAX_VALUE]
        mac = None
        if fields.get("mac"):
            mac = normalise_mac(fields["mac"])
            if mac is None:
                return _error(400, f"bad mac {fields['mac']!r}: use aa:bb:cc:dd:ee:ff", ok=False)
            fields["mac"] = mac
        if not fields.get("stage") and not fields.get("status"):
            return _error(400, "give at least stage= or status=", ok=False)
        self.events(Event(kind=KIND_REPORT, mac=mac, ip=request.remote, detail=fields))
        return web.json_response({"ok": True})
