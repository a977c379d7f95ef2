"""Render the installer's scripts from Jinja2 templates (templates/installer/*.j2)."""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2

from onie.installer.model import InstallerSpec, PlatformInfo
from onie.kernel_cmdline import console_arg, kernel_args
from onie.layout import Role, human_size

HEADER = "header.sh.j2"
INSTALL = "install.sh.j2"
GRUB_CFG = "grub.cfg.j2"
PAYLOAD_MARKER = "__PROVISION_PAYLOAD_BELOW__\n"


def _env(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(templates_dir) / "installer")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["sh"] = lambda value: shlex.quote(str(value if value is not None else ""))
    return env


def kernel_cmdline(spec: InstallerSpec, platform: PlatformInfo) -> str:
    """Platform arguments, the NOS's own, module settings, and the serial console LAST
    (onie.kernel_cmdline.kernel_args, shared with provision's hardware profiles)."""
    return " ".join(
        kernel_args(
            console_arg(platform.console_device, platform.console_speed),
            (platform.cmdline, spec.cmdline),
            blacklist=(*platform.modules_blacklist, *spec.modules_blacklist),
            load=(*platform.modules_load, *spec.modules_load),
        )
    )


def render_header(
    templates_dir: Path,
    spec: InstallerSpec,
    platform: PlatformInfo,
    sha256: str,
    size: str,
    offset: str,
    unpack_members: list[str],
) -> str:
    text = (
        _env(templates_dir)
        .get_template(HEADER)
        .render(
            nos_name=spec.nos_name,
            nos_version=spec.nos_version,
            platform=platform.onie_platform,
            arch=platform.arch,
            report_url=spec.report_url or "",
            payload_sha256=sha256,
            payload_size=size,
            payload_offset=offset,
            unpack_members=unpack_members,
        )
    )
    if not text.endswith(PAYLOAD_MARKER):
        raise ValueError(f"{HEADER} must end with the line {PAYLOAD_MARKER.strip()}")
    return text


def render_install(templates_dir: Path, spec: InstallerSpec) -> str:
    layout = spec.layout
    target = layout.rootfs
    parts = [
        {
            "label": p.label,
            "size_kib": p.size_kib,
            "human": human_size(p.size),
            "type_guid": p.type_guid,
            "filesystem": p.filesystem.value,
            "role": p.role.value,
            "is_target": p is target,
        }
        for p in layout.partitions
    ]
    return (
        _env(templates_dir)
        .get_template(INSTALL)
        .render(
            nos_name=spec.nos_name,
            nos_version=spec.nos_version,
            labels=list(layout.labels),
            boot_label=layout.boot.label,
            rootfs_label=target.label if target else "",
            has_rootfs=spec.rootfs is not None,
            rootfs_size=spec.rootfs.stat().st_size if spec.rootfs is not None else 0,
            partitions=parts,
            files=[{"dest": f.dest} for f in spec.files],
            roles=Role,
        )
    )


def render_grub_cfg(templates_dir: Path, spec: InstallerSpec, platform: PlatformInfo, firmware: str) -> str:
    return (
        _env(templates_dir)
        .get_template(GRUB_CFG)
        .render(
            title=spec.title.replace("'", ""),
            serial_unit=platform.serial_unit,
            serial_speed=platform.console_speed,
            timeout=spec.grub_timeout,
            boot_label=spec.layout.boot.label,
            cmdline=kernel_cmdline(spec, platform),
            firmware=firmware,
        )
    )
