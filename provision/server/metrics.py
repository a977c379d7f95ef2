"""`GET /metrics` of `provision serve`, in the Prometheus text format (docs/observability.md
"Metrics" lists every metric, its labels and where it comes from).

Nothing here runs per packet. The servers keep plain counters (pxe.dhcp.Handler.counts and
.refusals, DhcpServer.stats, the TFTP/HTTP servers' `counters` and `stats`, the lease engine's
tables, Api.report_counters, Lifecycle.counters, the store's counters); `ServeCollector`, a
prometheus_client custom collector on a registry of this server's own (not the process-wide
default one), reads them when Prometheus scrapes.

What lives in the state store is read in the API's reader thread (its own connection: the loop
never waits on SQL), at most once per `FACTS_MAX_AGE` seconds whatever the scrape rate, and
less often when a read is slow (`READ_SHARE`: a fleet of 2,000 devices took 0.26 s here):
- devices by lifecycle state (the `provision status` rows, counted by state);
- install durations (device.installing → the installer's terminal report) and BMC operations
  (`bmc.operation` events that `provision power|boot|bmc info` and rollouts write from their own
  processes, provision.bmc.journal): read incrementally after an event-id cursor, at most
  `EVENTS_PER_READ` events per refresh, and aggregated into histograms here;
- rollout progress, from the rollout view (`rollout_summaries`).

Label values are bounded: message types, results, subnets and states come from our own code or
lab.yml; platforms and BMC error kinds are capped (`MAX_LABEL_VALUES`, beyond: "other"); there
is no per-MAC or per-address label.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from dhcp4.options import MessageType
from provision.bmc.journal import KIND_BMC_OPERATION
from provision.config.inventory import Inventory
from provision.devices.lifecycle import KIND_INSTALLING, State
from provision.devices.status import snapshot
from provision.onie.progress import KIND_REPORT, REPORT_STAGE_COMPLETE, REPORT_STATUS_FAILED, REPORT_STATUS_OK
from provision.rollout.view import rollout_summaries
from pxe.counters import DURATION_BUCKETS, Transfers
from pxe.dhcp.leases import Lease, LeaseEngine, LeaseState
from pxe.policy import Event

log = logging.getLogger("provision.serve")

FACTS_MAX_AGE = 10.0  # seconds the store-derived facts are reused (a scrape every 1 s reads every 10 s)
READ_SHARE = 0.05  # ... and at most this share of the time goes to those reads (they share the GIL)
EVENTS_PER_READ = 5000  # install/BMC events aggregated per refresh; the rest at the next one
MAX_LABEL_VALUES = 64  # distinct platforms / BMC error kinds before new ones are counted as "other"
MAX_PENDING_INSTALLS = 10_000  # devices whose install start is remembered (oldest forgotten)
MAX_ROLLOUTS = 10  # rollouts exported (the summaries' first ones: running and recent)
# Seconds: a server's installer takes minutes, a switch's NOS image tens of minutes.
INSTALL_BUCKETS: tuple[float, ...] = (60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200)
# Seconds: a Redfish GET answers in well under a second; a power change waited on, minutes.
BMC_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
DEVICE_STATES = tuple(s.value for s in State)
ROLLOUT_STAGES = ("pending", "arming", "installing", "installed", "failed", "skipped")
_LABEL = re.compile(r"[^A-Za-z0-9_.:-]+")

# Rollout progress: provision.rollout.view.rollout_summaries(store) -> [{"id", "name", "state",
# "waves": [{"index", "devices", "pending", "arming", "installing", "installed", "failed",
# "skipped", "state"}]}], newest first.
RolloutSummaries = Callable[[Any], list[dict[str, Any]]]


def newest_rollouts(store: Any) -> list[dict[str, Any]]:
    return rollout_summaries(store, limit=MAX_ROLLOUTS)


class Served(Protocol):
    """What the collector reads of a running BootServer (provision.server.root)."""

    dhcp: Any  # pxe.dhcp.DhcpServer | None
    front_ends: list[Any]  # pxe TftpServer / HttpServer, per interface
    api: Any  # provision.server.api.Api | None
    fleet: Any  # provision.devices.lifecycle.Lifecycle | None
    store: Any  # the open state store | None
    refusals: Any  # provision.server.access.Refusals
    stream: Any  # provision.server.stream.EventStream | None


class Histogram:
    """Bucket counts (not cumulative; the last one is past the last bound), sum and count."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def copy(self) -> Histogram:
        h = Histogram(self.bounds)
        h.counts, h.total = list(self.counts), self.total
        return h


def cumulative(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (`le` labels, cumulative, +Inf last) from per-bucket counts."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip((*[_num(b) for b in bounds], "+Inf"), counts, strict=True):
        running += n
        out.append((bound, float(running)))
    return out


def _num(value: float) -> str:
    return repr(float(value))


class Capped:
    """Label values seen so far, at most `most`; later new ones become "other"."""

    def __init__(self, most: int = MAX_LABEL_VALUES) -> None:
        self.most = most
        self.seen: set[str] = set()

    def __call__(self, raw: object, default: str = "unknown") -> str:
        text = _LABEL.sub("_", str(raw))[:64] if raw not in (None, "") else default
        if text in self.seen:
            return text
        if len(self.seen) >= self.most:
            return "other"
        self.seen.add(text)
        return text


@dataclass
class Tally:
    """Install durations and BMC operations, from events read after `cursor` (an event id)."""

    cursor: int | None = None
    installs: dict[tuple[str, str], Histogram] = field(default_factory=dict)  # (platform, result)
    bmc: dict[tuple[str, str], Histogram] = field(default_factory=dict)  # (operation, protocol)
    bmc_errors: dict[tuple[str, str, str], int] = field(default_factory=dict)  # + error kind
    started: dict[str, float] = field(default_factory=dict)  # mac -> device.installing time
    platforms: Capped = field(default_factory=Capped)
    errors: Capped = field(default_factory=Capped)
    operations: Capped = field(default_factory=Capped)

    def start_at(self, store: Any) -> None:
        """Count from the newest event on: what happens while this server runs (Prometheus
        counters start with their process; a restart is a reset `rate()` understands)."""
        newest = store.event_page(limit=1)
        self.cursor = newest[-1][0] if newest else 0

    def read(self, store: Any) -> int:
        """Aggregate the events after the cursor (at most EVENTS_PER_READ); returns how many."""
        if self.cursor is None:
            self.start_at(store)
        kinds = (KIND_INSTALLING, KIND_REPORT, KIND_BMC_OPERATION)
        seen = 0
        platform_of: dict[str, str | None] | None = None
        while seen < EVENTS_PER_READ:
            page = store.event_page(after=self.cursor, kinds=kinds, limit=min(1000, EVENTS_PER_READ - seen))
            for event_id, event in page:
                self.cursor = event_id
                if event.kind == KIND_REPORT and _terminal(event) and not event.detail.get("platform"):
                    if platform_of is None:  # the devices table's platform, read once per refresh
                        platform_of = {d.mac: d.platform for d in store.devices()}
                    self.feed(event, store, platform_of.get(event.mac or ""))
                else:
                    self.feed(event, store)
            seen += len(page)
            if len(page) < 1000:
                break
        return seen

    def feed(self, event: Event, store: Any = None, platform: str | None = None) -> None:
        if event.kind == KIND_INSTALLING and event.mac:
            if len(self.started) >= MAX_PENDING_INSTALLS:
                self.started.pop(next(iter(self.started)))
            self.started.pop(event.mac, None)
            self.started[event.mac] = event.ts
        elif event.kind == KIND_REPORT:
            result = _terminal(event)
            if result is None or not event.mac:
                return
            began = self.started.pop(event.mac, None)
            if began is None and store is not None:
                began = _installing_since(store, event.mac, event.ts)
            if began is None or began > event.ts:
                return  # no hand-out of ours known for it: no duration to tell
            label = (self.platforms(event.detail.get("platform") or platform), result)
            self.installs.setdefault(label, Histogram(INSTALL_BUCKETS)).observe(event.ts - began)
        elif event.kind == KIND_BMC_OPERATION:
            d = event.detail
            op = self.operations(d.get("operation"))
            proto = "ipmi" if d.get("protocol") == "ipmi" else "redfish"
            try:
                seconds = max(0.0, float(d.get("seconds") or 0.0))
            except (TypeError, ValueError):
                seconds = 0.0
            self.bmc.setdefault((op, proto), Histogram(BMC_BUCKETS)).observe(seconds)
            if not d.get("ok"):
                key = (op, proto, self.errors(d.get("error"), "Error"))
                self.bmc_errors[key] = self.bmc_errors.get(key, 0) + 1

    def copy(self) -> Tally:
        """What a scrape reads, while the reader thread goes on with the original."""
        return Tally(
            cursor=self.cursor,
            installs={k: h.copy() for k, h in self.installs.items()},
            bmc={k: h.copy() for k, h in self.bmc.items()},
            bmc_errors=dict(self.bmc_errors),
        )


def _terminal(event: Event) -> str | None:
    """An installer's last report: "installed" or "failed"; None for a progress report."""
    status = str(event.detail.get("status") or "").lower()
    if status == REPORT_STATUS_FAILED:
        return "failed"
    if status == REPORT_STATUS_OK and str(event.detail.get("stage") or "").lower() == REPORT_STAGE_COMPLETE:
        return "installed"
    return None


def _installing_since(store: Any, mac: str, before: float) -> float | None:
    """The device's last device.installing before `before`, for an install that began before
    this server counted (one bounded read: the store's last event of each class)."""
    for e in store.last_events([mac]).get(mac, ()):
        if e.kind == KIND_INSTALLING and e.ts <= before:
            return float(e.ts)
    return None


@dataclass(frozen=True)
class StoreFacts:
    read_at: float
    devices: Mapping[str, int]
    tally: Tally
    rollouts: list[dict[str, Any]]


class ServeCollector(Collector):
    """Reads the running server's counters at scrape time (on the event loop's thread)."""

    def __init__(
        self,
        server: Served,
        facts: Callable[[], StoreFacts | None],
        pools: Callable[[], Mapping[str, Mapping[str, int]] | None] | None = None,
    ) -> None:
        self.server = server
        self.facts = facts
        # pool usage counted before the scrape, off the loop (Metrics.handle); None: count here
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        yield from self._dhcp()
        yield from self._front_ends()
        yield from self._app()
        facts = self.facts()
        if facts is not None:
            yield from self._stored(facts)

    # -- DHCP ------------------------------------------------------------------------------------
    def _dhcp(self) -> Iterator[Metric]:
        dhcp = self.server.dhcp
        packets = CounterMetricFamily(
            "provision_dhcp_packets",
            "DHCP requests by message type and result: the reply sent (offer, ack, nak), refused "
            "(a trust check or bound, see provision_dhcp_refusals_total), ignored (no reply: not "
            "ours, no subnet, another server's), none (RELEASE/DECLINE: no reply is due)",
            labels=["type", "result"],
        )
        refusals = CounterMetricFamily(
            "provision_dhcp_refusals", "DHCP refusals by reason (pxe.dhcp.refusals)", labels=["reason"]
        )
        exhausted = CounterMetricFamily(
            "provision_dhcp_pool_exhausted",
            "DISCOVERs that found no free address, per subnet",
            labels=["subnet"],
        )
        datagrams = CounterMetricFamily(
            "provision_dhcp_datagrams",
            "DHCP datagrams: received, replies sent, and dropped (malformed, handler error, "
            "withheld: their lease could not be committed, store_unavailable: the lease store "
            "(PostgreSQL) did not answer)",
            labels=["outcome"],
        )
        leases = GaugeMetricFamily(
            "provision_dhcp_leases",
            "Live addresses per subnet: bound (unexpired leases), offered, declined (in quarantine)",
            labels=["subnet", "state"],
        )
        pool_size = GaugeMetricFamily(
            "provision_dhcp_pool_addresses", "Addresses in a subnet's pools", labels=["subnet"]
        )
        pool_free = GaugeMetricFamily(
            "provision_dhcp_pool_free",
            "Pool addresses neither bound, offered, declined nor reserved",
            labels=["subnet"],
        )
        if dhcp is not None:
            handler = dhcp.handler
            for (mtype, reply), n in list(handler.counts.items()):
                packets.add_metric([mtype.name.lower(), _dhcp_result(mtype, reply)], n)
            by_reason: dict[str, int] = {}
            for key, n in list(handler.refusals.counts.items()):
                reason, _, where = key.partition(" ")
                if reason == "pool_exhausted":
                    exhausted.add_metric([where], n)
                by_reason[reason] = by_reason.get(reason, 0) + n
            for reason, n in sorted(by_reason.items()):
                refusals.add_metric([reason], n)
            stats = dhcp.stats
            for outcome, key in (("received", "received"), ("replied", "replied"), ("malformed", "bad"),
                                 ("error", "errors"), ("withheld", "withheld"),
                                 ("store_unavailable", "store_unavailable")):  # fmt: skip
                datagrams.add_metric([outcome], stats.get(key, 0))
            usage = self.pools() if self.pools is not None else None
            if usage is None and dhcp.engine is not None:
                usage = pool_usage(dhcp.engine)
            if usage is not None:
                for subnet, counts in usage.items():
                    for state in ("bound", "offered", "declined"):
                        leases.add_metric([subnet, state], counts[state])
                    pool_size.add_metric([subnet], counts["size"])
                    pool_free.add_metric([subnet], counts["free"])
        yield from (packets, refusals, exhausted, datagrams, leases, pool_size, pool_free)

    # -- TFTP and HTTP ---------------------------------------------------------------------------
    def _front_ends(self) -> Iterator[Metric]:
        transfers = CounterMetricFamily(
            "provision_transfers",
            "TFTP and HTTP file requests by result: complete, unconfirmed (TFTP: last ACK never "
            "came), aborted, size-probe (EDK2's tsize probe), not-found, forbidden, busy, "
            "timeout, peer-gone, expired, client-error, bad-range, error",
            labels=["protocol", "result"],
        )
        sent = CounterMetricFamily(
            "provision_transfer_bytes", "File bytes sent (TFTP: acknowledged)", labels=["protocol"]
        )
        durations = HistogramMetricFamily(
            "provision_transfer_duration_seconds",
            "Duration of file transfers that ran (request to last byte or end)",
            labels=["protocol"],
        )
        retransmits = CounterMetricFamily("provision_tftp_retransmits", "TFTP blocks sent again")
        active = GaugeMetricFamily(
            "provision_front_end_active",
            "Live TFTP transfers and HTTP connections",
            labels=["protocol"],
        )
        bounds = CounterMetricFamily(
            "provision_bounds_reached",
            "Times a TFTP/HTTP bound was reached (pxe.limits.Bounds: caps, timeouts, evictions)",
            labels=["protocol", "bound"],
        )
        per: dict[str, tuple[Transfers, dict[str, int], int]] = {}
        for server in list(self.server.front_ends):
            counters = getattr(server, "counters", None)
            if not isinstance(counters, Transfers):
                continue
            protocol = "tftp" if hasattr(server, "transfers") else "http"
            total, stats, live = per.get(protocol, (Transfers(), {}, 0))
            _add(total, counters)
            for k, v in list(server.stats.items()):
                stats[k] = stats.get(k, 0) + v
            live += server.gate.live
            per[protocol] = (total, stats, live)
        for protocol, (total, stats, live) in sorted(per.items()):
            results = dict(total.results)
            if protocol == "tftp":  # refused at a cap before any work (ERROR 0 "server busy")
                busy = sum(
                    stats.get(f"tftp.{k}", 0) for k in ("busy_total", "busy_per_client", "no_descriptors")
                )
                if busy:
                    results["busy"] = results.get("busy", 0) + busy
                retransmits.add_metric([], total.retransmits)
            for result, n in sorted(results.items()):
                transfers.add_metric([protocol, result], n)
            sent.add_metric([protocol], total.bytes_sent)
            durations.add_metric(
                [protocol], cumulative(DURATION_BUCKETS, total.buckets), sum_value=total.seconds
            )
            active.add_metric([protocol], live)
            for key, n in sorted(stats.items()):
                bounds.add_metric([protocol, key.partition(".")[2] or key], n)
        yield from (transfers, sent, durations, retransmits, active, bounds)

    # -- the application: reports, access, lifecycle, store -------------------------------------
    def _app(self) -> Iterator[Metric]:
        reports = CounterMetricFamily(
            "provision_reports",
            "Installer progress reports at /api/v1/report: accepted, rate_limited (429), "
            "refused (401/403, see provision_access_refusals_total)",
            labels=["result"],
        )
        cut = CounterMetricFamily("provision_report_fields_cut", "Report fields cut to their length cap")
        access = CounterMetricFamily(
            "provision_access_refusals",
            "Refused reads, reports and per-device files by kind (provision.server.access.Refusals)",
            labels=["kind"],
        )
        lifecycle = CounterMetricFamily(
            "provision_lifecycle",
            "Lifecycle gate decisions and outcomes: refused, handouts, installed, failed",
            labels=["event"],
        )
        streams = CounterMetricFamily(
            "provision_event_streams",
            "Event stream (GET /api/v1/stream) subscriptions and events: connected, refused (at "
            "the subscriber cap), overflowed (a slow subscriber dropped), sent",
            labels=["counter"],
        )
        subscribers = GaugeMetricFamily("provision_event_stream_subscribers", "Event streams open now")
        store_ops = CounterMetricFamily(
            "provision_store",
            "State store trouble and work: events_dropped, commit_failures, acks_on_durable, pruned",
            labels=["counter"],
        )
        api = self.server.api
        if api is not None:
            counters = api.report_counters
            for key in ("accepted", "rate_limited"):
                reports.add_metric([key], counters.get(key, 0))
            cut.add_metric([], counters.get("fields_cut", 0))
        for kind, n in sorted(dict(self.server.refusals.counts).items()):
            access.add_metric([kind], n)
        fleet = self.server.fleet
        if fleet is not None:
            for key, n in sorted(dict(fleet.counters).items()):
                lifecycle.add_metric([key], n)
        store = self.server.store
        if store is not None:
            for key, n in sorted(dict(getattr(store, "counters", {})).items()):
                store_ops.add_metric([key], n)
        stream = getattr(self.server, "stream", None)
        if stream is not None:
            for key, n in sorted(dict(stream.counters).items()):
                streams.add_metric([key], n)
            subscribers.add_metric([], len(stream.subscribers))
        yield from (reports, cut, access, lifecycle, streams, subscribers, store_ops)

    # -- from the store --------------------------------------------------------------------------
    def _stored(self, facts: StoreFacts) -> Iterator[Metric]:
        devices = GaugeMetricFamily(
            "provision_devices", "Devices by lifecycle state (docs/lifecycle.md)", labels=["state"]
        )
        for state in DEVICE_STATES:
            devices.add_metric([state], facts.devices.get(state, 0))
        installs = HistogramMetricFamily(
            "provision_install_duration_seconds",
            "Install durations, from the installer's hand-out (device.installing) to its last "
            "report (installed or failed), per platform",
            labels=["platform", "result"],
        )
        for (platform, result), h in sorted(facts.tally.installs.items()):
            installs.add_metric([platform, result], cumulative(h.bounds, h.counts), sum_value=h.total)
        bmc = HistogramMetricFamily(
            "provision_bmc_operation_duration_seconds",
            "BMC operations (provision power/boot/bmc info, rollouts) by operation and protocol",
            labels=["operation", "protocol"],
        )
        for (op, proto), h in sorted(facts.tally.bmc.items()):
            bmc.add_metric([op, proto], cumulative(h.bounds, h.counts), sum_value=h.total)
        bmc_errors = CounterMetricFamily(
            "provision_bmc_operation_errors",
            "Failed BMC operations by operation, protocol and error kind",
            labels=["operation", "protocol", "error"],
        )
        for (op, proto, error), n in sorted(facts.tally.bmc_errors.items()):
            bmc_errors.add_metric([op, proto, error], n)
        age = GaugeMetricFamily(
            "provision_metrics_store_age_seconds", "Age of the figures read from the state store"
        )
        age.add_metric([], max(0.0, time.time() - facts.read_at))
        yield from (devices, installs, bmc, bmc_errors, age)
        yield from rollout_metrics(facts.rollouts)


def rollout_metrics(summaries: Sequence[Mapping[str, Any]]) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "provision_rollout_info",
        "1 per rollout, with its name and state",
        labels=["rollout", "name", "state"],
    )
    devices = GaugeMetricFamily(
        "provision_rollout_devices",
        "Devices of a rollout's wave by stage: pending, arming, installing, installed, failed, skipped",
        labels=["rollout", "wave", "stage"],
    )
    waves = GaugeMetricFamily(
        "provision_rollout_wave_info", "1 per wave, with its state", labels=["rollout", "wave", "state"]
    )
    for r in list(summaries)[:MAX_ROLLOUTS]:
        rid = str(r.get("id"))
        info.add_metric([rid, str(r.get("name") or ""), str(r.get("state") or "")], 1)
        for w in r.get("waves") or ():
            wave = str(w.get("index"))
            waves.add_metric([rid, wave, str(w.get("state") or "")], 1)
            for stage in ROLLOUT_STAGES:
                devices.add_metric([rid, wave, stage], int(w.get(stage) or 0))
    yield from (info, devices, waves)


def _add(total: Transfers, more: Transfers) -> None:
    for k, n in list(more.results.items()):
        total.results[k] = total.results.get(k, 0) + n
    total.bytes_sent += more.bytes_sent
    total.buckets = [a + b for a, b in zip(total.buckets, more.buckets, strict=True)]
    total.seconds += more.seconds
    total.retransmits += more.retransmits


def _dhcp_result(mtype: MessageType, reply: int) -> str:
    if reply > 0:
        try:
            return MessageType(reply).name.lower()
        except ValueError:
            return "other"
    if reply < 0:
        return "refused"
    return "none" if mtype in (MessageType.RELEASE, MessageType.DECLINE) else "ignored"


@dataclass(frozen=True)
class LeaseTables:
    """Copies of the lease engine's tables (each one C-level dict copy on the loop: a few ms for
    100,000 leases), so the counting can run in another thread while DHCP goes on."""

    now: float
    pools: dict[str, tuple[int, tuple[tuple[int, int], ...]]]  # network -> (size, ranges)
    subnets: dict[str, Any]  # network -> pxe.dhcp.Subnet (for `contains`)
    by_ip: dict[int, Lease]
    offered: dict[int, tuple[str, float]]
    reserved: tuple[int, ...]

    @classmethod
    def of(cls, engine: LeaseEngine) -> LeaseTables:
        return cls(
            now=engine.clock(),
            pools={n: (len(p.addresses), tuple(p.ranges)) for n, p in engine.pools.items()},
            subnets={n: p.subnet for n, p in engine.pools.items()},
            by_ip=dict(engine.by_ip),
            offered=dict(engine.offered_ips),
            reserved=tuple(engine.reserved_ips),
        )


def _in(ranges: tuple[tuple[int, int], ...], ip: int) -> bool:
    return any(a <= ip <= b for a, b in ranges)


def pool_usage(tables: LeaseTables | LeaseEngine) -> dict[str, dict[str, int]]:
    """Per subnet: pool size, live bound/offered/declined addresses (anywhere in the subnet) and
    free pool addresses. Walks the leases, offers and reservations, never the pool itself."""
    t = tables if isinstance(tables, LeaseTables) else LeaseTables.of(tables)
    now = t.now
    out = {
        n: {"size": size, "bound": 0, "offered": 0, "declined": 0, "free": 0}
        for n, (size, _) in t.pools.items()
    }
    taken = dict.fromkeys(t.pools, 0)
    ranges = {n: r for n, (_, r) in t.pools.items()}
    bound, released = LeaseState.BOUND, LeaseState.RELEASED

    def live(ip: int) -> bool:
        lease = t.by_ip.get(ip)
        return lease is not None and lease.expires > now and lease.state is not released

    for ip, lease in t.by_ip.items():  # the one loop over every lease: kept tight
        if lease.expires <= now or lease.state is released:
            continue
        counts = out.get(lease.subnet)
        if counts is None:
            continue
        counts["bound" if lease.state is bound else "declined"] += 1
        for a, b in ranges[lease.subnet]:
            if a <= ip <= b:
                taken[lease.subnet] += 1
                break
    for ip, (_mac, expires) in t.offered.items():
        if expires <= now:
            continue
        for network, subnet in t.subnets.items():
            if subnet.contains(ip):
                out[network]["offered"] += 1
                if _in(ranges[network], ip) and not live(ip):
                    taken[network] += 1
                break
    for ip in t.reserved:
        if live(ip) or (ip in t.offered and t.offered[ip][1] > now):
            continue  # counted above
        for network, r in ranges.items():
            if _in(r, ip):
                taken[network] += 1
                break
    for network, counts in out.items():
        counts["free"] = max(0, counts["size"] - taken[network])
    return out


class Metrics:
    """The /metrics route of one server: its registry, the collector and the store-read facts.

    `read(fn)`: run `fn(store)` off the loop on a reader connection (Api's reader thread), None
    while stopping; `lab()`: lab.yml's devices; `rollouts`: the rollout view, when present."""

    def __init__(
        self,
        server: Served,
        read: Callable[[Callable[[Any], Any]], Awaitable[Any]],
        lab: Callable[[], Inventory],
        rollouts: RolloutSummaries | None = newest_rollouts,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self.read = read
        self.lab = lab
        self.rollouts = rollouts
        self.clock = clock
        self.tally = Tally()
        self.facts: StoreFacts | None = None
        self.pools: dict[str, dict[str, int]] | None = None
        self._read_seconds = 0.0  # how long the last store read took
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServeCollector(server, lambda: self.facts, lambda: self.pools))

    def start(self, store: Any) -> None:
        """Count install and BMC events from now on (called at start, store open)."""
        self.tally.start_at(store)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/metrics", self.handle)]

    def read_facts(self, store: Any) -> StoreFacts:
        """In the reader thread: the store-derived figures, and the tally carried forward."""
        self.tally.read(store)
        states: dict[str, int] = {}
        for row in snapshot(store, self.lab())["devices"]:
            states[row["state"]] = states.get(row["state"], 0) + 1
        rollouts: list[dict[str, Any]] = []
        if self.rollouts is not None:
            try:
                rollouts = list(self.rollouts(store))
            except Exception:  # the rollout view failing must not take the other metrics down
                log.exception("metrics: reading rollout summaries failed")
        return StoreFacts(self.clock(), states, self.tally.copy(), rollouts)

    async def refresh(self) -> None:
        reuse = max(FACTS_MAX_AGE, self._read_seconds / READ_SHARE)
        if self.facts is not None and self.clock() - self.facts.read_at < reuse:
            return
        started = time.monotonic()
        try:
            facts = await self.read(self.read_facts)
        except web.HTTPServiceUnavailable:
            return  # the reader is busy: the last figures (their age is exported) this time
        except Exception:
            log.exception("metrics: reading the state store failed; serving the last figures")
            return
        if facts is not None:
            self.facts = facts
            self._read_seconds = time.monotonic() - started

    async def handle(self, request: web.Request) -> web.Response:
        await self.refresh()
        dhcp = self.server.dhcp
        engine = dhcp.engine if dhcp is not None else None
        # Pool usage walks every lease (50,000 leases: ~0.3 s of Python): counted in a thread on
        # copies of the engine's tables, so DHCP is not held up while Prometheus scrapes
        self.pools = None if engine is None else await asyncio.to_thread(pool_usage, LeaseTables.of(engine))
        # The format the scraper asks for (Accept): Prometheus's text format 0.0.4 by default,
        # OpenMetrics or text 1.0.0 when asked
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})


__all__ = [
    "BMC_BUCKETS",
    "INSTALL_BUCKETS",
    "Histogram",
    "Metrics",
    "ServeCollector",
    "StoreFacts",
    "Tally",
    "cumulative",
    "pool_usage",
    "rollout_metrics",
]
