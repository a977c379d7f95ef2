"""DHCP boot-storm benchmark: full DORA for N distinct clients against the real `provision serve`,
Kea and dnsmasq, in one invocation.

    sudo python bench/dhcp.py [--clients 5000] [--window 64] [--repeat 3] [--only provision,kea]

Layout (all inside namespaces this script creates, addresses in 198.18.0.0/15 only):

    [server ns] s0 198.18.0.1/24 ── veth ── l0 198.18.0.2/24 [load ns]
                route 198.19.0.0/18 via 198.18.0.2          relay address 198.19.0.1 on l0

The load generator plays a DHCP relay (giaddr 198.19.0.1, source port 67): one process then
stands for thousands of clients, since replies come back to the relay and not to chaddr. Each
client is a BIOS PXE ROM (options 60 and 93) and does DISCOVER → OFFER → REQUEST → ACK; a NAK
starts it over; 2 s without an answer retransmits; after 5 tries the client is lost. At most
`window` clients are in flight.

Servers, each pinned to one core (taskset), fresh state per run:
  provision  `python -m provision serve lab.yml` (the product: a lab file written here with one
             relayed subnet, `boot: unknown: discover`, an `onie:` section, so Router → BootPolicy
             and OniePolicy, lifecycle, events, the SQLite store, default logging to a file);
             `--log-level WARNING` adds a run with logging at WARNING to show what logging costs;
             the interpreter is the one running this script (run it with the venv's python, as
             `sudo .venv/bin/python bench/dhcp.py`); `--python PATH` adds a run under another
             (another venv's bin/python: interpreter builds differ by 20% here)
  library    the pxe.dhcp library alone (`--library-serve`): the same subnet, a static policy,
             leases in memory, events counted, no logging: the floor under the product
  kea        kea-dhcp4 (Debian's kea-dhcp4-server), memfile with persist=true, WARN logging
  PostgreSQL provision with `state: postgresql://` and Kea's pgsql lease backend (schema from
             Debian's kea-admin), both on one throwaway cluster (tests/support/postgres.py) with
             fsync and synchronous commits on, a fresh database per run; --no-postgresql skips
  dnsmasq    --leasefile-ro (keeps nothing) and with a lease file, both --no-ping

Consecutive and random MACs, --repeat rounds interleaved. Prints leases/s, duplicates, lost,
NAKs, retransmits, the server's CPU per lease (user+system, from /proc: steadier than leases/s on
a shared machine), provision's dhcp.ack log lines (each lease logged, the last ones at its stop),
medians, and the ratios provision/dnsmasq and provision/Kea. A run longer than
--cap seconds stops and counts what is left as lost (and is not repeated).
"""

from __future__ import annotations

import argparse
import gzip
import ipaddress
import json
import os
import random
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import psycopg
from _common import serve_counting  # bench/, the script's own directory

from dhcp4.codec import DecodeError, Packet, decode, encode
from dhcp4.options import (
    BOOTREQUEST,
    OPT_CLIENT_ARCH,
    OPT_MESSAGE_TYPE,
    OPT_PARAM_REQUEST,
    OPT_REQUESTED_IP,
    OPT_SERVER_ID,
    OPT_VENDOR_CLASS,
    MessageType,
)
from pxe.dhcp import DhcpServerConfig, Subnet, start_dhcp
from pxe.policy import BootDecision, Client, RenderedFile
from tests.support.netns import namespaces, veth

PXE_VENDOR_CLASS = b"PXEClient:Arch:00000:UNDI:002001"
RELAY_IP = "198.19.0.1"
NETWORK = "198.19.0.0/18"
POOL = ("198.19.0.10", "198.19.63.250")
KEA = "/usr/sbin/kea-dhcp4"
KEA_PG_SCHEMA = Path("/usr/share/kea/scripts/pgsql/dhcpdb_create.pgsql")  # Debian package kea-admin


@dataclass
class Result:
    name: str
    clients: int
    kind: str = ""
    done: int = 0
    seconds: float = 0.0
    duplicates: int = 0
    naks: int = 0
    retransmits: int = 0
    lost: int = 0
    user_us: float = 0.0  # server CPU per completed lease, user and system
    sys_us: float = 0.0
    ack_lines: int | None = None  # provision with default logging: its log's dhcp.ack lines

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def macs(n: int, consecutive: bool, seed: int = 1) -> list[bytes]:
    if consecutive:
        base = 0x5254_00A0_0000
        return [(base + i).to_bytes(6, "big") for i in range(n)]
    rng = random.Random(seed)
    out: set[bytes] = set()
    while len(out) < n:
        out.add(bytes([0x02]) + rng.randbytes(5))
    return sorted(out, key=lambda _: rng.random())


def _request(mac: bytes, xid: int, mtype: MessageType, opts: dict[int, bytes]) -> bytes:
    pkt = Packet(op=BOOTREQUEST, xid=xid, hops=1, giaddr=RELAY_IP, chaddr=mac.ljust(16, b"\0"))
    pkt.options[OPT_MESSAGE_TYPE] = bytes((mtype,))
    pkt.options.update(opts)
    pkt.options[OPT_PARAM_REQUEST] = bytes((1, 3, 6, 15, 51, 54, 66, 67))
    pkt.options[OPT_VENDOR_CLASS] = PXE_VENDOR_CLASS
    pkt.options[OPT_CLIENT_ARCH] = b"\x00\x00"  # BIOS [RFC 4578 §2.1]
    return encode(pkt)


def load(server_ip: str, clients: list[bytes], window: int, cap: float) -> Result:
    """The relay-side load generator: run in the load namespace (see main)."""
    res = Result("", len(clients))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", 67))
    sock.setblocking(False)
    dest = (server_ip, 67)
    queue = list(range(len(clients)))
    queue.reverse()
    inflight: dict[int, list] = {}  # xid -> [client index, stage bytes, sent at, tries]
    ips: dict[str, int] = {}
    next_xid = random.randrange(1 << 31)
    start = time.monotonic()
    last_check = start

    def send(xid: int, entry: list) -> None:
        with_opts = entry[1]
        with contextlib.suppress(BlockingIOError):
            sock.sendto(with_opts, dest)
        entry[2] = time.monotonic()

    while queue or inflight:
        while queue and len(inflight) < window:
            idx = queue.pop()
            next_xid = (next_xid + 1) & 0xFFFFFFFF
            entry = [idx, _request(clients[idx], next_xid, MessageType.DISCOVER, {}), 0.0, 1]
            inflight[next_xid] = entry
            send(next_xid, entry)
        ready, _, _ = select.select([sock], [], [], 0.02)
        if ready:
            for _ in range(256):
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                try:
                    pkt = decode(data)
                except DecodeError:
                    continue
                entry = inflight.get(pkt.xid)
                if entry is None:
                    continue
                mtype = pkt.message_type
                idx = entry[0]
                if mtype is MessageType.OFFER and entry[1][242] == MessageType.DISCOVER:
                    opts = {
                        OPT_REQUESTED_IP: socket.inet_aton(pkt.yiaddr),
                        OPT_SERVER_ID: pkt.options[OPT_SERVER_ID],
                    }
                    entry[1] = _request(clients[idx], pkt.xid, MessageType.REQUEST, opts)
                    entry[3] = 1
                    send(pkt.xid, entry)
                elif mtype is MessageType.ACK and entry[1][242] == MessageType.REQUEST:
                    del inflight[pkt.xid]
                    res.done += 1
                    if pkt.yiaddr in ips and ips[pkt.yiaddr] != idx:
                        res.duplicates += 1
                    ips[pkt.yiaddr] = idx
                elif mtype is MessageType.NAK:
                    res.naks += 1
                    del inflight[pkt.xid]
                    queue.append(idx)
        now = time.monotonic()
        if now - start > cap:
            break
        if now - last_check > 0.1:
            last_check = now
            for xid, entry in list(inflight.items()):
                if now - entry[2] > 2.0:
                    if entry[3] >= 5:
                        del inflight[xid]
                        res.lost += 1
                        continue
                    entry[3] += 1
                    res.retransmits += 1
                    send(xid, entry)
    res.seconds = time.monotonic() - start
    res.lost += len(inflight) + len(queue)
    sock.close()
    return res


def codec_costs(n: int = 20000) -> None:
    """Per-packet cost of our codec next to scapy's (measured: scapy alone caps a core near 1,300 DORA/s)."""
    raw = _request(
        b"\x52\x54\x00\x00\x00\x01", 1, MessageType.REQUEST, {OPT_REQUESTED_IP: b"\xc6\x13\x00\x0a"}
    )
    pkt = decode(raw)
    t = time.perf_counter()
    for _ in range(n):
        decode(raw)
    dec = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for _ in range(n):
        encode(pkt)
    enc = (time.perf_counter() - t) / n * 1e6
    line = f"codec per packet: decode {dec:.1f} us, encode {enc:.1f} us"
    try:
        from scapy.layers.dhcp import BOOTP

        m = 500
        t = time.perf_counter()
        for _ in range(m):
            BOOTP(raw)
        sdec = (time.perf_counter() - t) / m * 1e6
        sp = BOOTP(raw)
        t = time.perf_counter()
        for _ in range(m):
            bytes(sp)
        senc = (time.perf_counter() - t) / m * 1e6
        line += f"  (scapy: parse {sdec:.0f} us, build {senc:.0f} us)"
    except ImportError:
        pass
    print(line, flush=True)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _wait_ready(ns, proc, log: Path | None, marker: str | None, timeout: float = 60) -> None:
    """Until `marker` is in the server's log (provision), else until something listens on :67."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"server exited ({proc.returncode}): {text}")
        if marker is not None and log is not None:
            if marker in log.read_text(errors="replace"):
                return
        elif ":67" in ns.run(["ss", "-uln", "sport = :67"], check=False).stdout:
            return
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout}s")


@dataclass
class Server:
    """How to start one column's server: `start(tmp)` -> (Popen, log path, ready marker or None)."""

    name: str
    start: Callable[[Path], tuple[subprocess.Popen, Path | None, str | None]]


def lab_yml(run_dir: Path, clients: int, state: str | None = None) -> Path:
    """The lab file `provision serve` runs from: the bench's relayed subnet, every unknown PXE
    client booted into `discover` (BootPolicy), an `onie:` section (OniePolicy in the router)."""
    # Never booted, only checked: a bzImage header ("HdrS" at 0x202) and an empty gzipped cpio
    (run_dir / "vmlinuz").write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 0x1FA)
    trailer = b"070701" + b"0" * 8 * 11 + b"0000000B" + b"0" * 8 + b"TRAILER!!!\0"
    (run_dir / "initrd.gz").write_bytes(gzip.compress(trailer.ljust(512, b"\0")))
    (run_dir / "installers").mkdir(exist_ok=True)
    last = ipaddress.ip_address(POOL[0]) + clients + 256
    assert last <= ipaddress.ip_address(POOL[1]), "--clients too many for the pool"
    lab = {
        "interfaces": ["s0"],
        "mode": "authoritative",
        "subnets": [
            {
                "network": NETWORK,
                "pool": [f"{POOL[0]}-{POOL[1]}"],
                "router": RELAY_IP,
                "lease_time": 3600,
                "relays": ["198.18.0.2"],  # the load generator's source address
            }
        ],
        "http_port": 8080,
        "boot": {
            "unknown": "discover",
            "discover": "live",
            "entries": {"live": {"x86_64": {"kernel": "vmlinuz", "initrd": "initrd.gz"}}},
        },
        "onie": {"installers": "installers", "unknown": "ignore"},
        "paths": {"state_dir": "state"},
    }
    if state is not None:
        lab["state"] = state  # the shared PostgreSQL store (docs/scale-out.md)
    path = run_dir / "lab.yml"
    path.write_text(json.dumps(lab, indent=1))  # JSON is YAML
    return path


def interpreter(python: str) -> tuple[str, str]:
    """(version, what it is): its binary, and whether libpython is a shared library. This
    machine's pyenv build has it so (--enable-shared, configured without --enable-optimizations),
    Debian's python3 has it in the binary; provision under the first spent 20% more CPU a lease
    in the storm (docs/netboot.md "Performance")."""
    code = (
        "import os, sys; print(sys.version.split()[0], os.path.realpath(sys.executable),"
        " any('libpython' in line for line in open('/proc/self/maps')))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return out[0], f"{out[1]}, libpython {'shared' if out[2] == 'True' else 'in the binary'}"


def provision_server(
    root: str, srv, clients: int, core: str, level: str | None, pg=None, python: str | None = None, label=""
) -> Server:
    def start(run_dir: Path):
        lab = lab_yml(run_dir, clients, pg.create_db() if pg is not None else None)
        log = run_dir / "provision.log"
        env = dict(os.environ, PYTHONPATH=root)
        argv = ["taskset", "-c", core, python or sys.executable, "-m", "provision", "serve", str(lab)]
        if level is not None:
            # The same CLI with every record below `level` dropped (logging.disable)
            code = f"import logging; logging.disable(logging.{level} - 1); from provision.cli import main; main()"
            argv[4:6] = ["-c", code]
        with open(log, "w") as f:
            proc = srv.popen(argv, cwd=root, env=env, stdout=f, stderr=f)
        return proc, log, "provision serve: ready"

    store = "postgresql" if pg is not None else "sqlite"
    also = f", python {label}" if label else ""
    return Server(
        f"provision ({store}, {'default logging' if level is None else level.lower()}{also})", start
    )


class _StaticPolicy:
    """The library column's policy: every client the same bootfile (Kea's `boot-file-name`)."""

    def __init__(self) -> None:
        self.decision = BootDecision(bootfile="undionly.kpxe")

    def decide(self, client: Client) -> BootDecision | None:
        return self.decision

    def render(self, client: Client, path: str) -> RenderedFile | None:
        return None


def library_serve() -> None:
    """Child mode (--library-serve): the pxe.dhcp library alone, as an embedding program would
    run it: the bench's relayed subnet, a static policy, leases in memory (MemoryLeaseStore), an
    event sink that only counts (bench/_common.py, as the TFTP and HTTP benches' library
    columns), no logging. What the product adds on top of it (the router and its policies, the
    lifecycle, events, the store, the log line) is the difference between this column and
    provision's."""
    subnet = Subnet(NETWORK, pools=(POOL,), router=RELAY_IP, lease_time=3600, relays=("198.18.0.2",))
    config = DhcpServerConfig(interfaces=("s0",), subnets=(subnet,))
    serve_counting(lambda sink: start_dhcp(config, _StaticPolicy(), None, sink))


def library_server(root: str, srv, core: str) -> Server:
    def start(run_dir: Path):
        log = run_dir / "pxe-dhcp.log"
        argv = ["taskset", "-c", core, sys.executable, __file__, "--library-serve"]
        with open(log, "w") as f:
            proc = srv.popen(argv, cwd=root, stdout=f, stderr=f)
        return proc, log, "ready"  # (serve_counting's line)

    return Server("pxe.dhcp (library, memory leases)", start)


def kea_server(srv, core: str, backend: str, pg=None) -> Server:
    def start(run_dir: Path):
        lease_db: dict = {"type": "memfile", "persist": True, "lfc-interval": 0,
                          "name": str(run_dir / "kea-leases4.csv")}  # fmt: skip
        if backend == "postgresql":
            url = pg.create_db()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(KEA_PG_SCHEMA.read_text())  # what `kea-admin db-init pgsql` runs
            name = url.split("?")[0].rsplit("/", 1)[1]
            lease_db = {"type": "postgresql", "name": name, "host": str(pg.sock), "port": pg.port,
                        "user": pg.user}  # fmt: skip
        cfg = {
            "Dhcp4": {
                "interfaces-config": {"interfaces": ["s0"], "dhcp-socket-type": "udp"},
                "lease-database": lease_db,
                "valid-lifetime": 3600,
                "authoritative": True,
                "boot-file-name": "undionly.kpxe",
                "subnet4": [
                    {
                        "id": 1,
                        "subnet": NETWORK,
                        "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}],
                        "option-data": [{"name": "routers", "data": RELAY_IP}],
                    }
                ],
                "loggers": [
                    {
                        "name": "kea-dhcp4",
                        "severity": "WARN",
                        "output_options": [{"output": str(run_dir / "kea.log")}],
                    }
                ],
            }
        }
        conf = run_dir / "kea-dhcp4.conf"
        conf.write_text(json.dumps(cfg, indent=1))
        env = dict(os.environ, KEA_PIDFILE_DIR=str(run_dir), KEA_LOCKFILE_DIR=str(run_dir))
        log = run_dir / "kea.out"
        with open(log, "w") as f:
            proc = srv.popen(["taskset", "-c", core, KEA, "-c", str(conf)], env=env, stdout=f, stderr=f)
        return proc, log, None

    return Server(f"kea ({backend})", start)


def dnsmasq_server(srv, core: str, leasefile: bool) -> Server:
    def start(run_dir: Path):
        argv = [
            "taskset", "-c", core,
            "dnsmasq", "--no-daemon", "--port=0", "--interface=s0", "--bind-interfaces",
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.192.0,1h", "--dhcp-authoritative",
            "--no-ping", "--dhcp-lease-max=100000", "--quiet-dhcp", "--log-facility=/dev/null",
            "--conf-file=/dev/null", "--pid-file=", "--dhcp-boot=undionly.kpxe",
        ]  # fmt: skip
        argv.append(f"--dhcp-leasefile={run_dir}/dnsmasq.leases" if leasefile else "--leasefile-ro")
        # Its stderr must not be a pipe nobody reads: with --leasefile-ro it logs a warning per
        # packet, fills the pipe and blocks (seen here: 50 clients then a stall).
        log = run_dir / "dnsmasq.log"
        with open(log, "w") as f:
            proc = srv.popen(argv, stdout=f, stderr=f)
        return proc, None, None

    return Server("dnsmasq (lease file)" if leasefile else "dnsmasq (--leasefile-ro)", start)


def pg_cluster(stack: contextlib.ExitStack) -> tuple[object | None, str]:
    """A throwaway PostgreSQL cluster for the run (tests/support/postgres.py: initdb in a temp
    folder, a private socket), durable like the SQLite store (fsync and synchronous commits on),
    stopped on exit; or None and why the PostgreSQL columns are skipped."""
    try:
        from tests.support.postgres import Cluster, find_bin  # optional heavy dependency: psycopg
    except ImportError as exc:
        return None, f"tests/support/postgres.py not usable: {exc}"
    bin_dir = find_bin()
    if bin_dir is None:
        return None, "no PostgreSQL server (Debian package postgresql)"
    cluster = Cluster(bin_dir, durable=True)
    stack.callback(cluster.stop)
    cluster.start()
    return cluster, ""


def run_one(
    server: Server, srv, ld, tmp: Path, clients, consecutive, window, cap, load_core, n, spy=None
) -> Result:
    run_dir = tmp / f"run{n}"
    run_dir.mkdir()
    proc, log, marker = server.start(run_dir)
    try:
        _wait_ready(srv, proc, log, marker)
        before = cpu_seconds(proc.pid)
        sampler = None
        if spy and server.name.startswith("provision"):
            # py-spy samples the server from outside (pip install py-spy): no profiler overhead
            out_file = f"{spy}.{n}.txt"
            sampler = subprocess.Popen([shutil.which("py-spy") or "py-spy", "record", "--pid", str(proc.pid),
                                        "--format", "raw", "-o", out_file, "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(1)
        cfg = {"n": len(clients), "consecutive": consecutive, "window": window, "cap": cap}
        argv = ["taskset", "-c", load_core, sys.executable, __file__, "--load", json.dumps(cfg)]
        out = ld.run(argv, timeout=cap + 120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        after = cpu_seconds(proc.pid)
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(10)
    finally:
        srv.stop(proc)
    res = Result(server.name, len(clients), **data)
    # CPU the server spent per lease: steadier than leases/s on a shared machine
    res.user_us = (after[0] - before[0]) / max(res.done, 1) * 1e6
    res.sys_us = (after[1] - before[1]) / max(res.done, 1) * 1e6
    if log is not None and "default logging" in server.name:
        # a lease is one line (more with retransmits): the log kept up, and was written at stop
        res.ack_lines = sum(" msg=event kind=dhcp.ack " in line for line in log.open(errors="replace"))
    shutil.rmtree(run_dir, ignore_errors=True)
    return res


def summary(results: list[Result]) -> None:
    print("\nmedians (the machine is shared: single runs vary; CPU per lease is steadier)")
    names = list(dict.fromkeys(r.name for r in results))
    rate: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name in names:
        runs_of = [r for r in results if r.name == name]
        rate[name] = statistics.median(r.rate for r in runs_of)
        cpu[name] = statistics.median(r.user_us + r.sys_us for r in runs_of)
        worst = (max(r.duplicates for r in runs_of), max(r.lost for r in runs_of))
        print(
            f"{name:58s} {rate[name]:8.1f} leases/s over {len(runs_of)} run(s)  max dup {worst[0]}  "
            f"max lost {worst[1]}  server cpu {cpu[name]:.0f} us/lease"
        )
    for mine in (n for n in names if n.split()[1] == "provision"):
        kind = mine.split()[0]
        for peer in (n for n in names if n.split()[:1] == [kind] and n.split()[1] != "provision"):
            if rate[peer] and cpu[mine]:
                print(
                    f"ratio {mine} / {peer}: {rate[mine] / rate[peer]:.2f} (leases/s), "
                    f"{cpu[peer] / cpu[mine]:.2f} (inverse CPU per lease)"
                )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--cap", type=float, default=120.0, help="seconds before a run is cut short")
    ap.add_argument("--only", default="provision,library,kea,dnsmasq", help="servers to run (comma list)")
    ap.add_argument("--macs", choices=["both", "consecutive", "random"], default="both")
    ap.add_argument(
        "--log-level", action="append", default=[], metavar="LEVEL",
        help="also run provision with its logging at LEVEL (e.g. WARNING: what default logging costs)",
    )  # fmt: skip
    ap.add_argument("--core", default="1", help="CPU the servers are pinned to (taskset -c)")
    ap.add_argument("--load-core", default="0", help="CPU the load generator is pinned to")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds, interleaved; medians are compared (runs that hit --cap: once)",
    )
    ap.add_argument(
        "--no-postgresql", dest="postgresql", action="store_false",
        help="skip the PostgreSQL columns (provision with `state: postgresql://`, Kea's pgsql backend)",
    )  # fmt: skip
    ap.add_argument(
        "--python", action="append", default=[], metavar="PATH",
        help="also run provision (SQLite, default logging) under this interpreter, e.g. another"
        " venv's bin/python (it needs provision's dependencies): interpreter builds compared in one run",
    )  # fmt: skip
    ap.add_argument("--py-spy", metavar="PREFIX", help="sample provision with py-spy into PREFIX.<run>.txt")
    ap.add_argument("--load", help=argparse.SUPPRESS)
    ap.add_argument("--library-serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.library_serve:
        library_serve()
        return 0
    if args.load:
        cfg = json.loads(args.load)
        res = load("198.18.0.1", macs(cfg["n"], cfg["consecutive"]), cfg["window"], cfg["cap"])
        print(
            json.dumps(
                {k: getattr(res, k) for k in ("done", "seconds", "duplicates", "naks", "retransmits", "lost")}
            )
        )
        return 0
    codec_costs()
    for n, python in enumerate([sys.executable, *args.python], 1):
        version, what = interpreter(python)
        print(f"python {n}: {version} {python} ({what}){'' if n > 1 else ', every column but --python ones'}")
    if os.geteuid() != 0:
        print("bench/dhcp.py needs root (it creates network namespaces)", file=sys.stderr)
        return 3
    root = str(Path(__file__).resolve().parents[1])
    only = {s.strip() for s in args.only.split(",")}
    results: list[Result] = []
    kinds = ["consecutive", "random"] if args.macs == "both" else [args.macs]
    with (
        contextlib.ExitStack() as stack,
        tempfile.TemporaryDirectory(prefix="dhcpbench") as tmpname,
        namespaces(2, prefix="bd") as (srv, ld),
    ):
        tmp = Path(tmpname)
        veth(srv, "s0", ld, "l0", "198.18.0.1/24", "198.18.0.2/24")
        ld.run(["ip", "addr", "add", f"{RELAY_IP}/32", "dev", "l0"])
        srv.run(["ip", "route", "add", NETWORK, "via", "198.18.0.2"])
        servers: list[Server] = []
        pg, why = pg_cluster(stack) if args.postgresql else (None, "--no-postgresql")
        if pg is None:
            print(f"postgresql columns: skipped, {why}")
        if "provision" in only:
            servers.append(provision_server(root, srv, args.clients, args.core, None))
            servers += [
                provision_server(root, srv, args.clients, args.core, lv.upper()) for lv in args.log_level
            ]
            servers += [
                provision_server(root, srv, args.clients, args.core, None, python=python, label=str(n))
                for n, python in enumerate(args.python, 2)
            ]
            if pg is not None:
                servers.append(provision_server(root, srv, args.clients, args.core, None, pg))
        if "library" in only:
            servers.append(library_server(root, srv, args.core))
        if "kea" in only:
            if not Path(KEA).exists():
                print(f"kea: skipped, {KEA} missing (Debian package kea-dhcp4-server)")
            else:
                servers.append(kea_server(srv, args.core, "memfile"))
                if pg is not None and not KEA_PG_SCHEMA.exists():
                    print(f"kea (postgresql): skipped, {KEA_PG_SCHEMA} missing (Debian package kea-admin)")
                elif pg is not None:
                    servers.append(kea_server(srv, args.core, "postgresql", pg))
        if "dnsmasq" in only:
            servers += [dnsmasq_server(srv, args.core, leasefile) for leasefile in (False, True)]
        n = 0
        for kind in kinds:
            clients = macs(args.clients, kind == "consecutive")
            capped: set[str] = set()
            for _round in range(args.repeat):
                for server in servers:
                    if server.name in capped:
                        continue
                    n += 1
                    res = run_one(server, srv, ld, tmp, clients, kind == "consecutive", args.window,
                                  args.cap, args.load_core, n, args.py_spy)  # fmt: skip
                    res.name, res.kind = f"{kind:11s} {server.name}", kind
                    results.append(res)
                    if res.seconds >= args.cap:
                        capped.add(server.name)
                    print(
                        f"{res.name:58s} {res.done:6d}/{res.clients} in {res.seconds:6.2f}s {res.rate:8.1f}/s  "
                        f"dup {res.duplicates}  lost {res.lost}  nak {res.naks}  retx {res.retransmits}  "
                        f"cpu/lease {res.user_us:.0f}+{res.sys_us:.0f} us"
                        + (f"  ack lines {res.ack_lines}" if res.ack_lines is not None else ""),
                        flush=True,
                    )
    summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
