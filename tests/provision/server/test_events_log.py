"""The serve log's event line: client-supplied text in it is escaped, one event is one line."""

from __future__ import annotations

import logging

from provision.server.events import log_event
from pxe.policy import Event


def test_event_line_escapes_control_characters(caplog):
    forged = "/ipxe/x.ipxe\n2026-01-01 INFO mac=52:54:00:00:00:01 onie.installed\x1b[2J"
    with caplog.at_level(logging.INFO, logger="provision.serve"):
        log_event(Event(kind="http.sent", mac=None, ip="198.18.0.5", detail={"path": forged, "status": 404}))
        log_event(
            Event(kind="onie.report", mac="52:54:00:00:00:02", ip=None, detail={"message": "ok\r\nfake"})
        )
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert all("\n" not in m and "\r" not in m and "\x1b" not in m for m in lines)
    assert "path=/ipxe/x.ipxe\\n2026-01-01 INFO" in lines[0] and "\\x1b[2J" in lines[0]
    assert "message=ok\\r\\nfake" in lines[1]
