"""`provision status --watch` following the server's event stream (GET /api/v1/stream,
docs/observability.md "Event stream") instead of polling: the table is redrawn when something
happened, a moment after it happened, and not otherwise.

The stream is only the trigger: each redraw reads the store as a plain `status` does, so what is
drawn is the same either way. Standard library only (http.client), so `status` still starts
without aiohttp. Where the server is: `--server URL` (or env PROVISION_SERVER), else lab.yml's
first interface address and http_port when `--lab` is given; with `api.read: token` the state
dir's api-read-token is sent as the bearer. When the stream cannot be reached (no server URL,
refused, 403, the server stopped), `--watch` polls every SECONDS as before and tries the stream
again after each poll.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from provision.config.lab import LabConfig
from provision.devices.status import Filters
from provision.server.tokens import READ_TOKEN_FILE
from pxe import netif

STREAM_PATH = "/api/v1/stream"
ENV_SERVER = "PROVISION_SERVER"
CONNECT_TIMEOUT_S = 3.0
# No byte for this long (the server sends a keepalive every 15 s by default): the server is gone.
READ_TIMEOUT_S = 90.0
DEBOUNCE_S = 0.3  # events closer than this are one redraw (a DHCP exchange is 4 events)


def server_url(explicit: str | None, cfg: LabConfig | None) -> str | None:
    """The server's base URL: the one given, else lab.yml's first interface with an address."""
    if explicit:
        return explicit.rstrip("/")
    if cfg is None:
        return None
    for ifname in cfg.interfaces:
        found = netif.interface_ipv4(ifname)
        if found is not None:
            port = "" if cfg.http_port == 80 else f":{cfg.http_port}"
            return f"http://{found.address}{port}"
    return None


def read_token(state_dir: Path | None) -> str | None:
    """The bearer token `api.read: token` writes to the state dir, when this user may read it."""
    if state_dir is None:
        return None
    try:
        return (state_dir / READ_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def stream_query(filters: Filters) -> str:
    """The stream's own filters where they mean the same (MAC, name globs); the rest redraws."""
    pairs = [("name", n) for n in filters.names]
    if len(filters.macs) == 1 and not any(c in filters.macs[0] for c in "*?["):
        pairs.append(("mac", filters.macs[0]))
    return urllib.parse.urlencode(pairs)


class StreamUnavailable(Exception):
    """The stream cannot be followed now; the message says why (shown under the table)."""


@dataclass
class _Lost:
    why: str


class EventStream:
    """One connection to /api/v1/stream, read by a thread; `changes()` yields once per burst."""

    def __init__(self, base: str, query: str = "", token: str | None = None) -> None:
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StreamUnavailable(f"{base}: not an http:// URL")
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.path = parts.path.rstrip("/") + STREAM_PATH + (f"?{query}" if query else "")
        self.url = f"{parts.scheme}://{parts.netloc}{self.path}"
        self._conn = conn_cls(parts.hostname, parts.port, timeout=CONNECT_TIMEOUT_S)
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._conn.request("GET", self.path, headers=headers)
            resp = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise StreamUnavailable(f"{self.url}: {exc}") from None
        if resp.status != 200:
            body = resp.read(300).decode(errors="replace").strip()
            self._conn.close()
            raise StreamUnavailable(f"{self.url}: HTTP {resp.status} {body}")
        if self._conn.sock is not None:
            self._conn.sock.settimeout(READ_TIMEOUT_S)
        self._resp = resp
        self._q: queue.Queue[str | _Lost] = queue.Queue()
        self._thread = threading.Thread(target=self._read, name="status-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._resp:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.startswith("id:"):
                    self._q.put(line[3:].strip())
                elif line.startswith("event: overflow"):
                    self._q.put("overflow")  # a redraw reads the store anyway: nothing is lost
            self._q.put(_Lost("the server closed the stream"))
        except Exception as exc:
            self._q.put(_Lost(f"stream lost: {exc}"))

    def changes(self, idle: float | None = None) -> Iterator[bool]:
        """Yields True after each burst of events (quiet for DEBOUNCE_S), False after `idle`
        seconds without any; raises StreamUnavailable when the stream ends."""
        while True:
            try:
                item = self._q.get(timeout=idle)
            except queue.Empty:
                yield False
                continue
            if isinstance(item, _Lost):
                raise StreamUnavailable(item.why)
            deadline = time.monotonic() + DEBOUNCE_S
            lost: _Lost | None = None
            while (left := deadline - time.monotonic()) > 0:
                try:
                    more = self._q.get(timeout=left)
                except queue.Empty:
                    break
                if isinstance(more, _Lost):
                    lost = more
                    break
            yield True
            if lost is not None:
                raise StreamUnavailable(lost.why)

    def close(self) -> None:
        if self._conn.sock is not None:
            with contextlib.suppress(OSError):
                self._conn.sock.shutdown(socket.SHUT_RDWR)  # ends the reader's recv at once
        self._conn.close()


__all__ = ["ENV_SERVER", "EventStream", "StreamUnavailable", "read_token", "server_url", "stream_query"]
