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
from pxe.policy import Event

log = logging.getLogger("provision.serve")

Subscriber = Callable[[Event], None]
# Kinds an operator must see at WARNING: a refused lease, an address a client says is taken.
_WARN_SUFFIXES = ("error", "nak", "decline")
# The first step of an exchange (and a REQUEST for another server): debug lines, so the
# default log has one line per lease, its ack. (discover and inform: stores of older versions)
PACKET_KINDS = frozenset({"dhcp.discover", "dhcp.offer", "dhcp.request", "dhcp.inform"})


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
                log.exception(
                    "event subscriber failed",
                    extra={"fields": {"subscriber": name, "kind": event.kind, "mac": event.mac}},
                )


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
    """One log line per event, keyed on MAC so an operator can follow one machine: the message
    `event`, and as fields (provision.logs, docs/observability.md "Logs") the kind, MAC, address
    and the event's detail. Every value may be what a client sent (a path, a report message, a
    header); the log formatter quotes and escapes it, so a newline in it cannot forge a line or
    a key. DHCP's packet steps (discover, offer, request, inform) are debug lines: at the default
    level a lease is its one `dhcp.ack` line."""
    if event.kind.endswith(_WARN_SUFFIXES):
        level = logging.WARNING
    elif event.kind in PACKET_KINDS:
        level = logging.DEBUG
    else:
        level = logging.INFO
    if not log.isEnabledFor(level):
        return  # (per packet: the fields of a line nobody reads are not built)
    fields: dict[str, object] = {"kind": event.kind}
    if event.mac:
        fields["mac"] = event.mac
    if event.ip:
        fields["ip"] = event.ip
    for key, value in sorted(event.detail.items()):
        if value in (None, "", {}) or fields.get(key) == value:
            continue
        fields[f"detail.{key}" if key in fields else key] = value
    log.log(level, "event", extra={"fields": fields})
