"""The serve log's event line: fields (provision.logs), client-supplied text escaped, one event is
one line, DHCP's packet steps at debug."""

from __future__ import annotations

import asyncio
import json
import logging

from provision.logs import JsonFormatter, LogfmtFormatter
from provision.server.events import EventBus, OfferHold, log_event
from pxe.policy import Event


def test_event_line_escapes_control_characters(caplog):
    forged = "/ipxe/x.ipxe\n2026-01-01 INFO mac=52:54:00:00:00:01 onie.installed\x1b[2J"
    with caplog.at_level(logging.INFO, logger="provision.serve"):
        log_event(Event(kind="http.sent", mac=None, ip="198.18.0.5", detail={"path": forged, "status": 404}))
        log_event(
            Event(
                kind="installer.report",
                mac="52:54:00:00:00:02",
                ip=None,
                detail={
                    "message": "ok\r\nfake",
                    "mac": "52:54:00:00:00:02",
                    "stage": "complete",
                    "status": "ok",
                },
            )
        )
    assert [r.getMessage() for r in caplog.records] == ["event", "event"]
    lines = [LogfmtFormatter().format(r) for r in caplog.records]
    assert all("\n" not in m and "\r" not in m and "\x1b" not in m for m in lines)
    assert 'kind=http.sent ip=198.18.0.5 path="/ipxe/x.ipxe\\n2026-01-01 INFO mac=' in lines[0]
    assert "\\x1b[2J" in lines[0] and lines[0].endswith(" status=404")
    # the report's own mac is the event's: said once; stage and status as a grep finds them
    assert lines[1].count("mac=") == 1 and 'message="ok\\r\\nfake"' in lines[1]
    assert (
        "kind=installer.report mac=52:54:00:00:00:02 " in lines[1] and "stage=complete status=ok" in lines[1]
    )
    doc = json.loads(JsonFormatter().format(caplog.records[0]))
    assert doc["path"] == forged and doc["kind"] == "http.sent" and doc["status"] == 404


def test_one_line_per_lease_at_info(caplog):
    mac = "52:54:00:00:00:03"
    with caplog.at_level(logging.INFO, logger="provision.serve"):
        for kind in ("dhcp.discover", "dhcp.offer", "dhcp.request", "dhcp.ack"):
            log_event(Event(kind=kind, mac=mac, ip="198.18.0.9", detail={"xid": "0000abcd"}))
        log_event(Event(kind="dhcp.nak", mac=mac, ip="198.18.0.9", detail={"reason": "not yours", "ip": "x"}))
    kinds = [(r.levelname, r.fields["kind"]) for r in caplog.records]
    assert kinds == [("INFO", "dhcp.ack"), ("WARNING", "dhcp.nak")]
    # a detail key named like a top-level one, with another value, is kept beside it
    assert caplog.records[1].fields["detail.ip"] == "x"


def test_bus_calls_a_subscriber_only_for_its_kinds_in_order_and_survives_one_that_raises(caplog):
    bus = EventBus()
    seen: list[tuple[str, str]] = []

    def broken(event: Event) -> None:
        raise RuntimeError("disk full")

    bus.subscribe("all", lambda e: seen.append(("all", e.kind)))
    bus.subscribe("acks", lambda e: seen.append(("acks", e.kind)), kinds=["dhcp.ack"])
    bus.subscribe("broken", broken, kinds=["dhcp.ack"])
    bus.subscribe("last", lambda e: seen.append(("last", e.kind)))
    with caplog.at_level(logging.ERROR, logger="provision.serve"):
        for kind in ("dhcp.offer", "dhcp.ack", "dhcp.offer"):
            bus(Event(kind=kind, mac="52:54:00:00:00:03"))
    assert seen == [
        ("all", "dhcp.offer"), ("last", "dhcp.offer"),
        ("all", "dhcp.ack"), ("acks", "dhcp.ack"), ("last", "dhcp.ack"),
        ("all", "dhcp.offer"), ("last", "dhcp.offer"),
    ]  # fmt: skip
    assert [r.fields["subscriber"] for r in caplog.records] == ["broken"]
    # routes are rebuilt when the subscribers change
    bus.unsubscribe("all")
    bus.subscribe("offers", lambda e: seen.append(("offers", e.kind)), kinds=["dhcp.offer"])
    seen.clear()
    bus(Event(kind="dhcp.offer", mac="52:54:00:00:00:03"))
    assert seen == [("last", "dhcp.offer"), ("offers", "dhcp.offer")]
    assert bus.names == ["acks", "broken", "last", "offers"]


class Clock:
    """A settable monotonic clock (OfferHold's deadlines; no peer involved)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_offer_hold_stores_an_answered_offer_not_at_all_and_an_unanswered_one_late():
    stored: list[Event] = []
    clock = Clock()
    hold = OfferHold(stored.append, hold_s=10.0, clock=clock)
    a, b, c = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
    hold(Event("dhcp.offer", a, "198.18.0.10", ts=1))
    hold(Event("dhcp.offer", b, "198.18.0.11", ts=2))
    assert stored == []
    hold(Event("dhcp.ack", a, "198.18.0.10", ts=3))  # a's exchange succeeded: its ack says it all
    assert [(e.kind, e.mac) for e in stored] == [("dhcp.ack", a)]
    hold(Event("dhcp.nak", b, "198.18.0.11", ts=4))  # anything else for b: its offer first, in order
    assert [(e.kind, e.mac) for e in stored[1:]] == [("dhcp.offer", b), ("dhcp.nak", b)]
    hold(Event("dhcp.offer", c, "198.18.0.12", ts=5))
    hold(Event("dhcp.offer", c, "198.18.0.12", ts=9))  # c asked again: the first offer went unanswered
    assert [(e.kind, e.ts) for e in stored[3:]] == [("dhcp.offer", 5)]
    clock.now += 11  # 10 s without an answer: stored by the next event of any device
    hold(Event("tftp.sent", a, "198.18.0.10", ts=20))
    assert [(e.kind, e.mac, e.ts) for e in stored[4:]] == [("dhcp.offer", c, 9), ("tftp.sent", a, 20)]
    assert hold.counters == {"offers_answered": 1, "offers_stored": 3}  # b, c twice
    hold(Event("dhcp.offer", a, "198.18.0.10", ts=21))
    hold.flush()  # the store closing: nothing held is lost
    assert stored[-1].kind == "dhcp.offer" and stored[-1].ts == 21


def test_offer_hold_finds_the_next_due_offer_after_the_first_is_answered():
    """_expired looks into the held offers only once the earliest deadline it knows may have
    passed; answering the first offer leaves a lower bound, never a late store."""
    stored: list[Event] = []
    clock = Clock()
    hold = OfferHold(stored.append, hold_s=10.0, clock=clock)
    a, b = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
    start = clock.now
    hold(Event("dhcp.offer", a, "198.18.0.10", ts=1))  # due at start + 10
    clock.now = start + 5
    hold(Event("dhcp.offer", b, "198.18.0.11", ts=2))  # due at start + 15
    hold(Event("dhcp.ack", a, "198.18.0.10", ts=3))
    clock.now = start + 12  # past a's deadline (a is gone), before b's
    hold(Event("tftp.sent", a, "198.18.0.10", ts=4))
    assert [e.kind for e in stored] == ["dhcp.ack", "tftp.sent"]
    clock.now = start + 15.5
    hold(Event("tftp.sent", a, "198.18.0.10", ts=5))
    assert [(e.kind, e.ts) for e in stored[2:]] == [("dhcp.offer", 2), ("tftp.sent", 5)]


def test_offer_hold_is_bounded_and_its_loop_timer_stores_offers_nobody_answers():
    stored: list[Event] = []
    hold = OfferHold(stored.append, hold_s=0.05, max_held=3)
    for i in range(5):
        hold(Event("dhcp.offer", f"52:54:00:00:01:{i:02x}", ts=i))
    assert [e.ts for e in stored] == [0, 1]  # beyond max_held the oldest go in at once

    async def quiet() -> None:
        hold(Event("dhcp.offer", "52:54:00:00:02:00", ts=10))  # on a loop: a timer is armed
        await asyncio.sleep(0.3)  # no other event arrives

    asyncio.run(quiet())
    assert sorted(e.ts for e in stored) == [0, 1, 2, 3, 4, 10]
