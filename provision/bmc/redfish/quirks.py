"""Redfish vendor quirks as named tables and predicates, each with where it was seen (Ironic
style). The driver (redfish.py) stays generic and asks these."""

from __future__ import annotations

import re

from provision.bmc.base import BootDevice, BootMode, PowerAction

# --- errors -------------------------------------------------------------------------------------


def extended_info(body: dict) -> tuple[str | None, str | None]:
    """First MessageId/Message of a Redfish error (DSP0266 §9.6 'Error responses'); falls back
    to error.code/error.message, which some BMCs fill and leave ExtendedInfo empty."""
    error = body.get("error")
    err = error if isinstance(error, dict) else body
    infos = err.get("@Message.ExtendedInfo") or []
    if isinstance(infos, list):
        for info in infos:
            if isinstance(info, dict) and (info.get("MessageId") or info.get("Message")):
                return info.get("MessageId"), info.get("Message")
    if isinstance(err, dict) and (err.get("code") or err.get("message")):
        return err.get("code"), err.get("message")
    return None, None


def error_messages(body: dict) -> tuple[str | None, str | None]:
    """The first MessageId and every Message of a Redfish error, joined with "; " (DSP0266
    "Error responses"): the error's @Message.ExtendedInfo, the body's own and property-level
    `<Property>@Message.ExtendedInfo` annotations; else error.code/error.message. The first
    entry alone is often a generic "see ExtendedInfo" while the next says what failed."""
    error = body.get("error")
    err = error if isinstance(error, dict) else {}
    infos: list = []
    for holder in (err, body):
        for key, value in holder.items():
            if key.endswith("@Message.ExtendedInfo") and isinstance(value, list):
                infos += value
    first_id: str | None = None
    messages: list[str] = []
    for info in infos:
        if not isinstance(info, dict):
            continue
        mid, msg = info.get("MessageId"), info.get("Message")
        if mid and ".Success" in mid:
            continue
        first_id = first_id or mid
        text = msg or mid
        if text and text not in messages:
            messages.append(text)
    if messages:
        return first_id, "; ".join(messages)
    if err.get("code") or err.get("message"):
        return err.get("code"), err.get("message")
    return None, None


def is_idrac_busy(body: dict) -> bool:
    """Dell iDRAC 9 (4.x-6.x firmware): SYS518 'iDRAC is not ready. The configuration values
    cannot be accessed. Please retry after a few minutes.' right after a job clear or reset."""
    mid, _ = extended_info(body)
    return bool(mid and "SYS518" in mid)


# --- ETags --------------------------------------------------------------------------------------

_WEAK = re.compile(r'^W/(".*")$')


def strong_etag(etag: str | None) -> str | None:
    """HPE iLO 5 sends weak ETags (W/"...") yet refuses them in If-Match: strip the W/."""
    if not etag:
        return None
    match = _WEAK.match(etag)
    return match.group(1) if match else etag


# --- sessions and tasks ---------------------------------------------------------------------------


def sessions_path(root: dict) -> str | None:
    """Where to POST a session: Links.Sessions (DSP0266 §13.3.4), else SessionService/Sessions
    when the root links a SessionService. None: no sessions (sushy-emulator) → HTTP Basic."""
    link = (root.get("Links") or {}).get("Sessions") or {}
    if link.get("@odata.id"):
        return link["@odata.id"]
    svc = (root.get("SessionService") or {}).get("@odata.id")
    return svc.rstrip("/") + "/Sessions" if svc else None


TASK_RUNNING_STATES = frozenset(
    {"New", "Starting", "Running", "Pending", "Stopping", "Suspended", "Service", "Interrupted"}
)
TASK_FAILED_STATES = frozenset({"Exception", "Killed", "Cancelled"})


def task_message(task: dict) -> tuple[str | None, str | None]:
    for msg in task.get("Messages") or []:
        if isinstance(msg, dict) and (msg.get("MessageId") or msg.get("Message")):
            return msg.get("MessageId"), msg.get("Message")
    return None, None


# --- power ----------------------------------------------------------------------------------------

# Preferred ResetType values per action, first allowed wins. Dell iDRAC 14G lacks
# GracefulRestart; sushy-emulator answers PowerCycle with 501 although it lists it.
RESET_PREFERENCES: dict[PowerAction, tuple[str, ...]] = {
    PowerAction.ON: ("On", "ForceOn", "PushPowerButton"),
    PowerAction.OFF: ("ForceOff", "PushPowerButton"),
    PowerAction.GRACEFUL_OFF: ("GracefulShutdown", "PushPowerButton"),
    PowerAction.CYCLE: ("PowerCycle", "FullPowerCycle"),
    PowerAction.RESET: ("ForceRestart", "GracefulRestart"),
}

# When a BMC lists no allowed values at all, assume the common DMTF set.
DEFAULT_RESET_TYPES = ("On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle")

# MessageIds that mean "that ResetType is not implemented here" although it was advertised:
# sushy-emulator 2.x answers PowerCycle with 501 and Base.1.x ActionNotSupported.
RESET_NOT_IMPLEMENTED_STATUS = frozenset({400, 501})


# Lenovo XCC: ForceRestart can leave some models hung in POST (docs/bmc.md, seen by Ironic and
# Metal3 users); ForceOff, wait for Off, then On is slower but always completes.
VENDORS_RESET_AS_OFF_ON = ("lenovo",)


def reset_as_off_on(manufacturer: str | None) -> bool:
    return any(v in (manufacturer or "").lower() for v in VENDORS_RESET_AS_OFF_ON)


def allowed_reset_types(system: dict, action_info: dict | None) -> tuple[str, ...]:
    """ResetType@Redfish.AllowableValues on the action, else the ActionInfo's ResetType
    parameter (Supermicro X11/X12 only publish them through @Redfish.ActionInfo)."""
    action = (system.get("Actions") or {}).get("#ComputerSystem.Reset") or {}
    values = action.get("ResetType@Redfish.AllowableValues")
    if values:
        return tuple(values)
    for param in (action_info or {}).get("Parameters") or []:
        if param.get("Name") == "ResetType" and param.get("AllowableValues"):
            return tuple(param["AllowableValues"])
    return DEFAULT_RESET_TYPES


# --- boot -----------------------------------------------------------------------------------------

BOOT_TARGETS: dict[BootDevice, tuple[str, ...]] = {
    BootDevice.PXE: ("Pxe",),
    BootDevice.HTTP: ("UefiHttp",),
    BootDevice.DISK: ("Hdd",),
    # Dell iDRAC: `Cd` is the physical drive; virtual media is `UsbCd` on some firmware. Prefer
    # Cd (DMTF) and fall back to UsbCd when Cd is not allowed.
    BootDevice.CD: ("Cd", "UsbCd"),
}

BOOT_MODES = {BootMode.UEFI: "UEFI", BootMode.LEGACY: "Legacy"}

# Messages that mean "this property cannot be written here, use the Settings object":
# Dell iDRAC 10 answers PropertyNotWritable on /Systems/System.Embedded.1 Boot.
SETTINGS_FALLBACK_MESSAGES = ("PropertyNotWritable", "PropertyValueNotInList", "ActionNotSupported")


def needs_settings_fallback(message_id: str | None) -> bool:
    return any(m in (message_id or "") for m in SETTINGS_FALLBACK_MESSAGES)


# Supermicro X11/X12 reset the override unless the whole request (Target, Enabled and Mode) is
# sent every time, and may answer 200 without applying a partial one (Ironic's
# VENDORS_REQUIRING_FULL_BOOT_REQUEST).
VENDORS_REQUIRING_FULL_BOOT_REQUEST = ("supermicro",)

# Dell iDRAC 13G refuses BootSourceOverrideMode with SYS444 (and some firmware with
# PropertyNotWritable naming the property); the request then goes again without the mode.
MODE_REFUSED_MESSAGES = ("SYS444",)


def requires_full_boot_request(manufacturer: str | None) -> bool:
    return any(v in (manufacturer or "").lower() for v in VENDORS_REQUIRING_FULL_BOOT_REQUEST)


def mode_refused(message_id: str | None, bmc_message: str | None) -> bool:
    if message_id and any(m in message_id for m in MODE_REFUSED_MESSAGES):
        return True
    return bool(
        message_id and "PropertyNotWritable" in message_id and "BootSourceOverrideMode" in (bmc_message or "")
    )


def boot_override_body(
    target: str, mode: BootMode | None, url: str | None, *, current: dict, full: bool = False
) -> dict:
    """The Boot PATCH body. BootSourceOverrideMode only when asked (HPE iLO 5/6 and Dell 13G
    reject it) or when the vendor needs the full request (then the current mode is repeated).
    BootSourceOverrideEnabled is left out when it already reads Once: some BMCs reject setting
    it to its current value (Ironic: "unchanged Enabled"), except where the full request is
    required. HttpBootUri only with UefiHttp."""
    boot: dict = {"BootSourceOverrideTarget": target}
    if full or current.get("BootSourceOverrideEnabled") != "Once":
        boot["BootSourceOverrideEnabled"] = "Once"
    if mode is not None:
        boot["BootSourceOverrideMode"] = BOOT_MODES[mode]
    elif full and current.get("BootSourceOverrideMode"):
        boot["BootSourceOverrideMode"] = current["BootSourceOverrideMode"]
    if url:
        boot["HttpBootUri"] = url
    return {"Boot": boot}


def boot_applied(requested: dict, actual: dict) -> list[str]:
    """Which requested Boot properties did not stick (Supermicro answers 200 and changes nothing;
    sushy-emulator keeps Enabled at Continuous). Empty list: all applied."""
    want = requested["Boot"]
    have = actual.get("Boot") or {}
    return [k for k, v in want.items() if have.get(k) != v]


def settings_path(resource: dict) -> str | None:
    """@Redfish.Settings.SettingsObject: where to PATCH when the live resource refuses the change;
    pending until the next reset (Dell iDRAC, AMI `/Systems/Self/SD`)."""
    settings = resource.get("@Redfish.Settings") or {}
    return (settings.get("SettingsObject") or {}).get("@odata.id")


# --- virtual media ----------------------------------------------------------------------------------


# Supermicro X11/X12: InsertMedia rejects the Inserted and WriteProtected parameters.
def insert_media_body(image: str, *, minimal: bool) -> dict:
    if minimal:
        return {"Image": image}
    return {"Image": image, "Inserted": True, "WriteProtected": True}


# Read-back differences that are reported as a note, not a failure: sushy-emulator (and libvirt
# behind it) keeps BootSourceOverrideEnabled at "Continuous" whatever is sent; the target still
# applies and the next boot uses it.
SOFT_READBACK_KEYS = frozenset({"BootSourceOverrideEnabled"})
