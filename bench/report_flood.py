"""Database and log growth of `provision serve` under a flood of installer reports.

    sudo python bench/report_flood.py [--tree DIR] [--threads 8] [--seconds 10]

Two namespaces joined by a veth (server 198.18.0.1/16, the flooder 198.18.0.2), `provision -v
serve` in the server one (from --tree, by default this checkout; point it at an export of an
older commit, e.g. `git archive e4cdf96 | tar -x -C /tmp/old`, to measure before/after). The
flooder POSTs `/api/v1/report` (a JSON object: 7 fields of 2,000 characters and a different MAC
each time; the query string of a GET cannot hold that much) with no token (what a forger has), from --threads keep-alive connections for --seconds.
Prints reports sent per second, the answers by status, and how much the state database (with
its WAL) and the serve log grew. Figures, not assertions; nothing leaves the namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"

LAB = """\
interfaces: [sv0]
subnets:
  - network: 198.18.0.0/16
    interface: sv0
    pool: [198.18.100.1-198.18.100.50]
boot:
  default: live
  entries:
    live:
      x86_64: {{kernel: {files}/vmlinuz, initrd: {files}/initrd.gz}}
paths:
  state_dir: {state}
"""

# Runs in the client namespace: THREADS keep-alive connections sending reports for SECONDS.
FLOOD = """
import http.client, json, sys, threading, time, collections
server, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
field = "x" * 2000
counts = collections.Counter()
lock = threading.Lock()
def run(n):
    conn = http.client.HTTPConnection(server, 80, timeout=10)
    i, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        mac = "02:%02x:%02x:%02x:%02x:%02x" % (n, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
        body = {k: field for k in ("stage", "status", "nos", "version", "platform", "serial", "message")}
        body["mac"] = mac
        try:
            conn.request("POST", "/api/v1/report", json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse(); r.read(); code = r.status
        except Exception:
            code = "error"; conn.close(); conn = http.client.HTTPConnection(server, 80, timeout=10)
        with lock:
            counts[code] += 1
        i += 1
ts = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(" ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=str)))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def state_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in state.glob("provision.db*") if p.is_file())


def events(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        return int(c.execute("SELECT count(*) FROM events").fetchone()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, default=REPO, help="the checkout whose provision runs")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    tag = os.getpid()
    server_ns, client_ns = f"pvrs{tag}", f"pvrc{tag}"
    serve = None
    with tempfile.TemporaryDirectory(prefix="pv-reports-") as tmp:
        work = Path(tmp)
        files, state = work / "files", work / "state"
        files.mkdir()
        state.mkdir()
        kernel = bytearray(300_000)
        kernel[0x202:0x206] = b"HdrS"  # what `provision check` recognises as a bzImage
        (files / "vmlinuz").write_bytes(bytes(kernel))
        (files / "initrd.gz").write_bytes(gzip.compress(b"070701" + b"0" * 1000))
        lab = work / "lab.yml"
        lab.write_text(LAB.format(files=files, state=state))
        log = work / "serve.log"
        try:
            ip("netns", "add", server_ns)
            ip("netns", "add", client_ns)
            ip("link", "add", "pvrv0", "netns", server_ns, "type", "veth", "peer", "name", "cl0",
               "netns", client_ns)  # fmt: skip
            ip("-n", server_ns, "link", "set", "pvrv0", "name", "sv0")
            ip("-n", server_ns, "addr", "add", f"{SERVER_IP}/16", "dev", "sv0")
            ip("-n", client_ns, "addr", "add", f"{CLIENT_IP}/16", "dev", "cl0")
            for ns_, dev in ((server_ns, "sv0"), (client_ns, "cl0"), (server_ns, "lo"), (client_ns, "lo")):
                ip("-n", ns_, "link", "set", dev, "up")
            env = dict(os.environ, PYTHONPATH=str(args.tree))
            out = open(log, "w")  # noqa: SIM115 - closed with the process
            serve = subprocess.Popen(
                in_ns(server_ns, [sys.executable, "-m", "provision", "-v", "serve", str(lab)]),
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
            time.sleep(2)
            db0, log0, ev0 = state_bytes(state), log.stat().st_size, events(state / "provision.db")
            started = time.monotonic()
            flood = subprocess.run(
                in_ns(
                    client_ns, [sys.executable, "-c", FLOOD, SERVER_IP, str(args.threads), str(args.seconds)]
                ),
                capture_output=True,
                text=True,
                timeout=args.seconds + 120,
            )
            took = time.monotonic() - started
            time.sleep(1)  # the last events' flush
            answers = dict(kv.split("=") for kv in flood.stdout.split())
            sent = sum(int(v) for v in answers.values())
            grew = state_bytes(state) - db0
            print(
                f"provision serve from {args.tree}: {args.threads} threads x {args.seconds:.0f} s of forged reports"
            )
            print(
                f"  sent {sent} ({sent / took:.0f}/s); answers: {flood.stdout.strip() or flood.stderr[-300:]}"
            )
            print(
                f"  state database (+WAL): +{grew / 1048576:.1f} MiB; events +{events(state / 'provision.db') - ev0}; "
                f"serve log +{(log.stat().st_size - log0) / 1048576:.1f} MiB"
            )
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
