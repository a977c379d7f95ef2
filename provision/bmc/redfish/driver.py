"""The Redfish driver: power, one-time boot, virtual media and identity over DMTF Redfish.

Generic logic only; vendor behaviour comes from redfish_quirks (tables with their reasons) and
the HTTP details (retries, ETags, sessions, tasks, TLS) from redfish_http.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import unquote

from provision.bmc.base import (
    BmcError,
    BootDevice,
    BootMode,
    BootResult,
    Identity,
    Nic,
    PowerAction,
    PowerState,
    SystemSelectionError,
    Unsupported,
    poll_power,
)
from provision.bmc.redfish import quirks
from provision.bmc.redfish.transport import RedfishHttp

log = logging.getLogger(__name__)

_POWER_STATES = {
    "On": PowerState.ON,
    "Off": PowerState.OFF,
    "PoweringOn": PowerState.POWERING_ON,
    "PoweringOff": PowerState.POWERING_OFF,
    # Paused is a VM notion (sushy-emulator over libvirt); the machine is not off.
    "Paused": PowerState.ON,
}


def _text(value: object) -> str | None:
    """A string property, None when absent or blank (BMCs send "" or " " for unknown)."""
    return (value.strip() or None) if isinstance(value, str) else None


def system_id(path: str) -> str:
    """The Id in a system's path: the last segment (/redfish/v1/Systems/System.Embedded.1)."""
    return unquote(path.rstrip("/").rsplit("/", 1)[-1])


class RedfishDriver:
    def __init__(
        self,
        name: str,
        http: RedfishHttp,
        *,
        system: str | None = None,
        power_timeout: float = 300.0,
        poll_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = name
        self.http = http
        self.power_timeout = power_timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self.system = system  # the Id asked for (URL path, --system, inventory `system:`)
        self._system_path: str | None = None
        self._logged_in = False

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> RedfishDriver:
        self.http.__enter__()
        self._logged_in = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._logged_in:
            self._logged_in = False
            self.http.logout()

    # --- discovery ---------------------------------------------------------------------------------

    @property
    def system_path(self) -> str:
        """The system to act on: the one asked for, else the only member of the Systems
        collection. Never a hard-coded path (Dell System.Embedded.1, HPE/Lenovo 1, AMI Self,
        sushy-emulator a UUID), and never "the first of several": a blade chassis or a
        GB200-style BMC lists many, and acting on the wrong one powers off someone else's machine."""
        if self._system_path is None:
            systems = (self.http.root.get("Systems") or {}).get("@odata.id")
            if not systems:
                raise Unsupported("the Redfish service root links no Systems collection")
            members = self.http.get(systems, "list Systems").get("Members") or []
            paths = [m["@odata.id"] for m in members if isinstance(m, dict) and m.get("@odata.id")]
            if not paths:
                raise BmcError(f"the Systems collection {systems} is empty")
            self._system_path = self._select(paths)
        return self._system_path

    def _select(self, paths: list[str]) -> str:
        ids = [system_id(p) for p in paths]
        if self.system is not None:
            for path, sid in zip(paths, ids, strict=True):
                if sid == self.system:
                    return path
            raise SystemSelectionError(
                f"no system {self.system!r} on this BMC; it has {', '.join(ids)}",
                fix="name one of those: redfish://host/redfish/v1/Systems/ID, --system ID or "
                "`system: ID` in the inventory's bmc: block",
            )
        if len(paths) > 1:
            raise SystemSelectionError(
                f"this BMC manages {len(paths)} systems ({', '.join(ids)}) and none was selected; "
                "nothing was done",
                fix=f"pick one: {self._target_url(ids[0])}, --system {ids[0]} or "
                f"`system: {ids[0]}` in the inventory's bmc: block",
            )
        return paths[0]

    def _target_url(self, sid: str) -> str:
        """The target URL that names system `sid` on this BMC (redfish:// is HTTPS)."""
        base = self.http.base_url
        scheme, rest = base.split("://", 1) if "://" in base else ("https", base)
        return f"{'redfish+http' if scheme == 'http' else 'redfish'}://{rest}/redfish/v1/Systems/{sid}"

    def _system(self) -> dict:
        return self.http.get(self.system_path, "read the system")

    # --- power ---------------------------------------------------------------------------------------

    def power_state(self) -> PowerState:
        return _POWER_STATES.get(self._system().get("PowerState") or "", PowerState.UNKNOWN)

    def _reset_target_and_allowed(self, system: dict) -> tuple[str, tuple[str, ...]]:
        action = (system.get("Actions") or {}).get("#ComputerSystem.Reset") or {}
        target = action.get("target")
        if not target:
            raise Unsupported("the system offers no #ComputerSystem.Reset action")
        info = None
        if not action.get("ResetType@Redfish.AllowableValues") and action.get("@Redfish.ActionInfo"):
            info = self.http.get(action["@Redfish.ActionInfo"], "read the Reset ActionInfo")
        return target, quirks.allowed_reset_types(system, info)

    def _reset(self, target: str, reset_type: str) -> None:
        log.info("%s: ResetType %s", self.name, reset_type)
        self.http.call("POST", target, f"reset {reset_type}", json={"ResetType": reset_type})

    def _pick(self, action: PowerAction, allowed: tuple[str, ...]) -> str | None:
        return next((v for v in quirks.RESET_PREFERENCES[action] if v in allowed), None)

    def set_power(self, action: PowerAction) -> bool:
        """Carry out `action`; False when nothing was sent (already in that state)."""
        system = self._system()
        state = _POWER_STATES.get(system.get("PowerState") or "", PowerState.UNKNOWN)
        target, allowed = self._reset_target_and_allowed(system)

        if state is PowerState.OFF and action in (PowerAction.RESET, PowerAction.CYCLE):
            # Ironic: reboot of a machine that is off = power on. iLO 5 answers a reset while Off
            # with 400 InvalidOperationForSystemState, so never send one.
            action = PowerAction.ON
        if (action is PowerAction.ON and state is PowerState.ON) or (
            action in (PowerAction.OFF, PowerAction.GRACEFUL_OFF) and state is PowerState.OFF
        ):
            log.info("%s: already %s", self.name, state.value)
            return False

        reset_type = self._pick(action, allowed)
        if action is PowerAction.CYCLE:
            if reset_type:
                try:
                    self._reset(target, reset_type)
                    return True
                except BmcError as exc:
                    if exc.status not in quirks.RESET_NOT_IMPLEMENTED_STATUS:
                        raise
                    log.info("%s: %s refused (%s); ForceOff then On instead", self.name, reset_type, exc)
            self._off_then_on(target, allowed)
            return True
        if action is PowerAction.RESET and quirks.reset_as_off_on(system.get("Manufacturer")):
            self._off_then_on(target, allowed)
            return True
        if reset_type is None:
            raise Unsupported(f"no ResetType for {action.value} among {', '.join(allowed)}")
        self._reset(target, reset_type)
        return True

    def _off_then_on(self, target: str, allowed: tuple[str, ...]) -> None:
        """ForceOff, wait for Off (at most `power_timeout`: --wait-timeout with --wait, else
        OFF_SETTLE_WITHOUT_WAIT), then On. Once ForceOff went out, On is always attempted, and an
        On that fails says the machine may be left OFF: a cycle never ends silently off.

        Lenovo XCC: ForceRestart can hang some models; sushy-emulator answers PowerCycle 501."""
        off, on = self._pick(PowerAction.OFF, allowed), self._pick(PowerAction.ON, allowed)
        if not off or not on:
            raise Unsupported(f"cannot power-cycle with ResetTypes {', '.join(allowed)}")
        self._reset(target, off)
        settle_error: BmcError | None = None
        try:
            self.wait_power(PowerState.OFF, self.power_timeout)
        except BmcError as exc:
            settle_error = exc
            log.warning("%s: %s; sending %s anyway", self.name, exc, on)
        try:
            self._reset(target, on)
        except BmcError as exc:
            raise BmcError(
                f"power cycle: {off} was sent but {on} failed ({exc}); the machine may be left OFF",
                message_id=exc.message_id,
                bmc_message=exc.bmc_message,
                status=exc.status,
                fix="power it on: provision power on TARGET",
            ) from None
        if settle_error is not None:
            raise BmcError(
                f"power cycle: the power state did not read Off after {off} ({settle_error}); "
                f"{on} was sent anyway",
                fix="check the machine with: provision power status TARGET",
            )

    def wait_power(self, want: PowerState, timeout: float) -> PowerState:
        """Poll PowerState until it reads `want` (BMCs take 1-30 s, sushy-emulator 1-11 s)."""
        return poll_power(self.name, self.power_state, want, timeout, self.poll_interval, self._sleep)

    # --- boot ---------------------------------------------------------------------------------------

    def boot_once(
        self, device: BootDevice, mode: BootMode | None = None, url: str | None = None
    ) -> BootResult:
        system, etag = self.http.get_with_etag(self.system_path)
        boot = system.get("Boot") or {}
        allowed = boot.get("BootSourceOverrideTarget@Redfish.AllowableValues")
        choices = quirks.BOOT_TARGETS[device]
        target = next((t for t in choices if allowed is None or t in allowed), None)
        if target is None:
            raise Unsupported(
                f"boot device {device.value} not offered (BMC allows {', '.join(allowed or [])})"
            )
        full = quirks.requires_full_boot_request(system.get("Manufacturer"))
        body = quirks.boot_override_body(target, mode, url, current=boot, full=full)
        what = f"set one-time boot to {target}"
        settings = quirks.settings_path(system)
        notes: list[str] = []
        try:
            try:
                self.http.patch(self.system_path, body, what, etag=etag)
            except BmcError as exc:
                refused = quirks.mode_refused(exc.message_id, exc.bmc_message)
                if "BootSourceOverrideMode" not in body["Boot"] or not refused:
                    raise
                del body["Boot"]["BootSourceOverrideMode"]
                notes.append(
                    f"BMC refused BootSourceOverrideMode ({exc.message_id}); the BIOS keeps its mode"
                )
                log.info("%s: %s", self.name, notes[-1])
                self.http.patch(self.system_path, body, what)
        except BmcError as exc:
            if settings and quirks.needs_settings_fallback(exc.message_id):
                log.info("%s: live Boot refused (%s); writing %s", self.name, exc.message_id, settings)
                return self._boot_via_settings(settings, body, device, mode, what)
            raise
        missing = quirks.boot_applied(body, self._system())
        hard = [k for k in missing if k not in quirks.SOFT_READBACK_KEYS]
        if hard:
            if settings:
                log.info(
                    "%s: PATCH accepted, %s not applied; writing %s", self.name, ", ".join(hard), settings
                )
                return self._boot_via_settings(settings, body, device, mode, what)
            raise BmcError(
                f"{what}: the BMC accepted the change but reads back without {', '.join(hard)}",
                fix="this firmware ignores the boot override; set the boot order in its web UI or update it",
            )
        warnings: list[str] = []
        for key in missing:
            value = self._soft_value(key)
            notes.append(f"BMC reports {key}={value!r} after the change")
            if key == "BootSourceOverrideEnabled" and value == "Continuous":
                # sushy-emulator (libvirt) keeps Continuous whatever is sent: the override then
                # applies to every boot, not the next one only (docs/bmc.md quirks table).
                warnings.append(
                    f"the BMC keeps the boot override Continuous: every boot goes to {target} "
                    "until the override is changed (e.g. provision boot TARGET --once disk)"
                )
        return BootResult(
            device=device, mode=mode, applied=True, notes=tuple(notes), warnings=tuple(warnings)
        )

    def _soft_value(self, key: str) -> object:
        return (self._system().get("Boot") or {}).get(key)

    def _boot_via_settings(
        self, settings: str, body: dict, device: BootDevice, mode: BootMode | None, what: str
    ) -> BootResult:
        self.http.patch(settings, body, what + " (Settings object)")
        missing = quirks.boot_applied(body, self.http.get(settings, "read the Settings object"))
        if [k for k in missing if k not in quirks.SOFT_READBACK_KEYS]:
            raise BmcError(f"{what}: neither the system nor its Settings object kept {', '.join(missing)}")
        return BootResult(
            device=device,
            mode=mode,
            applied=False,
            pending=True,
            notes=(f"written to {settings}; applies at the next reset",),
        )

    # --- identity -----------------------------------------------------------------------------------

    def identity(self) -> Identity:
        system = self._system()
        nics: list[Nic] = []
        eth = (system.get("EthernetInterfaces") or {}).get("@odata.id")
        if eth:
            for member in self.http.get(eth, "list EthernetInterfaces").get("Members") or []:
                path = member.get("@odata.id")
                if not path:
                    continue
                nic = self.http.get(path, "read an EthernetInterface")
                mac = nic.get("MACAddress") or nic.get("PermanentMACAddress")
                if mac:
                    nics.append(Nic(name=nic.get("Id") or path.rsplit("/", 1)[-1], mac=mac.lower()))
        manufacturer, model, serial = (
            _text(system.get("Manufacturer")),
            _text(system.get("Model")),
            _text(system.get("SerialNumber")),
        )
        if not (manufacturer and model and serial):
            # Some BMCs leave the System's SerialNumber/Model empty and keep them on the
            # Chassis the system lives in (Links.Chassis; DSP2046 ComputerSystem/Chassis).
            chassis = self._chassis(system)
            manufacturer = manufacturer or _text(chassis.get("Manufacturer"))
            model = model or _text(chassis.get("Model"))
            serial = serial or _text(chassis.get("SerialNumber"))
        return Identity(
            manufacturer=manufacturer,
            model=model,
            serial=serial,
            bios_version=system.get("BiosVersion"),
            uuid=system.get("UUID"),
            power_state=_POWER_STATES.get(system.get("PowerState") or "", PowerState.UNKNOWN),
            nics=tuple(nics),
            system_path=self.system_path,
        )

    def _chassis(self, system: dict) -> dict:
        """The first chassis the system links to, {} when none or unreadable (identity is best
        effort: a missing serial is not worth failing `bmc info`)."""
        for link in (system.get("Links") or {}).get("Chassis") or []:
            path = link.get("@odata.id") if isinstance(link, dict) else None
            if path:
                try:
                    return self.http.get(path, "read the chassis")
                except BmcError as exc:
                    log.info("%s: chassis %s not readable: %s", self.name, path, exc)
                    return {}
        return {}

    # --- virtual media ------------------------------------------------------------------------------

    def _media_slot(self) -> dict:
        """A CD/DVD slot under Systems/{id}/VirtualMedia (newer) or Managers/{id}/VirtualMedia
        (iLO, Supermicro, older iDRAC)."""
        system = self._system()
        collections = []
        if (system.get("VirtualMedia") or {}).get("@odata.id"):
            collections.append(system["VirtualMedia"]["@odata.id"])
        for mgr in (system.get("Links") or {}).get("ManagedBy") or []:
            manager = self.http.get(mgr["@odata.id"], "read the manager")
            if (manager.get("VirtualMedia") or {}).get("@odata.id"):
                collections.append(manager["VirtualMedia"]["@odata.id"])
        for coll in collections:
            for member in self.http.get(coll, "list VirtualMedia").get("Members") or []:
                slot = self.http.get(member["@odata.id"], "read a VirtualMedia slot")
                if any(t in ("CD", "DVD") for t in slot.get("MediaTypes") or []):
                    return slot
        raise Unsupported("no CD/DVD virtual media slot")

    def insert_media(self, image_url: str) -> None:
        slot = self._media_slot()
        action = (slot.get("Actions") or {}).get("#VirtualMedia.InsertMedia") or {}
        if not action.get("target"):
            raise Unsupported(f"virtual media slot {slot.get('@odata.id')} has no InsertMedia action")
        what = f"insert {image_url}"
        try:
            self.http.call(
                "POST", action["target"], what, json=quirks.insert_media_body(image_url, minimal=False)
            )
        except BmcError as exc:
            if exc.status != 400:
                raise
            # Supermicro X11/X12 rejects Inserted/WriteProtected in InsertMedia.
            self.http.call(
                "POST", action["target"], what, json=quirks.insert_media_body(image_url, minimal=True)
            )

    def eject_media(self) -> None:
        slot = self._media_slot()
        action = (slot.get("Actions") or {}).get("#VirtualMedia.EjectMedia") or {}
        if not action.get("target"):
            raise Unsupported(f"virtual media slot {slot.get('@odata.id')} has no EjectMedia action")
        self.http.call("POST", action["target"], "eject virtual media", json={})
