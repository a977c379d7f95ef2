"""HTTP throughput: pxe.http (aiohttp FileResponse, sendfile) against nginx, same clients, same run.

    python bench/http.py [--size-mb 256] [--clients 32] [--repeat 3]

32 curl processes download one 256 MB file at once from 127.0.0.1 (a free high port), first from
nginx (Debian nginx-light, a config written to a temp dir, 2 workers, sendfile on), then from
pxe.http (one process, one event loop). Prints aggregate MiB/s and the ratio; target >= 0.8x.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import random_file, serve_counting, stop_groups

REPO = Path(__file__).resolve().parents[1]

NGINX_CONF = """
daemon off;
master_process on;
worker_processes {workers};
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def serve(root: str, port: int) -> None:
    """Child mode: pxe.http with an event sink that only counts."""
    # Run as a script, bench/ is first on sys.path and this file, http.py, would shadow the
    # standard library's `http` package that aiohttp imports.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(REPO))
    from pxe.http import HttpConfig, HttpLimits, start_http

    # Every client of this bench is 127.0.0.1: the per-client cap is lifted for it.
    limits = HttpLimits(max_per_client=100_000)
    config = HttpConfig(root=Path(root), bind_addr="127.0.0.1", port=port, limits=limits)
    serve_counting(lambda sink: start_http(config, None, sink))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.args}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"server did not listen on {port}")


def download_all(url: str, clients: int, size: int) -> float:
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url], stdout=subprocess.PIPE
        )
        for _ in range(clients)
    ]
    got = [int(p.communicate(timeout=600)[0] or 0) for p in procs]
    elapsed = time.monotonic() - t0
    if any(g != size for g in got) or any(p.returncode for p in procs):
        raise SystemExit(f"incomplete downloads from {url}: {got}")
    return clients * size / elapsed / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--nginx-workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or not shutil.which("curl"):
        raise SystemExit("needs nginx (Debian nginx-light) and curl")
    tmp = Path(tempfile.mkdtemp(prefix="pvbench-http-"))
    procs: list[subprocess.Popen] = []
    try:
        root = tmp / "root"
        root.mkdir()
        size = random_file(root / "big.bin", args.size_mb)
        nginx_port, our_port = free_port(), free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(workers=args.nginx_workers, tmp=tmp, port=nginx_port, root=root))
        procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(conf)], start_new_session=True))
        wait_listening(nginx_port, procs[-1])
        ours = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root), str(our_port)],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        procs.append(ours)
        wait_listening(our_port, ours)
        rates: dict[str, list[float]] = {"nginx": [], "pxe.http": []}
        for _ in range(args.repeat):  # interleaved, so background load hits both alike
            rates["nginx"].append(download_all(f"http://127.0.0.1:{nginx_port}/big.bin", args.clients, size))
            rates["pxe.http"].append(download_all(f"http://127.0.0.1:{our_port}/big.bin", args.clients, size))
        n, o = statistics.median(rates["nginx"]), statistics.median(rates["pxe.http"])
        print(
            f"HTTP, {args.clients} concurrent curl downloads of {args.size_mb} MB, loopback, {os.cpu_count()} CPUs"
        )
        print(
            f"  nginx ({args.nginx_workers} workers)  {n:8.0f} MiB/s   runs: {', '.join(f'{r:.0f}' for r in rates['nginx'])}"
        )
        print(
            f"  pxe.http (1 process)  {o:8.0f} MiB/s   runs: {', '.join(f'{r:.0f}' for r in rates['pxe.http'])}"
        )
        print(f"  ratio pxe.http / nginx: {o / n:.2f}x")
    finally:
        stop_groups(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
