"""pxe.logsafe: what a client sends cannot forge a log line or drive an operator's terminal."""

from __future__ import annotations

import logging

import pytest

from pxe.limits import Bounds
from pxe.logsafe import safe


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("pxelinux.0", "pxelinux.0"),
        ("a\nINFO forged", "a\\nINFO forged"),
        ("x\r\x1b[2J\x07", "x\\r\\x1b[2J\\x07"),
        ("tab\there\x00nul\x7fdel", "tab\\there\\x00nul\\x7fdel"),
        ("\x85nel \x9bcsi", "\\x85nel \\x9bcsi"),  # C1 controls
        ("line\u2028sep\u2029 \u202eevil\u2066", "line\\u2028sep\\u2029 \\u202eevil\\u2066"),
        ("boot\\x64\\wdsnbp.com", "boot\\\\x64\\\\wdsnbp.com"),  # a literal backslash is not an escape
        ("café 日本", "café 日本"),  # printable non-ASCII is kept
        (b"bytes\n", "b'bytes\\\\n'"),
    ],
)
def test_safe(raw, shown):
    assert safe(raw) == shown
    assert "\n" not in safe(raw) and "\r" not in safe(raw)


def test_bounds_count_every_hit_and_log_once_per_interval(caplog):
    now = [0.0]
    bounds = Bounds(logging.getLogger("test.bounds"), interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.bounds"):
        for _ in range(5):
            bounds.hit("cap", "refused %s", "198.18.0.9\nforged")
        now[0] = 61
        bounds.hit("cap", "refused %s", "198.18.0.9")
        for _ in range(12):
            bounds.hit("noisy", "bad %s", "x", burst=10)
    assert bounds.stats == {"cap": 6, "noisy": 12}
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "refused 198.18.0.9\\nforged [cap, 1 in all]"
    assert lines[1] == "refused 198.18.0.9 (4 more since the last report) [cap, 6 in all]"
    assert len([m for m in lines if m.startswith("bad")]) == 10
