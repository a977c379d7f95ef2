"""A Server-Sent Events reader for tests: aiohttp's client on a loop of its own thread, which may
join a network namespace first (a netns is per thread), so the test body stays synchronous.

    with SseReader(url, headers={"Last-Event-ID": "12"}, ns=link.server) as r:
        r.wait(lambda frames: len(r.events) >= 3)
        r.events   # [{"id": "13", "event": "dhcp.ack", "data": {...}}, ...]
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def join_netns(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


class SseReader:
    def __init__(self, url: str, headers: dict[str, str] | None = None, ns: Any = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.ns = ns
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.body = ""  # a refusal's body
        self.frames: list[dict[str, Any]] = []  # events and comments, in arrival order
        self.arrived: list[float] = []  # monotonic time of each frame
        self.ended = False  # the server closed the stream
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # -- the reader thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.ns is not None:
                join_netns(self.ns.name)
            self._loop = asyncio.new_event_loop()
            self._task = self._loop.create_task(self._read())
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self.error = exc
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    async def _read(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url, headers=self.headers) as resp,
        ):
            self.status = resp.status
            self.response_headers = dict(resp.headers)
            if resp.status != 200:
                self.body = await resp.text()
                return
            fields: dict[str, Any] = {}
            async for raw in resp.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self._add({"comment": line[1:].strip()})
                elif line:
                    key, _, value = line.partition(":")
                    fields[key] = value[1:] if value.startswith(" ") else value
                elif fields:
                    if "data" in fields:
                        fields["data"] = json.loads(fields["data"])
                    self._add(fields)
                    fields = {}

    def _add(self, frame: dict[str, Any]) -> None:
        with self._cond:
            self.frames.append(frame)
            self.arrived.append(time.monotonic())
            self._cond.notify_all()

    # -- the test's side ---------------------------------------------------------------------
    @property
    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "comment" not in f]

    def wait(self, done: Callable[[], bool], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; status {self.status}, frames {self.frames[-10:]}")
                if self.ended and not done():
                    raise AssertionError(f"stream ended (error {self.error!r}); frames {self.frames[-10:]}")
                self._cond.wait(min(left, 0.2))

    def wait_connected(self, timeout: float = 15) -> None:
        self.wait(lambda: self.status is not None or self.ended, timeout)

    def close(self) -> None:
        if self._loop is not None and self._task is not None and not self.ended:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def __enter__(self) -> SseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
