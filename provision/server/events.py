"""Events fan-out: every protocol's events reach the subscribers the composition root chose.

One `EventBus` is the `pxe.EventSink` of every server and policy. Each subscriber (the address
book, the log, the store, the ONIE identity index) runs in turn; one that raises is logged with
its name and the others still run, so a full disk or a bug in one consumer never takes DHCP down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from provision.onie.identity import mac_from_headers
from pxe.logsafe import safe
from pxe.policy import Event

log = logging.getLogger("provision.serve")

Subscriber = Callable[[Event], None]
# Kinds an operator must see at WARNING: a refused lease, an address a client says is taken.
_WARN_SUFFIXES = ("error", "nak", "decline")


class EventBus:
    """Call with an Event (it is a `pxe.EventSink`); subscribers run in the order added."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Subscriber]] = []

    def subscribe(self, name: str, subscriber: Subscriber) -> None:
        self._subscribers.append((name, subscriber))

    def unsubscribe(self, name: str) -> None:
        self._subscribers = [(n, s) for n, s in self._subscribers if n != name]

    def __call__(self, event: Event) -> None:
        for name, subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event %s for %s: subscriber %s failed", event.kind, event.mac, name)


@dataclass
class AddressBook:
    """IP → MAC, so TFTP/HTTP requests (which carry only an IP) are tied to a device. Learns from
    the server's own DHCP events; seeded from the store's leases and the inventory at start."""

    by_ip: dict[str, str] = field(default_factory=dict)

    def learn(self, event: Event) -> None:
        if event.kind in ("dhcp.ack", "dhcp.offer") and event.mac and event.ip:
            self.by_ip[event.ip] = event.mac

    def __call__(self, ip: str) -> str | None:
        return self.by_ip.get(ip)

    def for_request(self, ip: str, headers: Mapping[str, str]) -> str | None:
        """pxe.http's MAC resolver: our lease for that address, else the MAC ONIE names itself by."""
        return self.by_ip.get(ip) or mac_from_headers(headers)


def log_event(event: Event) -> None:
    """One log line per event, keyed on MAC so an operator can follow one machine. Every part
    may be what a client sent (a path, a report message, a header), so each is escaped
    (`pxe.logsafe.safe`): a newline in it cannot forge a second line."""
    detail = " ".join(
        f"{safe(k)}={safe(v)}" for k, v in sorted(event.detail.items()) if v not in (None, "", {})
    )
    level = logging.WARNING if event.kind.endswith(_WARN_SUFFIXES) else logging.INFO
    log.log(
        level, "mac=%s ip=%s %s %s", safe(event.mac or "-"), safe(event.ip or "-"), safe(event.kind), detail
    )
