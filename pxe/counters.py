"""Plain counters of finished transfers, read by whoever exports them (provision's /metrics).

pxe imports no metrics library: a server keeps ints and a fixed list of histogram buckets, and
an exporter reads them when it is scraped (docs/observability.md). Updated once per transfer,
never per packet.
"""

from __future__ import annotations

import bisect

# Upper bounds, in seconds, of the duration buckets (the last bucket, past 600 s, is +Inf). A
# boot file of a few KiB over TFTP takes milliseconds; an installer of hundreds of MiB over a
# slow link takes minutes.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.025,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    600.0,
)


class Transfers:
    """`done(result, nbytes, seconds)` for a transfer that ran; `refused(result)` for a request
    that never became one (not found, forbidden, busy). `results`: count per result;
    `bytes_sent`; `buckets[i]`: transfers that took at most `DURATION_BUCKETS[i]` (not
    cumulative; the last entry is beyond the last bound); `seconds`: their sum."""

    def __init__(self) -> None:
        self.results: dict[str, int] = {}
        self.bytes_sent = 0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.seconds = 0.0
        self.retransmits = 0  # TFTP: blocks sent again

    def done(self, result: str, nbytes: int, seconds: float, retransmits: int = 0) -> None:
        self.results[result] = self.results.get(result, 0) + 1
        self.bytes_sent += nbytes
        self.retransmits += retransmits
        self.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.seconds += seconds

    def refused(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1


__all__ = ["DURATION_BUCKETS", "Transfers"]
