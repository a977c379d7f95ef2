"""Bounds on what one client (or everyone at once) can make a boot server hold, and how reaching
one is reported.

Anyone on the boot LAN chooses how many requests we get, so every bound is checked before any
work is done for a request, every refusal is counted, and it is logged at most once per interval
per bound, with how many more happened in between: a flood costs the log one line a minute.

- `Bounds`: the counters (`stats`, a dict the observability export reads) and the rate-limited
  warning of each bound.
- `Gate`: live things (TFTP transfers, HTTP connections) against a total and a per-source cap.
- `raise_nofile`: the soft RLIMIT_NOFILE raised toward what the caps need, never past the hard
  limit; a server refuses new work at its caps, before the process runs out of descriptors.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

from pxe.logsafe import safe

REPORT_INTERVAL = 60.0  # seconds between two log lines of one bound


class Bounds:
    """`hit(name, message, *args)`: count `name` in `stats`, log `message` unless `name` was
    logged `burst` times in the last `interval` seconds. Arguments are escaped with `pxe.logsafe.safe` (they are
    often what a client sent). `count(name)` counts without logging."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = REPORT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.stats: dict[str, int] = {}
        self._logged: dict[str, tuple[float, int, int]] = {}  # name -> (window start, lines, stats then)

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def hit(
        self, name: str, message: str, *args: object, level: int = logging.WARNING, burst: int = 1
    ) -> bool:
        """True if this call logged. `burst`: lines of `name` allowed per interval (a malformed
        request is worth seeing a few times; a cap reached once a minute is enough)."""
        self.count(name)
        now = self.clock()
        total = self.stats[name]
        start, lines, then = self._logged.get(name, (now, 0, total - 1))
        if now - start >= self.interval:
            start, lines = now, 0
        if lines >= burst:
            self._logged[name] = (start, lines, then)
            return False
        text = message % tuple(safe(a) for a in args) if args else message
        more = total - then - 1
        if more:
            text += f" ({more} more since the last report)"
        # Fields (docs/observability.md "Logs"): which bound, how often, beside the prose line
        fields = {"bound": name, "total": total, "since_last": more}
        self.logger.log(level, "%s [%s, %d in all]", text, name, total, extra={"fields": fields})
        self._logged[name] = (start, lines + 1, total)
        return True


class Gate:
    """Live things against `total` and `per_source` caps. `admit(source)` returns None and
    counts the thing in, or the name of the cap that refuses it; `release(source)` counts it out.
    Only sources with something live are remembered, so the dict is as bounded as the caps."""

    def __init__(self, total: int, per_source: int) -> None:
        self.total = total
        self.per_source = per_source
        self.live = 0
        self.by_source: dict[str, int] = {}

    def admit(self, source: str) -> str | None:
        if self.live >= self.total:
            return "total"
        held = self.by_source.get(source, 0)
        if held >= self.per_source:
            return "per-client"
        self.live += 1
        self.by_source[source] = held + 1
        return None

    def release(self, source: str) -> None:
        held = self.by_source.get(source, 0)
        if held <= 0:
            return
        self.live -= 1
        if held == 1:
            del self.by_source[source]
        else:
            self.by_source[source] = held - 1


@dataclass(frozen=True)
class NofileLimit:
    before: int  # the soft limit we started with
    soft: int  # the soft limit now
    hard: int  # the hard limit (RLIM_INFINITY as a large int)
    wanted: int


def raise_nofile(wanted: int) -> NofileLimit:
    """Raise the soft RLIMIT_NOFILE to `wanted` (capped at the hard limit); never lowers it.
    An unprivileged process may raise its soft limit up to the hard one [setrlimit(2)]."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else wanted
    target = min(wanted, ceiling)
    soft = before
    if before != resource.RLIM_INFINITY and target > before:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            soft = before
    return NofileLimit(before=before, soft=soft, hard=hard, wanted=wanted)


__all__ = ["REPORT_INTERVAL", "Bounds", "Gate", "NofileLimit", "raise_nofile"]
