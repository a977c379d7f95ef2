"""Where a switch is in its ONIE install, derived from its events (never stored twice).

Events read (all `pxe.policy.Event`):
- `onie.discovered`  (OniePolicy, from DHCP or HTTP): detail {serial, platform, onie_version, source}
- `installer.fetched` (OniePolicy, when it hands out an installer file over HTTP or TFTP): detail
  {path, file, platform, serial, protocol}. Emitted when the transfer is answered, not when the
  last byte left: "fetched" means "given to the switch".
- `installer.report` (the HTTP server, from the installer's GET /api/v1/report): detail is the query
  {stage, status, nos, version, platform, serial, mac, message}; status is progress | ok | failed
  (templates/installer/*.sh.j2), stage `complete` with status `ok` ends the install.

Derived as well, so the column works even where the policy's own events are not recorded (an
ONIE policy built without the server's event sink, or events from an older state file): any `dhcp.*` event whose vendor_class is
`onie_vendor:…` (or user_class `onie_dhcp_user_class`) counts as discovered; an `http.sent` with
status 200 (GET, not aborted) or a `tftp.sent` of an `onie-installer…` path counts as fetched.

The last event that says something wins: a switch that failed and rediscovers shows `discovered`
again, which is what it is doing. Pure functions; `provision status` renders the stage column.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from onie.discovery import USER_CLASS as ONIE_USER_CLASS
from onie.discovery import VENDOR_CLASS_PREFIX as ONIE_VENDOR_CLASS_PREFIX
from pxe.policy import Event

KIND_DISCOVERED = "onie.discovered"
KIND_FETCHED = "installer.fetched"
KIND_REPORT = "installer.report"

INSTALLER_PREFIX = "onie-installer"
HTTP_OK = 200

REPORT_STATUS_OK = "ok"
REPORT_STATUS_FAILED = "failed"
REPORT_STAGE_COMPLETE = "complete"


class OnieStage(enum.Enum):
    NONE = "none"  # no ONIE event seen for this device
    DISCOVERED = "discovered"
    FETCHED = "fetched"
    INSTALLING = "installing"
    INSTALLED = "installed"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return _LABELS[self]

    def __str__(self) -> str:  # `provision status` prints str(stage_of(events))
        return self.label

    @property
    def done(self) -> bool:
        return self in (OnieStage.INSTALLED, OnieStage.FAILED)


_LABELS = {
    OnieStage.NONE: "-",
    OnieStage.DISCOVERED: "discovered",
    OnieStage.FETCHED: "installer fetched",
    OnieStage.INSTALLING: "installing",
    OnieStage.INSTALLED: "installed",
    OnieStage.FAILED: "failed",
}


def stage_of_event(event: Event) -> OnieStage | None:
    """The stage one event puts a device in, or None when the event says nothing about ONIE."""
    if event.kind == KIND_DISCOVERED:
        return OnieStage.DISCOVERED
    if event.kind == KIND_FETCHED:
        return OnieStage.FETCHED
    if event.kind == KIND_REPORT:
        status = str(event.detail.get("status", "")).lower()
        stage = str(event.detail.get("stage", "")).lower()
        if status == REPORT_STATUS_FAILED:
            return OnieStage.FAILED
        if stage == REPORT_STAGE_COMPLETE and status == REPORT_STATUS_OK:
            return OnieStage.INSTALLED
        return OnieStage.INSTALLING
    if event.kind.startswith("dhcp."):
        vc = str(event.detail.get("vendor_class") or "")
        if vc.startswith(ONIE_VENDOR_CLASS_PREFIX) or event.detail.get("user_class") == ONIE_USER_CLASS:
            return OnieStage.DISCOVERED
        return None
    if event.kind in ("http.sent", "tftp.sent"):
        name = str(event.detail.get("path") or "").rsplit("/", 1)[-1]
        if not name.startswith(INSTALLER_PREFIX):
            return None
        if event.kind == "http.sent" and (
            event.detail.get("status") != HTTP_OK
            or event.detail.get("aborted")
            or event.detail.get("method", "GET") != "GET"
        ):
            return None
        return OnieStage.FETCHED
    return None


def stage_of(events: Iterable[Event]) -> OnieStage:
    """The stage of one device, from its events in any order (sorted by time, stable)."""
    stage = OnieStage.NONE
    for event in sorted(events, key=lambda e: e.ts):
        step = stage_of_event(event)
        if step is not None:
            stage = step
    return stage


def device_key(event: Event) -> str | None:
    """The MAC an event is about: the event's own, else the `mac` the installer reported."""
    mac = event.mac or event.detail.get("mac")
    if not mac:
        return None
    return str(mac).strip().lower().replace("-", ":")


def stages_by_device(events: Iterable[Event]) -> dict[str, OnieStage]:
    """{mac: stage} for every device with at least one ONIE event."""
    grouped: dict[str, list[Event]] = {}
    for event in events:
        if stage_of_event(event) is None:
            continue
        key = device_key(event)
        if key:
            grouped.setdefault(key, []).append(event)
    return {key: stage_of(evs) for key, evs in grouped.items()}


@dataclass(frozen=True)
class OnieProgress:
    """What the status view shows for one switch: its stage and the last facts it gave."""

    stage: OnieStage
    serial: str | None = None
    platform: str | None = None
    onie_version: str | None = None
    installer: str | None = None  # the file handed out
    report_stage: str | None = None  # the installer's last reported stage
    message: str | None = None  # the installer's last message
    updated: float | None = None  # time of the last ONIE event


def progress_of(events: Iterable[Event]) -> OnieProgress:
    """Stage plus the latest identity and installer facts of one device's events."""
    facts: dict[str, str | None] = {}
    stage, updated = OnieStage.NONE, None
    for event in sorted(events, key=lambda e: e.ts):
        step = stage_of_event(event)
        if step is None:
            continue
        stage, updated = step, event.ts
        detail = event.detail
        for key in ("serial", "platform", "onie_version"):
            if detail.get(key):
                facts[key] = str(detail[key])
        if event.kind == KIND_FETCHED and detail.get("file"):
            facts["installer"] = str(detail["file"])
        if event.kind == KIND_REPORT:
            facts["report_stage"] = str(detail.get("stage") or "") or None
            facts["message"] = str(detail.get("message") or "") or None
    return OnieProgress(stage=stage, updated=updated, **facts)


class DeviceIndex(Protocol):
    """The part of the store `record_identity` writes to (provision.store)."""

    def upsert_device(
        self, mac: str, *, serial: str | None, platform: str | None, identity: dict[str, object]
    ) -> None: ...


def record_identity(store: DeviceIndex) -> Callable[[Event], None]:
    """An event subscriber: `onie.discovered` -> the devices table's serial and platform, so that
    `provision status` names each switch. The identity stays derivable from events: this is an
    index kept up to date by the same events."""

    def record(event: Event) -> None:
        if event.kind != KIND_DISCOVERED or not event.mac:
            return
        detail = dict(event.detail)
        store.upsert_device(
            event.mac, serial=detail.get("serial"), platform=detail.get("platform"), identity=detail
        )

    return record
