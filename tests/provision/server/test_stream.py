"""GET /api/v1/stream on pxe.http with a real SQLite store, read by aiohttp's client (tests/support/sse.py):
order and ids, the same objects as /api/v1/events, replay after Last-Event-ID, events another
process writes, filters, the subscriber cap, keepalives, overflow and a clean close."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from provision.config.inventory import Device, Inventory
from provision.server.api import Api
from provision.server.events import EventBus
from provision.server.stream import EventStream
from provision.store.sqlite import Store
from pxe.http import HttpConfig, start_http
from pxe.policy import Event
from tests.support.loop import LoopThread
from tests.support.sse import SseReader

MAC = "52:54:00:12:34:56"
OTHER = "52:54:00:12:34:57"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[SimpleNamespace]:
    loop = LoopThread()
    store = loop.call(Store, tmp_path / "provision.db")
    bus = EventBus()
    bus.subscribe("store", store.add_event)
    inventory = Inventory([Device("leaf-01", mac=MAC)])
    api = Api(lambda: store, inventory, bus)
    stream = EventStream(
        lambda: store, lambda: inventory, keepalive=0.4, poll=0.1, max_subscribers=3, queue_size=50
    )
    bus.subscribe("stream", stream.publish)
    cfg = HttpConfig(root=tmp_path, bind_addr="127.0.0.1", port=0)
    srv = loop.run(start_http(cfg, None, bus, api.routes() + stream.routes()))
    url = srv.url.rstrip("/")

    def emit(*events: Event) -> None:
        loop.call(lambda: [bus(e) for e in events])

    def events_api(query: str = "") -> dict:
        with urllib.request.urlopen(f"{url}/api/v1/events?{query}") as r:
            return json.load(r)

    try:
        yield SimpleNamespace(
            url=url, stream_url=f"{url}/api/v1/stream", emit=emit, events_api=events_api,
            stream=stream, loop=loop, db=tmp_path / "provision.db",
        )  # fmt: skip
    finally:
        loop.run(stream.close())
        loop.run(srv.close())
        loop.call(store.close)
        api.close()
        loop.stop()


def ev(kind: str, mac: str | None = MAC, **detail: object) -> Event:
    return Event(kind=kind, mac=mac, ip="198.18.0.10", detail=detail)


def test_live_events_in_order_with_ids_as_the_events_api_has_them(served):
    served.emit(ev("dhcp.ack", n=0))  # before the stream: not sent (it starts at the newest)
    with SseReader(served.stream_url) as r:
        r.wait_connected()
        assert r.status == 200 and r.response_headers["Content-Type"] == "text/event-stream"
        served.emit(*(ev("dhcp.ack", n=i) for i in range(1, 6)), ev("device.installing", name="leaf-01"))
        r.wait(lambda: len(r.events) >= 6)
    got = r.events
    assert [e["event"] for e in got] == ["dhcp.ack"] * 5 + ["device.installing"]
    assert [e["data"]["detail"].get("n") for e in got[:5]] == [1, 2, 3, 4, 5]
    ids = [int(e["id"]) for e in got]
    assert ids == sorted(ids) and len(set(ids)) == 6
    # data is exactly an item of /api/v1/events
    assert [e["data"] for e in got] == served.events_api(f"after={ids[0] - 1}")["events"]
    assert all(e["data"]["id"] == int(e["id"]) for e in got)


def test_last_event_id_replays_what_was_missed_then_goes_live(served):
    with SseReader(served.stream_url) as r:
        r.wait_connected()
        served.emit(ev("dhcp.ack", n=1), ev("dhcp.ack", n=2))
        r.wait(lambda: len(r.events) >= 2)
    last = r.events[-1]["id"]
    for round_, how in enumerate(("header", "query")):
        missed = [10 * round_ + i for i in range(3, 8)]
        served.emit(*(ev("tftp.sent", n=n) for n in missed))  # while disconnected
        headers = {"Last-Event-ID": last} if how == "header" else {}
        url = served.stream_url if how == "header" else f"{served.stream_url}?after={last}"
        with SseReader(url, headers=headers) as again:
            again.wait(lambda again=again: len(again.events) >= 5)
            served.emit(ev("dhcp.ack", n=99 + round_))
            again.wait(lambda again=again: len(again.events) >= 6)
        assert [e["data"]["detail"]["n"] for e in again.events] == [*missed, 99 + round_], how
        ids = [int(e["id"]) for e in again.events]
        assert ids == sorted(set(ids)) and ids[0] > int(last)
        last = again.events[-1]["id"]


def test_events_written_by_another_process_are_streamed(served):
    with SseReader(served.stream_url) as r:
        r.wait_connected()
        with Store(served.db) as other:  # another connection, as `provision devices arm` has
            other.add_event(Event("device.armed", mac=None, detail={"name": "leaf-01", "by": "cli:test"}))
            other.flush()
        r.wait(lambda: len(r.events) >= 1, timeout=5)
    assert r.events[0]["event"] == "device.armed" and r.events[0]["data"]["detail"]["name"] == "leaf-01"


def test_filters_mac_kind_glob_and_name(served):
    with (
        SseReader(f"{served.stream_url}?mac={OTHER.upper()}") as by_mac,
        SseReader(f"{served.stream_url}?kind=device.*&kind=tftp.sent") as by_kind,
        SseReader(f"{served.stream_url}?name=leaf-*") as by_name,
    ):
        for r in (by_mac, by_kind, by_name):
            r.wait_connected()
        served.emit(
            ev("dhcp.ack", mac=OTHER, n=1),
            ev("tftp.sent", n=2),
            ev("device.armed", mac=None, name="leaf-01", n=3),
            ev("device.armed", mac=None, name="spine-01", n=4),
            ev("dhcp.ack", n=5),
        )
        by_mac.wait(lambda: len(by_mac.events) >= 1)
        by_kind.wait(lambda: len(by_kind.events) >= 3)
        by_name.wait(lambda: len(by_name.events) >= 3)
        served.emit(ev("serve.reloaded", mac=None, n=6))  # matches none of them: a marker for "no more"
        by_kind.wait(lambda: True)
    assert [e["data"]["detail"]["n"] for e in by_mac.events] == [1]
    assert [e["data"]["detail"]["n"] for e in by_kind.events] == [2, 3, 4]
    assert [e["data"]["detail"]["n"] for e in by_name.events] == [2, 3, 5]  # leaf-01's MAC and name
    with (
        SseReader(f"{served.stream_url}?mac=nope") as bad,
        SseReader(f"{served.stream_url}?after=x") as worse,
    ):
        bad.wait_connected()
        worse.wait_connected()
    assert bad.status == 400 and worse.status == 400


def test_subscriber_cap_keepalive_and_clean_close(served):
    readers = [SseReader(served.stream_url) for _ in range(3)]
    try:
        for r in readers:
            r.wait_connected()
        served.loop.call(lambda: None)
        with SseReader(served.stream_url) as refused:
            refused.wait_connected()
        assert refused.status == 503 and refused.response_headers["Retry-After"] == "5"
        assert "too many event streams" in refused.body
        # a client that leaves frees its slot within a second (aiohttp does not tell the handler)
        readers[2].close()
        deadline = time.monotonic() + 5
        while len(served.stream.subscribers) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        readers[2] = SseReader(served.stream_url)
        readers[2].wait_connected()
        assert readers[2].status == 200
        # keepalive comments (0.4 s here, 15 s by default) while nothing happens
        readers[0].wait(lambda: sum(1 for f in readers[0].frames if f.get("comment") == "keepalive") >= 2)
        served.emit(ev("dhcp.ack", n=1))
        for r in readers:
            r.wait(lambda r=r: len(r.events) == 1)
        served.loop.run(served.stream.close())
        for r in readers:
            r.wait(lambda r=r: r.ended)
            assert r.error is None  # a clean end of stream, not a reset
        assert served.stream.subscribers == set()
    finally:
        for r in readers:
            r.close()


def test_a_subscriber_that_falls_behind_gets_overflow_and_loses_nothing(served):
    with SseReader(served.stream_url) as r:
        r.wait_connected()
        # 200 events in one flush: the tail hands them over at once, past the queue of 50
        served.emit(*(ev("tftp.sent", n=i) for i in range(200)))
        r.wait(lambda: r.ended)
    assert r.frames[-1]["event"] == "overflow"
    got = [e for e in r.events if e["event"] != "overflow"]
    assert 0 < len(got) <= 50 and [e["data"]["detail"]["n"] for e in got] == list(range(len(got)))
    assert r.frames[-1]["data"]["last_id"] == int(got[-1]["id"]) and "id" not in r.frames[-1]
    with SseReader(served.stream_url, headers={"Last-Event-ID": got[-1]["id"]}) as again:
        again.wait(lambda: len(again.events) >= 200 - len(got))
    assert [e["data"]["detail"]["n"] for e in got + again.events] == list(range(200))
    assert served.stream.counters["overflowed"] == 1
