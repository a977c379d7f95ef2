"""The web status page `provision serve` adds to its HTTP front end (docs/web.md).

Server-rendered (Jinja2, templates/web/), no build step and nothing fetched from elsewhere: the
page is plain tables and a GET filter form without JavaScript, and `status.js` (served from
templates/web/static/) keeps it live over the event stream (`/api/v1/stream`, Server-Sent
Events): on an event it asks for the affected rows again, rendered by the same macro.

- GET /                            devices (the `provision status --json` rows), filters
                                   (?state=&platform=&name=, the API's), rollouts per wave, pools
- GET /devices/<name or MAC>       one device and its timeline of events, newest first
- GET /web/fragment/rows?key=...   the table rows of those devices (MACs or names), under the
                                   page's own filters (what status.js swaps in)
- GET /web/fragment/device/<key>   a device page's facts (stage, lease, arming, last fetch)
- GET /web/fragment/summary        the rollout and pool sections (what status.js swaps in)
- GET /web/static/<file>           status.css, status.js

The page owns `/`, `/devices/` and `/web/` on the HTTP port: a boot file under the HTTP root at
devices/ or web/ is not served (a warning names it at start); every other path is the boot
files' as before. Every route here reads under the API's read policy (ReadGuard, docs/security.md):
who may not GET /api/v1/status gets the same 403 here. Reads run in the API's reader thread,
bounded like its own (provision.server.api `Api.read`), never on the loop.
"""

from __future__ import annotations

import calendar
import fnmatch
import functools
import json
import logging
import mimetypes
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from onie.platform import normalise_mac
from provision.devices.status import STATE_CODES, Filters, event_dict, snapshot
from provision.resources import templates_dir
from provision.rollout.view import rollout_summaries
from provision.server.api import Api
from provision.store.sqlite import Store
from pxe.dhcp.config import DhcpServerConfig, Mode
from pxe.dhcp.leases import Lease, LeaseState

log = logging.getLogger(__name__)

WEB_PREFIXES = ("devices", "web")  # top-level names under the HTTP root the page shadows
PAGE_LIMIT = 500  # devices per page (the API's default page)
FRAGMENT_KEYS = 200  # keys one fragment request may name
TIMELINE_LIMIT = 200  # events on a device's page
STREAM_URL = "/api/v1/stream"
# Event kinds that change a device's row: status.js listens for these by name (an EventSource
# only hands named events to listeners registered for that name) and refetches the rows.
ROW_KINDS = (
    "device.enrolled",
    "device.armed",
    "device.disarmed",
    "device.forgotten",
    "device.installing",
    "device.installed",
    "device.failed",
    "device.refused",
    "installer.fetched",
    "installer.report",
    "onie.discovered",
    "dhcp.ack",
    "dhcp.release",
    "dhcp.decline",
    "tftp.sent",
    "http.sent",
    "rollout.device",  # a device's stage in a rollout (its row and the rollout's wave counts)
    "rollout.state",  # a rollout paused, stopped by a gate, aborted, done (the rollout section)
)
# Also on a device's timeline (it shows everything said about the device).
TIMELINE_KINDS = (*ROW_KINDS, "dhcp.discover", "dhcp.offer", "dhcp.request", "dhcp.nak", "dhcp.inform")

ROLLOUTS_SHOWN = 10  # the newest rollouts on the page (`provision rollout list` has them all)

# Rollout progress (docs/rollout.md): (reader store) -> [{"id", "name", "state", "waves": [...]}].
RolloutSummaries = Callable[[Store], list[dict[str, Any]]]


def recent_rollouts(store: Store) -> list[dict[str, Any]]:
    """The newest rollouts with their waves (provision.rollout.view: two queries)."""
    return rollout_summaries(store, limit=ROLLOUTS_SHOWN)


@functools.cache
def web_env() -> jinja2.Environment:
    """HTML templates, autoescaped (every value shown came from a device or an operator)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "web")),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = _ago
    env.filters["jsonish"] = _jsonish
    env.globals["state_codes"] = STATE_CODES
    return env


def static_dir() -> Path:
    return templates_dir() / "web" / "static"


def _ago(when: str | None, now: float | None = None) -> str:
    """'3 min ago' for an ISO time of status (the exact time is in the cell's title)."""
    if not when:
        return ""
    try:
        ts = calendar.timegm(time.strptime(when[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return when
    s = max(0, int((time.time() if now is None else now) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def _jsonish(value: object) -> str:
    """An event detail value as /api/v1/events writes it (null, true; text as is), so the
    server-drawn timeline reads like the rows status.js adds from the stream."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def glob_literal(text: str) -> str:
    """`text` as an fnmatch pattern matching only itself (Filters take globs)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


@dataclass(frozen=True)
class PageFilters:
    """The filter form's fields (GET): one state, platform and name globs."""

    state: str = ""
    platform: str = ""
    name: str = ""

    @classmethod
    def of(cls, query: Any) -> PageFilters:
        state = query.get("state", "").strip()
        return cls(
            state=state if state in STATE_CODES else "",
            platform=query.get("platform", "").strip(),
            name=query.get("name", "").strip(),
        )

    def filters(self, **more: tuple[str, ...]) -> Filters:
        base = {
            "states": (self.state,) if self.state else (),
            "platforms": (self.platform,) if self.platform else (),
            "names": (self.name,) if self.name else (),
        }
        return Filters(**{**base, **more})

    @property
    def active(self) -> bool:
        return bool(self.state or self.platform or self.name)


def pool_usage(config: DhcpServerConfig | None, leases: Iterable[Lease], now: float) -> list[dict[str, Any]]:
    """Per subnet: its pool ranges, their size and how many addresses are leased (bound, not
    expired), declined (quarantined), reserved (a reservation inside a range) and free; and the
    leases held outside the ranges (reservations). Offers in flight (seconds long, in memory) are
    not counted. From the store's leases: read in the reader thread, not from the DHCP engine."""
    if config is None or config.mode is not Mode.AUTHORITATIVE:
        return []
    ranges = {s.network: [(_int(a), _int(b)) for a, b in s.pools] for s in config.subnets}
    reserved_ips = {_int(r.ip) for r in config.reservations}
    counts = {s.network: {"leased": 0, "declined": 0, "outside": 0} for s in config.subnets}
    seen_reserved: set[int] = set()
    for lease in leases:
        c = counts.get(lease.subnet)  # the Subnet.network the DHCP server filed it under
        if c is None or lease.expires <= now or lease.state is LeaseState.RELEASED:
            continue
        ip = _int(lease.ip)
        if not any(a <= ip <= b for a, b in ranges[lease.subnet]):
            c["outside"] += lease.state is LeaseState.BOUND
        elif lease.state is LeaseState.DECLINED:
            c["declined"] += 1
        else:
            c["leased"] += 1
            if ip in reserved_ips:
                seen_reserved.add(ip)
    out: list[dict[str, Any]] = []
    for s in config.subnets:
        rs = ranges[s.network]
        size = sum(b - a + 1 for a, b in rs)
        reserved = sum(1 for ip in reserved_ips - seen_reserved if any(a <= ip <= b for a, b in rs))
        c = counts[s.network]
        free = max(0, size - c["leased"] - c["declined"] - reserved)
        out.append(
            {
                "network": s.network,
                "interface": s.interface,
                "ranges": [f"{a}-{b}" for a, b in s.pools],
                "size": size,
                "leased": c["leased"],
                "declined": c["declined"],
                "reserved": reserved,
                "free": free,
                "used_pct": round(100 * (size - free) / size) if size else 0,
                "outside": c["outside"],
            }
        )
    return out


def _int(ip: str) -> int:
    return int.from_bytes(socket.inet_aton(ip), "big")


def timeline(
    store: Store, macs: Sequence[str], name: str | None, limit: int = TIMELINE_LIMIT
) -> list[dict[str, Any]]:
    """A device's events, newest first: the last `limit` of each of its MACs, and the lifecycle
    events that name it without a MAC (arming from another host) among the last 1,000 of those."""
    found: dict[int, dict[str, Any]] = {}
    for mac in macs:
        for i, e in store.event_page(mac=mac, limit=limit):
            found[i] = event_dict(e, i)
    if name:
        lifecycle = [k for k in ROW_KINDS if k.startswith("device.")]
        for i, e in store.event_page(kinds=lifecycle, limit=1000):
            if e.mac is None and e.detail.get("name") == name:
                found[i] = event_dict(e, i)
    return [found[i] for i in sorted(found, reverse=True)[:limit]]


class WebPage:
    """The page's routes; `dhcp_config`: the running DHCP configuration (pools, reservations) or
    None; `rollouts`: the rollouts to show (default: the newest, provision.rollout.view)."""

    def __init__(
        self,
        api: Api,
        dhcp_config: Callable[[], DhcpServerConfig | None] = lambda: None,
        rollouts: RolloutSummaries = recent_rollouts,
        title: str = "provision",
    ) -> None:
        self.api = api
        self.dhcp_config = dhcp_config
        self.rollouts = rollouts
        self.title = title

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.index),
            web.get("/devices/{key}", self.device),
            web.get("/web/fragment/rows", self.rows),
            web.get("/web/fragment/device/{key}", self.facts),
            web.get("/web/fragment/summary", self.summary),
            web.get("/web/static/{name}", self.static),
        ]

    # --- reads (in the API's reader thread) ------------------------------------------------------
    async def _read(self, fn: Callable[[Store], Any]) -> Any:
        result = await self.api.read(fn)
        if result is None:
            raise web.HTTPServiceUnavailable(text="the server is stopping")
        return result

    def _summary(self, st: Store, now: float) -> dict[str, Any]:
        config = self.dhcp_config()
        return {
            "rollouts": self.rollouts(st),
            "pools": pool_usage(config, st.leases(), now),
            "proxy": config is not None and config.mode is not Mode.AUTHORITATIVE,
        }

    def _render(self, template: str, status: int = 200, **ctx: Any) -> web.Response:
        # The stream carries only the kinds the page acts on (not every DHCP DISCOVER or TFTP block).
        kinds = ctx.get("kinds") or ()
        stream_url = STREAM_URL + ("?" + urlencode([("kind", k) for k in kinds]) if kinds else "")
        html = web_env().get_template(template).render(title=self.title, stream_url=stream_url, **ctx)
        return web.Response(
            text=html,
            status=status,
            content_type="text/html",
            charset="utf-8",
            # a status page is stale the moment it is drawn: never from a cache
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    # --- handlers --------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        page = PageFilters.of(request.query)
        after = request.query.get("after") or None
        lab = self.api.lab
        now = time.time()

        def read(st: Store) -> tuple[dict[str, Any], dict[str, Any]]:
            snap = snapshot(st, lab, now, limit=PAGE_LIMIT, after=after, filters=page.filters())
            return snap, self._summary(st, now)

        snap, summary = await self._read(read)
        return self._render(
            "index.html.j2",
            snap=snap,
            page=page,
            after=after,
            kinds=ROW_KINDS,
            **summary,
        )

    async def _device(
        self, key: str, with_timeline: bool
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The row of the device named `key` (a name, or a MAC in any usual spelling) and, if
        asked, its timeline; (None, []) when there is none."""
        mac = normalise_mac(key)
        filters = Filters(macs=(mac,)) if mac else Filters(names=(glob_literal(key),))
        lab = self.api.lab
        now = time.time()

        def read(st: Store) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            rows = snapshot(st, lab, now, limit=1, filters=filters)["devices"]
            if not rows:
                return None, []
            row = rows[0]
            if not with_timeline:
                return row, []
            return row, timeline(st, row["macs"] or ([mac] if mac else []), row["name"])

        found: tuple[dict[str, Any] | None, list[dict[str, Any]]] = await self._read(read)
        return found

    async def device(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        row, events = await self._device(key, with_timeline=True)
        if row is None:
            return self._render("missing.html.j2", status=404, key=key, kinds=())
        return self._render("device.html.j2", row=row, events=events, kinds=TIMELINE_KINDS)

    async def facts(self, request: web.Request) -> web.Response:
        """A device page's facts (stage, lease, arming, last fetch), for status.js."""
        row, _ = await self._device(request.match_info["key"], with_timeline=False)
        if row is None:
            raise web.HTTPNotFound(text="no such device")
        return self._render("facts.html.j2", row=row)

    async def rows(self, request: web.Request) -> web.Response:
        """The rows of the devices named by `key=` (MACs or names), under the page's filters."""
        page = PageFilters.of(request.query)
        keys = request.query.getall("key", [])[:FRAGMENT_KEYS]
        macs = tuple(m for m in (normalise_mac(k) for k in keys) if m)
        names = tuple(glob_literal(k) for k in keys if not normalise_mac(k))
        lab = self.api.lab
        now = time.time()

        def read(st: Store) -> list[dict[str, Any]]:
            got: dict[str, dict[str, Any]] = {}
            if macs:
                for r in snapshot(st, lab, now, filters=page.filters(macs=macs))["devices"]:
                    got[r["cursor"]] = r
            if names:
                for r in snapshot(st, lab, now, filters=page.filters(names=names))["devices"]:
                    if not page.name or fnmatch.fnmatchcase(r["name"] or "", page.name):
                        got[r["cursor"]] = r
            return [got[c] for c in sorted(got)]

        rows = await self._read(read)
        return self._render("rows.html.j2", rows=rows)

    async def summary(self, request: web.Request) -> web.Response:
        now = time.time()
        summary = await self._read(lambda st: self._summary(st, now))
        return self._render("summary.html.j2", **summary)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = static_dir() / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound(text="not found")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return web.Response(
            body=path.read_bytes(),
            content_type=ctype,
            charset="utf-8" if ctype.startswith("text/") or ctype.endswith("javascript") else None,
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )


def shadowed_files(http_root: Path) -> list[str]:
    """Entries of the HTTP root that the page's paths hide (logged at start, docs/web.md)."""
    return [str(http_root / n) for n in WEB_PREFIXES if (http_root / n).exists()]


__all__ = [
    "ROW_KINDS",
    "WEB_PREFIXES",
    "PageFilters",
    "WebPage",
    "pool_usage",
    "recent_rollouts",
    "shadowed_files",
]
