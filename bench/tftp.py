"""TFTP throughput: pxe.tftp against dnsmasq and tftpd-hpa, same client (atftp), same run.

    sudo python bench/tftp.py [--size-mb 64] [--concurrent 100] [--small-mb 4] [--repeat 3]

Everything runs inside a network namespace this script creates (127.0.0.1 on its loopback), so
dnsmasq can have port 69 without touching the host. Scenarios:
  1. one file (64 MB) at blksize 1468, windowsize 1 and 16 (dnsmasq 2.90 and tftpd-hpa do not
     implement windowsize: they decline it and the client falls back to 1)
  2. N concurrent transfers of a smaller file, windowsize 16 asked
Prints MiB/s per server and the ratios; targets: >= dnsmasq at windowsize 1, 3x at 16.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import random_file, serve_counting, stop_groups

REPO = Path(__file__).resolve().parents[1]
NS = f"pvbt{os.getpid()}"
PORTS = {"pxe.tftp": 2069, "dnsmasq": 69, "tftpd-hpa": 1069}


def serve(root: str, port: int) -> None:
    """Child mode: run pxe.tftp with an event sink that only counts (as the app's would queue)."""
    sys.path.insert(0, str(REPO))
    from pxe.tftp import TftpConfig, start_tftp

    # Every client of this bench is 127.0.0.1: the per-client cap is lifted for it.
    config = TftpConfig(root=Path(root), bind_addr="127.0.0.1", port=port, max_per_client=100_000)
    serve_counting(lambda sink: start_tftp(config, None, sink))


def ns(argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", NS, *argv]


def start_servers(root: Path, procs: list[subprocess.Popen]) -> None:
    ours = subprocess.Popen(
        ns([sys.executable, __file__, "--serve", str(root), str(PORTS["pxe.tftp"])]),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    procs.append(ours)
    assert ours.stdout.readline().strip() == "ready"
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    procs.append(
        subprocess.Popen(
            ns(
                [
                    dnsmasq,
                    "-k",
                    "--port=0",
                    "--enable-tftp",
                    f"--tftp-root={root}",
                    "--listen-address=127.0.0.1",
                ]
                + [
                    "--bind-interfaces",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--user=root",
                    "--log-facility=/dev/null",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )
    tftpd = shutil.which("in.tftpd") or "/usr/sbin/in.tftpd"
    procs.append(
        subprocess.Popen(
            ns([tftpd, "-L", "-u", "root", "-s", str(root), "-a", f"127.0.0.1:{PORTS['tftpd-hpa']}"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )
    time.sleep(1)
    for p in procs:
        if p.poll() is not None:
            raise SystemExit(f"a server did not start: {p.args}")


def atftp_argv(port: int, name: str, window: int, out: str = "/dev/null") -> list[str]:
    return ns(
        ["atftp", "--option", "blksize 1468", "--option", f"windowsize {window}", "-g", "-r", name, "-l", out]
        + ["127.0.0.1", str(port)]
    )


def one_file(port: int, name: str, size: int, window: int) -> float:
    t0 = time.monotonic()
    subprocess.run(atftp_argv(port, name, window), check=True, capture_output=True, timeout=600)
    return size / (time.monotonic() - t0) / 2**20


def concurrent(port: int, name: str, size: int, window: int, count: int) -> float:
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(atftp_argv(port, name, window), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    failed = sum(p.wait(900) != 0 for p in procs)
    elapsed = time.monotonic() - t0
    if failed:
        print(f"    ({failed} of {count} transfers failed on port {port})")
    return (count - failed) * size / elapsed / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--small-mb", type=int, default=4)
    ap.add_argument("--concurrent", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/tftp.py needs root (it makes a network namespace for dnsmasq's port 69)")
    for tool in ("atftp", "dnsmasq", "in.tftpd"):
        if not (shutil.which(tool) or Path("/usr/sbin", tool).exists()):
            raise SystemExit(f"needs {tool} (Debian packages atftp, dnsmasq, tftpd-hpa)")
    tmp = Path(tempfile.mkdtemp(prefix="pvbench-tftp-"))
    tmp.chmod(0o755)
    procs: list[subprocess.Popen] = []
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        # tftpd-hpa resolves its -a address with AI_ADDRCONFIG, which fails when loopback is the
        # only interface with an address: give the namespace one (a veth pair, both ends inside).
        subprocess.run(
            ["ip", "-n", NS, "link", "add", "pvb0", "type", "veth", "peer", "name", "pvb1"], check=True
        )
        subprocess.run(["ip", "-n", NS, "addr", "add", "198.18.99.1/30", "dev", "pvb0"], check=True)
        subprocess.run(["ip", "-n", NS, "link", "set", "pvb0", "up"], check=True)
        big, small = tmp / "big.bin", tmp / "small.bin"
        size, small_size = random_file(big, args.size_mb), random_file(small, args.small_mb)
        start_servers(tmp, procs)
        results: dict[str, dict[str, float]] = {name: {} for name in PORTS}
        scenarios = [
            (
                f"{args.size_mb} MB, blksize 1468, window 1",
                lambda p: one_file(p, "big.bin", size, 1),
            ),
            (
                f"{args.size_mb} MB, blksize 1468, window 16",
                lambda p: one_file(p, "big.bin", size, 16),
            ),
            (
                f"{args.concurrent} x {args.small_mb} MB concurrent, window 16",
                lambda p: concurrent(p, "small.bin", small_size, 16, args.concurrent),
            ),
            (
                f"{args.concurrent} x {args.small_mb} MB concurrent, window 1",
                lambda p: concurrent(p, "small.bin", small_size, 1, args.concurrent),
            ),
        ]
        print(
            f"TFTP, atftp client, loopback in a namespace, {os.cpu_count()} CPUs (MiB/s, median of {args.repeat})",
            flush=True,
        )
        print(
            f"{'scenario':44} {'pxe.tftp':>9} {'dnsmasq':>9} {'tftpd-hpa':>9} {'vs dnsmasq':>10} {'vs hpa':>7}"
        )
        for label, fn in scenarios:
            runs: dict[str, list[float]] = {name: [] for name in PORTS}
            for _ in range(args.repeat):  # interleaved: background load on a shared machine hits all alike
                for name, port in PORTS.items():
                    runs[name].append(fn(port))
            for name in PORTS:
                results[name][label] = statistics.median(runs[name])
            ours, dm, hpa = (results[n][label] for n in PORTS)
            print(
                f"{label:44} {ours:9.1f} {dm:9.1f} {hpa:9.1f} {ours / dm:9.2f}x {ours / hpa:6.2f}x",
                flush=True,
            )
    finally:
        stop_groups(procs)
        subprocess.run(["ip", "netns", "del", NS], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
