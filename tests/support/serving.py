"""Run `provision serve` as a subprocess inside a test namespace, and wait until it is ready;
`serve_link`: the same in a namespace pair joined by a veth, everything stopped by PID on exit."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import cli_argv, cli_env
from tests.support.netns import Link, linked_pair

READY = "provision serve: ready"


class ServeProc:
    def __init__(self, ns, proc: subprocess.Popen):
        self.ns = ns
        self.proc = proc
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("provision serve exited:\n" + self.output)
            if READY in line:
                return
        raise AssertionError(f"provision serve not ready after {timeout}s:\n" + self.output)

    def wait_exit(self, timeout: float = 30) -> int:
        rc = self.proc.wait(timeout)
        self._t.join(5)
        return rc

    def stop(self) -> int:
        """SIGTERM by PID (SIGKILL after 5 s), then its exit code; the output is complete after."""
        self.ns.stop(self.proc)
        self._t.join(5)
        return self.proc.returncode

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def start_serve(ns, *args: str) -> ServeProc:
    proc = ns.popen(
        cli_argv("-v", "serve", *args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return ServeProc(ns, proc)


@contextlib.contextmanager
def serving(ns, *args: str, timeout: float = 60) -> Iterator[ServeProc]:
    sp = start_serve(ns, *args)
    try:
        sp.wait_ready(timeout)
        yield sp
    finally:
        sp.stop()


@dataclass
class ServeLink(Link):
    """`provision serve` in the server namespace of a `Link`; what it started is stopped on exit
    of `serve_link` (the `serve_netns` fixture in tests/conftest.py)."""

    started: list[ServeProc] = field(default_factory=list)

    def start(self, *args: str) -> ServeProc:
        """`provision -v serve ARGS` in the server namespace, not waited for (to see it fail)."""
        sp = start_serve(self.server, *args)
        self.started.append(sp)
        return sp

    def serve(self, *args: str, timeout: float = 60) -> ServeProc:
        """`provision -v serve ARGS`, once it says it is ready."""
        sp = self.start(*args)
        sp.wait_ready(timeout)
        return sp


@contextlib.contextmanager
def serve_link(
    server_if: str = "sv0",
    client_if: str = "cl0",
    server_addr: str = "198.18.20.1/24",
    client_mac: str | None = None,
    prefix: str = "sv",
) -> Iterator[ServeLink]:
    with linked_pair(server_if, client_if, server_addr, client_mac=client_mac, prefix=prefix) as pair:
        link = ServeLink(**vars(pair))
        try:
            yield link
        finally:
            for sp in link.started:
                sp.stop()


def write_lab(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
