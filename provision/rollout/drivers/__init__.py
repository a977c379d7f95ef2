"""Arming drivers, by the name a rollout plan gives them (docs/rollout.md "Drivers").

`driver_for(name, options)` is the one way the engine gets a driver; the contract is in base.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from provision.errors import EXIT_INPUT
from provision.rollout.drivers.base import ArmingError, ArmRequest, Driver
from provision.rollout.drivers.bmc import BmcArmDriver
from provision.rollout.drivers.manual import ManualDriver
from provision.rollout.drivers.qemu import QemuDriver
from provision.rollout.drivers.ssh import SshDriver

# name -> factory(options)
DRIVERS: dict[str, Callable[[Mapping[str, Any]], Driver]] = {
    "ssh": SshDriver,
    "bmc": BmcArmDriver,
    "qemu": QemuDriver,
    "manual": ManualDriver,
}


def driver_for(name: str, options: Mapping[str, Any]) -> Driver:
    """The driver `name` configured with the plan's `options` (ArmingError, exit 2, if unknown)."""
    factory = DRIVERS.get(name)
    if factory is None:
        known = ", ".join(sorted(DRIVERS)) or "none yet"
        raise ArmingError(
            f"unknown arming driver {name!r}",
            fix=f"use one of: {known} (docs/rollout.md, Drivers)",
            exit_code=EXIT_INPUT,
        )
    return factory(options)


__all__ = ["DRIVERS", "ArmRequest", "ArmingError", "Driver", "driver_for"]
