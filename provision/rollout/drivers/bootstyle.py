"""How a switch is sent back to ONIE from its NOS: by GRUB (x86, and arm64 UEFI) or by U-Boot.

The style comes from the device's hardware profile (`firmware:` uboot -> U-Boot, bios/uefi ->
GRUB; provision/config/profiles.py), unless the plan's driver options say `boot_style:`. The
commands for each style are ONIE's documented way back (docs/rollout.md "Drivers"):

- GRUB: mount the ONIE-BOOT partition (by label), `onie-boot-mode -o install` (ONIE's tool on that
  partition writes onie_mode into ONIE's grubenv), `grub-reboot ONIE` (the NOS's GRUB boots the
  ONIE entry once: our installer's grub.cfg names it `ONIE`), reboot.
- U-Boot: `fw_setenv onie_boot_reason install` (ONIE's bootcmd runs check_boot_reason first and
  boots ONIE in install mode), reboot.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from provision.config.inventory import Device
from provision.config.profiles import ProfileNotFound, ProfileRegistry
from provision.errors import EXIT_INPUT
from provision.rollout.drivers.base import ArmingError

ONIE_BOOT_MOUNT = "/mnt/onie-boot"
ONIE_BOOT_MODE = f"{ONIE_BOOT_MOUNT}/onie/tools/bin/onie-boot-mode"
ONIE_GRUB_ENTRY = "ONIE"  # templates/installer/grub.cfg.j2: menuentry 'ONIE' --id ONIE


class BootStyle(enum.Enum):
    GRUB = "grub"
    UBOOT = "uboot"


# The steps before the reboot, one command each (so an error names the step that failed).
ARM_COMMANDS: dict[BootStyle, tuple[str, ...]] = {
    BootStyle.GRUB: (
        f"mkdir -p {ONIE_BOOT_MOUNT} && {{ mountpoint -q {ONIE_BOOT_MOUNT}"
        f" || mount LABEL=ONIE-BOOT {ONIE_BOOT_MOUNT}; }}",
        f"{ONIE_BOOT_MODE} -o install",
        f"grub-reboot {ONIE_GRUB_ENTRY}",
    ),
    BootStyle.UBOOT: ("fw_setenv onie_boot_reason install",),
}
REBOOT_COMMAND = "reboot"

# Where the running NOS's version is read (docs/rollout.md "Drivers"): our file first, then the
# release file our installer writes on the NOS boot partition (mounted at /boot by a NOS that
# mounts it), then os-release's VERSION_ID. The last word of the first line is the version.
VERSION_COMMAND = (
    # our installer writes boot/provision-release INSIDE the NOS boot partition: mounted at /boot
    # (or /host) that is /boot/boot/provision-release; the flat paths are for NOSes that copy it
    "for f in /etc/provision-nos-version /boot/boot/provision-release /host/boot/provision-release"
    " /boot/provision-release /host/provision-release; do"
    ' [ -r "$f" ] && { head -n 1 "$f"; exit 0; }; done;'
    ' [ -r /etc/os-release ] && . /etc/os-release && [ -n "${VERSION_ID:-}" ] && echo "$VERSION_ID"'
)

_registry: ProfileRegistry | None = None


def _profiles() -> ProfileRegistry:
    global _registry
    if _registry is None:
        _registry = ProfileRegistry()
    return _registry


def boot_style(device: Device, options: Mapping[str, Any]) -> BootStyle:
    """The device's style: `boot_style` in the options, else its profile's firmware, else GRUB for
    an x86_64 platform; otherwise an ArmingError (exit 2) asking for one of them."""
    given = options.get("boot_style")
    if given is not None:
        try:
            return BootStyle(str(given))
        except ValueError:
            raise ArmingError(
                f"{device.name}: boot_style {given!r} is not one of grub, uboot",
                fix="set the driver option boot_style to grub or uboot",
                exit_code=EXIT_INPUT,
            ) from None
    if device.profile:
        try:
            profile = _profiles().get(device.profile)
        except ProfileNotFound as exc:
            raise ArmingError(f"{device.name}: {exc.message}", exit_code=EXIT_INPUT) from None
        return BootStyle.UBOOT if profile.firmware == "uboot" else BootStyle.GRUB
    if device.platform and device.platform.startswith("x86_64-"):
        return BootStyle.GRUB  # every x86 ONIE platform boots with GRUB
    raise ArmingError(
        f"{device.name}: cannot tell whether it boots with GRUB or U-Boot (no profile)",
        fix="give the device a hardware profile in the inventory, or the driver option boot_style",
        exit_code=EXIT_INPUT,
    )


def pick(value: Any, device: Device, style: BootStyle | None) -> Any:
    """An option given once, or per profile id / platform / boot style (the most specific wins):
    `commands: [..]` or `commands: {accton_as7712_32x: [..], uboot: [..]}`."""
    if not isinstance(value, Mapping):
        return value
    for key in (device.name, device.profile, device.platform, style.value if style else None, "default"):
        if key is not None and key in value:
            return value[key]
    return None


def arm_commands(device: Device, options: Mapping[str, Any], style: BootStyle) -> list[str]:
    """The commands before the reboot: options `commands` (see pick), else the style's defaults."""
    given = pick(options.get("commands"), device, style)
    if given is None:
        return list(ARM_COMMANDS[style])
    if isinstance(given, str):
        return [given]
    if isinstance(given, list | tuple) and all(isinstance(c, str) for c in given):
        return list(given)
    raise ArmingError(
        f"{device.name}: driver option commands must be a list of shell commands",
        exit_code=EXIT_INPUT,
    )


def steps_text(device: Device, options: Mapping[str, Any], style: BootStyle) -> list[str]:
    """What an operator does by hand (the manual driver): the commands, then the reboot."""
    reboot = pick(options.get("reboot_command"), device, style) or REBOOT_COMMAND
    return [*arm_commands(device, options, style), str(reboot)]


def version_of(output: str) -> str | None:
    """The version in a version command's output: the last word of its first non-empty line."""
    for line in output.splitlines():
        words = line.split()
        if words:
            return words[-1]
    return None


__all__ = [
    "ARM_COMMANDS",
    "ONIE_BOOT_MODE",
    "ONIE_GRUB_ENTRY",
    "REBOOT_COMMAND",
    "VERSION_COMMAND",
    "BootStyle",
    "arm_commands",
    "boot_style",
    "pick",
    "steps_text",
    "version_of",
]
