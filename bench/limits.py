"""`provision serve` under a boot-LAN flood: memory, refusals, and a real client's download.

    sudo python bench/limits.py [--tree DIR] [--nofile N] [--rrqs 2000] [--conns 1100]

Two namespaces joined by a veth (server 198.18.0.1/16; the attacker's addresses 198.18.1.x and
198.18.2.x, the real client 198.18.0.2), `provision -v serve` in the server one (from --tree, by
default this checkout; another checkout measures an older version), under `prlimit --nofile=N`
when asked (1024 is many systems' default). Scenarios, each one after the other:
  1. --rrqs idle TFTP RRQs, half asking timeout=255 (8 per source address, never ACKed), then a tftpy
     download of a 16 MiB file while they are held
  2. --conns idle TCP connections to port 80 (22 per source address), then a curl download
  3. both ended: RSS again
Prints VmRSS before/during/after, how many requests were answered, refused ("server busy" /
503) or unanswered, the real client's download time, and the serve log's warning/traceback
counts. Figures, not assertions; nothing leaves the namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
PER_SOURCE_RRQ = 8
PER_SOURCE_CONN = 22

LAB = """\
interfaces: [sv0]
subnets:
  - network: 198.18.0.0/16
    interface: sv0
    pool: [198.18.100.1-198.18.100.50]
boot:
  default: live
  unknown: ignore
  entries:
    live:
      x86_64: {{kernel: {files}/vmlinuz, initrd: {files}/initrd.gz}}
paths:
  state_dir: {state}
"""

# Runs in the client namespace: idle requests from each source, held until stdin closes.
ATTACK = """
import socket, sys, time
kind, server, per = sys.argv[1], sys.argv[2], int(sys.argv[3])
socks, answered, busy = [], 0, 0
for src in sys.argv[4:]:
    for _ in range(per):
        if kind == "tftp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0))
            # Half ask timeout=255 (an OACK first), half ask nothing (DATA 1 at once).
            opts = b"timeout\\x00255\\x00" if len(socks) % 2 else b""
            s.sendto(b"\\x00\\x01boot.bin\\x00octet\\x00" + opts, (server, 69))
        else:
            s = socket.socket()
            s.bind((src, 0))
            s.setblocking(False)  # a server that stopped accepting would leave connect() waiting
            s.connect_ex((server, 80))
        socks.append(s)
        time.sleep(0.001)
time.sleep(2)
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(200)
    except (BlockingIOError, OSError):
        continue
    if b"server busy" in data or data.startswith(b"HTTP/1.1 503"):
        busy += 1
    elif data:
        answered += 1
print(len(socks), answered, busy, flush=True)
sys.stdin.read()
"""

TFTPY = """
import sys, time, tftpy
t = time.monotonic()
tftpy.TftpClient(sys.argv[1], 69, options={"blksize": 1468}).download("big.bin", sys.argv[2], timeout=5)
print(round(time.monotonic() - t, 3))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sources(count: int, per: int) -> list[str]:
    n = -(-count // per)
    return [f"198.18.{1 + i // 250}.{1 + i % 250}" for i in range(n)]


def attack(ns: str, kind: str, count: int, per: int) -> tuple[subprocess.Popen, list[int]]:
    srcs = sources(count, per)
    proc = subprocess.Popen(
        in_ns(ns, [sys.executable, "-c", ATTACK, kind, SERVER_IP, str(per), *srcs]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, [int(x) for x in line.split()] if line else [0, 0, 0]


def end(proc: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        assert proc.stdin is not None
        proc.stdin.close()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(5)


def timed(argv: list[str], timeout: float = 120) -> str:
    t = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"FAILED: no answer within {timeout:.0f} s"
    took = time.monotonic() - t
    if r.returncode != 0:
        return f"FAILED after {took:.2f} s: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return f"{took:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, default=REPO, help="the checkout whose provision runs")
    ap.add_argument("--nofile", type=int, default=0, help="run serve under prlimit --nofile=N:N")
    ap.add_argument("--rrqs", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=1100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up the namespaces on SIGTERM too
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    tag = os.getpid()
    server_ns, client_ns = f"pvls{tag}", f"pvlc{tag}"
    serve = None
    with tempfile.TemporaryDirectory(prefix="pv-limits-") as tmp:
        work = Path(tmp)
        files, state = work / "files", work / "state"
        files.mkdir()
        kernel = bytearray(300_000)
        kernel[0x202:0x206] = b"HdrS"  # what `provision check` recognises as a bzImage
        (files / "vmlinuz").write_bytes(bytes(kernel))
        (files / "initrd.gz").write_bytes(gzip.compress(b"070701" + b"0" * 1000))
        for d in ("tftp", "http"):
            (state / d).mkdir(parents=True)
        big = os.urandom(16 << 20)
        (state / "tftp" / "big.bin").write_bytes(big)
        (state / "tftp" / "boot.bin").write_bytes(os.urandom(1 << 20))
        (state / "http" / "big.bin").write_bytes(big)
        lab = work / "lab.yml"
        lab.write_text(LAB.format(files=files, state=state))
        log = work / "serve.log"
        try:
            ip("netns", "add", server_ns)
            ip("netns", "add", client_ns)
            ip(
                "link",
                "add",
                "pvlv0",
                "netns",
                server_ns,
                "type",
                "veth",
                "peer",
                "name",
                "cl0",
                "netns",
                client_ns,
            )
            ip("-n", server_ns, "link", "set", "pvlv0", "name", "sv0")
            ip("-n", server_ns, "addr", "add", f"{SERVER_IP}/16", "dev", "sv0")
            ip("-n", client_ns, "addr", "add", f"{CLIENT_IP}/16", "dev", "cl0")
            for src in sorted(set(sources(args.rrqs, PER_SOURCE_RRQ) + sources(args.conns, PER_SOURCE_CONN))):
                ip("-n", client_ns, "addr", "add", f"{src}/16", "dev", "cl0")
            for ns_, dev in ((server_ns, "sv0"), (client_ns, "cl0"), (server_ns, "lo"), (client_ns, "lo")):
                ip("-n", ns_, "link", "set", dev, "up")
            argv = [sys.executable, "-m", "provision", "-v", "serve", str(lab)]
            if args.nofile:
                argv = ["prlimit", f"--nofile={args.nofile}:{args.nofile}", *argv]
            env = dict(os.environ, PYTHONPATH=str(args.tree))
            out = open(log, "w")  # noqa: SIM115 - closed in finally
            serve = subprocess.Popen(
                in_ns(server_ns, argv),
                cwd=args.tree,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + 60
            while "provision serve: ready" not in log.read_text():
                if serve.poll() is not None or time.monotonic() > deadline:
                    sys.exit("provision serve did not start:\n" + log.read_text())
                time.sleep(0.2)
            pid = serve.pid
            time.sleep(3)  # DAD, the first log lines
            print(
                f"provision serve from {args.tree}"
                + (f", prlimit --nofile={args.nofile}" if args.nofile else "")
            )
            print(f"  idle:                  RSS {rss_mib(pid):7.1f} MiB, {fds(pid)} fds")
            base_tftp = timed(in_ns(client_ns, [sys.executable, "-c", TFTPY, SERVER_IP, str(work / "t0")]))
            print(f"  tftpy 16 MiB, no attack: {base_tftp}")

            flood, (sent, answered, busy) = attack(client_ns, "tftp", args.rrqs, PER_SOURCE_RRQ)
            time.sleep(1)
            print(
                f"  {sent} idle RRQs: RSS {rss_mib(pid):7.1f} MiB, {fds(pid)} fds; "
                f"{answered} answered, {busy} refused 'server busy', {sent - answered - busy} unanswered"
            )
            print(
                f"  tftpy 16 MiB during:   {timed(in_ns(client_ns, [sys.executable, '-c', TFTPY, SERVER_IP, str(work / 't1')]))}"
            )
            curl = ["curl", "-sSf", "-m", "60", "-o", str(work / "h1"), f"http://{SERVER_IP}/big.bin"]
            print(f"  curl 16 MiB during:    {timed(in_ns(client_ns, curl))}")
            end(flood)
            time.sleep(25)  # the transfers notice (ICMP unreachable) or time out
            print(f"  RRQs ended (+25 s):            RSS {rss_mib(pid):7.1f} MiB, {fds(pid)} fds")

            flood, (sent, answered, busy) = attack(client_ns, "http", args.conns, PER_SOURCE_CONN)
            time.sleep(1)
            print(
                f"  {sent} idle TCP connections: RSS {rss_mib(pid):7.1f} MiB, {fds(pid)} fds; "
                f"{busy} refused 503, {sent - busy} held open or unanswered"
            )
            print(f"  curl 16 MiB during:    {timed(in_ns(client_ns, curl))}")
            print(
                f"  tftpy 16 MiB during:   {timed(in_ns(client_ns, [sys.executable, '-c', TFTPY, SERVER_IP, str(work / 't2')]))}"
            )
            end(flood)
            time.sleep(5)
            print(f"  connections ended (+5 s):     RSS {rss_mib(pid):7.1f} MiB, {fds(pid)} fds")
            text = log.read_text()
            print(
                f"  serve log: {len(text.splitlines())} lines, {text.count('Traceback')} tracebacks, "
                f"{text.count('Too many open files')} 'Too many open files'"
            )
            for line in text.splitlines():
                if "open files:" in line or "the cap" in line or "per-client cap" in line:
                    print("   ", line[:200])
        finally:
            if serve is not None and serve.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(serve.pid, 15)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    serve.wait(10)
                if serve.poll() is None:
                    os.killpg(serve.pid, 9)
            for ns_ in (client_ns, server_ns):
                subprocess.run(["ip", "netns", "del", ns_], capture_output=True)


if __name__ == "__main__":
    main()
