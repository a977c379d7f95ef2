"""BMC drivers (Redfish, IPMI) behind one small interface; see base.py."""

from provision.bmc.base import (
    AuthError,
    BmcError,
    BootDevice,
    BootMode,
    BootResult,
    Driver,
    Forbidden,
    Identity,
    Nic,
    PowerAction,
    PowerState,
    SystemSelectionError,
    Timeout,
    Unreachable,
    Unsupported,
)
from provision.bmc.target import BmcTarget, TargetError, make_target, open_driver

__all__ = [
    "AuthError",
    "BmcError",
    "BmcTarget",
    "BootDevice",
    "BootMode",
    "BootResult",
    "Driver",
    "Forbidden",
    "Identity",
    "Nic",
    "PowerAction",
    "PowerState",
    "SystemSelectionError",
    "TargetError",
    "Timeout",
    "Unreachable",
    "Unsupported",
    "make_target",
    "open_driver",
]
