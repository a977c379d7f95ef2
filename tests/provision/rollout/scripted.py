"""A scripted arming driver and a stand-in for the server's side of an install, for the rollout
engine's tests.

STAND-IN FOR A REAL PEER: no switch reboots here. `ScriptedDriver.arm` appends a line to
`arms.jsonl` (so a test counts every arming the engine drove), and `FakeServer` (a thread of the
test process, on its own store connection, as `provision serve` is another process) reads those
lines and writes the `installer.report` events a server writes when an installer reports (with
the install id its callback token carries), then sets the device's version in `versions.json`,
which `current_version` reads. The real end to end (sshd, onie-sim, a running `provision serve`)
is the simulated fleet's test (docs/rollout.md "Rehearsal").

Behaviours per device (`script.json`): ok (default), fail (the installer reports failed),
fail-once (fails its first install, then ok), hang (never reports), arm-error (the driver
raises), wrong-version (reports ok but keeps running the old version), tokenless (its reports
carry no install id, as in ONIE's inexact modes), unknown (the driver cannot tell versions),
lost-reports (installs and runs the target, but none of its reports reached the server).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provision.cli import main as cli_main
from provision.rollout.drivers import DRIVERS
from provision.rollout.drivers.base import ArmingError, ArmRequest
from provision.store.sqlite import Store
from pxe.policy import Event


class Fleet:
    """The shared files of the scripted devices (a folder), readable from any process."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def arms_file(self) -> Path:
        return self.folder / "arms.jsonl"

    def arms(self) -> list[dict[str, Any]]:
        if not self.arms_file.exists():
            return []
        return [json.loads(line) for line in self.arms_file.read_text().splitlines() if line.strip()]

    def _read(self, name: str) -> dict[str, Any]:
        path = self.folder / name
        return json.loads(path.read_text()) if path.exists() else {}

    def _write(self, name: str, data: dict[str, Any]) -> None:
        tmp = self.folder / f".{name}.{os.getpid()}.{threading.get_ident()}"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.folder / name)

    def versions(self) -> dict[str, str]:
        return self._read("versions.json")

    def set_versions(self, versions: Mapping[str, str]) -> None:
        self._write("versions.json", {**self.versions(), **versions})

    def script(self) -> dict[str, str]:
        return self._read("script.json")

    def set_script(self, script: Mapping[str, str]) -> None:
        self._write("script.json", dict(script))


class ScriptedDriver:
    name = "scripted"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.fleet = Fleet(Path(options["folder"]))
        self.rearm_safe = bool(options.get("rearm_safe"))  # as ssh and manual say (docs/rollout.md)

    async def arm(self, req: ArmRequest) -> str:
        if self.fleet.script().get(req.device.name) == "arm-error":
            raise ArmingError(f"{req.device.name}: scripted arming error")
        line = {
            "name": req.device.name,
            "mac": req.device.mac,
            "install_id": req.install_id,
            "rollout": req.rollout_id,
            "target": req.target_version,
            "time": time.time(),
        }
        with open(self.fleet.arms_file, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return "scripted: rebooted into ONIE"

    async def current_version(self, req: ArmRequest) -> str | None:
        if self.fleet.script().get(req.device.name) == "unknown":
            return None
        return self.fleet.versions().get(req.device.name)


def factory(name: str, options: Mapping[str, Any]) -> ScriptedDriver:
    assert name == "scripted", name
    return ScriptedDriver(options)


class FakeServer(threading.Thread):
    """Writes what `provision serve` would for each arming the driver drove: installer reports
    scoped by install id, after `delay` seconds; then the new version."""

    def __init__(self, fleet: Fleet, db: Path, delay: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.fleet = fleet
        self.db = db
        self.delay = delay
        self.stopped = threading.Event()
        self.done = 0
        self.installs: dict[str, int] = {}  # device -> installs that reported complete ok

    def run(self) -> None:
        store = Store(self.db)
        try:
            while not self.stopped.is_set():
                arms = self.fleet.arms()
                for arm in arms[self.done :]:
                    time.sleep(self.delay)
                    self._install(store, arm)
                    self.done += 1
                time.sleep(0.02)
        finally:
            store.close()

    def _install(self, store: Store, arm: dict[str, Any]) -> None:
        name, mac, iid = arm["name"], arm["mac"], arm["install_id"]
        how = self.fleet.script().get(name, "ok")
        if how == "hang":
            return
        if how == "lost-reports":  # it installs and boots the target, but no report got through
            self.installs[name] = self.installs.get(name, 0) + 1
            self.fleet.set_versions({name: arm["target"]})
            return
        if how == "fail-once":
            how = "fail" if sum(a["name"] == name for a in self.fleet.arms()[: self.done + 1]) == 1 else "ok"
        detail: dict[str, Any] = {"mac": mac, "install_id": iid}
        if how == "tokenless":
            detail = {"mac": mac}
        store.add_event(
            Event(
                "installer.report",
                mac=mac,
                ip="198.18.0.9",
                detail={**detail, "stage": "started", "status": "ok"},
            )
        )
        if how == "fail":
            store.add_event(
                Event("installer.report", mac=mac, ip="198.18.0.9",
                      detail={**detail, "stage": "payload", "status": "failed", "message": "disk full (scripted)"})
            )  # fmt: skip
            return
        store.add_event(
            Event(
                "installer.report",
                mac=mac,
                ip="198.18.0.9",
                detail={**detail, "stage": "complete", "status": "ok"},
            )
        )
        self.installs[name] = self.installs.get(name, 0) + 1
        if how != "wrong-version" and arm.get("target"):
            self.fleet.set_versions({name: arm["target"]})

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


def main() -> None:
    """`python -m tests.provision.rollout.scripted ARGS...`: the provision CLI with the scripted
    driver registered (the kill -9 test runs the engine in such a subprocess)."""
    DRIVERS["scripted"] = ScriptedDriver
    cli_main()


if __name__ == "__main__":
    main()
