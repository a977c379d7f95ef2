"""One overall deadline per HTTP exchange with a BMC, not a timeout per socket read.

`requests`/urllib3 timeouts bound each `recv()`: a BMC that trickles its answer one byte per
second never trips a 2 s read timeout and held `--timeout 2` for 20 s and more (docs/bmc.md
"Timeouts"). Here every connection urllib3 opens registers its socket with the exchange's
`Deadline`; a timer shuts the socket down when the phase's bound is spent, which ends the blocked
read at once. Two phases, so the error names the option that bounded it:

- connect: TCP connect and TLS handshake, bounded by --connect-timeout;
- answer: from the connection to the last byte of the body, bounded by --timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CONNECT = "connect"
ANSWER = "answer"

# The deadline of the exchange running in this thread (requests is synchronous: the connection
# is opened and read in the thread that called `session.request`).
_current = threading.local()


class Deadline:
    """Bounds one exchange; use as a context manager around `session.request(...)`."""

    def __init__(self, connect_timeout: float, timeout: float):
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.expired: str | None = None  # the phase whose bound was spent
        self.connected = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Deadline:
        _current.deadline = self
        self._arm(self.connect_timeout, CONNECT)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.deadline = None
        with self._lock:
            if self._timer:
                self._timer.cancel()
            self._timer = None

    @property
    def phase(self) -> str:
        """The phase an error happened in: the expired one, else where the exchange stood."""
        return self.expired or (ANSWER if self.connected else CONNECT)

    def _arm(self, seconds: float, phase: str) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()
            if self.expired:
                return
            self._timer = threading.Timer(seconds, self._expire, (phase,))
            self._timer.daemon = True
            self._timer.start()

    def _expire(self, phase: str) -> None:
        with self._lock:
            self.expired = phase
            for sock in self._socks:
                _shut(sock)

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shut(sock)

    def mark_connected(self) -> None:
        self.connected = True
        self._arm(self.timeout, ANSWER)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to end
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixin for urllib3 connections: register the raw socket (before any TLS handshake) and
    switch to the answer phase once connected."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.attach(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.mark_connected()


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def watch_adapters(adapters: Any) -> None:
    """Make every mounted adapter's pools open watched connections (call after mounting)."""
    for adapter in adapters.values():
        if isinstance(adapter, HTTPAdapter):
            adapter.poolmanager.pool_classes_by_scheme = {
                "http": _WatchedHTTPPool,
                "https": _WatchedHTTPSPool,
            }
