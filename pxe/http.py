"""HTTP boot server on aiohttp: static files and per-device rendered files; the caller adds its routes.

    from pxe.http import HttpConfig, start_http
    server = await start_http(HttpConfig(root=Path("/srv/boot"), bind_addr="198.18.0.1", port=80),
                              policy, events, routes=my_routes)
    server.url  # "http://198.18.0.1:80"
    await server.close()

Files: `policy.render(Client(service=HTTP, ip=peer, server_ip=our address, headers=request
headers, path=path), path)` first; RenderedFile content -> 200 with its content_type; path -> that
file via aiohttp's FileResponse; not_found() -> 404; None -> the file under `root` (confined by
`pxe.files.resolve`). FileResponse does HEAD, Content-Length, Range/If-Range/416 and sendfile
[RFC 9110 §14]; UEFI HTTP boot sends HEAD then GET and needs Content-Length, which it always
sets. `.efi` is served as `application/efi` (EDK2 HttpBootDxe honours it).

Routes: `routes` (aiohttp route definitions) are the caller's, registered before the catch-all
file route, as pixiecore's caller owns its mux: an application's API lives in the application.
Events: http.sent (path, bytes, status, seconds, range, method, rendered, aborted) when each file
response has been sent (404/403 too). The policy sees the URL path with its leading '/'
("/boot.ipxe"); Client.mac comes from `resolve_mac(ip, headers)` if given, else "".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from pxe.files import PathRefused, Refusal, resolve
from pxe.policy import Client, Event, EventSink, Policy, RenderedFile, Service

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


@dataclass(frozen=True)
class HttpConfig:
    root: Path
    bind_addr: str = "0.0.0.0"
    port: int = 80  # 0 picks a free port: see `HttpServer.url`


# The caller's MAC for a request: (peer address, request headers) -> MAC or None.
MacResolver = Callable[[str, Mapping[str, str]], str | None]


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
        routes: Sequence[web.AbstractRouteDef] = (),
        resolve_mac: MacResolver | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.events = events
        self.resolve_mac = resolve_mac
        self.app = web.Application()
        self.app.add_routes(routes)
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
        if self.resolve_mac is None or not ip:
            return None
        try:
            return self.resolve_mac(ip, request.headers)
        except Exception:
            log.exception("http: resolve_mac failed for %s", ip)
            return None

    def _local_ip(self, request: web.Request) -> str | None:
        """Our address this request came in on: the one the client reaches us at."""
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        return str(sockname[0]) if sockname else None

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
                service=Service.HTTP,
                ip=request.remote,
                server_ip=self._local_ip(request),
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

    def _sent_event(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        path: str,
        mac: str | None,
        started: float,
        rendered: bool,
        aborted: bool,
    ) -> None:
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


class _MeasuredFileResponse(web.FileResponse):
    """FileResponse that reports when its body has gone out (http.sent is measured at the end).

    FileResponse writes the whole body inside prepare() (sendfile, then write_eof), so the end of
    prepare is the end of the response; its prepare is not safe to call twice, hence the guard.
    """

    on_end: Callable[[bool], None] | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
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


async def start_http(
    config: HttpConfig,
    policy: Policy | None = None,
    events: EventSink | None = None,
    routes: Sequence[web.AbstractRouteDef] = (),
    resolve_mac: MacResolver | None = None,
) -> HttpServer:
    server = HttpServer(config, policy, events, routes, resolve_mac)
    await server.start()
    return server
