"""Counters and rate-limited warnings for what the DHCP server refuses or cannot do.

An attacker on the boot LAN chooses how many packets we refuse, so every refusal is counted (one
dict increment) and logged at most once per `interval` per key, with how many were suppressed in
between: a flood of forged DECLINEs or relayed packets costs the log one line a minute, not one per
packet (docs/netboot.md "DHCP hardening").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("pxe.dhcp")
WARN_INTERVAL = 60.0  # seconds between two warnings of one key
_MAX_KEYS = 4096  # distinct keys remembered before the oldest are forgotten (keys name subnets/relays)


class Refusals:
    """`count(reason)` always; `warn(key, message)` logs when `key` was quiet for `interval`."""

    def __init__(self, interval: float = WARN_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.counts: dict[str, int] = {}
        self.total = 0  # every refusal: the handler tells a refused packet from an ignored one
        self._last: dict[object, tuple[float, int]] = {}  # key -> (when logged, suppressed since)

    def count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.total += 1

    def due(self, key: object) -> bool:
        """Would `warn(key, ...)` log now? (to skip building an expensive message)"""
        last = self._last.get(key)
        return last is None or self.clock() - last[0] >= self.interval

    def warn(self, key: object, message: str, *args: object) -> bool:
        """Log `message % args` unless `key` was logged less than `interval` ago; True if logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is None and len(self._last) >= _MAX_KEYS:
            self._last.pop(next(iter(self._last)))  # forged sources are unbounded; the dict is not
        suppressed = last[1] if last is not None else 0
        if suppressed:
            log.warning(message + " (%d more like it in the last %ds)", *args, suppressed, self.interval)
        else:
            log.warning(message, *args)
        self._last[key] = (now, 0)
        return True


__all__ = ["WARN_INTERVAL", "Refusals"]
