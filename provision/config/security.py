"""lab.yml's `api:` and `events:` sections: who may read the API, how callbacks are limited, and
how long events are kept (docs/security.md says why each default is what it is).

    api:
      read: local            # local | token | open: who may GET /api/v1/status and /api/v1/events
      read_from: [10.0.0.0/24]   # management networks counted as local
      token_ttl: 86400       # seconds an installer's callback token stays valid (it ends earlier
                             # with its install)
      report_rate: 1.0       # reports per second per source address (token bucket) ...
      report_burst: 30       # ... and the burst above it; beyond: 429
      stream_keepalive: 15   # seconds between two keepalive comments of GET /api/v1/stream
      stream_subscribers: 64 # event streams open at once; beyond: 503
    events:
      keep_per_device: 1000  # newest events kept per MAC (and for events with no MAC, as one)
      keep_days: 30          # events older than this are deleted
      prune_every: 300       # seconds between two prunes (never per insert)
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from provision.config.schema import Enum, Field, Int, IPv4Net, List, Obj, Section, Str


class ReadAccess(enum.Enum):
    """Who may read /api/v1/status and /api/v1/events (every device's state and history)."""

    LOCAL = "local"  # this host (loopback, its own addresses) and `read_from` networks
    TOKEN = "token"  # local, or anyone presenting the read token (state dir's api-read-token)
    OPEN = "open"  # anyone who reaches the HTTP server: the boot LAN included


DEFAULT_TOKEN_TTL = 86400
DEFAULT_REPORT_RATE = 1.0
DEFAULT_REPORT_BURST = 30
DEFAULT_KEEP_PER_DEVICE = 1000
DEFAULT_KEEP_DAYS = 30
DEFAULT_PRUNE_EVERY = 300
DEFAULT_STREAM_KEEPALIVE = 15
DEFAULT_STREAM_SUBSCRIBERS = 64

_RATE = Str(r"\d{1,6}(\.\d{1,3})?", "a number of reports per second such as 1 or 0.5")

API = Obj(
    {
        "read": Field(
            Enum(*(a.value for a in ReadAccess)),
            default=ReadAccess.LOCAL.value,
            doc="who may read status and events: local (this host and read_from), token, or open",
        ),
        "read_from": Field(
            List(IPv4Net(), unique=True),
            default_factory=list,
            doc="management networks whose hosts may read status and events (read: local or token)",
        ),
        "token_ttl": Field(
            Int(60, 30 * 86400), default=DEFAULT_TOKEN_TTL, doc="seconds a callback token is valid at most"
        ),
        "report_rate": Field(_RATE, default=None, doc="installer reports per second per source address"),
        "report_burst": Field(Int(1, 100000), default=DEFAULT_REPORT_BURST, doc="reports above the rate"),
        "stream_keepalive": Field(
            Int(1, 3600),
            default=DEFAULT_STREAM_KEEPALIVE,
            doc="seconds between keepalive comments on /api/v1/stream (below a proxy's idle timeout)",
        ),
        "stream_subscribers": Field(
            Int(1, 10000), default=DEFAULT_STREAM_SUBSCRIBERS, doc="/api/v1/stream connections at once"
        ),
    },
    name="api",
)

EVENTS = Obj(
    {
        "keep_per_device": Field(
            Int(10, 10_000_000), default=DEFAULT_KEEP_PER_DEVICE, doc="newest events kept per MAC"
        ),
        "keep_days": Field(Int(1, 36500), default=DEFAULT_KEEP_DAYS, doc="events older than this go"),
        "prune_every": Field(Int(10, 86400), default=DEFAULT_PRUNE_EVERY, doc="seconds between prunes"),
    },
    name="events",
)


@dataclass(frozen=True)
class ApiSettings:
    read: ReadAccess = ReadAccess.LOCAL
    read_from: tuple[ipaddress.IPv4Network, ...] = ()
    token_ttl: int = DEFAULT_TOKEN_TTL
    report_rate: float = DEFAULT_REPORT_RATE
    report_burst: int = DEFAULT_REPORT_BURST
    stream_keepalive: int = DEFAULT_STREAM_KEEPALIVE
    stream_subscribers: int = DEFAULT_STREAM_SUBSCRIBERS


@dataclass(frozen=True)
class EventRetention:
    keep_per_device: int = DEFAULT_KEEP_PER_DEVICE
    keep_days: int = DEFAULT_KEEP_DAYS
    prune_every: int = DEFAULT_PRUNE_EVERY


def api_from_section(section: Section | None) -> ApiSettings:
    if not section:
        return ApiSettings()
    rate = section["report_rate"]
    return ApiSettings(
        read=ReadAccess(section["read"]),
        read_from=tuple(ipaddress.IPv4Network(n) for n in section["read_from"]),
        token_ttl=section["token_ttl"],
        report_rate=float(rate) if rate is not None else DEFAULT_REPORT_RATE,
        report_burst=section["report_burst"],
        stream_keepalive=section["stream_keepalive"],
        stream_subscribers=section["stream_subscribers"],
    )


def events_from_section(section: Section | None) -> EventRetention:
    if not section:
        return EventRetention()
    return EventRetention(
        keep_per_device=section["keep_per_device"],
        keep_days=section["keep_days"],
        prune_every=section["prune_every"],
    )


__all__ = [
    "API",
    "EVENTS",
    "ApiSettings",
    "EventRetention",
    "ReadAccess",
    "api_from_section",
    "events_from_section",
]
