"""The web status page's routes on pxe.http against curl, with a real SQLite store (the browser
tests are in test_web_browser.py): pages, fragments, static files, escaping, what it leaves to the
boot files, and the pool counts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from provision.config.inventory import Device, Inventory
from provision.server.api import Api
from provision.server.events import EventBus
from provision.server.web import WebPage, pool_usage, shadowed_files
from provision.store.rollouts import RolloutStore
from provision.store.sqlite import Store
from pxe.dhcp.config import DhcpServerConfig, Mode, Reservation, Subnet
from pxe.dhcp.leases import Lease, LeaseState
from pxe.http import HttpConfig, start_http
from pxe.policy import Event
from tests.pxe.test_http import curl
from tests.support.loop import LoopThread

MAC1, MAC2, STRANGER = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:99"
CONFIG = DhcpServerConfig(
    interfaces=("eth0",),
    subnets=(Subnet(network="198.18.0.0/24", pools=(("198.18.0.100", "198.18.0.109"),)),),
    reservations=(Reservation(MAC1, "198.18.0.11"), Reservation(MAC2, "198.18.0.105")),
)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[SimpleNamespace]:
    loop = LoopThread()
    store = loop.run(_call(lambda: Store(tmp_path / "provision.db")))
    bus = EventBus()
    bus.subscribe("store", store.add_event)
    inventory = Inventory([Device("leaf-01", mac=MAC1, serial="S1"), Device("leaf-02", mac=MAC2)])
    api = Api(lambda: store, inventory, bus)
    page = WebPage(api, lambda: CONFIG)
    root = tmp_path / "http"
    root.mkdir()
    (root / "boot.ipxe").write_text("#!ipxe\n")
    srv = loop.run(start_http(HttpConfig(root=root, bind_addr="127.0.0.1", port=0), None, bus, page.routes()))

    def emit(e: Event) -> None:
        loop.run(_call(lambda: bus(e)))

    try:
        yield SimpleNamespace(
            url=srv.url, emit=emit, store=store, root=root, on_loop=lambda fn: loop.run(_call(fn))
        )
    finally:
        loop.run(srv.close())
        api.close()
        loop.run(_call(store.close))
        loop.stop()


def get(site: SimpleNamespace, path: str) -> tuple[int, str]:
    status, _, body = curl(site.url + path)
    return status, body.decode()


def test_index_device_pages_and_fragments(site):
    site.emit(Event(kind="dhcp.ack", mac=MAC1, ip="198.18.0.11", detail={"lease_time": 600}))
    site.emit(
        Event(
            kind="installer.report",
            mac=MAC1,
            detail={"status": "failed", "message": "<script>alert(1)</script>", "nos": "demo"},
        )
    )
    site.emit(Event(kind="dhcp.discover", mac=STRANGER))
    status, html = get(site, "/")
    assert status == 200
    assert 'data-cursor="d:leaf-01"' in html and 'data-cursor="d:leaf-02"' in html
    assert f'data-cursor="u:{STRANGER}"' in html  # a MAC seen that no device claims
    assert "<script>alert" not in html  # what a device said is escaped, never markup
    # the filter form is a GET on /: state, platform, name (globs, as the API)
    status, html = get(site, "/?name=leaf-0*&state=enrolled")
    assert 'data-cursor="d:leaf-02"' in html and "u:" not in html
    status, html = get(site, "/?state=nonsense")  # an unknown state filters nothing
    assert status == 200 and "d:leaf-01" in html

    for key in ("leaf-01", MAC1, MAC1.replace(":", "-").upper()):
        status, html = get(site, f"/devices/{key}")
        assert status == 200 and "<h2>leaf-01" in html, key
        assert "installer.report" in html and "dhcp.ack" in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert get(site, "/devices/nosuch")[0] == 404
    status, html = get(site, f"/web/fragment/device/{MAC1}")  # the facts a device page refreshes
    assert status == 200 and html.lstrip().startswith('<dl id="facts"') and "Stage" in html
    assert get(site, "/web/fragment/device/nosuch")[0] == 404
    assert get(site, "/devices/leaf-*")[0] == 404  # a name is a name, not a glob

    # Fragments: the rows asked for, under the page's filters; none when filtered out.
    status, html = get(site, f"/web/fragment/rows?key=leaf-02&key={STRANGER}")
    assert html.count("<tr ") == 2 and "d:leaf-02" in html and f"u:{STRANGER}" in html
    status, html = get(site, "/web/fragment/rows?key=leaf-02&name=leaf-01")
    assert status == 200 and "<tr" not in html
    status, html = get(site, "/web/fragment/summary")
    assert status == 200 and 'data-network="198.18.0.0/24"' in html


def test_rollout_progress_per_wave(site):
    # A rollout as the engine writes it (provision.store.rollouts), read by provision.rollout.view.
    def write() -> None:
        rs = RolloutStore(site.store)
        devices = [("leaf-01", 0, 0), ("leaf-02", 1, 0), ("leaf-03", 1, 1)]
        rs.create("r1", "spine <upgrade>", {"target": "demo 2.0"}, devices, by="test")
        rs.update_device("r1", "leaf-01", stage="verified")  # installed, and back at the target
        rs.update_device("r1", "leaf-02", stage="installing")

    site.on_loop(write)
    status, html = get(site, "/web/fragment/summary")
    assert status == 200 and 'data-rollout="r1"' in html
    assert "spine &lt;upgrade&gt;" in html and "to demo 2.0" in html
    waves = [
        [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
        for tr in re.findall(
            r"<tr>(.*?)</tr>", html.split('class="waves"')[1].split("<tbody>")[1].split("</tbody>")[0], re.S
        )
    ]
    # wave, progress, devices, pending, arming, installing, installed, failed, skipped, state
    assert [w[0] for w in waves] == ["0", "1"]
    assert waves[0][2:9] == ["1", "0", "0", "0", "1", "0", "0"] and "done" in waves[0][9]
    assert waves[1][2:9] == ["2", "1", "0", "1", "0", "0", "0"] and "running" in waves[1][9]
    assert 'data-rollout="r1"' in get(site, "/")[1]


def test_static_files_and_what_stays_with_the_boot_files(site):
    status, headers, body = curl(site.url + "/web/static/status.js")
    assert status == 200 and b"EventSource" in body
    assert "javascript" in headers.get("content-type", "")
    assert curl(site.url + "/web/static/status.css")[0] == 200
    assert get(site, "/web/static/nothing.js")[0] == 404
    assert get(site, "/web/static/..%2fweb.py")[0] == 404
    assert get(site, "/boot.ipxe") == (200, "#!ipxe\n")  # every other path is the boot files'
    assert shadowed_files(site.root) == []
    (site.root / "devices").mkdir()
    assert shadowed_files(site.root) == [str(site.root / "devices")]


def test_pool_usage_counts():
    now = time.time()
    net = "198.18.0.0/24"
    leases = [
        Lease("198.18.0.100", "aa:00:00:00:00:01", LeaseState.BOUND, now + 60, net),
        Lease("198.18.0.101", "aa:00:00:00:00:02", LeaseState.BOUND, now - 1, net),  # expired
        Lease("198.18.0.102", "aa:00:00:00:00:03", LeaseState.DECLINED, now + 600, net),
        Lease("198.18.0.103", "aa:00:00:00:00:04", LeaseState.RELEASED, now + 60, net),
        Lease("198.18.0.11", MAC1, LeaseState.BOUND, now + 60, net),  # a reservation outside
    ]
    [pool] = pool_usage(CONFIG, leases, now)
    # 10 addresses: 1 leased, 1 declined, 1 reserved inside the range (198.18.0.105) -> 7 free
    counts = (pool["size"], pool["leased"], pool["declined"], pool["reserved"], pool["free"])
    assert counts == (10, 1, 1, 1, 7)
    assert pool["outside"] == 1 and pool["used_pct"] == 30 and pool["ranges"] == ["198.18.0.100-198.18.0.109"]
    # the reservation's holder leases its own address: counted once, as leased
    leases.append(Lease("198.18.0.105", MAC2, LeaseState.BOUND, now + 60, net))
    [pool] = pool_usage(CONFIG, leases, now)
    assert (pool["leased"], pool["reserved"], pool["free"]) == (2, 0, 7)
    proxy = DhcpServerConfig(interfaces=("eth0",), mode=Mode.PROXY)
    assert pool_usage(proxy, leases, now) == [] and pool_usage(None, leases, now) == []
