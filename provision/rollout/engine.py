"""The rollout engine: runs a stored plan wave by wave, device by device, with its state in the
store (docs/rollout.md "How a rollout runs").

For each device: if the driver says it already runs the target version, it is skipped (and says
so). Otherwise the engine picks a fresh install id, WRITES it, arms the device through the
lifecycle (the same `Lifecycle.arm` as `provision devices arm`), writes the id of that arming's
`device.armed` event, calls the driver once, and waits for the installer's report of THAT
arming: a report carrying its install id (the callback token's), or a token-less one from the
device's MAC after its `device.armed` event. Reports of earlier armings never count. Then it
waits for the driver to see the target version (when the driver can tell), and the device is
verified.

Every transition is written before the engine acts on it, so `provision rollout resume ID` after
a kill -9 knows: a device whose arming is in the store is not armed again, one whose driver was
called is not driven again (it gets its install timeout to report), one that reported installed
is not installed again, and nothing pending is skipped.

Gates: after each device failure the wave's failures are compared with the plan's bounds; over
them, no new device of the wave starts, the rest in flight finish, and the rollout stops (exit 1).
`pause`, `continue` and `abort` from another terminal write the rollout's state; the engine reads
it every `poll` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provision.devices.lifecycle import KIND_DISARMED, KIND_INSTALLED, Lifecycle
from provision.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from provision.onie.progress import KIND_REPORT, REPORT_STAGE_COMPLETE, REPORT_STATUS_FAILED, REPORT_STATUS_OK
from provision.rollout.drivers import driver_for
from provision.rollout.drivers.base import ArmRequest, Driver
from provision.rollout.plan import Plan
from provision.store.rollouts import FINAL_STAGES, RolloutDevice, RolloutRecord, RolloutStore
from provision.store.sqlite import Store
from pxe.policy import Event

log = logging.getLogger(__name__)

CANARY_PAUSE = "after the canaries"  # the reason a plan's pause_after_canaries writes
ALIVE_S = 15.0  # an engine whose heartbeat is older than this is gone
# A heartbeat is a write, and every write to the store makes `provision serve` re-read intent
# (its data_version changes): one every few seconds, not one per poll.
HEARTBEAT_S = 4.0
EXIT_OF_STATE = {"done": EXIT_OK, "partial": EXIT_PARTIAL, "stopped": EXIT_FAILED, "aborted": EXIT_FAILED}
_WATCHED = (KIND_REPORT,)


def new_rollout_id() -> str:
    """Sortable by time (the first 8 hex digits are the second it started) and unique."""
    return f"{int(time.time()):08x}{secrets.token_hex(3)}"


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(rec: RolloutRecord, now: float | None = None) -> bool:
    """Is an engine still running `rec`? Its heartbeat is fresh and, on this host, its pid lives."""
    if not rec.owner or rec.heartbeat is None:
        return False
    if (now or time.time()) - rec.heartbeat > ALIVE_S:
        return False
    host, _, pid = rec.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def wave_to_accept(devices: Sequence[RolloutDevice]) -> int:
    """The wave whose gate `continue` overrides: the first wave not finished (if it started),
    else the one before it (a gate checked at the end of a finished wave)."""
    waves = sorted({d.wave for d in devices})
    for w in waves:
        rows = [d for d in devices if d.wave == w]
        if any(d.stage not in FINAL_STAGES for d in rows):
            return w if any(d.stage != "pending" for d in rows) else w - 1
    return waves[-1] if waves else -1


@dataclass
class _Outcome:
    ok: bool
    message: str


class _Failure(Exception):
    """One attempt at a device failed: why (counted against the wave gate after the retries)."""


class Watcher:
    """Reads installer reports once per poll for every device in flight: one query after a cursor,
    whatever the number of devices. An outcome is kept by install id: a report counts only for
    the arming it names (the callback token's install id) or, with no install id (ONIE's
    token-less modes), for the device whose MAC sent it after its current arming's event."""

    def __init__(self, rs: RolloutStore) -> None:
        self.rs = rs
        self.cursor: int | None = None
        self.active: dict[
            str, tuple[str, int, tuple[str, ...]]
        ] = {}  # install id -> (name, armed event, macs)
        self.outcomes: dict[str, _Outcome] = {}
        self.started: set[str] = set()  # install ids with any report (the install has begun)

    def watch(self, install_id: str, name: str, armed_event: int, macs: tuple[str, ...]) -> None:
        self.active[install_id] = (name, armed_event, macs)
        if self.cursor is None or armed_event < self.cursor:
            self.cursor = armed_event

    def forget(self, install_id: str) -> None:
        self.active.pop(install_id, None)

    def poll(self) -> None:
        if not self.active or self.cursor is None:
            return
        by_mac = {m: iid for iid, (_n, _e, macs) in self.active.items() for m in macs}
        while True:
            page = self.rs.events_after(self.cursor, _WATCHED, limit=1000)
            for event_id, event in page:
                self.cursor = event_id
                detail = event.detail
                iid = str(detail.get("install_id") or "")
                if not iid:
                    mac = (event.mac or str(detail.get("mac") or "")).lower()
                    iid = by_mac.get(mac, "")
                    if not iid or event_id <= self.active[iid][1]:
                        continue  # token-less, and before this arming: an earlier install's
                elif iid not in self.active:
                    continue  # another arming's report (an earlier rollout, another device)
                self.started.add(iid)
                status = str(detail.get("status") or "").lower()
                stage = str(detail.get("stage") or "").lower()
                if status == REPORT_STATUS_FAILED:
                    msg = str(detail.get("message") or f"the installer failed at stage {stage or '?'}")
                    self.outcomes.setdefault(iid, _Outcome(False, msg))
                elif status == REPORT_STATUS_OK and stage == REPORT_STAGE_COMPLETE:
                    self.outcomes.setdefault(iid, _Outcome(True, "installer reported complete"))
            if len(page) < 1000:
                return


class Engine:
    """Runs one stored rollout to its end, a gate, a pause it waits through, or an abort."""

    def __init__(
        self,
        store: Store,
        fleet: Lifecycle,
        rollout_id: str,
        *,
        by: str,
        poll: float = 1.0,
        drivers: Callable[[str, Mapping[str, Any]], Driver] = driver_for,
        on_tick: Callable[[Engine], None] | None = None,
        driver_defaults: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.store = store
        # per driver name, options the plan did not set (the CLI: ssh's pin_file in the state dir)
        self.driver_defaults = dict(driver_defaults or {})
        self.rs = RolloutStore(store)
        self.fleet = fleet
        self.id = rollout_id
        self.by = by
        self.poll = poll
        self._driver_for = drivers
        self._drivers: dict[str, Driver] = {}
        self.on_tick = on_tick
        self.watcher = Watcher(self.rs)
        rec = self.rs.get(rollout_id)
        if rec is None:
            raise LookupError(f"no rollout {rollout_id!r}")
        self.rec = rec
        self.plan = Plan.from_doc(rec.plan)
        self.state = rec.state
        self._stopping: str | None = None  # a gate tripped in this wave: start nothing more
        self._beat = time.monotonic()  # claim() beats first
        # Read once per poll for every device (not per device: 500 devices, one query).
        self.inventory = fleet.inventory
        self.intents = store.intents()

    # -- helpers ----------------------------------------------------------------------------------
    def devices(self) -> list[RolloutDevice]:
        return self.rs.devices(self.id)

    def _row(self, name: str) -> RolloutDevice:
        row = self.rs.device(self.id, name)
        if row is None:
            raise LookupError(f"rollout {self.id} has no device {name!r}")
        return row

    def _set(self, name: str, **fields: Any) -> None:
        self.rs.update_device(self.id, name, **fields)

    def _driver(self, name: str) -> tuple[Driver, ArmRequest]:
        choice = self.plan.drivers[name]
        options = {**self.driver_defaults.get(choice.name, {}), **choice.options}
        key = json.dumps([choice.name, options], sort_keys=True, default=str)
        driver = self._drivers.get(key)
        if driver is None:
            try:
                driver = self._drivers[key] = self._driver_for(choice.name, options)
            except Exception as exc:
                raise _Failure(f"driver {choice.name}: {exc}") from None
            if hasattr(driver, "journal"):  # the bmc driver records its operations for /metrics
                driver.journal = self._journal
        dev = self.inventory.named(name)
        if dev is None:
            raise _Failure(f"{name} is no longer in the inventory")
        row = self._row(name)
        return driver, ArmRequest(dev, self.id, row.install_id or "", self.plan.version, options)

    def _journal(self, event: Event) -> None:
        self.store.add_event(event)
        self.store.flush()

    async def _version(self, driver: Driver, req: ArmRequest) -> str | None:
        try:
            return await asyncio.wait_for(driver.current_version(req), self.plan.timeouts["arm"])
        except Exception as exc:  # a driver's failure to tell is "unknown", never a crash
            log.info("%s: current version unknown (%s)", req.device.name, exc)
            return None

    def _refresh(self) -> None:
        """Once per poll: heartbeat, the rollout's state (another terminal may have changed
        it), and the reports of every install in flight."""
        now = time.monotonic()
        if now - self._beat >= HEARTBEAT_S:
            self._beat = now
            self.rs.heartbeat(self.id)
        rec = self.rs.get(self.id)
        if rec is not None:
            self.rec = rec
            self.state = rec.state
        self.intents = self.store.intents()
        self.watcher.poll()
        if self.on_tick is not None:
            self.on_tick(self)

    async def _control(self) -> None:
        while True:
            self._refresh()
            await asyncio.sleep(self.poll)

    async def _wait_running(self) -> bool:
        """Wait while paused; False when the rollout was aborted (or stopped) meanwhile."""
        while self.state == "paused":
            await asyncio.sleep(self.poll)
        return self.state == "running"

    # -- one device -------------------------------------------------------------------------------
    async def _device(self, name: str, wave: int, size: int, slots: asyncio.Semaphore) -> None:
        async with slots:
            while True:
                row = self._row(name)
                if row.stage in FINAL_STAGES or self.state in ("aborted", "stopped"):
                    return
                if row.stage == "pending" and (self._stopping or not await self._wait_running()):
                    return  # a gate tripped or an operator stopped us: start nothing new
                try:
                    await self._step(row)
                except _Failure as exc:
                    self._failed(self._row(name), str(exc))
                    if self._row(name).stage == "failed":
                        self._check_gate(wave)
                        return

    def _failed(self, row: RolloutDevice, message: str) -> None:
        """An attempt failed: its arming is withdrawn (only that one, by install id: a late
        report never lands on a newer arming) and the device is retried or has failed."""
        if row.install_id:
            self._disarm(row.name, row.install_id, f"rollout {self.id}: {message}")
            self.watcher.forget(row.install_id)
        if row.attempts <= self.plan.retries:
            log.warning("%s: attempt %d failed (%s); retrying", row.name, row.attempts, message)
            self._set(
                row.name, stage="pending", error=message, note=f"attempt {row.attempts} failed; retrying"
            )
        else:
            self._set(row.name, stage="failed", error=message)

    def _disarm(self, name: str, install_id: str, reason: str) -> None:
        disarm(self.store, name, install_id, self.by, reason)
        self.intents = self.store.intents()

    def _check_gate(self, wave: int) -> None:
        if wave <= self.rec.accepted_wave or self._stopping:
            return
        rows = [d for d in self.devices() if d.wave == wave]
        why = self.plan.gate_tripped(wave, sum(d.stage == "failed" for d in rows), len(rows))
        if why:
            self._stopping = why

    async def _step(self, row: RolloutDevice) -> None:
        name = row.name
        if row.stage == "pending":
            if row.attempts == 0 and row.version_before is None:
                driver, req = self._driver(name)
                version = await self._version(driver, req)
                self._set(name, version_before=version or "")
                if version is not None and version == self.plan.version:
                    self._set(name, stage="skipped", note=f"already at {version}: not reinstalled")
                    return
            # The install id is written before the arming it names: a resume finds its arming.
            self._set(
                name,
                stage="arming",
                attempts=row.attempts + 1,
                install_id=secrets.token_hex(8),
                armed_event=None,
                driver_started=None,
            )
            return
        if row.stage == "arming":
            await self._arm(row)
            return
        if row.stage == "installing":
            await self._installing(row)
            return
        if row.stage == "installed":
            await self._booting(row)
            return
        raise _Failure(f"unknown stage {row.stage!r}")

    async def _arm(self, row: RolloutDevice) -> None:
        name, install_id = row.name, row.install_id or ""
        if row.armed_event is None:
            intent = self.store.intents().get(name)
            before = self.rs.last_event_id()
            if intent is None or intent.install_id != install_id:
                # Read the state afresh: `abort` or `pause` from another terminal may have come
                # since the last poll, and an arming made after an abort would stay behind.
                rec = self.rs.get(self.id)
                self.state = rec.state if rec else "aborted"
                if self.state != "running" and not await self._wait_running():
                    return
                intent = self.fleet.arm(name, self.plan.target, self.by, install_id=install_id)
                self.store.flush()
                self.intents[name] = intent  # not a re-read of every intent per arming
            armed = self.rs.armed_event_id(install_id)
            if armed is None:  # an arming without its event (written by an older provision): from now
                armed = before
            self._set(name, armed_event=armed)
        if row.driver_started is None:
            self._set(name, driver_started=time.time())
            driver, req = self._driver(name)
            try:
                note = await asyncio.wait_for(driver.arm(req), self.plan.timeouts["arm"])
            except TimeoutError:
                raise _Failure(
                    f"driver {driver.name}: arming took longer than {self.plan.timeouts['arm']} s"
                ) from None
            except Exception as exc:
                raise _Failure(f"driver {driver.name}: {exc}") from None
            self._set(name, stage="installing", note=note)
        else:
            self._set(name, stage="installing", note=await self._rearm_after_restart(row))

    async def _rearm_after_restart(self, row: RolloutDevice) -> str:
        """The driver was called for this arming before a restart (a kill in the middle of its
        `arm`, or before the stage after it was written). A driver that says a second call is
        harmless (`rearm_safe`: ssh, manual) is called again, unless the install has visibly
        begun or ended (a report of this arming, or the arming ended): driving a switch that
        already runs the new NOS back into ONIE would find its arming spent. Others are never
        called twice: the arming gets its install timeout to report, else the attempt fails."""
        name, install_id = row.name, row.install_id or ""
        driver, req = self._driver(name)
        if not getattr(driver, "rearm_safe", False):
            return "driver called before a restart: not called again"
        dev = self.inventory.named(name)
        self.watcher.watch(install_id, name, row.armed_event or 0, dev.all_macs if dev else ())
        self.watcher.poll()
        intent = self.store.intents().get(name)
        begun = install_id in self.watcher.started or install_id in self.watcher.outcomes
        if begun or intent is None or intent.install_id != install_id or not intent.armed:
            return "driver called before a restart; the install has begun: not called again"
        try:
            note = await asyncio.wait_for(driver.arm(req), self.plan.timeouts["arm"])
        except Exception as exc:  # the first call may have done it (a switch already in ONIE)
            return f"driver called again after a restart ({driver.name}: safe): {exc or type(exc).__name__}"
        return f"driver called again after a restart ({driver.name}: safe): {note}"

    async def _installing(self, row: RolloutDevice) -> None:
        name, install_id = row.name, row.install_id or ""
        dev = self.inventory.named(name)
        self.watcher.watch(install_id, name, row.armed_event or 0, dev.all_macs if dev else ())
        deadline = row.since + self.plan.timeouts["install"]
        while True:
            outcome = self.watcher.outcomes.get(install_id)
            if outcome is not None:
                self.watcher.forget(install_id)
                if not outcome.ok:
                    raise _Failure(f"install failed: {outcome.message}")
                self._set(name, stage="installed", note=outcome.message)
                return
            intent = self.intents.get(name)
            if intent is None or intent.install_id != install_id:
                raise _Failure(
                    f"armed again by {intent.armed_by if intent else '?'}: this arming was replaced"
                )
            if not intent.armed and intent.outcome == "disarmed":
                raise _Failure(
                    f"disarmed by {intent.outcome_by or '?'}: {intent.reason or 'no reason given'}"
                )
            if not intent.armed and intent.outcome in ("installed", "failed"):
                # The server's lifecycle ended this very arming (a report our event read missed,
                # e.g. pruned): believe it.
                if intent.outcome == "failed":
                    raise _Failure(f"install failed: {intent.reason or 'the installer reported failure'}")
                self._set(name, stage="installed", note="the arming ended installed")
                return
            if time.time() > deadline:
                started = "started but did not finish" if install_id in self.watcher.started else "no report"
                if await self._back_at_target(row):
                    # An installer's reports are best-effort (ONIE gives each a few seconds, and a
                    # busy server may miss them: seen in the 500-switch rehearsal), but the switch
                    # is back at the target: the install happened. End this arming as installed,
                    # so no later discovery installs it again, and let the boot check verify it.
                    why = (
                        f"{started} within {self.plan.timeouts['install']} s, but it runs {self.plan.version}"
                    )
                    settle_installed(self.store, name, install_id, self.by, why, dev.mac if dev else None)
                    self.intents = self.store.intents()
                    self.watcher.forget(install_id)
                    self._set(name, stage="installed", note=f"{why} (reports lost)")
                    return
                raise _Failure(f"install timeout ({self.plan.timeouts['install']} s): {started}")
            await asyncio.sleep(self.poll)

    async def _back_at_target(self, row: RolloutDevice) -> bool:
        """Whether the device already runs the target (only when its driver can tell versions)."""
        if self.plan.version is None or not row.version_before or row.version_before == self.plan.version:
            return False
        driver, req = self._driver(row.name)
        return await self._version(driver, req) == self.plan.version

    async def _booting(self, row: RolloutDevice) -> None:
        name = row.name
        target = self.plan.version
        if target is None or not row.version_before:
            self._set(
                name, stage="verified", note="installed (the driver cannot tell the version: not checked)"
            )
            return
        deadline = row.since + self.plan.timeouts["boot"]
        seen: str | None = None
        while True:
            driver, req = self._driver(name)
            version = await self._version(driver, req)
            if version == target:
                self._set(name, stage="verified", note=f"running {version}")
                return
            seen = version or seen
            if time.time() > deadline:
                runs = f"it runs {seen}" if seen else "it did not answer"
                raise _Failure(f"boot timeout ({self.plan.timeouts['boot']} s): {runs}, expected {target}")
            await asyncio.sleep(max(self.poll, 1.0))

    # -- the rollout ------------------------------------------------------------------------------
    async def run(self) -> int:
        """Run to an end; the exit code (0 done, 4 some failed, 1 stopped or aborted)."""
        if self.state in ("done", "partial", "aborted"):
            return EXIT_OF_STATE[self.state]
        if self.state == "stopped":
            # `continue` moves a stopped rollout back to running; resume alone does not pass a gate.
            return EXIT_FAILED
        self.rs.claim(self.id, owner_name())
        control = asyncio.create_task(self._control())
        try:
            return await self._waves()
        finally:
            control.cancel()
            self.rs.claim(self.id, None)
            self._refresh_quiet()

    def _refresh_quiet(self) -> None:
        rec = self.rs.get(self.id)
        if rec is not None:
            self.rec, self.state = rec, rec.state
        if self.on_tick is not None:
            self.on_tick(self)

    async def _waves(self) -> int:
        n_waves = len(self.plan.waves)
        for wave in range(n_waves):
            rows = [d for d in self.devices() if d.wave == wave]
            ran = any(d.stage not in FINAL_STAGES for d in rows)
            if ran:
                if not await self._wait_running():
                    return EXIT_OF_STATE.get(self.state, EXIT_FAILED)
                self._stopping = None
                slots = asyncio.Semaphore(self.plan.max_parallel)
                tasks = [
                    asyncio.create_task(self._device(d.name, wave, len(rows), slots))
                    for d in rows
                    if d.stage not in FINAL_STAGES
                ]
                abort: asyncio.Task[None] = asyncio.create_task(self._until_aborted())
                wave_done: asyncio.Task[None] = asyncio.create_task(_all(tasks))
                try:
                    await asyncio.wait([abort, wave_done], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    abort.cancel()
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(wave_done, *tasks, return_exceptions=True)
                for t in tasks:
                    exc = None if t.cancelled() else t.exception()
                    if exc is not None:
                        raise exc  # a bug or a broken store, not a device failure: say it loudly
                if self.state == "aborted":
                    return EXIT_FAILED
            self._refresh()
            rows = [d for d in self.devices() if d.wave == wave]
            if wave > self.rec.accepted_wave:
                failed = sum(d.stage == "failed" for d in rows)
                why = self._stopping or self.plan.gate_tripped(wave, failed, len(rows))
                if why:
                    self.rs.set_state(self.id, "stopped", why, expect=("running", "paused"))
                    self._refresh()
                    return EXIT_FAILED
                if wave == 0 and self.plan.canaries and self.plan.pause_after_canaries and wave < n_waves - 1:
                    self.rs.set_state(
                        self.id,
                        "paused",
                        f"{CANARY_PAUSE}: check them, then `provision rollout continue {self.id}`",
                        expect=("running",),
                    )
                    self._refresh()
            if ran and self.plan.delay and wave < n_waves - 1:
                end = time.time() + self.plan.delay
                while time.time() < end and self.state in ("running", "paused"):
                    await asyncio.sleep(min(self.poll, max(end - time.time(), 0)))
        failed = sum(d.stage == "failed" for d in self.devices())
        final = "partial" if failed else "done"
        why = f"{failed} device(s) failed" if failed else None
        if not self.rs.set_state(self.id, final, why, expect=("running",)):
            self._refresh()
            return EXIT_OF_STATE.get(self.state, EXIT_FAILED)
        self._refresh()
        return EXIT_PARTIAL if failed else EXIT_OK

    async def _until_aborted(self) -> None:
        while self.state != "aborted":
            await asyncio.sleep(self.poll)


async def _all(tasks: Sequence[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks)


def abort(store: Store, rollout_id: str, by: str, reason: str | None = None) -> list[str]:
    """Abort a rollout (whether an engine runs it or not): state aborted, and every arming it
    left outstanding withdrawn (by install id: an install already running cannot be stopped,
    but no device installs later because of this rollout). The names disarmed."""
    rs = RolloutStore(store)
    why = reason or f"aborted by {by}"
    rs.set_state(rollout_id, "aborted", why, expect=("running", "paused", "stopped"))
    disarmed = []
    for d in rs.devices(rollout_id):
        outstanding = d.stage in ("arming", "installing") and d.install_id
        if outstanding and disarm(store, d.name, d.install_id or "", by, f"rollout {rollout_id} aborted"):
            disarmed.append(d.name)
    return disarmed


def disarm(store: Store, name: str, install_id: str, by: str, reason: str) -> bool:
    """Withdraw arming `install_id` of `name` if it is still on (a newer arming is left alone),
    with its `device.disarmed` event, as `provision devices disarm` would."""
    if not store.end_arming(name, "disarmed", by, reason, install_id):
        return False
    store.add_event(
        Event(KIND_DISARMED, detail={"name": name, "by": by, "reason": reason, "install_id": install_id})
    )
    store.flush()
    return True


def settle_installed(store: Store, name: str, install_id: str, by: str, reason: str, mac: str | None) -> bool:
    """End arming `install_id` of `name` as installed (when still on), with the `device.installed`
    event the server's lifecycle writes when a report ends it."""
    if not store.end_arming(name, "installed", by, reason, install_id):
        return False
    detail = {"name": name, "by": by, "reason": reason, "install_id": install_id}
    store.add_event(Event(KIND_INSTALLED, mac=mac, detail=detail))
    store.flush()
    return True


def create(store: Store, plan: Plan, by: str, rollout_id: str | None = None) -> str:
    """Store a new rollout of `plan` (state running); its id."""
    rid = rollout_id or new_rollout_id()
    rows = [(name, w, i) for w, names in enumerate(plan.waves) for i, name in enumerate(names)]
    RolloutStore(store).create(rid, plan.name, plan.to_doc(), rows, by)
    return rid


__all__ = [
    "ALIVE_S",
    "CANARY_PAUSE",
    "EXIT_OF_STATE",
    "Engine",
    "Watcher",
    "abort",
    "create",
    "owner_alive",
    "wave_to_accept",
]
