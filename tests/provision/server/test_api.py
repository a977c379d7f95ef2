"""provision's /api/v1 routes on pxe.http against curl and busybox wget, with a real SQLite store:
the installer's progress report, recent events, status, and reports switched off."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from provision.config.inventory import Device, Inventory
from provision.server.api import Api
from provision.server.events import EventBus
from provision.store.sqlite import Store
from pxe.http import HttpConfig, start_http
from pxe.policy import Event
from tests.pxe.test_http import curl
from tests.support.loop import LoopThread
from tests.support.tools import require_tool

MAC = "52:54:00:12:34:56"


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def serve_api(tmp_path: Path, accept_reports: bool = True) -> Iterator[SimpleNamespace]:
    """The API as `provision serve` runs it; the store lives on the loop's thread, as there."""
    loop = LoopThread()
    store = loop.run(_call(lambda: Store(tmp_path / "provision.db")))
    seen: list[Event] = []
    bus = EventBus()
    bus.subscribe("test", seen.append)
    bus.subscribe("store", store.add_event)
    api = Api(lambda: store, Inventory([Device("leaf-01", mac=MAC)]), bus, accept_reports=accept_reports)
    cfg = HttpConfig(root=tmp_path, bind_addr="127.0.0.1", port=0)
    srv = loop.run(start_http(cfg, None, bus, api.routes()))
    try:
        yield SimpleNamespace(url=srv.url, seen=seen, store=store, on_loop=lambda fn: loop.run(_call(fn)))
    finally:
        loop.run(srv.close())
        loop.run(_call(store.close))
        loop.stop()


@pytest.fixture
def api(tmp_path):
    yield from serve_api(tmp_path)


def reports(api) -> list[Event]:
    return [e for e in api.seen if e.kind == "installer.report"]


def test_installer_report_get_and_post(api):
    query = "stage=install&status=ok&nos=demo&version=1.2&platform=x86_64-kvm_x86_64-r0&serial=S1&mac=52-54-00-12-34-56&message=done%20now"
    status, _, body = curl(f"{api.url}/api/v1/report?{query}")
    assert status == 200 and json.loads(body) == {"ok": True}
    assert reports(api)[-1].mac == MAC and reports(api)[-1].ip == "127.0.0.1"
    assert reports(api)[-1].detail == {
        "stage": "install",
        "status": "ok",
        "nos": "demo",
        "version": "1.2",
        "platform": "x86_64-kvm_x86_64-r0",
        "serial": "S1",
        "mac": MAC,
        "message": "done now",
    }
    payload = json.dumps({"stage": "reboot", "status": "ok", "mac": "52:54:00:12:34:57"})
    status, _, body = curl(
        "-H", "Content-Type: application/json", "--data", payload, f"{api.url}/api/v1/report"
    )
    assert status == 200 and json.loads(body) == {"ok": True}
    assert reports(api)[-1].detail["stage"] == "reboot"
    assert curl(f"{api.url}/api/v1/report?stage=x&mac=nonsense")[0] == 400
    assert curl(f"{api.url}/api/v1/report?nos=x")[0] == 400
    assert curl("--data", "not json", f"{api.url}/api/v1/report")[0] == 400
    assert len(reports(api)) == 2  # refused reports record nothing


def test_report_with_busybox_wget(api, tmp_path):
    """The installer's real client: busybox wget, GET with a query string."""
    busybox = require_tool("busybox")
    out = tmp_path / "r"
    r = subprocess.run(
        [busybox, "wget", "-q", "-O", str(out), f"{api.url}/api/v1/report?stage=done&status=ok"],
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_bytes()) == {"ok": True}
    assert reports(api)[-1].detail == {"stage": "done", "status": "ok"}


def test_events_and_status_from_the_store(api):
    for i in range(3):
        api.on_loop(
            lambda i=i: api.store.add_event(Event("dhcp.ack", mac=MAC, ip="198.18.0.10", ts=100.0 + i))
        )
    api.on_loop(lambda: api.store.add_event(Event("dhcp.ack", mac="52:54:00:00:00:99", ts=104.0)))
    status, _, body = curl(f"{api.url}/api/v1/events?mac=52:54:00:12:34:56&since=100.5&limit=5")
    got = json.loads(body)["events"]
    assert status == 200 and {e["mac"] for e in got} == {MAC}
    assert [e["time"] for e in got] == ["1970-01-01T00:01:41.000Z", "1970-01-01T00:01:42.000Z"]
    since = curl(f"{api.url}/api/v1/events?mac={MAC}&since=1970-01-01T00:01:41.5Z")[2]
    assert [e["time"] for e in json.loads(since)["events"]] == ["1970-01-01T00:01:42.000Z"]
    status, _, body = curl(f"{api.url}/api/v1/events?limit=1")
    assert status == 200 and [e["mac"] for e in json.loads(body)["events"]] == ["52:54:00:00:00:99"]
    assert curl(f"{api.url}/api/v1/events?since=yesterday")[0] == 400
    assert curl(f"{api.url}/api/v1/events?mac=zz")[0] == 400
    status, _, body = curl(f"{api.url}/api/v1/status")
    rows = {r["mac"]: r for r in json.loads(body)["devices"]}
    assert status == 200 and rows[MAC]["name"] == "leaf-01"
    assert rows[MAC]["last_event"]["time"] == "1970-01-01T00:01:42.000Z"


def test_reports_switched_off_answer_404_and_record_nothing(tmp_path):
    for api in serve_api(tmp_path, accept_reports=False):
        status, _, body = curl(f"{api.url}/api/v1/report?stage=x&status=ok")
        assert status == 404 and json.loads(body)["ok"] is False
        assert curl("--data", '{"stage": "x"}', f"{api.url}/api/v1/report")[0] == 404
        time.sleep(0.05)
        assert reports(api) == []
