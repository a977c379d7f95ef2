"""The web status page's cost against the JSON API it renders, same store, same run.

    python bench/web.py [--devices 2000] [--repeat 15]

A SQLite store with N lab devices, each with a lease and a handful of events (DHCP, fetch,
installer reports, installed), served by pxe.http with the API and the page on 127.0.0.1. curl
times (median of --repeat): GET /api/v1/status?limit=500 (the peer: the same 500 rows as JSON),
GET / (those rows as HTML, plus pools and rollouts), GET /web/fragment/rows for one device and
for 50 (what the page asks after an event burst), GET /web/fragment/summary (every lease counted).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO)  # not bench/ (its http.py would shadow the standard library's)

from provision.config.inventory import Device, Inventory  # noqa: E402
from provision.server.api import Api  # noqa: E402
from provision.server.events import EventBus  # noqa: E402
from provision.server.web import WebPage  # noqa: E402
from provision.store.sqlite import Store  # noqa: E402
from pxe.dhcp.config import DhcpServerConfig, Subnet  # noqa: E402
from pxe.dhcp.leases import Lease, LeaseState  # noqa: E402
from pxe.http import HttpConfig, start_http  # noqa: E402
from pxe.policy import Event  # noqa: E402


def mac(i: int) -> str:
    return f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"


def fill(store: Store, n: int) -> None:
    now = time.time()
    for i in range(n):
        m = mac(i)
        store.save_lease(Lease(ip(i), m, LeaseState.BOUND, now + 3600, "10.0.0.0/8", updated=now))
        detail = {"serial": f"S{i}", "platform": "x86_64-kvm_x86_64-r0", "nos": "demo", "version": "1.0"}
        for kind, d in (
            ("dhcp.ack", {"lease_time": 3600}),
            ("installer.fetched", {**detail, "path": "onie-installer.bin"}),
            ("installer.report", {**detail, "stage": "complete", "status": "ok"}),
            ("device.installed", {"name": f"leaf-{i:05d}"}),
        ):
            store.add_event(Event(kind=kind, mac=m, ip=ip(i), detail=d))
    store.flush()
    store.commit()


def curl_time(url: str) -> float:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url],
        capture_output=True,
        text=True,
        check=True,
    )
    code, seconds = out.stdout.split()
    assert code == "200", (url, code)
    return float(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    inventory = Inventory([Device(f"leaf-{i:05d}", mac=mac(i), serial=f"S{i}") for i in range(args.devices)])
    dhcp = DhcpServerConfig(
        interfaces=("eth0",), subnets=(Subnet(network="10.0.0.0/8", pools=(("10.0.0.1", "10.255.255.254"),)),)
    )
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def on_loop(fn):  # type: ignore[no-untyped-def]
        async def call():  # type: ignore[no-untyped-def]
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result()

    store = on_loop(lambda: Store(tmp / "provision.db"))
    t0 = time.monotonic()
    on_loop(lambda: fill(store, args.devices))
    print(f"store: {args.devices} devices, {args.devices} leases, {4 * args.devices} events "
          f"({time.monotonic() - t0:.1f} s to write)")  # fmt: skip
    api = Api(lambda: store, inventory, EventBus())
    page = WebPage(api, lambda: dhcp)
    srv = asyncio.run_coroutine_threadsafe(
        start_http(
            HttpConfig(root=tmp, bind_addr="127.0.0.1", port=0), None, None, api.routes() + page.routes()
        ),
        loop,
    ).result()
    base = srv.url.rstrip("/")
    some = "&".join(f"key=leaf-{i:05d}" for i in range(0, args.devices, max(1, args.devices // 50)))
    cases = [
        ("GET /api/v1/status?limit=500 (peer: JSON)", "/api/v1/status?limit=500"),
        ("GET / (500 rows, pools, rollouts)", "/"),
        ("GET /web/fragment/rows, 1 device", f"/web/fragment/rows?key={mac(7)}"),
        ("GET /web/fragment/rows, 50 devices", f"/web/fragment/rows?{some}"),
        ("GET /web/fragment/summary", "/web/fragment/summary"),
    ]
    for label, path in cases:
        curl_time(base + path)  # warm
        times = [curl_time(base + path) for _ in range(args.repeat)]
        print(
            f"{label:45s} median {statistics.median(times) * 1000:7.1f} ms  max {max(times) * 1000:7.1f} ms"
        )
    asyncio.run_coroutine_threadsafe(srv.close(), loop).result()
    api.close()
    on_loop(store.close)


if __name__ == "__main__":
    main()
