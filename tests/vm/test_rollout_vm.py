"""Rollout VM proof (issue 11, docs/rollout.md "VM proof"): ONIE-like QEMU switches running our
NOS v1 are taken to v2 through the real ONIE path, armed over SSH into the running NOS.

What runs against what:
- installers: `provision onie-installer` of the demo NOS at 1.0.0 and 2.0.0 (both in one
  `onie.installers` folder), the NOS built by tests/support/rollout_guest.py: busybox, OpenSSH's
  sshd, grub-reboot + grub-editenv, onie-boot-mode, its version in /etc/os-release;
- server: `provision serve` on a tap in a namespace this test creates (198.18.5x.0/24), devices in
  lab.yml with reserved addresses;
- switches: tests/support/rollout_guest.py, the ONIE-like guest of onie_guest.py (BIOS/SeaBIOS,
  TCG) under one QEMU process each for the whole test: they reboot
  by themselves (NOS → ONIE → install → NOS), nothing is done to them from outside but SSH;
- SSH client: the host's OpenSSH `ssh` for the by-hand arming, with the NOS's host key pinned.

Each guest first gets v1 by an ordinary armed ONIE install (`provision devices arm --with 1.0.0`)
from its factory-fresh disk, as a switch fresh from the factory would.

Why SSH and not the qemu driver: the NOS runs sshd and carries the tools a real switch's re-arm
uses (onie-boot-mode, grub-reboot), so the test takes the same path as on hardware; a QMP reset
could only reboot into the NOS again (its GRUB is the default), and writing the guest's grubenv
from outside while it runs would race the guest's own mounts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.netns import NetNS, namespaces, tap
from tests.support.onie_guest_image import Firmware, build_base_disk
from tests.support.rollout_guest import (
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
# What the ssh driver runs on a GRUB platform (docs/rollout.md): ONIE's mode, the one-shot GRUB
# entry, reboot.
REARM = "onie-boot-mode -o install && grub-reboot ONIE && reboot"

LAB = """\
interfaces: [tap0]
subnets:
  - network: {net}.0/24
    interface: tap0
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
    known_hosts: Path

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
        lab_yml.write_text(lab_yml.read_text().replace("interfaces: [tap0]", "interfaces: [br0]")
                           .replace("interface: tap0", "interface: br0"))  # fmt: skip
        with serving(ns, str(lab_yml)) as sp:
            yield Lab(ns, lab_yml, sp, net, guests, tmp_path / "known_hosts")


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


def test_rearm_by_hand_over_ssh_reinstalls_v2(nos, tmp_path):
    """Step 1 of the proof, without the rollout engine: a switch with NOS v1 is armed for v2 with
    `provision devices arm`, then re-armed over SSH exactly as the ssh driver does it
    (onie-boot-mode -o install, grub-reboot ONIE, reboot). The guest reboots into ONIE by its
    NOS's GRUB entry, discovers our server, installs v2, reboots into it; SSH then sees v2."""
    with rollout_lab(tmp_path, nos, "198.18.52", 1) as lab:
        (guest,) = lab.guests
        first = install_v1(lab)
        ip = lab.ip(guest)
        res = ssh(lab.ns, nos, lab.known_hosts, ip, ". /etc/os-release; echo $VERSION_ID; onie-boot-mode -l")
        assert res.returncode == 0, res.stderr
        assert res.stdout.split()[0] == V1, res.stdout

        lab.cli("devices", "arm", guest.name, "--with", V2)
        mark = guest.mark()
        t0 = time.monotonic()
        res = ssh(lab.ns, nos, lab.known_hosts, ip, REARM)
        # reboot ends the session: the exit status is the command's or ssh's 255 when cut.
        assert res.returncode in (0, 255), res.stderr
        assert "next ONIE boot mode: install" in res.stdout, res.stdout + res.stderr
        guest.wait_for(r"ONIE-GUEST-GRUB onie_mode=install", 300, mark)
        guest.wait_for(r"ONIE-GUEST-PHASE install-ok", 600, mark)
        assert guest.wait_nos(V2, 600, mark) == ip
        rearm = time.monotonic() - t0

        res = ssh(
            lab.ns,
            nos,
            lab.known_hosts,
            ip,
            ". /etc/os-release; echo $VERSION_ID; cat /boot/boot/provision-release",
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == [V2, "demo", V2], res.stdout
        dev = lab.device(guest.name)
        assert dev["stage"] == "installed", dev
        print(f"\n[rollout-vm] by hand ({accel()}): v1 install + boot {first:.1f}s, "
              f"re-arm over ssh -> v2 booted {rearm:.1f}s")  # fmt: skip
