"""The device lifecycle, one for switches and servers (docs/lifecycle.md):

    unknown (seen, in no inventory) → enrolled → armed (with what) → installing → installed | failed
                                                 ↘ disarmed

Intent is stored: which devices are enrolled (lab.yml's `devices:`, plus those `provision devices
enroll|import` wrote to the store) and each one's arming (the store's `intents`). Progress comes
from events (the installer's reports, the policies' hand-outs). Every transition is an event that
says who or what caused it (`detail.by`).

The one question the policies ask here is `gate(device, platform)`: may this device be handed an
installer now? The answer carries why (a stable `code` and a sentence), which the policies put in
their note and in a rate-limited `device.refused` event, so status says why nothing was offered.

Install once: an arming ends with the installer's report (installed or failed), so a switch left in
ONIE install mode, or a server that network-boots every time, is not installed again until someone
arms it again. When no report comes (reports switched off, an installer that dies before it can
report), an arming allows at most `HANDOUTS_PER_ARMING` hand-outs: one try, plus retries of a
broken download, not one run per name of ONIE's waterfall.
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from onie.platform import normalise_mac
from provision.config.inventory import BmcConfig, Device, Inventory, with_group
from provision.onie.progress import (
    KIND_FETCHED,
    KIND_REPORT,
    REPORT_STAGE_COMPLETE,
    REPORT_STATUS_FAILED,
    REPORT_STATUS_OK,
)
from provision.store.records import Intent
from pxe.policy import Event, EventSink

log = logging.getLogger(__name__)

KIND_ENROLLED = "device.enrolled"
KIND_ARMED = "device.armed"
KIND_DISARMED = "device.disarmed"
KIND_FORGOTTEN = "device.forgotten"
KIND_INSTALLING = "device.installing"
KIND_INSTALLED = "device.installed"
KIND_FAILED = "device.failed"
KIND_REFUSED = "device.refused"
LIFECYCLE_KINDS = (
    KIND_ENROLLED,
    KIND_ARMED,
    KIND_DISARMED,
    KIND_FORGOTTEN,
    KIND_INSTALLING,
    KIND_INSTALLED,
    KIND_FAILED,
    KIND_REFUSED,
)

HANDOUTS_PER_ARMING = 3  # the installer itself, plus two retries of a download that broke
REFUSED_REPEAT_S = 60.0  # one `device.refused` per device and reason a minute: a DHCP storm stays one line
RETRY_AFTER_FAILURE_S = 600.0  # install: always / zero-touch: a failed install waits this long


class State(enum.Enum):
    """Stable codes (status --json `state`); docs/lifecycle.md says what each means."""

    UNKNOWN = "unknown"
    ENROLLED = "enrolled"
    ARMED = "armed"
    INSTALLING = "installing"
    INSTALLED = "installed"
    FAILED = "failed"
    DISARMED = "disarmed"


class InstallMode(enum.Enum):
    ARMED = "armed"  # install only when armed, once per arming (the default)
    ALWAYS = "always"  # on every request (a lab that reinstalls on every boot)
    NEVER = "never"


class Outcome(enum.Enum):
    """Why an arming ended (the store's `intents.outcome`)."""

    INSTALLED = "installed"
    FAILED = "failed"
    DISARMED = "disarmed"


@dataclass(frozen=True)
class Gate:
    """May this device be handed an installer now, and why (or why not)."""

    allowed: bool
    code: str  # armed | always | zero-touch | not-armed | installed | failed | disarmed | never |
    #            unknown-ignored | platform-mismatch | handouts-spent | retry-later
    reason: str
    install_id: str | None = None  # the arming it belongs to (tokens are keyed on it)
    target: str | None = None  # what was armed: an installer pin / NOS version, or a boot entry


class IntentStore(Protocol):
    """The part of provision.store the lifecycle uses (SQLite today)."""

    @property
    def data_version(self) -> int: ...
    def enroll(self, name: str, doc: dict[str, Any], by: str) -> None: ...
    def unenroll(self, name: str) -> bool: ...
    def enrolled(self) -> list[Any]: ...
    def arm(self, name: str, target: str | None, install_id: str, by: str) -> None: ...
    def end_arming(
        self, name: str, outcome: str, by: str, reason: str | None = None, install_id: str | None = None
    ) -> bool: ...
    def intents(self) -> dict[str, Intent]: ...


@dataclass
class _Memory:
    """Intents kept in memory when there is no store (a policy built in a test)."""

    enrolled: dict[str, tuple[dict[str, Any], float, str]] = field(default_factory=dict)
    intents: dict[str, Intent] = field(default_factory=dict)


def device_from_doc(doc: dict[str, Any]) -> Device:
    """An enrolled device from its stored document (the keys of lab.yml's device entries)."""

    def text(key: str) -> str | None:
        value = doc.get(key)
        return None if value is None or value == "" else str(value)

    bmc = doc.get("bmc")
    macs = tuple(m for m in (normalise_mac(str(x)) for x in doc.get("macs") or ()) if m)
    return Device(
        name=str(doc["name"]),
        mac=normalise_mac(str(doc["mac"])) if doc.get("mac") else None,
        macs=macs,
        serial=text("serial"),
        ip=text("ip"),
        hostname=text("hostname"),
        profile=text("profile"),
        switch_port=text("switch_port"),
        boot=text("boot"),
        installer=text("installer"),
        role=text("role"),
        platform=text("platform"),
        install=text("install"),
        group=text("group"),
        site=text("site"),
        rack=text("rack"),
        position=text("position"),
        asset_tag=text("asset_tag"),
        tags=tuple(str(t) for t in doc.get("tags") or ()),
        bmc=BmcConfig(**bmc) if isinstance(bmc, dict) else None,
        source="store",
    )


def device_doc(dev: Device) -> dict[str, Any]:
    """What `enroll` stores of a device (and `export` writes): lab.yml's keys, unset ones left out."""
    doc: dict[str, Any] = {"name": dev.name}
    for key in (
        "mac",
        "serial",
        "ip",
        "hostname",
        "profile",
        "platform",
        "switch_port",
        "boot",
        "installer",
        "install",
        "role",
        "group",
        "site",
        "rack",
        "position",
        "asset_tag",
    ):
        value = getattr(dev, key)
        if value is not None:
            doc[key] = value
    if dev.macs:
        doc["macs"] = list(dev.macs)
    if dev.tags:
        doc["tags"] = list(dev.tags)
    return doc


class Lifecycle:
    """Intent + the gate + transitions from events. `store` None keeps intent in memory.

    `lab`: lab.yml's inventory (swapped by `reload`); `unknown_install`: whether a switch in no
    inventory may install (onie.unknown); `expected_platform(dev)`: the ONIE platform a device must
    report (its own `platform:`, else its hardware profile's); `reports`: whether installers'
    reports are accepted (without them an arming ends at its first hand-out: nothing else would
    end it)."""

    def __init__(
        self,
        store: IntentStore | None,
        lab: Inventory,
        events: EventSink | None = None,
        *,
        unknown_install: bool = True,
        expected_platform: Callable[[Device], str | None] | None = None,
        reports: bool = True,
        clock: Callable[[], float] = time.time,
        groups: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> None:
        self.store = store
        self.groups = dict(groups or {})  # lab.yml's `groups:`: enrolled devices take them too
        self.events: EventSink = events or (lambda _e: None)
        self.unknown_install = unknown_install
        self.expected_platform = expected_platform or (lambda d: d.platform)
        self.reports = reports
        self.clock = clock
        self._lab = lab
        self._memory = _Memory()
        self._version: int | None = None
        self._inventory = lab
        self._intents: dict[str, Intent] = {}
        self._enrolled_at: dict[str, float] = {}
        self._handouts: dict[tuple[str, str], int] = {}  # (device, install_id or mode) -> count
        # install: always / zero-touch: device key -> (when its install failed, what it said)
        self._failed_at: dict[str, tuple[float, str | None]] = {}
        self._refused: dict[tuple[str, str], float] = {}
        self.counters: dict[str, int] = {"refused": 0, "handouts": 0, "installed": 0, "failed": 0}
        self._load()

    # -- intent, read -----------------------------------------------------------------------------

    def _load(self) -> None:
        enrolled: list[Device] = []
        if self.store is None:
            self._intents = dict(self._memory.intents)
            for doc, at, _by in self._memory.enrolled.values():
                enrolled.append(self._grouped(device_from_doc(doc)))
                self._enrolled_at[str(doc["name"])] = at
        else:
            self._version = self.store.data_version
            self._intents = dict(self.store.intents())
            for rec in self.store.enrolled():
                try:
                    enrolled.append(self._grouped(device_from_doc(rec.doc)))
                    self._enrolled_at[rec.name] = rec.enrolled_at
                except (KeyError, TypeError, ValueError) as exc:  # a hand-edited row: skip, say so
                    log.warning("enrolled device %r is unreadable (%s): skipped", rec.name, exc)
        self._inventory = self._lab.merged(enrolled)

    def attach(self, store: IntentStore | None) -> None:
        """Keep intent in `store` from now on (the server opens it after building the policies)."""
        self.store = store
        self._load()

    def _grouped(self, dev: Device) -> Device:
        group = self.groups.get(dev.group) if dev.group else None
        return with_group(dev, group) if group else dev

    def refresh(self) -> None:
        """Re-read intent when another process (the CLI) committed to the store since we last did."""
        if self.store is not None and self.store.data_version != self._version:
            self._load()

    @property
    def inventory(self) -> Inventory:
        """lab.yml's devices plus the enrolled ones (lab.yml wins a clash of name, MAC or serial)."""
        self.refresh()
        return self._inventory

    @property
    def lab(self) -> Inventory:
        """lab.yml's devices alone (a status read in another thread builds a Lifecycle on them)."""
        return self._lab

    def intent(self, name: str) -> Intent | None:
        self.refresh()
        return self._intents.get(name)

    def enrolled_at(self, name: str) -> float | None:
        return self._enrolled_at.get(name)

    def reload(
        self,
        lab: Inventory,
        *,
        unknown_install: bool | None = None,
        reports: bool | None = None,
        groups: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> None:
        """A new lab.yml: new inventory; intents, hand-out counts and history are kept."""
        self._lab = lab
        if groups is not None:
            self.groups = dict(groups)
        if unknown_install is not None:
            self.unknown_install = unknown_install
        if reports is not None:
            self.reports = reports
        self._load()

    @staticmethod
    def mode(dev: Device) -> InstallMode:
        return InstallMode(dev.install) if dev.install else InstallMode.ARMED

    # -- the gate --------------------------------------------------------------------------------

    def gate(self, dev: Device | None, platform: str | None = None, key: str | None = None) -> Gate:
        """May `dev` (None: in no inventory) be handed an installer now? `platform`: what the
        device reported (ONIE); `key`: how to know an unknown device again (its MAC)."""
        if dev is None:
            if not self.unknown_install:
                return Gate(
                    False,
                    "unknown-ignored",
                    "not in the inventory (onie.unknown: ignore); enroll it: provision devices enroll",
                )
            return self._retry_gate(
                key or "?", Gate(True, "zero-touch", "zero-touch (onie.unknown: install)")
            )
        expected = self.expected_platform(dev)
        if platform and expected and platform != expected:
            return Gate(
                False,
                "platform-mismatch",
                f"reported platform {platform}, expected {expected} (wrong cable or wrong profile?)",
            )
        mode = self.mode(dev)
        if mode is InstallMode.NEVER:
            return Gate(False, "never", f"{dev.name} has install: never")
        if mode is InstallMode.ALWAYS:
            return self._retry_gate(dev.name, Gate(True, "always", f"{dev.name} has install: always"))
        intent = self.intent(dev.name)
        if intent is None or (not intent.armed and intent.outcome is None):
            return Gate(
                False, "not-armed", f"{dev.name} is enrolled, not armed: provision devices arm {dev.name}"
            )
        if not intent.armed:
            when = _iso(intent.outcome_at)
            if intent.outcome == Outcome.INSTALLED.value:
                return Gate(False, "installed", f"installed {when} (install once): arm it again to reinstall")
            if intent.outcome == Outcome.FAILED.value:
                why = f": {intent.reason}" if intent.reason else ""
                return Gate(False, "failed", f"the install failed {when}{why}; arm it again to retry")
            return Gate(False, "disarmed", f"disarmed {when} by {intent.outcome_by or '?'}")
        spent = self._handouts.get((dev.name, intent.install_id or ""), 0)
        if spent >= HANDOUTS_PER_ARMING:
            return Gate(
                False,
                "handouts-spent",
                f"installer handed out {spent} times for this arming with no report of success",
            )
        return Gate(
            True,
            "armed",
            f"armed {_iso(intent.armed_at)} by {intent.armed_by or '?'}",
            install_id=intent.install_id,
            target=intent.target,
        )

    def _retry_gate(self, key: str, gate: Gate) -> Gate:
        failed = self._failed_at.get(key)
        if failed is not None and self.clock() - failed[0] < RETRY_AFTER_FAILURE_S:
            why = f": {failed[1]}" if failed[1] else ""
            return Gate(
                False,
                "retry-later",
                f"its install failed {_iso(failed[0])}{why}; next try after {int(RETRY_AFTER_FAILURE_S)} s "
                "(one try per discovery cycle, not one per name of ONIE's waterfall)",
            )
        return gate

    def refused(self, dev: Device | None, gate: Gate, mac: str | None, ip: str | None = None) -> None:
        """Record why nothing was offered: a `device.refused` event, once a minute per reason."""
        key = (dev.name if dev else mac or "?", gate.code)
        now = self.clock()
        self.counters["refused"] += 1
        last = self._refused.get(key)
        if last is not None and now - last < REFUSED_REPEAT_S:
            return
        self._refused[key] = now
        self.events(
            Event(
                KIND_REFUSED,
                mac=mac,
                ip=ip,
                detail={"name": dev.name if dev else None, "code": gate.code, "reason": gate.reason},
            )
        )

    def handed_out(
        self, dev: Device | None, gate: Gate, mac: str | None, ip: str | None = None, what: str = ""
    ) -> None:
        """The policy gave the installer (a switch's file, a server's install script) under `gate`."""
        self.counters["handouts"] += 1
        if dev is None:
            return
        key = (dev.name, gate.install_id or "")
        count = self._handouts.get(key, 0) + 1
        self._handouts[key] = count
        if count == 1:
            self.events(
                Event(
                    KIND_INSTALLING,
                    mac=mac,
                    ip=ip,
                    detail={"name": dev.name, "by": "policy", "what": what, "install_id": gate.install_id},
                )
            )
        if gate.code == "armed" and not self.reports and gate.install_id:
            # Nothing else will end this arming: one try per arming.
            self._end(dev.name, Outcome.INSTALLED, "policy (reports are off: ends at the hand-out)", None,
                      gate.install_id, mac)  # fmt: skip

    # -- intent, written -------------------------------------------------------------------------

    def enroll(self, dev: Device, by: str) -> None:
        doc = device_doc(dev)
        if self.store is None:
            self._memory.enrolled[dev.name] = (doc, self.clock(), by)
        else:
            self.store.enroll(dev.name, doc, by)
        self._load()
        self.events(Event(KIND_ENROLLED, mac=dev.mac, detail={"name": dev.name, "by": by}))

    def forget(self, name: str, by: str) -> bool:
        if self.store is None:
            gone = self._memory.enrolled.pop(name, None) is not None
            self._memory.intents.pop(name, None)
        else:
            gone = self.store.unenroll(name)
        self._load()
        self.events(Event(KIND_FORGOTTEN, detail={"name": name, "by": by}))
        return gone

    def arm(self, name: str, target: str | None, by: str, install_id: str | None = None) -> Intent:
        """Arm `name` for one install of `target`. `install_id`: chosen by the caller (a rollout
        writes it to its own state before arming, so a resume knows which arming is its own)."""
        install_id = install_id or secrets.token_hex(8)
        if self.store is None:
            self._memory.intents[name] = Intent(name, True, target, install_id, self.clock(), by)
        else:
            self.store.arm(name, target, install_id, by)
        self._load()
        dev = self._inventory.named(name)
        self.events(
            Event(
                KIND_ARMED,
                mac=dev.mac if dev else None,
                detail={"name": name, "by": by, "target": target, "install_id": install_id},
            )
        )
        intent = self._intents[name]
        return intent

    def disarm(self, name: str, by: str, reason: str | None = None) -> bool:
        changed = self._end(name, Outcome.DISARMED, by, reason, None, None)
        return changed

    def _end(
        self,
        name: str,
        outcome: Outcome,
        by: str,
        reason: str | None,
        install_id: str | None,
        mac: str | None,
    ) -> bool:
        if self.store is None:
            old = self._memory.intents.get(name)
            if old is None or (install_id is not None and (old.install_id != install_id or not old.armed)):
                changed = old is None and install_id is None
                if changed:
                    self._memory.intents[name] = Intent(name, False, None, None, None, None, outcome.value,
                                                        self.clock(), by, reason)  # fmt: skip
            else:
                changed = True
                self._memory.intents[name] = Intent(
                    name, False, old.target, old.install_id, old.armed_at, old.armed_by,
                    outcome.value, self.clock(), by, reason,
                )  # fmt: skip
        else:
            changed = self.store.end_arming(name, outcome.value, by, reason, install_id)
        self._load()
        if changed:
            kind = {Outcome.INSTALLED: KIND_INSTALLED, Outcome.FAILED: KIND_FAILED}.get(
                outcome, KIND_DISARMED
            )
            self.events(Event(kind, mac=mac, detail={"name": name, "by": by, "reason": reason,
                                                     "install_id": install_id}))  # fmt: skip
        return changed

    # -- progress, from events -------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """An event subscriber: the installer's reports end the arming they belong to."""
        if event.kind != KIND_REPORT:
            return
        detail = event.detail
        status = str(detail.get("status") or "").lower()
        stage = str(detail.get("stage") or "").lower()
        ok = status == REPORT_STATUS_OK and stage == REPORT_STAGE_COMPLETE
        failed = status == REPORT_STATUS_FAILED
        if not (ok or failed):
            return
        mac = event.mac or normalise_mac(str(detail.get("mac") or ""))
        dev = self.inventory.find(mac=mac, serial=detail.get("serial"))
        by = f"installer report from {event.ip or '?'}"
        message = str(detail.get("message") or "") or None
        if failed:
            self.counters["failed"] += 1
            self._failed_at[dev.name if dev else (mac or "?")] = (self.clock(), message)
        else:
            self.counters["installed"] += 1
            self._failed_at.pop(dev.name if dev else (mac or "?"), None)
        if dev is None:
            return
        intent = self.intent(dev.name)
        outcome = Outcome.INSTALLED if ok else Outcome.FAILED
        if intent is not None and intent.armed:
            # A report names its install (the token's install id) when it has one; otherwise it
            # ends the current arming.
            install_id = str(detail.get("install_id") or "") or intent.install_id
            self._end(dev.name, outcome, by, message, install_id, mac)
        else:
            kind = KIND_INSTALLED if ok else KIND_FAILED
            self.events(Event(kind, mac=mac, detail={"name": dev.name, "by": by, "reason": message}))

    def state(
        self, dev: Device | None, events: Iterable[Event] = ()
    ) -> tuple[State, float | None, str | None]:
        """(state, since, last error) of a device; `events`: its events (any order), for progress."""
        if dev is None:
            return State.UNKNOWN, None, _last_error(events)
        intent = self.intent(dev.name)
        progress = sorted((e for e in events if e.kind in _PROGRESS_KINDS), key=lambda e: e.ts)
        error = _last_error(progress)
        if self.mode(dev) is not InstallMode.ARMED or intent is None:
            # No arming to read: the last progress event says it (install: always, or never armed).
            for e in reversed(progress):
                if e.kind in (KIND_INSTALLED, KIND_FAILED, KIND_INSTALLING):
                    return _STATE_OF_KIND[e.kind], e.ts, error
            return State.ENROLLED, self._enrolled_at.get(dev.name), error
        if intent.armed:
            since = intent.armed_at or 0.0
            started = [
                e
                for e in progress
                if e.ts >= since and e.kind in (KIND_INSTALLING, KIND_REPORT, KIND_FETCHED)
            ]
            if started:
                return State.INSTALLING, started[0].ts, error
            return State.ARMED, intent.armed_at, None
        state = {
            Outcome.INSTALLED.value: State.INSTALLED,
            Outcome.FAILED.value: State.FAILED,
        }.get(intent.outcome or "", State.DISARMED)
        if state is State.FAILED and intent.reason:
            error = intent.reason
        return state, intent.outcome_at, error


_PROGRESS_KINDS = (KIND_INSTALLING, KIND_INSTALLED, KIND_FAILED, KIND_REPORT, KIND_FETCHED, KIND_REFUSED)
_STATE_OF_KIND = {
    KIND_INSTALLED: State.INSTALLED,
    KIND_FAILED: State.FAILED,
    KIND_INSTALLING: State.INSTALLING,
}


def _last_error(events: Iterable[Event]) -> str | None:
    error = None
    for e in sorted(events, key=lambda e: e.ts):
        if e.kind == KIND_REFUSED:
            error = str(e.detail.get("reason") or e.detail.get("code") or "refused")
        elif e.kind == KIND_REPORT and str(e.detail.get("status") or "").lower() == REPORT_STATUS_FAILED:
            error = str(e.detail.get("message") or f"installer failed at {e.detail.get('stage') or '?'}")
        elif e.kind in (KIND_INSTALLED, KIND_ARMED):
            error = None
    return error


def _iso(ts: float | None) -> str:
    if ts is None:
        return "?"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


__all__ = [
    "LIFECYCLE_KINDS",
    "Gate",
    "InstallMode",
    "Intent",
    "Lifecycle",
    "State",
    "device_doc",
    "device_from_doc",
]
