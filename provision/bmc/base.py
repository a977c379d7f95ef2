"""The BMC driver interface: our own enums, dataclasses and errors (Ironic style).

Drivers (Redfish, IPMI) speak these types only; library errors (requests, pyghmi) are translated
into the errors below once, at the driver boundary, so the CLI and rollouts never see a
`requests.ConnectionError` or a pyghmi `IpmiException`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from provision.errors import EXIT_INPUT, ProvisionError


class PowerState(enum.Enum):
    ON = "on"
    OFF = "off"
    POWERING_ON = "powering-on"
    POWERING_OFF = "powering-off"
    UNKNOWN = "unknown"


class PowerAction(enum.Enum):
    ON = "on"
    OFF = "off"  # hard off (ForceOff)
    GRACEFUL_OFF = "graceful-off"  # ACPI shutdown request
    CYCLE = "cycle"  # off, then on
    RESET = "reset"  # warm reset when on; power on when off (Ironic's reboot)


# How long a power cycle done as off-then-on waits for Off when --wait was not given (with
# --wait: --wait-timeout). ForceOff settles in 1-10 s on BMCs, up to 11 s on sushy-emulator.
OFF_SETTLE_WITHOUT_WAIT = 60.0

# What the machine's power state should be once an action has settled (for --wait).
SETTLED_STATE = {
    PowerAction.ON: PowerState.ON,
    PowerAction.OFF: PowerState.OFF,
    PowerAction.GRACEFUL_OFF: PowerState.OFF,
    PowerAction.CYCLE: PowerState.ON,
    PowerAction.RESET: PowerState.ON,
}


class BootDevice(enum.Enum):
    PXE = "pxe"
    HTTP = "http"  # UEFI HTTP boot, optionally with a URL
    DISK = "disk"
    CD = "cd"


class BootMode(enum.Enum):
    UEFI = "uefi"
    LEGACY = "legacy"


@dataclass(frozen=True)
class Nic:
    name: str
    mac: str


@dataclass(frozen=True)
class Identity:
    """What a BMC says about its machine; enough to fill an inventory entry."""

    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    bios_version: str | None = None
    uuid: str | None = None
    power_state: PowerState = PowerState.UNKNOWN
    nics: tuple[Nic, ...] = ()
    system_path: str | None = None

    def to_json(self) -> dict:
        return {
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "bios_version": self.bios_version,
            "uuid": self.uuid,
            "power_state": self.power_state.value,
            "nics": [{"name": n.name, "mac": n.mac} for n in self.nics],
            "system": self.system_path,
        }


@dataclass(frozen=True)
class BootResult:
    """What a boot-once request achieved: where it was written and what the BMC reads back."""

    device: BootDevice
    mode: BootMode | None
    applied: bool  # read back as set on the live resource
    pending: bool = False  # written to a @Redfish.Settings object: applies at next reset
    notes: tuple[str, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)  # shown on stderr, not only in --json


# --- errors ------------------------------------------------------------------------------------


class BmcError(ProvisionError):
    """The BMC refused or failed (exit 1). Carries the BMC's own MessageId and Message when it sent them."""

    def __init__(
        self,
        message: str,
        *,
        message_id: str | None = None,
        bmc_message: str | None = None,
        status: int | None = None,
        fix: str | None = None,
    ):
        super().__init__(message, fix)
        self.message_id = message_id
        self.bmc_message = bmc_message
        self.status = status

    def __str__(self) -> str:
        text = self.message
        if self.message_id or self.bmc_message:
            text += f" [{self.message_id or '?'}: {self.bmc_message or ''}]".rstrip()
        return text


class AuthError(BmcError):
    """Credentials refused (HTTP 401/403, IPMI RAKP failure)."""


class Forbidden(AuthError):
    """HTTP 403: the credentials were accepted, the operation is not allowed for that account."""


class Unreachable(BmcError):
    """No connection: refused, no route, DNS, TLS verification failure."""


class Timeout(BmcError):
    """The BMC accepted the connection but did not answer in time, or a state never settled."""


class Unsupported(BmcError):
    """This driver or this BMC cannot do the requested operation."""


class SystemSelectionError(BmcError):
    """The BMC manages several systems and none was selected, or not the one named (exit 2)."""

    exit_code = EXIT_INPUT


# --- the driver protocol -----------------------------------------------------------------------


def poll_power(
    name: str,
    read: Callable[[], PowerState],
    want: PowerState,
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> PowerState:
    """Read the power state until it is `want`; Timeout after `timeout` seconds (every driver's wait)."""
    deadline = time.monotonic() + timeout
    while True:
        state = read()
        if state is want:
            return state
        if time.monotonic() >= deadline:
            raise Timeout(f"power state still {state.value} after {timeout:g} s (wanted {want.value})")
        sleep(interval)


@runtime_checkable
class Driver(Protocol):
    """One BMC. Use as a context manager: `close()` logs out (Redfish session DELETE)."""

    name: str

    def power_state(self) -> PowerState: ...

    def set_power(self, action: PowerAction) -> bool:
        """Carry out `action`; False when nothing was sent (already in the wanted state)."""
        ...

    def wait_power(self, want: PowerState, timeout: float) -> PowerState:
        """Poll until the power state reads `want`; Timeout after `timeout` seconds."""
        ...

    def boot_once(
        self, device: BootDevice, mode: BootMode | None = None, url: str | None = None
    ) -> BootResult: ...

    def identity(self) -> Identity: ...

    def insert_media(self, image_url: str) -> None: ...

    def eject_media(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Driver: ...

    def __exit__(self, *exc: object) -> None: ...
