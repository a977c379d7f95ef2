"""The `bmc` arming driver: boot once from the network through the device's BMC, then power cycle.

For servers, and switches that have a BMC (`bmc:` in the inventory). Reuses provision.bmc: the
target is built from the device's `bmc:` as `provision power/boot` build it, and the calls run
in a worker thread (BMC calls block for seconds). Options: `boot: pxe|http` (default pxe),
`mode: uefi|legacy`, `url` (HTTP boot URI), `power: reset|cycle` (default reset: warm reset when
on, power on when off). A BMC cannot tell the NOS version: current_version is None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from provision.bmc import BmcTarget, BootDevice, BootMode, PowerAction, PowerState, make_target
from provision.bmc.base import BmcError, Driver
from provision.bmc.journal import operation_event
from provision.bmc.runner import run_one
from provision.errors import EXIT_INPUT
from provision.rollout.drivers.base import ArmingError, ArmRequest
from pxe.policy import Event


def _enum(kind: type, value: Any, option: str, name: str):
    try:
        return kind(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in kind)  # type: ignore[attr-defined]
        raise ArmingError(
            f"{name}: driver option {option}={value!r} is not one of {allowed}", exit_code=EXIT_INPUT
        ) from None


class BmcArmDriver:
    name = "bmc"
    rearm_safe = False  # base.Driver

    def __init__(self, options: Mapping[str, Any]):
        self.options = dict(options)
        # Set by the engine: where each BMC operation is recorded (a bmc.operation event in the
        # rollout's store, which /metrics reads: docs/observability.md), as `provision power` does.
        self.journal: Callable[[Event], None] | None = None

    def _target(self, req: ArmRequest) -> BmcTarget:
        dev = req.device
        b = dev.bmc
        if b is None:
            raise ArmingError(
                f"{dev.name}: no `bmc:` in the inventory for this device",
                fix="add bmc: {url: redfish://...} to it, or arm it with another driver (ssh, manual)",
                exit_code=EXIT_INPUT,
            )
        try:
            return make_target(
                dev.name,
                b.url,
                username=b.username,
                username_env=b.username_env,
                password_env=b.password_env,
                password_file=b.password_file,
                insecure=b.insecure,
                ca_cert=b.ca_cert,
                fingerprint=b.fingerprint,
                timeout=b.timeout,
                connect_timeout=b.connect_timeout,
                system=b.system,
            )
        except BmcError as exc:
            raise ArmingError(exc.message, fix=exc.fix, exit_code=exc.exit_code) from None

    async def arm(self, req: ArmRequest) -> str:
        opts = {**self.options, **req.options}
        name = req.device.name
        device = _enum(BootDevice, opts.get("boot", "pxe"), "boot", name)
        if device not in (BootDevice.PXE, BootDevice.HTTP):
            raise ArmingError(f"{name}: driver option boot must be pxe or http", exit_code=EXIT_INPUT)
        mode = _enum(BootMode, opts["mode"], "mode", name) if opts.get("mode") else None
        power = str(opts.get("power", "reset"))
        if power not in ("reset", "cycle"):
            raise ArmingError(f"{name}: driver option power must be reset or cycle", exit_code=EXIT_INPUT)
        url = opts.get("url")
        target = self._target(req)

        def op(driver: Driver, _t: BmcTarget) -> tuple[str, dict[str, Any]]:
            boot = driver.boot_once(device, mode, str(url) if url else None)
            # what the BMC did not do as asked (e.g. an override kept Continuous) stays visible
            said = "".join(f"; {w}" for w in boot.warnings)
            state = driver.power_state()
            if state is PowerState.OFF:
                driver.set_power(PowerAction.ON)
                return f"boot once {device.value}, powered on (was off){said}", {}
            driver.set_power(PowerAction.RESET if power == "reset" else PowerAction.CYCLE)
            return f"boot once {device.value}, power {power}{said}", {}

        result = await asyncio.to_thread(run_one, target, op)
        if self.journal is not None:
            self.journal(operation_event("rollout-arm", target, result, req.device.mac))
        if not result.ok:
            raise ArmingError(f"{name}: BMC {result.address}: {result.error}", fix=result.fix)
        return f"{result.summary} (BMC {result.address})"

    async def current_version(self, req: ArmRequest) -> str | None:
        return None


__all__ = ["BmcArmDriver"]
