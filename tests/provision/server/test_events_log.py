"""The serve log's event line: fields (provision.logs), client-supplied text escaped, one event is
one line, DHCP's packet steps at debug."""

from __future__ import annotations

import json
import logging

from provision.logs import JsonFormatter, LogfmtFormatter
from provision.server.events import EventBus, log_event
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
