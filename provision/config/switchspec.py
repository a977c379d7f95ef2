"""switch.yml: what NOS to package, for which platforms, and how to lay it out on the disk.

Turns the YAML (validated with line numbers) into onie.installer's plain objects. Relative paths
resolve against the spec file's folder. See examples/switch.yml for a commented example.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from onie.installer import HookPoint, InstallerSpec, PayloadFile, PlatformInfo, UBootMedium, UBootTarget
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
from provision.config.profiles import (
    ARCHES,
    MODULES,
    HardwareProfile,
    ProfileNotFound,
    ProfileRegistry,
    module_lists,
)

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

# Per-CPU payload (docs/onie.md "One switch.yml, several CPUs"): the same keys as payload:, one
# block per arch; a key given here wins over payload:'s own for that arch's platforms.
ARCH_PAYLOAD = Obj(
    {
        "linuxkit": Field(FilePath(must_exist=False), doc="LinuxKit kernel+initrd output prefix path/NAME"),
        "kernel": Field(FilePath()),
        "initrd": Field(FilePath()),
        "rootfs": Field(FilePath(), doc="a read-only root image (squashfs)"),
        "dtbs": Field(
            FilePath(kind="folder"),
            doc="U-Boot platforms: the kernel's device-tree folder; a profile's uboot.fdt is relative to it",
        ),
    },
    name="arch payload",
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
                    "dtbs": Field(FilePath(kind="folder"), doc="device-tree folder (U-Boot platforms)"),
                    "arch": Field(
                        Obj({a: Field(ARCH_PAYLOAD, default=None) for a in ARCHES}, name="payload arch"),
                        default=None,
                        doc="per-CPU kernel/initrd/rootfs/dtbs for specs listing x86_64 and arm64",
                    ),
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
    spec: InstallerSpec  # platform-independent part (payload: without an arch: override)
    platforms: tuple[str, ...]
    section: Section  # for errors pointing at lines later
    by_arch: dict[str, InstallerSpec] = field(default_factory=dict)  # payload.arch.<arch> applied
    dtbs: dict[str, Path | None] = field(default_factory=dict)  # arch -> device-tree folder
    has_default_payload: bool = True  # payload: itself names a kernel (not only payload.arch.*)

    def profile_error(self, message: str, fix: str | None = None) -> ConfigError:
        return self.section.error("platforms", message, fix)

    def spec_for(self, arch: str) -> InstallerSpec:
        """The installer spec for one CPU: payload.arch.<arch> applied over payload:."""
        return self.by_arch.get(arch, self.spec)


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


def _kernel_initrd(payload: Section, required: bool) -> tuple[Path, Path, str] | None:
    if payload["linuxkit"] is not None:
        if payload["kernel"] is not None or payload["initrd"] is not None:
            raise payload.error("linuxkit", "give either linuxkit: or kernel:+initrd:, not both")
        return _linuxkit(payload)
    if payload["kernel"] is None and payload["initrd"] is None and not required:
        return None
    if payload["kernel"] is None or payload["initrd"] is None:
        raise payload.error(None, "payload needs kernel: and initrd: (or linuxkit: path/NAME)")
    return payload["kernel"], payload["initrd"], ""


def load_switch_spec(path: Path | str) -> SwitchSpec:
    path = Path(path)
    data = load_file(path, SPEC)
    payload = data["payload"]
    per_arch = {a: payload["arch"][a] for a in ARCHES if payload["arch"] and payload["arch"][a]}
    # The top-level kernel/initrd may be left out when every CPU has its own.
    top = _kernel_initrd(payload, required=not per_arch)
    rootfs = payload["rootfs"]
    if top is None:  # the default spec is the first CPU's (every platform gets its own anyway)
        first = per_arch[next(iter(per_arch))]
        top = _kernel_initrd(first, required=True)
        assert top is not None
        rootfs = rootfs if rootfs is not None else first["rootfs"]
    kernel, initrd, lk_cmdline = top
    dests = [f["dest"] for f in payload["files"]]
    if len(set(dests)) != len(dests):
        raise payload.error("files", "two files have the same dest", "give each file its own dest")
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
    by_arch: dict[str, InstallerSpec] = {}
    dtbs: dict[str, Path | None] = dict.fromkeys(ARCHES, payload["dtbs"])
    for arch, over in per_arch.items():
        got = _kernel_initrd(over, required=False)
        a_kernel, a_initrd, a_lk = got if got is not None else (kernel, initrd, lk_cmdline)
        a_rootfs = over["rootfs"] if over["rootfs"] is not None else rootfs
        a_layout = layout
        if data["partitions"] is None:
            a_layout = _partitions(data, data["nos"]["name"], a_rootfs)
        elif a_rootfs is None and layout.rootfs is not None:
            raise over.error(None, f"a rootfs partition is planned but the {arch} payload has no rootfs:")
        by_arch[arch] = replace(
            spec,
            kernel=a_kernel,
            initrd=a_initrd,
            rootfs=a_rootfs,
            layout=a_layout,
            cmdline=" ".join(x for x in (a_lk, data["cmdline"]) if x),
        )
        if over["dtbs"] is not None:
            dtbs[arch] = over["dtbs"]
    return SwitchSpec(
        path=path,
        spec=spec,
        platforms=tuple(data["platforms"]),
        section=data,
        by_arch=by_arch,
        dtbs=dtbs,
        has_default_payload=(payload["kernel"] is not None or payload["linuxkit"] is not None),
    )


def uboot_target(profile: HardwareProfile) -> UBootTarget | None:
    u = profile.uboot
    if u is None:
        return None
    return UBootTarget(
        medium=UBootMedium(u.medium),
        device=u.device or "",
        uboot_device=u.uboot_device or "",
        fw_env_config="".join(line.config_line() + "\n" for line in u.fw_env),
        offset=u.offset or 0,
        max_size=u.size or 0,
        mtd_name=u.mtd_name or "",
        flash_address=u.flash_address or 0,
        partition_number=u.partition or 0,
        fdt=u.fdt or "",
        load_address=u.load_address,
        bootm_fdt=u.bootm_fdt or "",
    )


def platform_info(profile: HardwareProfile) -> PlatformInfo:
    return PlatformInfo(
        firmware=profile.firmware,
        uboot=uboot_target(profile),
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
        if profile.firmware == "uboot" and profile.uboot is None:
            raise spec.profile_error(
                f"profile {pid!r} boots with U-Boot but says nothing of where the NOS goes",
                'add a uboot: block to the profile (docs/hardware-profiles.md "U-Boot platforms")',
            )
        if profile.uboot is not None and profile.uboot.fdt and spec.dtbs.get(profile.arch) is None:
            raise spec.profile_error(
                f"profile {pid!r} needs the device tree {profile.uboot.fdt} in its FIT image",
                f"add payload.dtbs: (or payload.arch.{profile.arch}.dtbs:), the kernel's dtb folder",
            )
        if profile.arch not in spec.by_arch and not spec.has_default_payload:
            raise spec.profile_error(
                f"profile {pid!r} is {profile.arch} but payload.arch: has no {profile.arch} block",
                f"add payload.arch.{profile.arch}: with its kernel and initrd",
            )
        out.append((profile, platform_info(profile)))
    return out
