"""HTTP boot server on aiohttp: static files, per-device rendered files, and a small JSON API.

    from pxe.http import HttpConfig, start_http
    server = await start_http(HttpConfig(root=Path("/srv/boot"), bind_addr="198.18.0.1", port=80),
                              policy, events, api=provider)
    server.url  # "http://198.18.0.1:80"
    await server.close()

Files: `policy.render(Client(protocol=HTTP, ip=peer, headers=request headers, path=path), path)`
first; RenderedFile content -> 200 with its content_type; path -> that file via aiohttp's
FileResponse; not_found() -> 404; None -> the file under `root` (confined by `pxe.files.resolve`).
FileResponse does HEAD, Content-Length, Range/If-Range/416 and sendfile [RFC 9110 §14]; UEFI HTTP
boot sends HEAD then GET and needs Content-Length, which it always sets. `.efi` is served as
`application/efi` (EDK2 HttpBootDxe honours it).

API:
- GET /api/v1/status            -> api.status()
- GET /api/v1/events?mac=&since=&limit= -> api.events(mac, since, limit)
- GET|POST /api/v1/report?stage=&status=&nos=&version=&platform=&serial=&mac=&message=
  The ONIE installer's progress callback (GET because busybox wget may lack --post-data; POST
  with a JSON object of the same fields also accepted) -> Event("installer.report", mac, ip=peer,
  detail={fields given}) and 200 {"ok": true}. With `HttpConfig(accept_reports=False)`: 404 and
  no event (the installer's reports are best-effort, so it goes on installing).
Events: http.sent (path, bytes, status, seconds, range, method, rendered, aborted) when each file
response has been sent (404/403 too), installer.report. The policy sees the URL path with its
leading '/' ("/boot.ipxe"); Client.mac comes from `resolve_mac(ip)` if given, else the
ONIE-ETH-ADDR header, else "".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from aiohttp import web

from pxe.files import PathRefused, Refusal, resolve
from pxe.policy import Client, Event, EventSink, Policy, RenderedFile
from pxe.policy import Protocol as ClientProtocol

log = logging.getLogger(__name__)

# Types aiohttp's mimetypes table lacks or gets wrong for boot files.
EXTRA_CONTENT_TYPES = {
    ".efi": "application/efi",  # EDK2 HTTP boot checks for it [HttpBootSupport.c]
    ".ipxe": "text/plain",
    ".cfg": "text/plain",
    ".kpxe": "application/octet-stream",
    ".pxe": "application/octet-stream",
    ".0": "application/octet-stream",
}
REPORT_FIELDS = ("stage", "status", "nos", "version", "platform", "serial", "mac", "message")
REPORT_MAX_VALUE = 2048
EVENTS_MAX_LIMIT = 10000
_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


class StatusProvider(Protocol):
    """What the application hands in for the JSON API. Return JSON-serialisable values."""

    def status(self) -> Mapping[str, Any]: ...

    def events(self, mac: str | None, since: float | None, limit: int) -> Sequence[Mapping[str, Any]]: ...


@dataclass(frozen=True)
class HttpConfig:
    root: Path
    bind_addr: str = "0.0.0.0"
    port: int = 80  # 0 picks a free port: see `HttpServer.url`
    accept_reports: bool = True  # False: /api/v1/report answers 404 and records nothing


def normalise_mac(value: str) -> str | None:
    """aa:bb:cc:dd:ee:ff from the common spellings (colons, dashes, none), or None."""
    v = value.strip().lower()
    if not _MAC_RE.match(v):
        return None
    digits = v.replace(":", "").replace("-", "")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _content_type(path: str) -> str | None:
    for ext, ctype in EXTRA_CONTENT_TYPES.items():
        if path.lower().endswith(ext):
            return ctype
    return None


class HttpServer:
    def __init__(
        self,
        config: HttpConfig,
        policy: Policy | None,
        events: EventSink | None,
        api: StatusProvider | None,
        resolve_mac: Callable[[str], str | None] | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.events = events
        self.api = api
        self.resolve_mac = resolve_mac
        self.app = web.Application()
        self.app.router.add_get("/api/v1/status", self._status)
        self.app.router.add_get("/api/v1/events", self._events)
        self.app.router.add_get("/api/v1/report", self._report)
        self.app.router.add_post("/api/v1/report", self._report)
        # add_get also answers HEAD with the same handler (aiohttp drops the body for HEAD).
        self.app.router.add_get("/{tail:.*}", self._file)
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self.url = ""
        self.port = config.port

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.bind_addr, self.config.port, reuse_address=True)
        await site.start()
        # The bound address, to learn the port when 0 was asked.
        self.port = self.runner.addresses[0][1] if self.runner.addresses else self.config.port
        self.url = f"http://{self.config.bind_addr}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()

    def _emit(self, kind: str, mac: str | None, ip: str | None, detail: Mapping[str, Any]) -> None:
        if self.events is None:
            return
        try:
            self.events(Event(kind=kind, mac=mac or None, ip=ip, detail=dict(detail)))
        except Exception:
            log.exception("http: event sink failed for %s", kind)

    def _peer_mac(self, request: web.Request) -> str | None:
        ip = request.remote
        if self.resolve_mac and ip:
            with contextlib.suppress(Exception):
                if mac := self.resolve_mac(ip):
                    return mac
        # ONIE sends its own MAC in every request [ONIE.md: ONIE-ETH-ADDR].
        return normalise_mac(request.headers.get("ONIE-ETH-ADDR", "")) or None

    # -- files -------------------------------------------------------------------------------
    async def _file(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        # The raw path, so `..` that a client sent as-is is seen (and refused), not normalised away.
        path = unquote(request.raw_path.split("?", 1)[0])
        mac = self._peer_mac(request)
        rendered: RenderedFile | None = None
        if self.policy is not None:
            client = Client(
                mac=mac or "",
                protocol=ClientProtocol.HTTP,
                ip=request.remote,
                path=path,
                headers=dict(request.headers),
            )
            try:
                rendered = self.policy.render(client, path)
            except Exception:
                log.exception("http: policy.render failed for %s from %s", path, request.remote)
                return self._plain(request, 500, "internal error", path, mac, started)
        if rendered is not None and not rendered.found:
            return self._plain(request, 404, "not found", path, mac, started)
        if rendered is not None and rendered.content is not None:
            resp = _MeasuredResponse(body=rendered.content, content_type=rendered.content_type)
            return await self._finish(request, resp, path, mac, started, rendered=True)
        if rendered is not None and rendered.path is not None:
            file_path = Path(rendered.path)
            if not file_path.is_file():
                return self._plain(request, 404, "not found", path, mac, started)
            ctype = rendered.content_type
            if ctype == "application/octet-stream":
                ctype = _content_type(str(file_path)) or ctype
            return await self._send_file(request, file_path, ctype, path, mac, started, True)
        try:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(None, resolve, self.config.root, path)
        except PathRefused as exc:
            status = 404 if exc.reason in (Refusal.NOT_FOUND, Refusal.NOT_A_FILE) else 403
            return self._plain(request, status, str(exc), path, mac, started)
        return await self._send_file(request, found.path, _content_type(path), path, mac, started, False)

    async def _send_file(
        self,
        request: web.Request,
        file_path: Path,
        ctype: str | None,
        path: str,
        mac: str | None,
        started: float,
        rendered: bool,
    ) -> web.StreamResponse:
        headers = {"Content-Type": ctype} if ctype else None
        resp = _MeasuredFileResponse(file_path, headers=headers)
        resp.on_end = lambda aborted: self._sent_event(request, resp, path, mac, started, rendered, aborted)
        return resp

    async def _finish(
        self,
        request: web.Request,
        resp: _MeasuredResponse,
        path: str,
        mac: str | None,
        started: float,
        rendered: bool,
    ) -> web.StreamResponse:
        resp.on_end = lambda aborted: self._sent_event(request, resp, path, mac, started, rendered, aborted)
        return resp

    def _sent_event(self, request, resp, path, mac, started, rendered, aborted) -> None:  # noqa: ANN001
        length = resp.content_length
        if request.method == "HEAD":
            length = 0
        self._emit(
            "http.sent",
            mac,
            request.remote,
            {
                "path": path,
                "method": request.method,
                "status": resp.status,
                "bytes": length or 0,
                "seconds": round(time.monotonic() - started, 6),
                "range": request.headers.get("Range"),
                "rendered": rendered,
                "aborted": aborted,
            },
        )

    def _plain(
        self, request: web.Request, status: int, text: str, path: str, mac: str | None, started: float
    ) -> web.Response:
        self._emit(
            "http.sent",
            mac,
            request.remote,
            {
                "path": path,
                "method": request.method,
                "status": status,
                "bytes": 0,
                "seconds": round(time.monotonic() - started, 6),
                "range": request.headers.get("Range"),
                "rendered": False,
                "aborted": False,
            },
        )
        return web.Response(status=status, text=text + "\n")

    # -- API ---------------------------------------------------------------------------------
    async def _status(self, request: web.Request) -> web.Response:
        if self.api is None:
            return web.json_response({"error": "no status provider"}, status=404)
        return web.json_response(self.api.status(), dumps=_dumps)

    async def _events(self, request: web.Request) -> web.Response:
        if self.api is None:
            return web.json_response({"error": "no status provider"}, status=404)
        q = request.query
        mac = None
        if q.get("mac"):
            mac = normalise_mac(q["mac"])
            if mac is None:
                return web.json_response(
                    {"error": f"bad mac {q['mac']!r}: use aa:bb:cc:dd:ee:ff"}, status=400
                )
        try:
            since = float(q["since"]) if q.get("since") else None
            limit = int(q.get("limit") or 100)
        except ValueError:
            return web.json_response(
                {"error": "since must be a number (unix time), limit an integer"}, status=400
            )
        limit = max(1, min(limit, EVENTS_MAX_LIMIT))
        return web.json_response({"events": list(self.api.events(mac, since, limit))}, dumps=_dumps)

    async def _report(self, request: web.Request) -> web.Response:
        if not self.config.accept_reports:
            # 404, not 403: the endpoint is switched off, not forbidden to this caller. The
            # installer's report() ignores any failure, so the install itself is unaffected.
            return web.json_response(
                {"ok": False, "error": "progress reports are switched off here"}, status=404
            )
        fields: dict[str, str] = {}
        if request.method == "POST":
            try:
                body = await request.json()
            except Exception:
                return web.json_response({"ok": False, "error": "body must be a JSON object"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"ok": False, "error": "body must be a JSON object"}, status=400)
            source: Mapping[str, Any] = body
        else:
            source = request.query
        for key in REPORT_FIELDS:
            value = source.get(key)
            if value is not None:
                fields[key] = str(value)[:REPORT_MAX_VALUE]
        mac = None
        if fields.get("mac"):
            mac = normalise_mac(fields["mac"])
            if mac is None:
                return web.json_response(
                    {"ok": False, "error": f"bad mac {fields['mac']!r}: use aa:bb:cc:dd:ee:ff"}, status=400
                )
            fields["mac"] = mac
        if not fields.get("stage") and not fields.get("status"):
            return web.json_response({"ok": False, "error": "give at least stage= or status="}, status=400)
        self._emit("installer.report", mac, request.remote, fields)
        return web.json_response({"ok": True})


class _MeasuredFileResponse(web.FileResponse):
    """FileResponse that reports when its body has gone out (http.sent is measured at the end).

    FileResponse writes the whole body inside prepare() (sendfile, then write_eof), so the end of
    prepare is the end of the response; its prepare is not safe to call twice, hence the guard.
    """

    on_end: Callable[[bool], None] | None = None

    async def prepare(self, request):  # noqa: ANN001, ANN201
        if self.prepared:
            return None
        aborted = True
        try:
            writer = await super().prepare(request)
            aborted = False
            return writer
        finally:
            if self.on_end is not None:
                self.on_end(aborted)


class _MeasuredResponse(web.Response):
    """In-memory body (a rendered file): it goes out in write_eof."""

    on_end: Callable[[bool], None] | None = None

    async def write_eof(self, data: bytes = b"") -> None:
        aborted = True
        try:
            await super().write_eof(data)
            aborted = False
        finally:
            if self.on_end is not None:
                on_end, self.on_end = self.on_end, None
                on_end(aborted)


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str)


async def start_http(
    config: HttpConfig,
    policy: Policy | None = None,
    events: EventSink | None = None,
    api: StatusProvider | None = None,
    resolve_mac: Callable[[str], str | None] | None = None,
) -> HttpServer:
    server = HttpServer(config, policy, events, api, resolve_mac)
    await server.start()
    return server
