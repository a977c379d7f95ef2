"""Network namespaces for tests: every packet a test sends stays inside namespaces it made.

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range) only. Names carry the pid and a
counter so parallel runs do not collide. Everything is torn down by the context manager, also when
the test fails: processes by PID first, then the namespaces (which removes their veths and taps).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from tests.support import marks

_counter = itertools.count()
TEST_NET = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544: the only addresses tests may use


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5) -> None:
    """Stop a process we started, by its PID: `sig`, then SIGKILL if it outlives `timeout`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def unique_name(prefix: str = "pv") -> str:
    return f"{prefix}{os.getpid() % 100000}x{next(_counter)}"


@dataclass
class NetNS:
    name: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cmd(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], check: bool = True, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.cmd(argv), check=check, timeout=timeout, capture_output=True, text=True, **kw
        )

    def popen(self, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start a process in the namespace; `ip netns exec` execs, so .pid is the real PID."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(self.cmd(argv), start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5) -> None:
        stop_process(proc, sig, timeout)

    def cleanup(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        # Anything else still running inside (a dhclient that daemonised, a qemu): kill by PID.
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in out.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@contextlib.contextmanager
def namespaces(count: int, prefix: str = "pv") -> Iterator[list[NetNS]]:
    marks.require("network namespaces", "netns")
    made: list[NetNS] = []
    try:
        for _ in range(count):
            ns = NetNS(unique_name(prefix))
            _ip("netns", "add", ns.name)
            made.append(ns)
            _ip("-n", ns.name, "link", "set", "lo", "up")
        yield made
    finally:
        for ns in reversed(made):
            ns.cleanup()


def _check_address(addr: str | None) -> None:
    if addr and ipaddress.ip_interface(addr).ip not in TEST_NET:
        raise ValueError(f"{addr}: test addresses come from {TEST_NET} only")


def veth(
    a: NetNS, a_if: str, b: NetNS, b_if: str, a_addr: str | None = None, b_addr: str | None = None
) -> None:
    """A veth pair from a to b, created directly inside the namespaces (nothing in the host's)."""
    _check_address(a_addr)
    _check_address(b_addr)
    tmp = unique_name("vt")[:15]
    _ip("link", "add", tmp, "netns", a.name, "type", "veth", "peer", "name", b_if, "netns", b.name)
    _ip("-n", a.name, "link", "set", tmp, "name", a_if)
    for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
        if addr:
            _ip("-n", ns.name, "addr", "add", addr, "dev", ifname)
        _ip("-n", ns.name, "link", "set", ifname, "up")


def tap(ns: NetNS, ifname: str, addr: str | None = None) -> None:
    """A tap device inside `ns` for a QEMU guest (`-netdev tap,ifname=...` run inside ns)."""
    _check_address(addr)
    _ip("-n", ns.name, "tuntap", "add", "dev", ifname, "mode", "tap")
    if addr:
        _ip("-n", ns.name, "addr", "add", addr, "dev", ifname)
    _ip("-n", ns.name, "link", "set", ifname, "up")


@dataclass
class Link:
    """Two namespaces joined by one veth: `server_if` in `server` holds `server_ip`; `client_if`
    in `client` is up, with an address only when one was asked for."""

    server: NetNS
    client: NetNS
    server_if: str
    client_if: str
    server_ip: str


@contextlib.contextmanager
def linked_pair(
    server_if: str,
    client_if: str,
    server_addr: str,
    client_addr: str | None = None,
    client_mac: str | None = None,
    prefix: str = "pv",
) -> Iterator[Link]:
    """A server and a client namespace joined by a veth (`server_addr` like "198.18.20.1/24");
    removed on exit, also when the test fails."""
    with namespaces(2, prefix) as (server, client):
        veth(server, server_if, client, client_if, server_addr, client_addr)
        if client_mac:
            _ip("-n", client.name, "link", "set", client_if, "address", client_mac)
        yield Link(server, client, server_if, client_if, server_addr.split("/")[0])
