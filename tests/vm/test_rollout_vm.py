"""Rollout VM proof (issue 11, docs/rollout.md "VM proof"): ONIE-like QEMU switches running our
NOS v1 are taken to v2 through the real ONIE path, armed over SSH into the running NOS.

What runs against what:
- installers: `provision onie-installer` of the demo NOS at 1.0.0 and 2.0.0 (both in one
  `onie.installers` folder), the NOS built by tests/support/rollout_guest.py: busybox, OpenSSH's
  sshd, grub-reboot + grub-editenv, onie-boot-mode, its version in /etc/os-release;
- server: `provision serve` on a bridge in a namespace this test creates (198.18.57.0/24), one
  tap per switch on it, devices in lab.yml with reserved addresses;
- rollout: `provision rollout start PLAN` (engine + ssh driver on asyncssh) run in that namespace;
- switches: tests/support/rollout_guest.py, the ONIE-like guest of onie_guest.py (BIOS/SeaBIOS,
  TCG) under one QEMU process each for the whole test: they reboot by themselves (NOS → ONIE →
  install → NOS); nothing reaches them from outside but DHCP/HTTP from serve and SSH;
- SSH client for the test's own checks: the host's OpenSSH `ssh`, the NOS's host key checked.

Each guest first gets v1 by an ordinary armed ONIE install (`provision devices arm --with 1.0.0`)
from its factory-fresh disk, as a switch fresh from the factory would.

Why SSH and not the qemu driver: the NOS runs sshd and carries the tools a real switch's re-arm
uses (onie-boot-mode, grub-reboot), so the test takes the same path as on hardware; a QMP reset
could only reboot into the NOS again (its GRUB is the default), and writing the guest's grubenv
from outside while it runs would race the guest's own mounts.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.cli import cli_argv, cli_env, run_cli
from tests.support.netns import NetNS, namespaces, tap
from tests.support.onie_guest_image import Firmware, build_base_disk
from tests.support.rollout_guest import (
    BOOTED,
    NosBuild,
    RolloutGuest,
    accel,
    build_nos,
    ssh,
)
from tests.support.serving import ServeProc, serving
from tests.support.tools import require_root, require_tool

pytestmark = [pytest.mark.vm, pytest.mark.netns, pytest.mark.timeout(1800)]

V1, V2 = "1.0.0", "2.0.0"
LAB = """\
interfaces: [br0]
subnets:
  - network: {net}.0/24
    interface: br0
    pool: [{net}.100-{net}.199]
paths:
  state_dir: {state}
http_port: 80
onie:
  installers: {installers}
  discovery: exact
  unknown: ignore
devices:
{devices}"""

DEVICE = """\
  - name: {name}
    mac: "{mac}"
    serial: {serial}
    ip: {ip}
    profile: kvm_x86_64
"""


@pytest.fixture(scope="module")
def nos(tmp_path_factory) -> NosBuild:
    require_root()
    for tool in ("qemu-system-x86_64", "sgdisk", "mke2fs", "debugfs", "grub-editenv", "cpio",
                 "ssh", "ssh-keygen", "/usr/sbin/sshd"):  # fmt: skip
        require_tool(tool)
    t0 = time.monotonic()
    build = build_nos(tmp_path_factory.mktemp("rollout-nos"))
    build_base_disk(Firmware.BIOS)
    print(f"\n[rollout-vm] NOS {V1}+{V2} installers and guest disk in {time.monotonic() - t0:.1f}s "
          f"(accel {accel()})")  # fmt: skip
    return build


@dataclass
class Lab:
    ns: NetNS
    lab_yml: Path
    serve: ServeProc
    net: str
    guests: list[RolloutGuest]

    def cli(self, *args: str, timeout: float = 120):
        res = run_cli(*args, "--lab", str(self.lab_yml), timeout=timeout)
        assert res.returncode == 0, f"provision {' '.join(args)}: {res.stdout}\n{res.stderr}"
        return res

    def device(self, name: str) -> dict:
        status = json.loads(self.cli("status", "--json").stdout)
        return next(d for d in status["devices"] if d.get("name") == name)

    def ip(self, guest: RolloutGuest) -> str:
        return f"{self.net}.{10 + self.guests.index(guest)}"


@contextmanager
def rollout_lab(tmp_path: Path, nos: NosBuild, net: str, count: int) -> Iterator[Lab]:
    """`provision serve` plus `count` switches (not started) on one tap each in a fresh namespace."""
    devices = ""
    for i in range(count):
        devices += DEVICE.format(name=f"leaf-{i + 1:02d}", mac=f"52:54:00:52:4f:{i + 1:02x}",
                                 serial=f"PVROLL{i + 1:02d}", ip=f"{net}.{10 + i}")  # fmt: skip
    lab_yml = tmp_path / "lab.yml"
    lab_yml.write_text(LAB.format(net=net, state=tmp_path / "state", installers=nos.installers,
                                  devices=devices))  # fmt: skip
    with namespaces(1, prefix="ro") as (ns,), ExitStack() as stack:
        # One bridge, one tap per guest: the switches share the management network with serve.
        ns.run(["ip", "link", "add", "br0", "type", "bridge"])
        ns.run(["ip", "addr", "add", f"{net}.1/24", "dev", "br0"])
        ns.run(["ip", "link", "set", "br0", "up"])
        guests = []
        for i in range(count):
            tap(ns, f"tap{i}")
            ns.run(["ip", "link", "set", f"tap{i}", "master", "br0"])
            guest = RolloutGuest(tmp_path / f"leaf-{i + 1:02d}", ns, f"tap{i}", f"52:54:00:52:4f:{i + 1:02x}",
                                 f"PVROLL{i + 1:02d}", name=f"leaf-{i + 1:02d}")  # fmt: skip
            stack.callback(guest.stop)
            guests.append(guest)
        with serving(ns, str(lab_yml)) as sp:
            yield Lab(ns, lab_yml, sp, net, guests)


def install_v1(lab: Lab) -> float:
    """Arm every switch with v1, power them on (factory-fresh disks boot ONIE), wait for NOS v1."""
    t0 = time.monotonic()
    lab.cli("devices", "arm", *(g.name for g in lab.guests), "--with", V1)
    for g in lab.guests:
        g.start()
    for g in lab.guests:
        assert g.wait_nos(V1, timeout=900) == lab.ip(g)
        assert lab.device(g.name)["stage"] == "installed"
    return time.monotonic() - t0


PLAN = """\
name: vm-proof
devices: [leaf-01, leaf-02]
target: {target}
canaries: 1
wave_size: 1
max_parallel: 1
timeouts: {{arm: 120, install: 900, boot: 600}}
driver:
  name: ssh
  options:
    identity_file: {key}
    host_keys: known_hosts
    known_hosts: {known_hosts}
"""


def _events(state: Path, kinds: tuple[str, ...]) -> list[dict]:
    """The store's events of `kinds`, oldest first (read from provision.db as any reader would)."""
    with closing(sqlite3.connect(state / "provision.db")) as db:
        rows = db.execute(
            f"SELECT id, ts, kind, mac, detail FROM events WHERE kind IN ({','.join('?' * len(kinds))}) "
            "ORDER BY id",
            kinds,
        ).fetchall()
    return [{"id": i, "ts": ts, "kind": k, "mac": mac, "detail": json.loads(d)} for i, ts, k, mac, d in rows]


def _ts(value: float | str) -> float:
    """A time of `rollout status --json` (ISO-8601 UTC with milliseconds) as epoch seconds; the
    millisecond truncation only makes it earlier, never later."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_rollout_canary_then_wave_over_ssh(nos, tmp_path):
    """Issue 11's VM proof: two switches at NOS v1, `provision rollout start` (1 canary, then a
    wave of 1, max_parallel 1, driver ssh with the NOS's host key checked against a known_hosts
    file) → both run v2. The store's events and the rollout's rows prove the order: leaf-02's
    arming (its `device.armed` event) comes after leaf-01's installer reported complete and after
    the engine saw leaf-01 running v2 (its row turned `verified`); the consoles agree."""
    with rollout_lab(tmp_path, nos, "198.18.57", 2) as lab:
        t_v1 = install_v1(lab)  # both guests at once: they are independent until the rollout
        known_hosts = tmp_path / "rollout_known_hosts"
        known_hosts.write_text("".join(nos.known_hosts_line(lab.ip(g)) for g in lab.guests))
        plan = tmp_path / "plan.yml"
        plan.write_text(PLAN.format(target=V2, key=nos.client_key, known_hosts=known_hosts))
        marks = {g.name: g.mark() for g in lab.guests}
        t0 = time.monotonic()
        # In the namespace: the ssh driver reaches the switches' management addresses there.
        res = lab.ns.run(cli_argv("rollout", "start", str(plan), "--lab", str(lab.lab_yml), "--json"),
                         check=False, timeout=2400, env=cli_env())  # fmt: skip
        took = time.monotonic() - t0
        assert res.returncode == 0, f"rollout exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        doc = json.loads(res.stdout)
        rows = {d["name"]: d for d in doc["devices"]}
        assert [rows[n]["wave"] for n in ("leaf-01", "leaf-02")] == [0, 1], rows
        assert all(r["stage"] == "verified" and r["attempts"] == 1 for r in rows.values()), rows

        # Both really run v2: their consoles, and ssh (as an operator would check).
        leaf1, leaf2 = lab.guests
        for g in lab.guests:
            assert g.wait_nos(V2, 5, marks[g.name]) == lab.ip(g)
            out = ssh(lab.ns, nos, known_hosts, lab.ip(g), ". /etc/os-release; echo $VERSION_ID")
            assert out.stdout.split() == [V2], out.stdout + out.stderr
            assert lab.device(g.name)["stage"] == "installed"

        # The order, from the store: leaf-02 armed only after leaf-01 reported and was verified.
        events = _events(lab.lab_yml.parent / "state", ("device.armed", "installer.report"))
        armed = {e["detail"]["install_id"]: e for e in events if e["kind"] == "device.armed"}
        a1, a2 = armed[rows["leaf-01"]["install_id"]], armed[rows["leaf-02"]["install_id"]]
        done1 = [e for e in events if e["kind"] == "installer.report" and e["id"] > a1["id"]
                 and e["mac"] == leaf1.mac and e["detail"].get("stage") == "complete"]  # fmt: skip
        assert done1 and done1[0]["detail"].get("status") == "ok", events
        r1 = done1[0]
        verified1 = _ts(rows["leaf-01"]["since"])  # when leaf-01's row turned verified (it ran v2)
        assert a1["id"] < r1["id"] < a2["id"], (a1, r1, a2)
        assert a1["ts"] <= r1["ts"] <= verified1 <= a2["ts"], (a1["ts"], r1["ts"], verified1, a2["ts"])
        # The consoles (the same host clock): leaf-01 booted v2 before leaf-02 left v1 for ONIE.
        # (Not "booted1 <= verified1": sshd starts before the marker line, and the engine's ssh
        # may beat the console line to the host.)
        booted1 = leaf1.when(rf"{BOOTED} demo {re.escape(V2)} ", marks[leaf1.name])
        onie2 = leaf2.when(r"ONIE-GUEST-GRUB onie_mode=install", marks[leaf2.name])
        assert booted1 is not None and onie2 is not None
        assert booted1 <= onie2 and verified1 <= onie2, (booted1, verified1, onie2)
        print(
            f"\n[rollout-vm] ({accel()}) v1 on both guests at once {t_v1:.1f}s; rollout {took:.1f}s: "
            f"leaf-01 armed +0.0s, reported complete +{r1['ts'] - a1['ts']:.1f}s, verified v2 "
            f"+{verified1 - a1['ts']:.1f}s; leaf-02 armed +{a2['ts'] - a1['ts']:.1f}s, verified "
            f"+{_ts(rows['leaf-02']['since']) - a1['ts']:.1f}s"
        )
