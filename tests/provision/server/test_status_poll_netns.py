"""`provision serve` in namespaces, read and steered while it runs:

- /api/v1/status and /api/v1/events polled in a loop (against a store holding 12,000 events of
  one MAC, the case that used to take 0.9 s per call on the event loop) while busybox udhcpc gets
  lease after lease: every client is answered. No timing is asserted, only that answers come.
- `provision devices arm` from the CLI reaches the running server: onie-sim is refused before
  and installs after, with no restart (the same serve process), and install once holds.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from onie import discovery
from provision.store.sqlite import Store
from pxe.policy import Event
from tests.support.cli import onie_sim, run_cli
from tests.support.tools import require_tool

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.22.1"
KVM = "x86_64-kvm_x86_64-r0"
NOISY = "52:54:00:22:00:ee"

CLIENTS = [f"52:54:00:22:01:{n:02x}" for n in range(10)]
POLL_LAB = """\
interfaces: [sp0]
subnets:
  - network: 198.18.22.0/24
    interface: sp0
    pool: [198.18.22.100-198.18.22.199]
paths:
  state_dir: {state}
devices:
""" + "".join(f"  - {{{{name: c{n}, mac: '{mac}'}}}}\n" for n, mac in enumerate(CLIENTS))

ARM_LAB = """\
interfaces: [sp0]
subnets:
  - network: 198.18.22.0/24
    interface: sp0
    pool: [198.18.22.100-198.18.22.199]
paths:
  state_dir: {state}
http_port: 8080
onie:
  installers: {installers}
  discovery: exact
devices:
  - {{name: leaf-07, serial: LEAF-07, ip: 198.18.22.17, platform: {platform}}}
"""


@pytest.fixture
def link(serve_netns):
    return serve_netns(server_if="sp0", client_if="cp0", server_addr=f"{SERVER_IP}/24", prefix="sp")


def test_dhcp_keeps_answering_while_status_is_polled(link, tmp_path):
    busybox = require_tool("busybox")
    curl = require_tool("curl")
    state = tmp_path / "state"
    state.mkdir()
    with Store(state / "provision.db") as store:
        for i in range(12_000):
            store.add_event(Event("dhcp.ack", mac=NOISY, ip="198.18.22.99", detail={"n": i}, ts=1000.0 + i))
    lab = tmp_path / "lab.yml"
    lab.write_text(POLL_LAB.format(state=state))
    link.serve(str(lab))
    stop = threading.Event()
    polls: list[int] = []
    bad: list[str] = []

    def poll() -> None:
        urls = [
            f"http://{SERVER_IP}/api/v1/status",
            f"http://{SERVER_IP}/api/v1/events?mac={NOISY}&limit=500",
        ]
        while not stop.is_set():
            for url in urls:
                r = link.server.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", url], check=False)
                polls.append(1)
                if r.stdout != "200":
                    bad.append(f"{url}: {r.stdout} {r.stderr}")

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    leases = []
    try:
        for mac in CLIENTS:  # in the inventory: a lease from the pool (unknown MACs are ignored)
            link.client.run(["ip", "link", "set", "cp0", "address", mac])
            r = link.client.run(
                [busybox, "udhcpc", "-i", "cp0", "-n", "-q", "-f", "-t", "5", "-T", "2", "-s", "/bin/true"],
                check=False,
            )
            leases.append((mac, r.returncode, r.stderr[-300:]))
    finally:
        stop.set()
        poller.join(120)
    assert [x for x in leases if x[1] != 0] == [], leases
    assert len(polls) >= 2 and not bad, bad
    # the status it served while polled: the noisy MAC's 12,000 events are one row
    status = json.loads(link.server.run([curl, "-sf", f"http://{SERVER_IP}/api/v1/status"]).stdout)
    rows = {r["mac"]: r for r in status["devices"]}
    assert rows[NOISY]["state"] == "unknown" and all(m in rows for m, _, _ in leases)
    page = json.loads(
        link.server.run([curl, "-sf", f"http://{SERVER_IP}/api/v1/events?mac={NOISY}&limit=3"]).stdout
    )
    older = json.loads(
        link.server.run(
            [curl, "-sf", f"http://{SERVER_IP}/api/v1/events?mac={NOISY}&limit=3&before={page['prev']}"]
        ).stdout
    )
    assert [e["detail"]["n"] for e in older["events"] + page["events"]] == list(range(11_994, 12_000))


def write_installer(folder: Path, platform: str) -> str:
    data = f"#!/bin/sh\ntarget_platform='{platform}'\nnos_name='demo'\nnos_version='3.1'\nexit 0\n".encode()
    (folder / discovery.installer_file_name(platform)).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_cli_arm_reaches_a_running_serve(link, tmp_path):
    installers = tmp_path / "installers"
    installers.mkdir()
    write_installer(installers, KVM)
    lab = tmp_path / "lab.yml"
    lab.write_text(ARM_LAB.format(state=tmp_path / "state", installers=installers, platform=KVM))
    sp = link.serve(str(lab))
    pid = sp.proc.pid
    sim = ("-p", KVM, "--serial", "LEAF-07", "--mac", "52:54:00:22:07:07")

    def status() -> dict:
        r = run_cli("status", "--lab", str(lab), "--json", "--name", "leaf-07")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["devices"][0]

    rc, doc, _ = onie_sim(link.client, *sim, ifname="cp0")
    sw = doc["switches"][0]
    assert (
        rc != 0 and sw["lease"]["ip"] == "198.18.22.17" and sw["installer"] is None
    )  # a lease, no installer
    assert status()["state"] == "enrolled" and "not armed" in (status()["error"] or "")

    armed = run_cli("devices", "arm", "leaf-07", "--lab", str(lab))
    assert armed.returncode == 0, armed.stderr
    rc, doc, _ = onie_sim(link.client, *sim, ifname="cp0")
    assert rc == 0, (doc, sp.output[-3000:])
    assert doc["switches"][0]["installer"]["url"].split("?")[0].endswith(discovery.installer_file_name(KVM))
    row = status()
    assert row["state"] == "installed", row
    assert row["arming"]["armed_by"].startswith("cli:") and row["nos"]["version"] == "3.1"

    rc, doc, _ = onie_sim(link.client, *sim, ifname="cp0")  # install once: refused again
    assert rc != 0 and doc["switches"][0]["installer"] is None
    assert sp.proc.poll() is None and sp.proc.pid == pid  # the same server all along
