"""switch.yml: what NOS to package, for which platforms, and how to lay it out on the disk.

Turns the YAML (validated with line numbers) into onie.installer's plain objects. Relative paths
resolve against the spec file's folder. See examples/switch.yml for a commented example.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from onie.installer import HookPoint, InstallerSpec, PayloadFile, PlatformInfo
from onie.layout import (
    GUID_LINUX_FS,
    Filesystem,
    LayoutError,
    NosPartition,
    Role,
    check_layout,
    default_layout,
    expand_ab,
)
from provision.config import (
    URL,
    Bool,
    ConfigError,
    Enum,
    Field,
    FilePath,
    Int,
    List,
    Obj,
    Section,
    Size,
    Str,
    load_file,
)
from provision.config.profiles import MODULES, HardwareProfile, ProfileNotFound, ProfileRegistry, module_lists

NAME = Str(r"[a-z0-9][a-z0-9_-]{0,31}", "a NOS name of lower-case letters, digits, _ or - (max 32)")
VERSION = Str(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}", "a version such as 1.2.0 (letters, digits, . _ + ~ -)")
# GRUB parses the command line: $ would expand variables, ; { } ' " \ would end or quote words.
CMDLINE = Str(r"[^$;{}'\"\\\n]*", "kernel arguments without $ ; { } quotes or backslashes", allow_empty=True)
GUID = Str(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}", "a GPT type GUID")
DEST = Str(r"(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/+-]+", "a relative path inside the boot partition")

PARTITION = Obj(
    {
        "label": Field(Str(), required=True, doc="GPT name and filesystem label, max 16 chars"),
        "size": Field(Size(), required=True, doc="e.g. 256M, 2G; 0 = rest of the disk (last only)"),
        "role": Field(Enum(*(r.value for r in Role)), default=Role.DATA.value),
        "filesystem": Field(Enum(*(f.value for f in Filesystem)), default=None),
        "type_guid": Field(GUID, default=GUID_LINUX_FS),
        "ab": Field(Bool(), default=False, doc="two slots LABEL-A and LABEL-B (rootfs only)"),
    },
    name="partition",
)

SPEC = Obj(
    {
        "nos": Field(
            Obj({"name": Field(NAME, required=True), "version": Field(VERSION, required=True)}, name="nos"),
            required=True,
        ),
        "platforms": Field(List(Str(), min_len=1, unique=True), required=True, doc="hardware profile ids"),
        "payload": Field(
            Obj(
                {
                    "linuxkit": Field(
                        FilePath(must_exist=False), doc="LinuxKit kernel+initrd output prefix path/NAME"
                    ),
                    "kernel": Field(FilePath()),
                    "initrd": Field(FilePath()),
                    "rootfs": Field(FilePath(), doc="a read-only root image (squashfs)"),
                    "files": Field(
                        List(
                            Obj(
                                {
                                    "source": Field(FilePath(), required=True),
                                    "dest": Field(DEST, required=True),
                                },
                                name="file",
                            )
                        ),
                        default_factory=list,
                    ),
                },
                name="payload",
            ),
            required=True,
        ),
        "cmdline": Field(CMDLINE, default=""),
        "modules": MODULES,
        "partitions": Field(List(PARTITION, min_len=1), default=None),
        "grub": Field(
            Obj(
                {
                    "title": Field(Str(r"[^'\n]+", "a menu title without single quotes")),
                    "timeout": Field(Int(0, 300), default=5),
                },
                name="grub",
            ),
            default=None,
        ),
        "hooks": Field(Obj({p.value: Field(Str()) for p in HookPoint}, name="hooks"), default=None),
        "report_url": Field(URL(("http",)), default=None, doc="ONIE's wget has no TLS: http only"),
    },
    name="switch spec",
)


@dataclass(frozen=True)
class SwitchSpec:
    path: Path
    spec: InstallerSpec  # platform-independent part
    platforms: tuple[str, ...]
    section: Section  # for errors pointing at lines later

    def profile_error(self, message: str, fix: str | None = None) -> ConfigError:
        return self.section.error("platforms", message, fix)


def _linuxkit(payload: Section) -> tuple[Path, Path, str]:
    prefix: Path = payload["linuxkit"]
    kernel = prefix.with_name(prefix.name + "-kernel")
    initrd = prefix.with_name(prefix.name + "-initrd.img")
    cmdline_file = prefix.with_name(prefix.name + "-cmdline")
    for p in (kernel, initrd):
        if not p.is_file():
            raise payload.error(
                "linuxkit",
                f"LinuxKit output {p.name} not found in {p.parent}",
                "build with `linuxkit build -format kernel+initrd`, or give kernel: and initrd:",
            )
    cmdline = cmdline_file.read_text().strip() if cmdline_file.is_file() else ""
    return kernel, initrd, cmdline


def _partitions(data: Section, nos_name: str, rootfs: Path | None):
    if data["partitions"] is None:
        return default_layout(nos_name, rootfs.stat().st_size if rootfs else None)
    parts: list[NosPartition] = []
    ab: set[str] = set()
    for item in data["partitions"]:
        role = Role(item["role"])
        fs = item["filesystem"] or (Filesystem.RAW.value if role is Role.ROOTFS else Filesystem.EXT4.value)
        if item["ab"]:
            if role is not Role.ROOTFS:
                raise item.error(
                    "ab", "A/B slots are for the rootfs partition", "remove ab: or set role: rootfs"
                )
            ab.add(item["label"])
        parts.append(
            NosPartition(item["label"], item["size"], role, Filesystem(fs), item["type_guid"].upper())
        )
    try:
        return check_layout(expand_ab(parts, ab))
    except LayoutError as exc:
        raise data.error(
            "partitions", "partition plan: " + "; ".join(exc.problems), "fix the partitions list"
        ) from None


def load_switch_spec(path: Path | str) -> SwitchSpec:
    path = Path(path)
    data = load_file(path, SPEC)
    payload = data["payload"]
    if payload["linuxkit"] is not None:
        if payload["kernel"] is not None or payload["initrd"] is not None:
            raise payload.error("linuxkit", "give either linuxkit: or kernel:+initrd:, not both")
        kernel, initrd, lk_cmdline = _linuxkit(payload)
    else:
        if payload["kernel"] is None or payload["initrd"] is None:
            raise payload.error(None, "payload needs kernel: and initrd: (or linuxkit: path/NAME)")
        kernel, initrd, lk_cmdline = payload["kernel"], payload["initrd"], ""
    dests = [f["dest"] for f in payload["files"]]
    if len(set(dests)) != len(dests):
        raise payload.error("files", "two files have the same dest", "give each file its own dest")
    rootfs = payload["rootfs"]
    layout = _partitions(data, data["nos"]["name"], rootfs)
    if rootfs is None and layout.rootfs is not None:
        raise data.error("partitions", "a rootfs partition is planned but payload has no rootfs:")
    modules_load, modules_blacklist = module_lists(data["modules"])
    grub = data["grub"] or {"title": None, "timeout": 5}
    hooks = data["hooks"] or {}
    spec = InstallerSpec(
        nos_name=data["nos"]["name"],
        nos_version=data["nos"]["version"],
        kernel=kernel,
        initrd=initrd,
        layout=layout,
        rootfs=rootfs,
        files=tuple(PayloadFile(f["source"], f["dest"]) for f in payload["files"]),
        cmdline=" ".join(x for x in (lk_cmdline, data["cmdline"]) if x),
        modules_load=modules_load,
        modules_blacklist=modules_blacklist,
        grub_title=grub["title"] or "",
        grub_timeout=grub["timeout"],
        hooks=tuple((p, hooks[p.value]) for p in HookPoint if hooks.get(p.value)),
        report_url=data["report_url"],
    )
    return SwitchSpec(path=path, spec=spec, platforms=tuple(data["platforms"]), section=data)


def platform_info(profile: HardwareProfile) -> PlatformInfo:
    return PlatformInfo(
        onie_platform=profile.onie_platform or "",
        arch=profile.arch,
        console_device=profile.console.device,
        console_speed=profile.console.speed,
        modules_load=profile.modules_load,
        modules_blacklist=profile.modules_blacklist,
        cmdline=profile.cmdline,
    )


def resolve_platforms(
    spec: SwitchSpec, registry: ProfileRegistry, only: str | None = None
) -> list[tuple[HardwareProfile, PlatformInfo]]:
    """The spec's platforms as (profile, PlatformInfo); `only` picks one of them by id."""
    ids = list(spec.platforms)
    if only is not None:
        if only not in ids:
            raise spec.profile_error(
                f"platform {only!r} is not listed in this spec ({', '.join(ids)})",
                f"add {only} to platforms:, or pick one of {', '.join(ids)}",
            )
        ids = [only]
    out = []
    for pid in ids:
        try:
            profile = registry.get(pid)
        except ProfileNotFound as exc:
            raise spec.profile_error(str(exc)) from None
        if not profile.onie_platform:
            raise spec.profile_error(f"profile {pid!r} has no onie_platform: it is not an ONIE machine")
        if profile.arch != "x86_64" or profile.firmware == "uboot":
            raise spec.profile_error(
                f"profile {pid!r} is {profile.arch}/{profile.firmware}: only x86_64 GRUB (UEFI or BIOS) "
                "installers are built so far",
                "remove it from platforms:",
            )
        out.append((profile, platform_info(profile)))
    return out
