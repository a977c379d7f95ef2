"""ONIE installer images: build one (streaming, reproducible) and inspect one.

from onie.installer import build, inspect, InstallerSpec, PlatformInfo
result = build(spec, platform, Path("out/onie-installer-x86_64-kvm_x86_64-r0.bin"), templates_dir)
info = inspect(result.path)   # info.checksum_ok, info.members, info.platform
"""

from onie.installer.build import UPDATER_COOKIE, BuildError, build, payload_plan
from onie.installer.model import (
    BuildResult,
    HookPoint,
    InstallerFormat,
    InstallerInfo,
    InstallerSpec,
    Member,
    PayloadFile,
    PlatformInfo,
    Progress,
    Stage,
    UBootMedium,
    UBootTarget,
)
from onie.installer.reader import NotAnInstaller, inspect
from onie.installer.render import kernel_cmdline

__all__ = [
    "UPDATER_COOKIE",
    "BuildError",
    "BuildResult",
    "HookPoint",
    "InstallerFormat",
    "InstallerInfo",
    "InstallerSpec",
    "Member",
    "NotAnInstaller",
    "PayloadFile",
    "PlatformInfo",
    "Progress",
    "Stage",
    "UBootMedium",
    "UBootTarget",
    "build",
    "inspect",
    "kernel_cmdline",
    "payload_plan",
]
