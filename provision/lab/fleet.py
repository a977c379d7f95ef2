"""A simulated switch fleet for rollout rehearsals without VMs (`provision lab fleet`).

Every switch has a MAC, a serial, an ONIE platform and a NOS address on the fleet's interface.
While its NOS "runs", a real sshd (one for the fleet, provision/lab/sshd.py) answers at that
address in the switch's NOS stand-in (provision/lab/standin.py), so the rollout's `ssh` driver
arms it exactly as it would a real switch. When the stand-in's `reboot` runs, the switch goes
down (its address is removed) and comes up:
- in ONIE install mode when the NOS asked for it (GRUB: onie_mode=install in ONIE's grubenv and
  next_entry=ONIE in the NOS's; U-Boot: onie_boot_reason=install): ONIE's discovery as
  `provision onie-sim` plays it (provision.onie.simulator: DHCP with ONIE's options, the URL
  sources in order, download, the installer's checks and reports with the install's token);
  after a successful install it boots its NOS at the installer's version (the version file is
  rewritten, so the ssh driver's current_version sees it); after a failed one ONIE goes on with
  discovery cycles, as it does; a hung installer stays hung.
- in its NOS again otherwise (nothing armed: a plain reboot).
Knobs (per switch, drawn from --seed): --fail-rate (its first install fails at the payload
stage; a retry succeeds), --hang-rate (its first installer hangs), --wrong-platform-rate (it
reports another platform than its inventory says, every time).

Everything stays on the given interface: run it inside a network namespace you made.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from onie import discovery as disco
from onie.identity import OnieIdentity
from onie.installer.model import Stage
from provision.lab import sshd, standin
from provision.onie.simulator import SimOptions, Simulator
from provision.onie.simulator_installer import Behaviour

REBOOT_POLL_S = 0.25


@dataclass(frozen=True)
class FleetSpec:
    interface: str
    count: int
    first_ip: str  # the first switch's NOS address; the others count up
    prefix: int = 16
    names: str = "leaf-{n:03d}"
    platform: str = "x86_64-kvm_x86_64-r0"
    profile: str | None = "kvm_x86_64"
    version: str = "1.0"
    mac: str = "02:4c:41:00:00:00"
    serial: str = "FLEET"
    onie_version: str = "2023.05"
    fail_rate: float = 0.0
    hang_rate: float = 0.0
    wrong_platform_rate: float = 0.0
    seed: int = 1
    verify: bool = True
    boot_delay: float = 1.0  # seconds a reboot takes
    cycle_wait: float = 20.0  # ONIE's pause between discovery cycles after a failed install
    ssh_port: int = 22
    authorized_keys: Path | None = None
    password: str | None = None


@dataclass
class Switch:
    index: int
    name: str
    mac: str
    serial: str
    ip: str
    platform: str  # what it reports in ONIE
    fault: str | None  # fail | hang | wrong-platform | None
    root: Path
    state: str = "nos"  # nos | rebooting | onie | hung
    version: str | None = None
    installs: int = 0  # installers that ran to the end (exit 0)
    attempts: int = 0  # installers run (failed ones too)
    boots_to_onie: int = 0
    reports_lost: int = 0  # installer reports the server did not answer 200 (or at all)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mac": self.mac,
            "serial": self.serial,
            "ip": self.ip,
            "platform": self.platform,
            "fault": self.fault,
            "state": self.state,
            "version": self.version,
            "installs": self.installs,
            "installer_runs": self.attempts,
            "boots_to_onie": self.boots_to_onie,
            "reports_lost": self.reports_lost,
        }


def plan_switches(spec: FleetSpec, layout: standin.Layout) -> list[Switch]:
    base_mac = int(spec.mac.replace(":", ""), 16)
    first = ipaddress.IPv4Address(spec.first_ip)
    out = []
    for n in range(spec.count):
        m = f"{base_mac + n + 1:012x}"
        mac = ":".join(m[i : i + 2] for i in range(0, 12, 2))
        rng = random.Random(f"{spec.seed}:{n}")
        draw = rng.random()
        fault = None
        if draw < spec.fail_rate:
            fault = "fail"
        elif draw < spec.fail_rate + spec.hang_rate:
            fault = "hang"
        elif draw < spec.fail_rate + spec.hang_rate + spec.wrong_platform_rate:
            fault = "wrong-platform"
        ip = str(first + n)
        out.append(
            Switch(
                index=n,
                name=spec.names.format(n=n + 1),
                mac=mac,
                serial=f"{spec.serial}-{n + 1:04d}",
                ip=ip,
                platform=spec.platform,
                fault=fault,
                root=layout.root(ip),
                version=spec.version,
            )
        )
    return out


def inventory_yaml(spec: FleetSpec, switches: list[Switch]) -> str:
    """lab.yml `devices:` entries for the fleet (flow style, one line per switch)."""
    lines = ["devices:"]
    for sw in switches:
        extra = f", profile: {spec.profile}" if spec.profile else f", platform: {spec.platform}"
        lines.append(f"  - {{name: {sw.name}, mac: '{sw.mac}', serial: {sw.serial}, ip: {sw.ip}{extra}}}")
    return "\n".join(lines) + "\n"


class Fleet:
    def __init__(self, spec: FleetSpec, folder: Path, say: Callable[[dict[str, Any]], None] | None = None):
        self.spec = spec
        self.folder = folder
        self.layout = standin.Layout(folder / "nos")
        self.say = say or (lambda _e: None)
        self.switches = plan_switches(spec, self.layout)
        self.by_ip = {sw.ip: sw for sw in self.switches}
        self.sim: Simulator | None = None
        self.sshd: asyncio.subprocess.Process | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.host_key: Path | None = None
        self._stop = asyncio.Event()
        self.installs_log = folder / "installs.jsonl"

    # -- setup ----------------------------------------------------------------------------------

    def _event(self, sw: Switch, event: str, **extra: Any) -> None:
        self.say({"time": round(time.time(), 3), "switch": sw.name, "ip": sw.ip, "event": event, **extra})

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.layout.prepare()
        for sw in self.switches:
            sw.root.mkdir(parents=True, exist_ok=True)
            self.layout.make_root(sw.ip, sw.version)
        prefix = self.spec.prefix
        # Deleting a subnet's primary address deletes its secondaries too unless the kernel
        # promotes one: a switch rebooting must not take the others' addresses with it.
        for scope in ("all", "default", self.spec.interface):
            with contextlib.suppress(OSError):
                Path(f"/proc/sys/net/ipv4/conf/{scope}/promote_secondaries").write_text("1")
        for sw in self.switches:
            await _ip("addr", "replace", f"{sw.ip}/{prefix}", "dev", self.spec.interface)
        ssh_dir = self.folder / "sshd"
        argv = sshd.write_config(
            ssh_dir,
            force_command=self.layout.session,
            authorized_keys=self.spec.authorized_keys,
            port=self.spec.ssh_port,
            password=self.spec.password,
        )
        self.host_key = ssh_dir / "ssh_host_key"
        self.sshd = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=(ssh_dir / "sshd.log").open("ab")
        )
        await _wait_port(self.switches[0].ip if self.switches else "127.0.0.1", self.spec.ssh_port, self.sshd)
        self.sim = Simulator(
            SimOptions(interface=self.spec.interface, verify=self.spec.verify, configure=True, cycles=1)
        )
        await self.sim.__aenter__()
        (self.folder / "inventory.yml").write_text(inventory_yaml(self.spec, self.switches))
        key = sshd.public_key_line(self.host_key)
        port = self.spec.ssh_port
        (self.folder / "known_hosts").write_text(
            "".join(f"{sw.ip if port == 22 else f'[{sw.ip}]:{port}'} {key}\n" for sw in self.switches)
        )
        self.write_status()

    def write_status(self) -> None:
        doc = {
            "switches": [sw.as_dict() for sw in self.switches],
            "sshd_pid": self.sshd.pid if self.sshd else None,
        }
        tmp = self.folder / "status.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(self.folder / "status.json")

    async def stop(self) -> None:
        self._stop.set()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.sim is not None:
            with contextlib.suppress(Exception):
                await self.sim.__aexit__(None, None, None)
        if self.sshd is not None and self.sshd.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.sshd.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sshd.wait(), 5)
            if self.sshd.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.sshd.kill()
                await self.sshd.wait()
        for sw in self.switches:
            await _ip("addr", "del", f"{sw.ip}/{self.spec.prefix}", "dev", self.spec.interface)
        self.write_status()

    # -- the life of a switch ---------------------------------------------------------------------

    async def run(self) -> None:
        """Watch every switch in its NOS for a reboot until stop()."""
        while not self._stop.is_set():
            for sw in self.switches:
                if sw.state == "nos" and (sw.root / standin.REBOOT_FLAG).exists():
                    sw.state = "rebooting"
                    task = asyncio.create_task(self._reboot(sw))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), REBOOT_POLL_S)

    async def _reboot(self, sw: Switch) -> None:
        root = sw.root
        await asyncio.sleep(0.2)  # let the ssh session that ran `reboot` end first
        await _ip("addr", "del", f"{sw.ip}/{self.spec.prefix}", "dev", self.spec.interface)
        for flag in (standin.REBOOT_FLAG, standin.MOUNTED_FLAG):
            (root / flag).unlink(missing_ok=True)
        onie_env = standin.read_env(root / standin.ONIE_GRUBENV)
        nos_env = standin.read_env(root / standin.NOS_GRUBENV)
        uboot = standin.read_env(root / standin.UBOOT_ENV)
        (root / standin.NOS_GRUBENV).write_text("")  # grub-reboot's next_entry is one-shot
        to_onie = (nos_env.get("next_entry") == "ONIE" and onie_env.get("onie_mode") == "install") or (
            uboot.get("onie_boot_reason") == "install"
        )
        self._event(sw, "reboot", into="onie" if to_onie else "nos")
        await asyncio.sleep(self.spec.boot_delay)
        if not to_onie:
            await self._boot_nos(sw)
            return
        sw.state = "onie"
        sw.boots_to_onie += 1
        self.write_status()
        while not self._stop.is_set():
            outcome, version = await self._discover(sw)
            if outcome == "installed":
                (root / standin.ONIE_GRUBENV).write_text("")
                _set_env(root / standin.UBOOT_ENV, "onie_boot_reason", None)
                if version:
                    (root / standin.VERSION_FILE).write_text(f"{version}\n")
                    sw.version = version
                await asyncio.sleep(self.spec.boot_delay)
                await self._boot_nos(sw)
                return
            if outcome == "hung":
                sw.state = "hung"
                self.write_status()
                return
            # ONIE goes on with discovery after a pause (docs/onie.md)
            await asyncio.sleep(self.spec.cycle_wait)

    async def _discover(self, sw: Switch) -> tuple[str, str | None]:
        assert self.sim is not None
        behaviour = Behaviour()
        first = sw.attempts == 0
        if sw.fault == "fail" and first:
            behaviour = Behaviour(fail_at=Stage.PAYLOAD)
        elif sw.fault == "hang" and first:
            behaviour = Behaviour(hang=True)
        elif sw.fault == "wrong-platform":
            behaviour = Behaviour(wrong_platform=True)
        # One DHCP socket for the fleet: a shallow copy of the simulator shares it, with this
        # switch's installer behaviour.
        sim = copy.copy(self.sim)
        sim.opt = replace(self.sim.opt, installer=behaviour)
        identity = disco.complete(
            OnieIdentity(
                platform=sw.platform,
                mac=sw.mac,
                serial=sw.serial,
                onie_version=self.spec.onie_version,
                operation=disco.Operation.INSTALL.value,
            )
        )
        result = await sim.run(identity)
        runs = len(result.runs)
        sw.attempts += runs
        version = None
        if result.found is not None and result.found.verify:
            version = result.found.verify.get("version")
        if result.lease is not None and result.lease.ip != sw.ip:
            # not this switch's reserved address: ONIE's lease goes away with ONIE
            await _ip("addr", "del", f"{result.lease.ip}/{result.lease.prefix}", "dev", self.spec.interface)
        outcome = result.outcome
        # Reports are best-effort (wget -T 3): one lost leaves the server without it.
        lost = [r.stage for a in result.runs if a.run for r in a.run.reports if r.http_status != 200]
        sw.reports_lost += len(lost)
        if outcome == "installed":
            sw.installs += 1
            with self.installs_log.open("a") as f:
                f.write(json.dumps({"time": time.time(), "name": sw.name, "version": version}) + "\n")
        self._event(
            sw,
            "onie",
            outcome=outcome,
            installer_runs=runs,
            reports_lost=lost or None,
            version=version,
            error=result.error,
            url=result.found.url if result.found else None,
        )
        return outcome, version

    async def _boot_nos(self, sw: Switch) -> None:
        await _ip("addr", "replace", f"{sw.ip}/{self.spec.prefix}", "dev", self.spec.interface)
        sw.state = "nos"
        self._event(sw, "nos-up", version=sw.version)
        self.write_status()


def _set_env(path: Path, name: str, value: str | None) -> None:
    env = standin.read_env(path)
    env.pop(name, None)
    if value is not None:
        env[name] = value
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))


async def _ip(*args: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await proc.wait() == 0


async def _wait_port(host: str, port: int, proc: asyncio.subprocess.Process, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode} (see its sshd.log)")
        try:
            _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
            w.close()
            return
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd does not answer on {host}:{port}") from None
            await asyncio.sleep(0.1)


async def run_fleet(
    spec: FleetSpec,
    folder: Path,
    say: Callable[[dict[str, Any]], None] | None = None,
    ready: Callable[[Fleet], None] | None = None,
) -> Fleet:
    """Start the fleet, run until SIGTERM/SIGINT, clean up (sshd by its PID, our addresses)."""
    fleet = Fleet(spec, folder, say)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await fleet.start()
        (folder / "ready").write_text(str(os.getpid()))
        if ready is not None:
            ready(fleet)
        runner = asyncio.create_task(fleet.run())
        await stop.wait()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    finally:
        await fleet.stop()
    return fleet


__all__ = ["Fleet", "FleetSpec", "Switch", "inventory_yaml", "plan_switches", "run_fleet"]
