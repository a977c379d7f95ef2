"""Helpers for the DHCP real-peer tests: our server in a namespace, real clients, raw probes."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.netns import Link, NetNS

ROOT = Path(__file__).resolve().parents[2]
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in(
    ns: NetNS, ifname: str | None = None, port: int = 68, bind_ip: str = "0.0.0.0"
) -> socket.socket:
    """A UDP socket that lives in `ns` (created by a thread that joined it: netns is per thread)."""
    box: list = []

    def make() -> None:
        try:
            fd = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if ifname:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            s.bind((bind_ip, port))
            box.append(s)
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def recv_all(sock: socket.socket, seconds: float, want: int | None = None) -> list[tuple[bytes, tuple]]:
    """Datagrams arriving within `seconds` (or until `want` of them came)."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (want is None or len(out) < want):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            out.append(sock.recvfrom(4096))
        except TimeoutError:
            break
    return out


def start_server(ns: NetNS, cfg: dict, log: Path):
    """Our DHCP server (tests/support/dhcp_server.py) in `ns`; returns once its sockets are bound."""
    fh = open(log, "a")  # noqa: SIM115  (closed with the process)
    proc = ns.popen(
        [sys.executable, "-m", "tests.support.dhcp_server", json.dumps(cfg)],
        text=True,
        cwd=str(ROOT),
        stderr=fh,
    )
    line = proc.stdout.readline()
    if "READY" not in line:
        raise RuntimeError(f"server did not start: {line} {log.read_text()}")
    return proc


# The server side of `dhcp_net` (tests/pxe/conftest.py): s0 = 198.18.0.1/24, a pool of 100.
SUBNET = {"network": "198.18.0.0/24", "pools": [["198.18.0.100", "198.18.0.199"]], "router": "198.18.0.1",
          "interface": "s0", "dns": ["198.18.0.1"], "domain": "lab.test"}  # fmt: skip


def server_config(workdir: Path, **extra: Any) -> dict[str, Any]:
    """tests/support/dhcp_server.py's configuration: SUBNET on s0, the store in `workdir`."""
    cfg: dict[str, Any] = {
        "interfaces": ["s0"],
        "subnets": [SUBNET],
        "db": str(workdir / "provision.db"),
        "bootfile": "undionly.kpxe",
    }
    cfg.update(extra)
    return cfg


@dataclass
class DhcpNet(Link):
    """A `Link` (server s0 = 198.18.0.1/24, client c0 without an address) and our DHCP server,
    started in the server namespace by `start`; stopped by PID with the namespaces."""

    workdir: Path
    cfg: dict[str, Any] | None = None

    def start(self, cfg: dict[str, Any] | None = None, **extra: Any) -> subprocess.Popen:
        """Start the server with `cfg`, or `server_config(workdir, **extra)`; kept in `self.cfg`."""
        self.cfg = cfg if cfg is not None else server_config(self.workdir, **extra)
        return start_server(self.server, self.cfg, self.workdir / "server.log")

    @property
    def db(self) -> str:
        assert self.cfg is not None, "start() the server first"
        return str(self.cfg["db"])


def write_script(path: Path) -> Path:
    """A dhclient/udhcpc script that only records what it was told (it configures nothing)."""
    # reason, address, then what else the client understood (dhclient's and udhcpc's variables)
    path.write_text(
        '#!/bin/sh\necho "${reason:-$1} ${new_ip_address:-$ip} '
        "router=${new_routers:-$router} mask=${new_subnet_mask:-$subnet} "
        "dns=${new_domain_name_servers:-$dns} domain=${new_domain_name:-$domain} "
        'lease=${new_dhcp_lease_time:-$lease}" >> "$0.out"\n'
    )
    path.chmod(0o755)
    return path


def dhclient_lease(ns: NetNS, ifname: str, workdir: Path, timeout: float = 30) -> str:
    """Run ISC dhclient until it is bound; the address it got."""
    script = write_script(workdir / "dhclient-script")
    out = Path(str(script) + ".out")
    out.unlink(missing_ok=True)
    argv = ["dhclient", "-d", "-1", "-v", "-cf", "/dev/null", "-lf", str(workdir / "dhclient.leases"),
            "-pf", str(workdir / "dhclient.pid"), "-sf", str(script), ifname]  # fmt: skip
    proc = ns.popen(argv, text=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if out.exists():
                for line in out.read_text().splitlines():
                    reason, ip, *_ = line.split(" ")
                    if reason in ("BOUND", "REBOOT", "RENEW", "REBIND") and ip:
                        return ip
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        ns.stop(proc)
    raise AssertionError(f"dhclient got no lease: {proc.stdout.read() if proc.stdout else ''}")


def dhclient_release(ns: NetNS, ifname: str, workdir: Path) -> None:
    script = write_script(workdir / "dhclient-script")
    ns.run(["dhclient", "-r", "-v", "-cf", "/dev/null", "-lf", str(workdir / "dhclient.leases"),
            "-pf", str(workdir / "dhclient.pid"), "-sf", str(script), ifname], timeout=30)  # fmt: skip


def last_report(workdir: Path, client: str) -> dict[str, str]:
    """The key=value pairs the client's script last recorded (router, mask, dns, domain, lease)."""
    line = (workdir / f"{client}-script.out").read_text().splitlines()[-1]
    return dict(item.split("=", 1) for item in line.split(" ")[2:] if "=" in item)


def udhcpc_lease(ns: NetNS, ifname: str, workdir: Path) -> str:
    script = write_script(workdir / "udhcpc-script")
    out = Path(str(script) + ".out")
    out.unlink(missing_ok=True)
    ns.run(
        ["busybox", "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", ifname, "-s", str(script)],
        timeout=30,
    )
    for line in out.read_text().splitlines():
        reason, ip, *_ = line.split(" ")
        if reason == "bound":
            return ip
    raise AssertionError(f"udhcpc got no lease: {out.read_text()}")
