"""provision.server.metrics without a network: the collector over a real pxe DHCP handler and lease
engine (packets through the wire format), a real SQLite store for the install/BMC tally, and the
Grafana dashboard's queries against the names the collector exports. The scrape of a running
`provision serve` is tests/provision/server/test_metrics_netns.py."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from dhcp4.codec import Packet, decode, encode, mac_to_chaddr
from dhcp4.options import MessageType
from provision.bmc.journal import KIND_BMC_OPERATION, operation_name
from provision.config.inventory import Inventory
from provision.devices.lifecycle import KIND_INSTALLING
from provision.onie.progress import KIND_REPORT
from provision.server.access import Refusals
from provision.server.metrics import (
    Metrics,
    ServeCollector,
    StoreFacts,
    Tally,
    cumulative,
    pool_usage,
)
from provision.store.rollouts import RolloutStore
from provision.store.sqlite import Store
from pxe.counters import DURATION_BUCKETS, Transfers
from pxe.dhcp import DhcpServer, DhcpServerConfig, Subnet
from pxe.dhcp.handler import Arrival
from pxe.dhcp.leases import MemoryLeaseStore
from pxe.policy import BootDecision, Event

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "examples" / "grafana" / "provision-dashboard.json"
NET = Subnet("198.18.0.0/24", pools=(("198.18.0.100", "198.18.0.109"),), router="198.18.0.1", interface="s0")
ARR = Arrival("s0", "198.18.0.1", "0.0.0.0", 68, 67)
SERVER_ID = bytes([198, 18, 0, 1])


class Boots:
    """A policy that boots everyone (the router's place in serve)."""

    def decide(self, client: Any) -> BootDecision:
        return BootDecision(bootfile="ipxe.efi")

    def render(self, client: Any, path: str) -> None:
        return None


def packet(mtype: MessageType, mac: str, **opts: bytes) -> Packet:
    pkt = Packet(op=1, xid=0x1234, chaddr=mac_to_chaddr(mac))
    pkt.options[53] = bytes([mtype])
    for code, value in opts.items():
        pkt.options[int(code.lstrip("o"))] = value
    return decode(encode(pkt))


def scrape(served: Any, facts: StoreFacts | None = None) -> dict[str, Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServeCollector(served, lambda: facts))
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], family: str, sample: str | None = None, /, **labels: str) -> float:
    found_family = families[family]
    found = [
        s.value
        for s in found_family.samples
        if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (family, labels, found_family.samples)
    return float(found[0])


def served(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "dhcp": None,
        "front_ends": [],
        "api": None,
        "fleet": None,
        "store": None,
        "refusals": Refusals(),
        "stream": None,
    }
    base.update(kw)
    return SimpleNamespace(**base)


def test_dhcp_packets_by_type_and_result_and_pool_usage():
    dhcp = DhcpServer(
        DhcpServerConfig(interfaces=("s0",), subnets=(NET,)), Boots(), MemoryLeaseStore(), print
    )
    h = dhcp.handler
    # one DORA: DISCOVER -> OFFER, REQUEST -> ACK
    offer = h.handle(packet(MessageType.DISCOVER, "52:54:00:00:00:01"), ARR)
    ip = bytes(map(int, offer.packet.yiaddr.split(".")))
    assert h.handle(packet(MessageType.REQUEST, "52:54:00:00:00:01", o50=ip, o54=SERVER_ID), ARR) is not None
    # a second client is offered and never requests: an outstanding offer
    assert h.handle(packet(MessageType.DISCOVER, "52:54:00:00:00:02"), ARR) is not None
    # a REQUEST for an address off the subnet: NAK; option 54 of another server: ignored
    nak = packet(MessageType.REQUEST, "52:54:00:00:00:03", o50=bytes([10, 0, 0, 1]), o54=SERVER_ID)
    assert h.handle(nak, ARR) is not None
    other = packet(MessageType.REQUEST, "52:54:00:00:00:04", o50=ip, o54=bytes([198, 18, 0, 9]))
    assert h.handle(other, ARR) is None
    # relayed from an address no subnet lists: refused
    relayed = packet(MessageType.DISCOVER, "52:54:00:00:00:05")
    relayed.giaddr = "198.18.0.77"
    assert h.handle(relayed, Arrival("s0", "198.18.0.1", "198.18.0.77", 67, 67, broadcast=False)) is None
    # a DECLINE from someone holding no lease: refused; a RELEASE: no reply is due
    decline = packet(MessageType.DECLINE, "52:54:00:00:00:06", o50=ip, o54=SERVER_ID)
    assert h.handle(decline, ARR) is None
    release = packet(MessageType.RELEASE, "52:54:00:00:00:07", o54=SERVER_ID)
    assert h.handle(release, ARR) is None

    m = scrape(served(dhcp=dhcp))
    packets = "provision_dhcp_packets"
    assert value(m, packets, type="discover", result="offer") == 2
    assert value(m, packets, type="request", result="ack") == 1
    assert value(m, packets, type="request", result="nak") == 1
    assert value(m, packets, type="request", result="ignored") == 1
    assert value(m, packets, type="discover", result="refused") == 1
    assert value(m, packets, type="decline", result="refused") == 1
    assert value(m, packets, type="release", result="none") == 1
    assert value(m, "provision_dhcp_refusals", reason="relay_not_listed") == 1
    assert value(m, "provision_dhcp_refusals", reason="decline_refused") == 1
    subnet = "198.18.0.0/24"
    assert value(m, "provision_dhcp_leases", subnet=subnet, state="bound") == 1
    assert value(m, "provision_dhcp_leases", subnet=subnet, state="offered") == 1
    assert value(m, "provision_dhcp_pool_addresses", subnet=subnet) == 10
    assert value(m, "provision_dhcp_pool_free", subnet=subnet) == 8


def test_pool_exhaustion_is_counted_per_subnet():
    small = Subnet("198.18.1.0/24", pools=(("198.18.1.10", "198.18.1.11"),), interface="s0")
    dhcp = DhcpServer(DhcpServerConfig(interfaces=("s0",), subnets=(small,)), Boots(), None, print)
    for n in range(5):
        dhcp.handler.handle(packet(MessageType.DISCOVER, f"52:54:00:00:01:{n:02x}"), ARR)
    m = scrape(served(dhcp=dhcp))
    assert value(m, "provision_dhcp_pool_exhausted", subnet="198.18.1.0/24") == 3
    assert value(m, "provision_dhcp_pool_free", subnet="198.18.1.0/24") == 0
    assert value(m, "provision_dhcp_packets", type="discover", result="offer") == 2
    assert value(m, "provision_dhcp_packets", type="discover", result="refused") == 3
    assert pool_usage(dhcp.engine)["198.18.1.0/24"]["offered"] == 2


def test_transfers_sum_over_interfaces_with_a_histogram():
    tftp_a, tftp_b, http = Transfers(), Transfers(), Transfers()
    tftp_a.done("complete", 1000, 0.02, retransmits=2)
    tftp_b.done("complete", 500, 3.0)
    tftp_b.refused("not-found")
    http.done("complete", 4096, 0.001)
    http.refused("not-found")
    front_ends = [
        SimpleNamespace(
            counters=tftp_a, stats={"tftp.busy_total": 4}, gate=SimpleNamespace(live=1), transfers={}
        ),
        SimpleNamespace(counters=tftp_b, stats={}, gate=SimpleNamespace(live=0), transfers={}),
        SimpleNamespace(counters=http, stats={"http.header_timeout": 1}, gate=SimpleNamespace(live=2)),
    ]
    m = scrape(served(front_ends=front_ends))
    assert value(m, "provision_transfers", protocol="tftp", result="complete") == 2
    assert value(m, "provision_transfers", protocol="tftp", result="not-found") == 1
    assert value(m, "provision_transfers", protocol="tftp", result="busy") == 4
    assert value(m, "provision_transfer_bytes", protocol="tftp") == 1500
    assert value(m, "provision_tftp_retransmits") == 2
    assert value(m, "provision_front_end_active", protocol="http") == 2
    assert value(m, "provision_bounds_reached", protocol="http", bound="header_timeout") == 1
    hist = "provision_transfer_duration_seconds"
    assert value(m, hist, f"{hist}_count", protocol="tftp") == 2
    assert value(m, hist, f"{hist}_sum", protocol="tftp") == 3.02
    assert value(m, hist, f"{hist}_bucket", protocol="tftp", le="0.025") == 1
    assert value(m, hist, f"{hist}_bucket", protocol="tftp", le="5.0") == 2
    assert value(m, hist, f"{hist}_bucket", protocol="http", le="+Inf") == 1
    assert len(cumulative(DURATION_BUCKETS, tftp_a.buckets)) == len(DURATION_BUCKETS) + 1


def bmc_event(**detail: object) -> Event:
    return Event(KIND_BMC_OPERATION, detail={"operation": "power-cycle", "protocol": "redfish", **detail})


def test_install_durations_and_bmc_operations_from_the_store(tmp_path):
    mac, other = "52:54:00:aa:00:01", "52:54:00:aa:00:02"
    with Store(tmp_path / "provision.db") as store:
        store.add_event(Event("dhcp.ack", mac=mac, ts=10.0))  # before the server counted: not read
        metrics = Metrics(served(), read=None, lab=lambda: Inventory([]))  # type: ignore[arg-type]
        metrics.start(store)
        events = [
            Event(KIND_INSTALLING, mac=mac, detail={"name": "leaf-01"}, ts=1000.0),
            Event(KIND_REPORT, mac=mac, detail={"status": "ok", "stage": "download"}, ts=1100.0),
            Event(
                KIND_REPORT,
                mac=mac,
                detail={"status": "ok", "stage": "complete", "platform": "x86_64-kvm_x86_64-r0"},
                ts=1400.0,
            ),
            Event(KIND_INSTALLING, mac=other, detail={"name": "leaf-02"}, ts=2000.0),
            Event(KIND_REPORT, mac=other, detail={"status": "failed", "stage": "install"}, ts=2050.0),
            bmc_event(ok=True, seconds=0.4),
            bmc_event(ok=False, seconds=12.0, error="BmcTimeout"),
        ]
        for e in events:
            store.add_event(e)
        store.upsert_device(other, platform="accton_as7726_32x-r0")
        facts = metrics.read_facts(store)
        again = metrics.read_facts(store)  # the cursor moved: nothing counted twice
    m = scrape(served(), again)
    hist = "provision_install_duration_seconds"
    kvm = {"platform": "x86_64-kvm_x86_64-r0", "result": "installed"}
    assert value(m, hist, f"{hist}_count", **kvm) == 1
    assert value(m, hist, f"{hist}_sum", **kvm) == 400
    assert value(m, hist, f"{hist}_bucket", le="300.0", **kvm) == 0
    assert value(m, hist, f"{hist}_bucket", le="600.0", **kvm) == 1
    failed = {"platform": "accton_as7726_32x-r0", "result": "failed"}
    assert value(m, hist, f"{hist}_sum", **failed) == 50
    bmc = "provision_bmc_operation_duration_seconds"
    op = {"operation": "power-cycle", "protocol": "redfish"}
    assert value(m, bmc, f"{bmc}_count", **op) == 2
    assert value(m, bmc, f"{bmc}_bucket", le="0.5", **op) == 1
    assert value(m, "provision_bmc_operation_errors", error="BmcTimeout", **op) == 1
    assert facts.tally.cursor == again.tally.cursor
    assert value(m, "provision_devices", state="unknown") == 2  # two MACs seen, in no inventory


def test_a_terminal_report_finds_an_install_begun_before_the_server_counted(tmp_path):
    mac = "52:54:00:aa:00:03"
    with Store(tmp_path / "provision.db") as store:
        store.add_event(Event(KIND_INSTALLING, mac=mac, detail={"name": "srv-1"}, ts=500.0))
        tally = Tally()
        tally.start_at(store)
        store.add_event(Event(KIND_REPORT, mac=mac, detail={"status": "ok", "stage": "complete"}, ts=800.0))
        assert tally.read(store) == 1
    assert [(k, h.total) for k, h in tally.installs.items()] == [(("unknown", "installed"), 300.0)]


def test_label_values_are_capped():
    tally = Tally()
    tally.errors.most = 3
    for n in range(10):
        tally.feed(Event(KIND_BMC_OPERATION, detail={"operation": "boot pxe", "ok": False, "error": f"E{n}"}))
    assert sorted(k[2] for k in tally.bmc_errors) == ["E0", "E1", "E2", "other"]
    assert operation_name("Power Cycle") == "power-cycle"


def test_rollout_progress_per_wave():
    summaries = [
        {"id": "r1", "name": "spine upgrade", "state": "running", "waves": [
            {"index": 0, "devices": 2, "pending": 0, "arming": 0, "installing": 0, "installed": 2,
             "failed": 0, "skipped": 0, "state": "done"},
            {"index": 1, "devices": 5, "pending": 2, "arming": 1, "installing": 1, "installed": 1,
             "failed": 0, "skipped": 0, "state": "running"},
        ]},
    ]  # fmt: skip
    facts = StoreFacts(0.0, {}, Tally(), summaries)
    m = scrape(served(), facts)
    assert value(m, "provision_rollout_devices", rollout="r1", wave="1", stage="pending") == 2
    assert value(m, "provision_rollout_devices", rollout="r1", wave="0", stage="installed") == 2
    assert value(m, "provision_rollout_info", rollout="r1", name="spine upgrade", state="running") == 1
    assert value(m, "provision_rollout_wave_info", rollout="r1", wave="1", state="running") == 1


def test_a_busy_reader_serves_the_last_figures():
    calls = []

    async def busy(fn):
        calls.append(fn)
        raise web.HTTPServiceUnavailable()

    metrics = Metrics(served(), busy, lambda: Inventory([]))
    asyncio.run(metrics.refresh())
    assert calls and metrics.facts is None


def exported_names(families: dict[str, Any]) -> set[str]:
    """Every sample name a scrape can carry, for each family's type."""
    names: set[str] = set()
    for name, f in families.items():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(f.type, ("",))
        names.update(name + s for s in suffixes)
    return names


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    panels = list(doc["panels"])
    for p in list(panels):
        panels.extend(p.get("panels", []))  # panels inside collapsed rows
    return [t["expr"] for p in panels for t in p.get("targets", []) if t.get("expr")]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (identifiers starting with provision_)."""
    return set(re.findall(r"\bprovision_[a-z0-9_]+", expr))


def test_every_dashboard_query_names_exported_metrics():
    facts = StoreFacts(0.0, {}, Tally(), [])
    exported = exported_names(scrape(served(), facts))
    doc = json.loads(DASHBOARD.read_text())
    assert doc["title"] and doc["schemaVersion"] >= 30 and doc["panels"]
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    variables = [v.get("definition", "") for v in doc["templating"]["list"]]
    assert all(metric_names(v) <= exported for v in variables), variables
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"query reads no provision_ metric: {expr}"
        assert names <= exported, f"{expr}: {sorted(names - exported)} not exported"


def test_rollout_progress_from_the_store(tmp_path):
    # A rollout as the engine writes it (provision.store.rollouts), read through the rollout view.
    with Store(tmp_path / "provision.db") as store:
        rs = RolloutStore(store)
        devices = [("leaf-01", 0, 0), ("leaf-02", 1, 0), ("leaf-03", 1, 1)]
        rs.create("r1", "spine upgrade", {"target": "demo 2.0"}, devices, by="test")
        rs.update_device("r1", "leaf-01", stage="verified")  # installed, and back at the target
        rs.update_device("r1", "leaf-02", stage="installing")
        facts = Metrics(served(), read=None, lab=lambda: Inventory([])).read_facts(store)  # type: ignore[arg-type]
    m = scrape(served(), facts)
    assert value(m, "provision_rollout_devices", rollout="r1", wave="0", stage="installed") == 1
    assert value(m, "provision_rollout_devices", rollout="r1", wave="1", stage="installing") == 1
    assert value(m, "provision_rollout_devices", rollout="r1", wave="1", stage="pending") == 1
    assert value(m, "provision_rollout_wave_info", rollout="r1", wave="0", state="done") == 1


def test_event_stream_counters():
    stream = SimpleNamespace(
        counters={"connected": 3, "refused": 1, "overflowed": 0, "sent": 40}, subscribers={1, 2}
    )
    m = scrape(served(stream=stream))
    assert value(m, "provision_event_streams", counter="sent") == 40
    assert value(m, "provision_event_stream_subscribers") == 2


def test_store_figures_are_reused_and_slow_reads_are_spaced_out():
    now = [1000.0]
    reads: list[float] = []

    async def read(fn):
        reads.append(now[0])
        return StoreFacts(now[0], {}, Tally(), [])

    metrics = Metrics(served(), read, lambda: Inventory([]), clock=lambda: now[0])

    async def scrapes(times):
        for t in times:
            now[0] = t
            await metrics.refresh()

    asyncio.run(scrapes([1000.0, 1005.0, 1010.0, 1011.0]))
    assert reads == [1000.0, 1010.0]  # one read per FACTS_MAX_AGE, whatever the scrape rate
    metrics._read_seconds = 2.0  # a slow store: at most READ_SHARE of the time goes to reading
    asyncio.run(scrapes([1025.0, 1049.0, 1051.0]))
    assert reads == [1000.0, 1010.0, 1051.0]
