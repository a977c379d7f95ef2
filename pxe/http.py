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

Listening: `bind_addr`, and every address in `also_bind` on the same port (an IPv6 link-local
one is written "fe80::1%eth0"; it is bound even while duplicate address detection still holds it
tentative). Limits (`HttpLimits`, docs/netboot.md "Limits"): connections at once and per source
address (beyond them: 503 and close, before any request is read), a header timeout from connect
to the end of the first request's headers, an idle (keep-alive) timeout between requests, a body
timeout, and TCP_USER_TIMEOUT so a client that stops reading a response is dropped. A malformed
request is one log line (rate-limited), not a traceback. `server.stats` counts every bound
reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import HttpProcessingError

from pxe.counters import Transfers
from pxe.files import PathRefused, Refusal, resolve
from pxe.limits import Bounds, Gate
from pxe.logsafe import safe
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
class HttpLimits:
    # Connections at once, and from one source address. Each holds a socket and, while a file
    # is sent, its descriptor: 2 per connection is what RLIMIT_NOFILE must leave room for.
    max_connections: int = 1000
    max_per_client: int = 32
    header_timeout: float = 10.0  # connect -> end of the first request's headers
    idle_timeout: float = 15.0  # between requests on a kept-alive connection (and before the first)
    body_timeout: float = 30.0  # a request body (the API's POSTs) must arrive within this
    max_body: int = 1024 * 1024  # request body bytes (aiohttp answers 413 beyond)
    # TCP_USER_TIMEOUT [tcp(7)]: sent data unacknowledged this long (a client that stopped
    # reading: zero window) drops the connection. A slow but moving download is not affected.
    send_stall_timeout: float = 60.0
    backlog: int = 128  # listen() queue; asyncio also accepts up to this many per wake-up


@dataclass(frozen=True)
class HttpConfig:
    root: Path
    bind_addr: str = "0.0.0.0"
    port: int = 80  # 0 picks a free port: see `HttpServer.url`
    also_bind: tuple[str, ...] = ()  # more addresses on the same port, e.g. "fe80::1%eth0"
    limits: HttpLimits = field(default_factory=HttpLimits)


# The caller's MAC for a request: (peer address, request headers) -> MAC or None.
MacResolver = Callable[[str, Mapping[str, str]], str | None]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _middleware(method: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]) -> Any:
    """A bound method as an aiohttp middleware (the decorator marks a function, not a method)."""

    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await method(request, handler)

    return web.middleware(middleware)


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
        limits = config.limits
        self.gate = Gate(limits.max_connections, limits.max_per_client)
        # Admitted connections whose first request's headers have not arrived, oldest first.
        self.waiting: dict[_Guard, None] = {}
        self.bounds = Bounds(log)
        self.stats = self.bounds.stats  # every bound reached, for the observability export
        self.counters = Transfers()  # file responses by result, bytes, durations
        self.app = web.Application(
            client_max_size=limits.max_body, middlewares=[_middleware(self._body_guard)]
        )
        self.app.add_routes(routes)
        # add_get also answers HEAD with the same handler (aiohttp drops the body for HEAD).
        self.app.router.add_get("/{tail:.*}", self._file)
        self.runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=limits.idle_timeout,
            logger=_ServerLog(self.bounds),
        )
        self.listeners: list[asyncio.AbstractServer] = []
        self.url = ""
        self.urls: list[str] = []  # one per bound address
        self.port = config.port

    async def start(self) -> None:
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        port = self.config.port
        try:
            for addr in (self.config.bind_addr, *self.config.also_bind):
                sock = _listen_socket(addr, port, self.config.limits.backlog)
                port = sock.getsockname()[1]  # port 0: the others follow the first's choice
                server = await loop.create_server(
                    self._protocol, sock=sock, backlog=self.config.limits.backlog
                )
                self.listeners.append(server)
                self.urls.append(_url(addr, port))
        except BaseException:
            await self.close()
            raise
        self.port = port
        self.url = self.urls[0]

    async def close(self) -> None:
        for server in self.listeners:
            server.close()
        self.listeners = []
        await self.runner.cleanup()

    @property
    def connections(self) -> int:
        return self.gate.live

    # -- connection admission and timeouts ---------------------------------------------------
    def _protocol(self) -> asyncio.Protocol:
        server = self.runner.server
        assert server is not None, "start() first"
        return _Guard(self, server)

    async def _body_guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Read a request's body within `body_timeout` before the handler sees it (aiohttp
        keeps it: the handler's read()/json() return the same bytes)."""
        if request.body_exists:
            try:
                await asyncio.wait_for(request.read(), self.config.limits.body_timeout)
            except TimeoutError:
                self.bounds.hit(
                    "http.body_timeout",
                    "http: request body from %s not received within %s s: closed",
                    request.remote,
                    self.config.limits.body_timeout,
                )
                # 408, then close at once: aiohttp would otherwise linger reading the rest.
                resp = web.Response(
                    status=408, text="request body timeout\n", headers={"Connection": "close"}
                )
                await resp.prepare(request)
                await resp.write_eof()
                request.protocol.force_close()
                return resp
        return await handler(request)

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
                log.exception("http: policy.render failed for %s from %s", safe(path), request.remote)
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
        ignore_range = False
        if request.headers.get("Range") is not None:
            try:
                size = os.stat(file_path).st_size
            except OSError:
                return self._plain(request, 404, "not found", path, mac, started)
            verdict = range_verdict(request.method, request.headers.get("Range", ""), size)
            if verdict is RangeVerdict.UNSATISFIABLE:
                self.stats["http.range_unsatisfiable"] = self.stats.get("http.range_unsatisfiable", 0) + 1
                resp416 = self._plain(request, 416, "range not satisfiable", path, mac, started)
                resp416.headers["Content-Range"] = f"bytes */{size}"
                return resp416
            ignore_range = verdict is RangeVerdict.IGNORE
        headers = {"Content-Type": ctype} if ctype else None
        resp = _MeasuredFileResponse(file_path, headers=headers)
        resp.ignore_range = ignore_range
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
        seconds = time.monotonic() - started
        self.counters.done("aborted" if aborted else "complete", 0 if aborted else length or 0, seconds)
        self._emit(
            "http.sent",
            mac,
            request.remote,
            {
                "path": path,
                "method": request.method,
                "status": resp.status,
                "bytes": length or 0,
                "seconds": round(seconds, 6),
                "range": request.headers.get("Range"),
                "rendered": rendered,
                "aborted": aborted,
            },
        )

    def _plain(
        self, request: web.Request, status: int, text: str, path: str, mac: str | None, started: float
    ) -> web.Response:
        self.counters.refused(_RESULT_OF_STATUS.get(status, "error"))
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


# A file request answered without a body, by the result it is counted under.
_RESULT_OF_STATUS = {404: "not-found", 403: "forbidden", 416: "bad-range"}


class _MeasuredFileResponse(web.FileResponse):
    """FileResponse that reports when its body has gone out (http.sent is measured at the end).

    FileResponse writes the whole body inside prepare() (sendfile, then write_eof), so the end of
    prepare is the end of the response; its prepare is not safe to call twice, hence the guard.
    `ignore_range`: serve 200 with the whole file as if no Range had been sent.
    """

    on_end: Callable[[bool], None] | None = None
    ignore_range = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        if self.ignore_range:
            headers = request.headers.copy()
            headers.popall("Range", None)
            headers.popall("If-Range", None)
            with contextlib.suppress(RuntimeError):  # a GET whose body was read cannot be cloned
                request = request.clone(headers=headers)
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


class RangeVerdict:
    """What to do with a Range header [RFC 9110 §14.2]: let FileResponse serve it, ignore it
    (200, whole file) or answer 416."""

    SERVE = "serve"
    IGNORE = "ignore"
    UNSATISFIABLE = "unsatisfiable"


_RANGE_SPEC = re.compile(r"^[ \t]*(\d*)-(\d*)[ \t]*$", re.ASCII)


def range_verdict(method: str, header: str, size: int) -> str:
    """RFC 9110 §14.2: Range is defined for GET only (ignored on HEAD); an unknown unit is
    ignored; several ranges are ignored (we send no multipart/byteranges, which the RFC allows).
    §14.1.1/14.1.2: a suffix range of length 0 ("bytes=-0") and a first-pos at or past the end
    are unsatisfiable (416; aiohttp answered "bytes=-0" with 206 and the whole file). Syntax it
    cannot parse (no numbers, last-pos before first-pos) is left to FileResponse, which answers
    416 as the RFC allows for an invalid range."""
    if method != "GET":
        return RangeVerdict.IGNORE
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return RangeVerdict.IGNORE
    parts = specs.split(",")
    if len(parts) > 1:
        return RangeVerdict.IGNORE
    m = _RANGE_SPEC.match(parts[0])
    if m is None:
        return RangeVerdict.SERVE
    first, last = m.group(1), m.group(2)
    if not first and last and int(last) == 0:
        return RangeVerdict.UNSATISFIABLE
    if first and int(first) >= size:
        return RangeVerdict.UNSATISFIABLE
    if not first and last and size == 0:
        return RangeVerdict.UNSATISFIABLE  # nothing to select from an empty file
    return RangeVerdict.SERVE


def _url(addr: str, port: int) -> str:
    if ":" in addr:  # IPv6: brackets, and the zone's '%' escaped [RFC 6874]
        return f"http://[{addr.replace('%', '%25')}]:{port}"
    return f"http://{addr}:{port}"


IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # <linux/in.h>; honoured by IPv6 sockets too


def _listen_socket(addr: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on `addr` ("fe80::1%eth0" names the link of a link-local one).
    IPv6 is bound with IP_FREEBIND: a link-local address is 'tentative' for a second or two
    after the link comes up (duplicate address detection) and bind() would fail on it."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST | socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 12\r\n\r\nserver busy\n"
)


class _Guard(asyncio.Protocol):
    """Sits between the transport and aiohttp's per-connection protocol: admits the connection
    against the caps (503 and close if refused, before any request is read), closes it if the
    first request's headers are not complete within `header_timeout`, sets TCP_USER_TIMEOUT,
    and counts the connection out when it ends. Everything else is passed through unchanged."""

    def __init__(self, owner: HttpServer, factory: Callable[[], asyncio.Protocol]) -> None:
        self.owner = owner
        self.factory = factory
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes seen while looking for the end of the headers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        owner, limits = self.owner, self.owner.config.limits
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else "?"
        refused = owner.gate.admit(self.peer)
        if refused == "total" and self.peer not in owner.gate.by_source and self._evict_waiting():
            refused = owner.gate.admit(self.peer)
        if refused is not None:
            if refused == "total":
                owner.bounds.hit(
                    "http.busy_total",
                    "http: %s connections open (the cap): refusing new ones, the latest from %s",
                    limits.max_connections,
                    self.peer,
                )
            else:
                owner.bounds.hit(
                    "http.busy_per_client",
                    "http: %s already has %s connections open (the per-client cap): refusing more",
                    self.peer,
                    limits.max_per_client,
                )
            self.peer = ""  # not counted in: nothing to release
            with contextlib.suppress(Exception):
                transport.write(_BUSY_RESPONSE)
            transport.close()
            return
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and limits.send_stall_timeout > 0:
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(limits.send_stall_timeout * 1000)
                )
        self.timer = asyncio.get_running_loop().call_later(limits.header_timeout, self._header_timeout)
        owner.waiting[self] = None
        self.inner = self.factory()
        self.inner.connection_made(transport)

    def _evict_waiting(self) -> bool:
        """At the total cap, a source with no connection yet takes the slot of the oldest
        connection that has not sent its first request's headers (an idle connect: what a
        flood is made of). Without this, idle connections from many addresses would lock every
        new client out until the header timeout."""
        owner = self.owner
        victim = next(iter(owner.waiting), None)
        if victim is None or victim.transport is None:
            return False
        owner.bounds.hit(
            "http.evicted_idle",
            "http: at the cap, closed an idle connection from %s (no request yet) to serve a new client",
            victim.peer,
        )
        victim._release()
        victim.transport.abort()
        return True

    def _release(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.owner.waiting.pop(self, None)
        if self.peer:
            self.owner.gate.release(self.peer)
            self.peer = ""

    def _header_timeout(self) -> None:
        self.timer = None
        self.owner.bounds.hit(
            "http.header_timeout",
            "http: %s sent no complete request headers within %s s: closed",
            self.peer,
            self.owner.config.limits.header_timeout,
        )
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            seen = self.tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self.timer.cancel()
                self.timer = None
                self.tail = b""
                self.owner.waiting.pop(self, None)
            else:
                self.tail = seen[-3:]
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger. A malformed request (aiohttp's HttpProcessingError: bad request
    line, oversized header, bad method...) is one line, escaped and rate-limited, never a
    traceback; other errors keep their traceback (our bug to see), rate-limited too."""

    def __init__(self, bounds: Bounds) -> None:
        super().__init__(log, {})
        self.bounds = bounds

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        # aiohttp logs a first request with a bad method (TLS or junk on the port) at DEBUG,
        # with its traceback: the same one line as any other malformed request.
        exc_info = kwargs.get("exc_info")
        if isinstance(exc_info, HttpProcessingError):
            self.exception(msg, *args, exc_info=exc_info)
            return
        super().debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        peer = args[0] if args else "?"
        if isinstance(exc, HttpProcessingError):
            self.bounds.hit(
                "http.malformed",
                "http: malformed request from %s: %s %s",
                peer,
                exc.code,
                " ".join(line.strip() for line in str(exc.message).splitlines() if line.strip()),
                level=logging.INFO,
                burst=10,
            )
            return
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            self.bounds.hit(
                "http.no_descriptors", "http: out of file descriptors: %s", exc, level=logging.ERROR
            )
            return
        if self.bounds.hit(
            "http.internal_error", "http: error handling a request from %s", peer, level=logging.ERROR
        ):
            log.error("http: the first such error's traceback", exc_info=exc_info)


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
