"""Run `provision serve` as a subprocess inside a test namespace, and wait until it is ready."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.cli import cli_argv, cli_env

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
        ns.stop(sp.proc)
        sp._t.join(5)


def write_lab(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
