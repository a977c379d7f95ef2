"""Events fan-out: every protocol's events reach the subscribers the composition root chose.

One `EventBus` is the `pxe.EventSink` of every server and policy. Each subscriber (the address
book, the log, the store, the ONIE identity index) runs in turn; one that raises is logged with
its name and the others still run, so a full disk or a bug in one consumer never takes DHCP down.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from provision import logs
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
    """Call with an Event (it is a `pxe.EventSink`); subscribers run in the order added.

    A subscriber that reads only some kinds says which (`kinds=`): it is not called for the
    others. Two events a lease reach every subscriber on the DHCP hot path, and most of them
    (the lifecycle, the ONIE index, the address book) want one kind of a dozen."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Subscriber, frozenset[str] | None]] = []
        self._route: dict[str, tuple[tuple[str, Subscriber], ...]] = {}  # kind -> who gets it

    def subscribe(self, name: str, subscriber: Subscriber, kinds: Iterable[str] | None = None) -> None:
        self._subscribers.append((name, subscriber, None if kinds is None else frozenset(kinds)))
        self._route.clear()

    def unsubscribe(self, name: str) -> None:
        self._subscribers = [entry for entry in self._subscribers if entry[0] != name]
        self._route.clear()

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self._subscribers]

    def _for(self, kind: str) -> tuple[tuple[str, Subscriber], ...]:
        route = tuple((n, s) for n, s, kinds in self._subscribers if kinds is None or kind in kinds)
        if len(self._route) < 1024:  # kinds are our code's few, but a bound costs nothing
            self._route[kind] = route
        return route

    def __call__(self, event: Event) -> None:
        route = self._route.get(event.kind)
        if route is None:
            route = self._for(event.kind)
        for name, subscriber in route:
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

    KINDS = ("dhcp.ack", "dhcp.offer")  # what `learn` reads (EventBus.subscribe's kinds)

    def learn(self, event: Event) -> None:
        if event.kind in self.KINDS and event.mac and event.ip:
            self.by_ip[event.ip] = event.mac

    def __call__(self, ip: str) -> str | None:
        return self.by_ip.get(ip)

    def for_request(self, ip: str, headers: Mapping[str, str]) -> str | None:
        """pxe.http's MAC resolver: our lease for that address, else the MAC ONIE names itself by."""
        return self.by_ip.get(ip) or mac_from_headers(headers)


OFFER_HOLD_S = 10.0  # an offer not ACKed within this is stored (RFC 2131 clients retry in 4 s)
OFFER_HOLD_MAX = 10_000  # offers held at once; beyond, the oldest is stored at once


class OfferHold:
    """The store's subscriber, in front of `sink` (the store's add_event): a lease's DHCPOFFER is
    not stored when its ACK follows, since the ack says all of it (the address, the policy's
    note, the REQUEST's state). An offer is held per MAC; the ack drops it; any other event of
    that MAC (a nak, an ignored REQUEST, a second offer) stores it first, and so does
    OFFER_HOLD_S without an answer: what an operator needs to see, the offer a client never
    took, is kept, and a successful exchange is one row instead of two (bench/dhcp.py,
    docs/netboot.md "Performance: the DHCP hot path"). `flush()` stores every held offer (the
    store closing). Thread-safe: an API worker thread may emit while the loop does."""

    def __init__(
        self,
        sink: Callable[[Event], None],
        hold_s: float = OFFER_HOLD_S,
        max_held: int = OFFER_HOLD_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.hold_s = hold_s
        self.max_held = max_held
        self.clock = clock
        self._held: dict[str, tuple[float, Event]] = {}  # mac -> (deadline, offer), oldest first
        self._first_due = 0.0  # no held offer is due before this (see _expired)
        self._lock = threading.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self.counters = {"offers_answered": 0, "offers_stored": 0}

    def __call__(self, event: Event) -> None:
        mac = event.mac
        due: list[Event] = []
        with self._lock:
            if self._held:
                self._expired(due)
                if mac:
                    held = self._held.pop(mac, None)
                    if held is not None:
                        if event.kind == "dhcp.ack":
                            self.counters["offers_answered"] += 1
                        else:
                            due.append(held[1])
            if event.kind == "dhcp.offer" and mac:
                self._held[mac] = (self.clock() + self.hold_s, event)
                if len(self._held) > self.max_held:
                    due.append(self._held.pop(next(iter(self._held)))[1])
                self._arm()
            else:
                due.append(event)
        self._store(due)

    def _store(self, events: list[Event]) -> None:
        """To the sink, outside the lock (the sink may write to the database)."""
        for item in events:
            if item.kind == "dhcp.offer":
                self.counters["offers_stored"] += 1
            self.sink(item)

    def _expired(self, due: list[Event]) -> None:
        now = self.clock()
        # Deadlines grow with insertion order, so the first held offer's is the earliest: kept
        # (`_first_due`, a lower bound once that offer is answered), the dict is looked into
        # only when it may have passed, not on every event of the hot path.
        if now < self._first_due:
            return
        while self._held:
            mac, (deadline, offer) = next(iter(self._held.items()))
            if deadline > now:
                self._first_due = deadline
                return
            del self._held[mac]
            due.append(offer)
        self._first_due = 0.0

    def _arm(self) -> None:
        """A loop timer for the oldest held offer, when none is pending (no loop: the next event
        or flush() stores it)."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        first = next(iter(self._held.values()))[0]
        self._timer = loop.call_later(max(0.0, first - self.clock()) + 0.01, self._on_timer)

    def _on_timer(self) -> None:
        due: list[Event] = []
        with self._lock:
            self._timer = None
            self._expired(due)
            if self._held:
                self._arm()
        self._store(due)

    def flush(self) -> None:
        with self._lock:
            held = [offer for _, offer in self._held.values()]
            self._held.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._store(held)


def log_event(event: Event) -> None:
    """One log line per event, keyed on MAC so an operator can follow one machine: the message
    `event`, and as fields (provision.logs, docs/observability.md "Logs") the kind, MAC, address
    and the event's detail, sorted by key, empty values left out. Every value may be what a client
    sent (a path, a report message, a header); the log formatter quotes and escapes it, so a
    newline in it cannot forge a line or a key. DHCP's packet steps (discover, offer, request,
    inform) are debug lines: at the default level a lease is its one `dhcp.ack` line."""
    kind = event.kind
    level = _LEVEL_OF.get(kind)
    if level is None:
        level = _level_of(kind)
    if not log.isEnabledFor(level):
        return  # (per packet: the fields of a line nobody reads are not built)
    fields: dict[str, object] = {"kind": kind}
    if event.mac:
        fields["mac"] = event.mac
    if event.ip:
        fields["ip"] = event.ip
    detail = event.detail
    # A lease's line is built on the DHCP hot path: keys sorted alone (not (key, value) pairs)
    # and the common values (str, int) told apart by type before any comparison.
    for key in sorted(detail):
        value = detail[key]
        kind_of = type(value)
        if kind_of is str:
            if not value:
                continue
        elif kind_of is not int and value in (None, "", {}):
            continue
        if key in fields:
            if fields[key] == value:
                continue
            key = f"detail.{key}"
        fields[key] = value
    logs.write_fields(log, level, "event", fields)


_LEVEL_OF: dict[str, int] = {}  # event kind -> its line's level


def _level_of(kind: str) -> int:
    if kind.endswith(_WARN_SUFFIXES):
        level = logging.WARNING
    elif kind in PACKET_KINDS:
        level = logging.DEBUG
    else:
        level = logging.INFO
    if len(_LEVEL_OF) < 1024:  # kinds are our code's few, but a bound costs nothing
        _LEVEL_OF[kind] = level
    return level
