"""Intent, end to end: `provision onie-sim` against `provision serve` in namespaces (198.18.39.0/24).

The lab lists two switches. A switch in no inventory is ignored (a lease, no installer); a known
switch installs only when armed, once; a switch reporting another platform than its profile's is
refused; the installer's report of success disarms it (the next discovery gets nothing), and arming
it again installs again. Intent is written as `provision devices arm` writes it: into the store,
from another process, which the running server picks up without a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from onie import discovery
from provision.config.lab import load_lab
from provision.devices.lifecycle import Lifecycle
from provision.store.sqlite import Store
from tests.support.cli import onie_sim

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.39.1"
KVM = "x86_64-kvm_x86_64-r0"
MLNX = "x86_64-mlnx_msn2700-r0"

LAB = """\
interfaces: [lv0]
subnets:
  - network: 198.18.39.0/24
    interface: lv0
    pool: [198.18.39.100-198.18.39.199]
paths:
  state_dir: {state}
http_port: 8080
onie:
  installers: {installers}
devices:
  - {{name: leaf-01, serial: LEAF-01, ip: 198.18.39.11, profile: kvm_x86_64}}
  - {{name: leaf-02, serial: LEAF-02, ip: 198.18.39.12, platform: {kvm}}}
"""


def _installer(folder: Path, platform: str) -> None:
    name = discovery.installer_file_name(platform)
    (folder / name).write_bytes(
        f"#!/bin/sh\ntarget_platform='{platform}'\nnos_name='demo'\nnos_version='1.0'\nexit 0\n".encode()
    )


def _arm(tmp_path: Path, lab: Path, name: str) -> None:
    with Store(tmp_path / "state" / "provision.db") as store:
        Lifecycle(store, load_lab(lab).inventory).arm(name, None, by="test")


MACS = {"UNKNOWN-9": "52:54:00:39:00:09", "LEAF-01": "52:54:00:39:00:01", "LEAF-02": "52:54:00:39:00:02"}


def _sim(link, serial: str, platform: str = KVM) -> dict:
    # one MAC per switch (onie-sim's default MAC differs from run to run)
    args = ("--serial", serial, "--platform", platform, "--mac", MACS[serial])
    rc, doc, _ = onie_sim(link.client, *args, ifname="lc0")
    sw = doc["switches"][0]
    sw["rc"] = rc
    return sw


def test_only_what_was_meant_is_installed_once(serve_netns, tmp_path):
    installers = tmp_path / "installers"
    installers.mkdir()
    for p in (KVM, MLNX):
        _installer(installers, p)
    lab = tmp_path / "lab.yml"
    lab.write_text(LAB.format(state=tmp_path / "state", installers=installers, kvm=KVM))
    link = serve_netns(server_if="lv0", client_if="lc0", server_addr=f"{SERVER_IP}/24", prefix="lc")
    sp = link.serve(str(lab))

    # 1. A switch in no inventory: a lease from the pool, no installer (onie.unknown defaults to
    #    ignore once the lab lists devices).
    sw = _sim(link, "UNKNOWN-9", MLNX)
    assert sw["lease"]["ip"].startswith("198.18.39.1") and sw["lease"]["onie_url"] is None
    assert sw["outcome"] == "not-found" and sw["installer_runs"] == 0

    # 2. Known, not armed: its reserved address, no installer.
    sw = _sim(link, "LEAF-01")
    assert sw["lease"]["ip"] == "198.18.39.11" and sw["lease"]["onie_url"] is None
    assert sw["installer_runs"] == 0

    # 3. Armed: installed once; the installer's report ends the arming.
    _arm(tmp_path, lab, "leaf-01")
    sw = _sim(link, "LEAF-01")
    assert sw["rc"] == 0 and sw["outcome"] == "installed" and sw["installer_runs"] == 1, (
        sw,
        sp.output[-3000:],
    )
    sw = _sim(link, "LEAF-01")
    assert sw["lease"]["onie_url"] is None and sw["installer_runs"] == 0  # install once

    # 4. Armed, but it reports another platform than its own: refused, with a reason.
    _arm(tmp_path, lab, "leaf-02")
    sw = _sim(link, "LEAF-02", MLNX)
    assert sw["lease"]["ip"] == "198.18.39.12" and sw["installer_runs"] == 0
    # the right platform then installs (the arming was not spent by the refusal)
    assert _sim(link, "LEAF-02")["outcome"] == "installed"

    # 5. Re-armed: installs again.
    _arm(tmp_path, lab, "leaf-01")
    assert _sim(link, "LEAF-01")["outcome"] == "installed"

    deadline = time.monotonic() + 5  # events reach the store in batches (every 0.25 s)
    while True:
        with Store(tmp_path / "state" / "provision.db") as store:
            intents = store.intents()
            refused = [e.detail for e in store.events(kinds=["device.refused"])]
            installed = [e.detail["name"] for e in store.events(kinds=["device.installed"])]
        if len(installed) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not intents["leaf-01"].armed and intents["leaf-01"].outcome == "installed"
    assert not intents["leaf-02"].armed and intents["leaf-02"].outcome == "installed"
    assert installed == ["leaf-01", "leaf-02", "leaf-01"]
    codes = {(d.get("name"), d["code"]) for d in refused}
    assert (None, "unknown-ignored") in codes
    assert ("leaf-01", "not-armed") in codes
    assert ("leaf-01", "installed") in codes
    assert ("leaf-02", "platform-mismatch") in codes
    mismatch = next(d for d in refused if d["code"] == "platform-mismatch")
    assert MLNX in mismatch["reason"] and KVM in mismatch["reason"]
    assert "Traceback" not in sp.output
