"""The arming contract: what the rollout engine asks of a driver, and what a driver answers.

A driver takes one device from its running NOS (or from powered off) into the install: after
`arm` returns, the device is on its way to ONIE (or to a network boot) and the engine waits for
the installer's reports, scoped to this rollout's install id. `current_version` lets the engine
skip a device already at the target (idempotent rollouts). docs/rollout.md "Drivers".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from provision.config.inventory import Device
from provision.errors import ProvisionError


@dataclass(frozen=True)
class ArmRequest:
    device: Device
    rollout_id: str
    install_id: str
    target_version: str | None
    # The plan's driver options for this device (plan defaults merged with per-device ones).
    options: Mapping[str, Any] = field(default_factory=dict)


class ArmingError(ProvisionError):
    """A device could not be armed: the message names the device, the step and what was seen."""


class Driver(Protocol):
    name: str
    # Calling `arm` again for the same arming does no harm (ssh: the same ONIE mode set again,
    # or no answer from a switch already in ONIE; manual: the text again), so an engine restarted
    # after a kill -9 in the middle of `arm` may call it again. False (bmc, qemu): a second call
    # would power cycle / reset a device that may be installing. Read with
    # getattr(driver, "rearm_safe", False): an optional attribute, not part of the Protocol, so
    # drivers without it (a test's stand-in) still conform.

    async def arm(self, req: ArmRequest) -> str:
        """Arm the device for an install; return a short note of what was done."""
        ...

    async def current_version(self, req: ArmRequest) -> str | None:
        """The NOS version the device runs now, None when it cannot be told."""
        ...


__all__ = ["ArmRequest", "ArmingError", "Driver"]
