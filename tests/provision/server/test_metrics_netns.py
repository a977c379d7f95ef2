"""`provision serve` in a namespace pair, scraped after real traffic: busybox udhcpc takes a lease,
busybox tftp and curl fetch a file and miss one, then /metrics (read with curl, parsed with
prometheus_client's text parser, the reference one) must count exactly that; from the client's
address it is refused like /api/v1/status (api.read: local, docs/security.md)."""

from __future__ import annotations

import os
import re

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from tests.provision.server.test_metrics import dashboard_exprs, exported_names, metric_names, value
from tests.provision.server.test_status_poll_netns import write_installer
from tests.support.cli import onie_sim, run_cli
from tests.support.tools import require_tool

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

SERVER_IP = "198.18.24.1"
MAC = "52:54:00:24:00:01"
SUBNET = "198.18.24.0/24"
LAB = """\
interfaces: [mp0]
subnets:
  - network: 198.18.24.0/24
    interface: mp0
    pool: [198.18.24.100-198.18.24.109]
paths:
  state_dir: {state}
devices:
  - {{name: m0, mac: '{mac}'}}
"""


def test_metrics_count_what_a_real_client_did(serve_netns, tmp_path):
    busybox, curl = require_tool("busybox"), require_tool("curl")
    link = serve_netns(
        server_if="mp0", client_if="mc0", server_addr=f"{SERVER_IP}/24", client_mac=MAC, prefix="mt"
    )
    state = tmp_path / "state"
    payload = os.urandom(100_000)
    for root in ("tftp", "http"):
        (state / root).mkdir(parents=True)
        (state / root / "boot.bin").write_bytes(payload)
    lab = tmp_path / "lab.yml"
    lab.write_text(LAB.format(state=state, mac=MAC))
    link.serve(str(lab))

    # DHCP: one DISCOVER/OFFER, one REQUEST/ACK (udhcpc -q: quit once leased, no RELEASE)
    r = link.client.run(
        [busybox, "udhcpc", "-i", "mc0", "-n", "-q", "-f", "-t", "5", "-T", "2", "-s", "/bin/true"],
        check=False,
    )
    assert r.returncode == 0, r.stderr
    leased = re.search(r"lease of (\S+) obtained", r.stdout + r.stderr)
    assert leased, r.stdout + r.stderr
    link.client.run(["ip", "addr", "add", f"{leased.group(1)}/24", "dev", "mc0"])

    # TFTP and HTTP: a file fetched whole, a file that is not there
    got = tmp_path / "got.bin"
    link.client.run([busybox, "tftp", "-g", "-r", "boot.bin", "-l", str(got), SERVER_IP])
    assert got.read_bytes() == payload
    miss = link.client.run(
        [busybox, "tftp", "-g", "-r", "nothere.bin", "-l", "/dev/null", SERVER_IP], check=False
    )
    assert miss.returncode != 0
    fetched = link.client.run(
        [curl, "-sf", "-o", "/dev/null", "-w", "%{size_download}", f"http://{SERVER_IP}/boot.bin"]
    )
    assert fetched.stdout == str(len(payload))
    missing = link.client.run(
        [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER_IP}/nothere.bin"]
    )
    assert missing.stdout == "404"

    # The client's address may not read it (api.read: local); the server's own may
    refused = link.client.run(
        [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER_IP}/metrics"]
    )
    assert refused.stdout == "403"
    scraped = link.server.run([curl, "-sf", "-D", "-", f"http://{SERVER_IP}/metrics"]).stdout
    headers, text = re.split(r"\r?\n\r?\n", scraped, maxsplit=1)
    assert "text/plain; version=0.0.4" in headers
    m = {f.name: f for f in text_string_to_metric_families(text)}

    packets = "provision_dhcp_packets"
    assert value(m, packets, type="discover", result="offer") == 1
    assert value(m, packets, type="request", result="ack") == 1
    assert sum(s.value for s in m[packets].samples if s.name.endswith("_total")) == 2
    assert value(m, "provision_dhcp_leases", subnet=SUBNET, state="bound") == 1
    assert value(m, "provision_dhcp_pool_addresses", subnet=SUBNET) == 10
    assert value(m, "provision_dhcp_pool_free", subnet=SUBNET) == 9
    assert value(m, "provision_dhcp_datagrams", outcome="replied") == 2

    for protocol in ("tftp", "http"):
        assert value(m, "provision_transfers", protocol=protocol, result="complete") == 1
        assert value(m, "provision_transfers", protocol=protocol, result="not-found") == 1
        assert value(m, "provision_transfer_bytes", protocol=protocol) == len(payload)
        hist = "provision_transfer_duration_seconds"
        assert value(m, hist, f"{hist}_count", protocol=protocol) == 1

    assert value(m, "provision_devices", state="enrolled") == 1
    assert value(m, "provision_devices", state="unknown") == 0
    assert value(m, "provision_access_refusals", kind="api_read") == 1

    # OpenMetrics when the scraper asks for it, the same figures
    om = link.server.run(
        [
            curl,
            "-sf",
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
            f"http://{SERVER_IP}/metrics",
        ]
    ).stdout
    families = {f.name: f for f in openmetrics_families(om)}
    assert value(families, "provision_transfer_bytes", protocol="http") == len(payload)

    # The dashboard reads only what this server exports
    exported = exported_names(m)
    for expr in dashboard_exprs():
        assert metric_names(expr) <= exported, expr


KVM = "x86_64-kvm_x86_64-r0"
ONIE_LAB = """\
interfaces: [mp0]
subnets:
  - network: 198.18.24.0/24
    interface: mp0
    pool: [198.18.24.100-198.18.24.109]
paths:
  state_dir: {state}
onie:
  installers: {installers}
  discovery: exact
devices:
  - {{name: leaf-24, serial: LEAF-24, ip: 198.18.24.24, platform: {platform}}}
"""


def test_an_onie_install_shows_in_devices_and_install_durations(serve_netns, tmp_path):
    """onie-sim as the switch: refused while not armed, installs once armed (its installer's
    reports reach /api/v1/report); the install is one observation of the duration histogram."""
    curl = require_tool("curl")
    link = serve_netns(server_if="mp0", client_if="mc0", server_addr=f"{SERVER_IP}/24", prefix="mo")
    installers = tmp_path / "installers"
    installers.mkdir()
    write_installer(installers, KVM)
    lab = tmp_path / "lab.yml"
    lab.write_text(ONIE_LAB.format(state=tmp_path / "state", installers=installers, platform=KVM))
    link.serve(str(lab))
    sim = ("-p", KVM, "--serial", "LEAF-24", "--mac", "52:54:00:24:07:07")
    rc, _, _ = onie_sim(link.client, *sim, ifname="mc0")
    assert rc != 0  # not armed: a lease, no installer
    armed = run_cli("devices", "arm", "leaf-24", "--lab", str(lab))
    assert armed.returncode == 0, armed.stderr
    rc, doc, _ = onie_sim(link.client, *sim, ifname="mc0")
    assert rc == 0, doc
    reports = doc["switches"][0]["reports"]
    assert reports and all(r["http_status"] == 200 for r in reports)

    text = link.server.run([curl, "-sf", f"http://{SERVER_IP}/metrics"]).stdout
    m = {f.name: f for f in text_string_to_metric_families(text)}
    hist = "provision_install_duration_seconds"
    done = {"platform": KVM, "result": "installed"}
    assert value(m, hist, f"{hist}_count", **done) == 1
    assert value(m, hist, f"{hist}_bucket", le="60.0", **done) == 1  # the simulated installer is quick
    assert value(m, "provision_devices", state="installed") == 1
    assert value(m, "provision_reports", result="accepted") == len(reports)
    assert value(m, "provision_lifecycle", event="installed") == 1
    assert value(m, "provision_lifecycle", event="refused") >= 1  # the first walk, before the arming
