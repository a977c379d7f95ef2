"""The IPMI driver (pyghmi, IPMI 2.0 RMCP+ over UDP 623) for machines without Redfish: power and
boot device. Identity is limited to what IPMI reports (no NIC list); virtual media is unsupported.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pyghmi import exceptions as pyghmi_exc

from provision.bmc.base import (
    AuthError,
    BmcError,
    BootDevice,
    BootMode,
    BootResult,
    Identity,
    PowerAction,
    PowerState,
    Timeout,
    Unreachable,
    Unsupported,
    poll_power,
)
from provision.bmc.credentials import Credentials

log = logging.getLogger(__name__)

IPMI_PORT = 623  # RMCP, IPMI v2.0 §13.1

# pyghmi power verbs (Chassis Control command, IPMI v2.0 §28.3).
_POWER_VERBS = {
    PowerAction.ON: "on",
    PowerAction.OFF: "off",
    PowerAction.GRACEFUL_OFF: "shutdown",  # soft-off via ACPI
    PowerAction.CYCLE: "cycle",  # pyghmi maps to chassis control 02h, power cycle
    PowerAction.RESET: "reset",
}

# Boot flags device selector (IPMI v2.0 §28.13, parameter 5) in pyghmi's names.
_BOOT_DEVICES = {
    BootDevice.PXE: "network",
    BootDevice.DISK: "hd",
    BootDevice.CD: "optical",
}

_POWER_STATES = {"on": PowerState.ON, "off": PowerState.OFF}

# Get System Boot Options, parameter 5 (boot flags), data 2 bits 5:2: the device selector
# (IPMI v2.0 table 28-14).
_BOOT_SELECTOR = {BootDevice.PXE: 0x1, BootDevice.DISK: 0x2, BootDevice.CD: 0x5}
_GET_SYSTEM_BOOT_OPTIONS = 0x09  # netfn chassis (0x00), IPMI v2.0 §28.13
_BOOT_FLAGS_PARAM = 5
_BOOT_FLAGS_VALID = 0x80


def _translate(name: str, exc: Exception, what: str) -> BmcError:
    """pyghmi raises IpmiException with a text (and sometimes a completion code) for everything."""
    text = str(exc)
    low = text.lower()
    if not exc.args or exc.args[0] is None:
        # pyghmi gives up on an unanswered session setup with IpmiException(None).
        return Timeout(
            f"{what}: no IPMI answer from the BMC",
            fix="check the address/port and that IPMI over LAN is enabled on the BMC",
        )
    if "unauthorized name" in low or "password" in low or "rakp" in low or "incorrect" in low:
        return AuthError(f"{what}: IPMI login refused ({text})", fix="check the username and password")
    if "timeout" in low or "timed out" in low or "no response" in low or "session no longer connected" in low:
        return Timeout(
            f"{what}: the BMC did not answer over IPMI ({text})",
            fix="check the address/port and that IPMI over LAN is enabled on the BMC",
        )
    return BmcError(f"{what}: {text}", bmc_message=text)


class IpmiDriver:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        credentials: Credentials,
        *,
        power_timeout: float = 300.0,
        timeout: float = 60.0,
        poll_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = name
        self.timeout = timeout
        self.host = host
        self.port = port or IPMI_PORT
        self._creds = credentials
        self.power_timeout = power_timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._cmd = None

    def __enter__(self) -> IpmiDriver:
        # pyghmi.ipmi.command costs ~80 ms at import, a quarter of `provision --help`, for a protocol
        # most runs never speak; pyghmi.exceptions (module level) is light.
        # optional heavy dependency: pyghmi (IPMI only)
        from pyghmi.ipmi import command

        try:
            socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise Unreachable(f"cannot resolve {self.host}: {exc.strerror}") from None
        try:
            self._cmd = self._bounded(
                "IPMI session",
                lambda: command.Command(
                    bmc=self.host,
                    userid=self._creds.username or "",
                    password=self._creds.password.reveal() if self._creds.password else "",
                    port=self.port,
                    # One short run per CLI call: no background keepalive thread holding the session.
                    keepalive=False,
                ),
            )
        except pyghmi_exc.IpmiException as exc:
            raise _translate(self.name, exc, "IPMI session") from None
        return self

    def _bounded(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one pyghmi exchange with `timeout` as its overall bound. pyghmi retries on its own
        schedule (0.5-1 s first timeout, doubling, several rounds for a login: 5.4 s under
        `--timeout 3` before), and has no deadline argument; the exchange runs in a daemon thread
        and is abandoned when the bound is spent (pyghmi gives up on it by itself later)."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name=f"ipmi-{self.name}", daemon=True).start()
        if not done.wait(self.timeout):
            raise Timeout(
                f"{what}: no IPMI answer within {self.timeout:g} s",
                fix="check the address/port and that IPMI over LAN is enabled on the BMC; "
                "a slow BMC may need a longer --timeout (inventory: timeout)",
            )
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        cmd, self._cmd = self._cmd, None
        if cmd is not None:
            try:
                # Bounded like every exchange: a BMC that hangs must not hold the exit either.
                self._bounded("IPMI logout", cmd.ipmi_session.logout)
            except Exception as exc:  # closing must not hide the real outcome
                log.debug("%s: IPMI logout: %s", self.name, exc)

    def _call(self, what: str, fn: Callable, *args, **kw):
        if self._cmd is None:
            raise BmcError("not connected (use the driver as a context manager)")
        cmd = self._cmd
        try:
            return self._bounded(what, lambda: fn(cmd, *args, **kw))
        except pyghmi_exc.IpmiException as exc:
            raise _translate(self.name, exc, what) from None

    def power_state(self) -> PowerState:
        result = self._call("get power", lambda c: c.get_power())
        return _POWER_STATES.get(str(result.get("powerstate")), PowerState.UNKNOWN)

    def set_power(self, action: PowerAction) -> bool:
        """Carry out `action`; False when nothing was sent (already in that state)."""
        state = self.power_state()
        if state is PowerState.OFF and action in (PowerAction.RESET, PowerAction.CYCLE):
            # Chassis control cycle/reset on an off chassis is "not in this state" on most BMCs.
            action = PowerAction.ON
        if (action is PowerAction.ON and state is PowerState.ON) or (
            action in (PowerAction.OFF, PowerAction.GRACEFUL_OFF) and state is PowerState.OFF
        ):
            return False
        verb = _POWER_VERBS[action]
        if action is PowerAction.CYCLE:
            # pyghmi has no "cycle" verb; chassis control 02h is power cycle (IPMI v2.0 §28.3).
            self._call("power cycle", lambda c: c.raw_command(netfn=0x00, command=0x02, data=(0x02,)))
            return True
        self._call(f"power {verb}", lambda c: c.set_power(verb, wait=False))
        return True

    def wait_power(self, want: PowerState, timeout: float) -> PowerState:
        return poll_power(self.name, self.power_state, want, timeout, self.poll_interval, self._sleep)

    def boot_once(
        self, device: BootDevice, mode: BootMode | None = None, url: str | None = None
    ) -> BootResult:
        if device not in _BOOT_DEVICES:
            raise Unsupported(f"IPMI has no {device.value} boot device (use Redfish)")
        if url:
            raise Unsupported("IPMI cannot pass a boot URL")
        uefi = None if mode is None else mode is BootMode.UEFI
        self._call(
            "set boot device", lambda c: c.set_bootdev(_BOOT_DEVICES[device], persist=False, uefiboot=uefi)
        )
        # Read back the raw flags rather than pyghmi's get_bootdev(): OpenIPMI's ipmi_sim 2.0.x
        # stores the flags without the "valid" bit, which get_bootdev() reports as "default"
        # although the device selector was kept.
        resp = self._call(
            "read boot flags",
            lambda c: c.raw_command(
                netfn=0x00, command=_GET_SYSTEM_BOOT_OPTIONS, data=(_BOOT_FLAGS_PARAM, 0, 0)
            ),
        )
        data = bytes(resp.get("data") or b"")
        if len(data) < 4:
            raise BmcError(f"short boot flags answer {data.hex()}")
        selector = (data[3] >> 2) & 0x0F
        if selector != _BOOT_SELECTOR[device]:
            raise BmcError(f"boot device reads back as selector {selector:#x}, not {device.value}")
        notes = (
            ()
            if data[2] & _BOOT_FLAGS_VALID
            else ("BMC keeps the device but clears the boot-flags valid bit",)
        )
        return BootResult(device=device, mode=mode, applied=True, notes=notes)

    def identity(self) -> Identity:
        state = self.power_state()
        info: dict = {}
        try:
            info = self._call("read FRU inventory", lambda c: c.get_inventory_of_component("System")) or {}
        except BmcError as exc:
            log.info("%s: no FRU inventory: %s", self.name, exc)
        return Identity(
            manufacturer=info.get("Manufacturer") or info.get("Board manufacturer"),
            model=info.get("Product name") or info.get("Board product name"),
            serial=info.get("Serial Number") or info.get("Board serial number"),
            power_state=state,
        )

    def insert_media(self, image_url: str) -> None:
        raise Unsupported("virtual media needs Redfish")

    def eject_media(self) -> None:
        raise Unsupported("virtual media needs Redfish")
