"""Hardware profiles: one YAML file per platform in hardware-profiles/, validated by a schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from provision import resources
from provision.config import ConfigError, Enum, Field, Int, List, Obj, Str, load_file

ARCHES = ("x86_64", "arm64")
FIRMWARES = ("uefi", "bios", "uboot")

CONSOLE = Obj(
    {
        "device": Field(Str(r"tty[A-Za-z0-9]+", "a console device such as ttyS0"), required=True),
        "speed": Field(Int(1200, 4000000), default=115200),
    },
    name="console",
)

PROFILE = Obj(
    {
        "id": Field(
            Str(r"[a-z0-9][a-z0-9_.-]*", "an id of lower-case letters, digits, _ . -"), required=True
        ),
        "kind": Field(Enum("switch", "server", "virtual"), required=True),
        "vendor": Field(Str(), required=True),
        "machine": Field(Str(r"[A-Za-z0-9_.-]+", "an ONIE machine name"), required=True),
        "revision": Field(Int(0, 255), default=0),
        "onie_platform": Field(
            Str(r"[a-z0-9_]+-[A-Za-z0-9_.-]+-r\d+", "an ONIE platform such as x86_64-accton_as7712_32x-r0"),
            doc="`<arch>-<vendor>_<machine>-r<rev>` as ONIE's machine.conf spells it",
        ),
        "arch": Field(Enum(*ARCHES), required=True),
        "firmware": Field(Enum(*FIRMWARES), required=True),
        "console": Field(CONSOLE, required=True),
        "disk": Field(
            Obj({"device_hint": Field(Str()), "min_size": Field(Str())}, name="disk"),
            default=None,
        ),
        "switch_asic": Field(Str(), default=None),
        "modules": Field(
            Obj(
                {
                    "load": Field(List(Str()), default_factory=list),
                    "blacklist": Field(List(Str()), default_factory=list),
                },
                name="modules",
            ),
            default=None,
        ),
        "cmdline": Field(Str(allow_empty=True), default=""),
        "bmc": Field(Enum("none", "redfish", "ipmi", "qemu"), default="none"),
        "description": Field(Str(allow_empty=True), default=""),
    },
    name="hardware profile",
)


@dataclass(frozen=True)
class Console:
    device: str
    speed: int = 115200


@dataclass(frozen=True)
class HardwareProfile:
    id: str
    kind: str
    vendor: str
    machine: str
    arch: str
    firmware: str
    console: Console
    revision: int = 0
    onie_platform: str | None = None
    switch_asic: str | None = None
    modules_load: tuple[str, ...] = ()
    modules_blacklist: tuple[str, ...] = ()
    cmdline: str = ""
    disk_device_hint: str | None = None
    bmc: str = "none"
    description: str = ""
    source: Path | None = field(default=None, compare=False)

    @property
    def onie_arch(self) -> str:
        """ONIE's spelling of the CPU arch (machine.conf onie_arch)."""
        return {"x86_64": "x86_64", "arm64": "arm64"}[self.arch]


def load_profile(path: Path | str) -> HardwareProfile:
    data = load_file(path, PROFILE)
    modules = data["modules"] or {"load": [], "blacklist": []}
    disk = data["disk"] or {}
    profile = HardwareProfile(
        id=data["id"],
        kind=data["kind"],
        vendor=data["vendor"],
        machine=data["machine"],
        arch=data["arch"],
        firmware=data["firmware"],
        console=Console(data["console"]["device"], data["console"]["speed"]),
        revision=data["revision"],
        onie_platform=data["onie_platform"],
        switch_asic=data["switch_asic"],
        modules_load=tuple(modules["load"]),
        modules_blacklist=tuple(modules["blacklist"]),
        cmdline=data["cmdline"],
        disk_device_hint=disk.get("device_hint"),
        bmc=data["bmc"],
        description=data["description"],
        source=Path(path),
    )
    if profile.onie_platform:
        arch = profile.onie_platform.split("-", 1)[0]
        if arch != profile.onie_arch:
            raise data.error(
                "onie_platform",
                f"platform arch {arch!r} does not match arch {profile.arch!r}",
                f"start onie_platform with {profile.onie_arch}-",
            )
        if not profile.onie_platform.endswith(f"-r{profile.revision}"):
            raise data.error(
                "onie_platform",
                f"platform {profile.onie_platform!r} does not end in -r{profile.revision} (revision)",
                "make revision and the -rN suffix agree",
            )
    if profile.kind == "switch" and not profile.onie_platform:
        raise data.error(
            None,
            f"switch profile {profile.id!r} has no onie_platform",
            "add onie_platform: <arch>-<vendor>_<machine>-r<rev>",
        )
    if Path(path).stem != profile.id:
        raise data.error(
            "id",
            f"id {profile.id!r} differs from the file name {Path(path).name!r}",
            f"rename the file to {profile.id}.yml or change the id",
        )
    return profile


class ProfileNotFound(LookupError):
    pass


class ProfileRegistry:
    """The shipped profiles plus any extra folders (later folders override earlier ones by id)."""

    def __init__(self, folders: list[Path] | None = None):
        self.folders = [resources.profiles_dir(), *(folders or [])]
        self._profiles: dict[str, HardwareProfile] | None = None

    def _load(self) -> dict[str, HardwareProfile]:
        if self._profiles is None:
            found: dict[str, HardwareProfile] = {}
            for folder in self.folders:
                for path in sorted(Path(folder).glob("*.yml")):
                    profile = load_profile(path)
                    found[profile.id] = profile
            self._profiles = found
        return self._profiles

    def all(self) -> list[HardwareProfile]:
        return sorted(self._load().values(), key=lambda p: p.id)

    def get(self, profile_id: str) -> HardwareProfile:
        profiles = self._load()
        if profile_id not in profiles:
            import difflib

            close = difflib.get_close_matches(profile_id, list(profiles), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ProfileNotFound(
                f"no hardware profile {profile_id!r}{hint}; `provision profiles list` shows them"
            )
        return profiles[profile_id]


__all__ = ["ConfigError", "HardwareProfile", "Console", "ProfileRegistry", "ProfileNotFound", "load_profile"]
