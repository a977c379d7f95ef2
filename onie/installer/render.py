"""Render the installer's scripts from Jinja2 templates (templates/installer/*.j2)."""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2

from onie.installer.fit import CONFIG, RAMDISK
from onie.installer.model import InstallerSpec, PlatformInfo, UBootMedium
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


X86 = PlatformInfo(onie_platform="", arch="x86_64")


# U-Boot rescans a device before reading it; each interface spells that its own way.
_UBOOT_RESCAN = {"mmc": "mmc rescan", "usb": "usb start", "sata": "sata init"}


def uboot_env(spec: InstallerSpec, platform: PlatformInfo, fit_size: int) -> dict[str, str]:
    """The variables the installer sets with `fw_setenv -s` (docs/onie.md "U-Boot platforms").
    `@BOOT_PART@` stands for the boot partition's number, known only at install time."""
    u = platform.uboot
    if u is None:
        raise ValueError(f"{platform.onie_platform} has no uboot target")
    load = u.load_address
    iface, _, devnum = u.uboot_device.partition(" ")
    rescan = _UBOOT_RESCAN.get(iface, f"{iface} scan")
    if u.medium is UBootMedium.DISK:
        nos_load = f"{rescan}; ext4load {iface} {devnum}:@BOOT_PART@ {load} /boot/nos.itb"
    elif u.medium is UBootMedium.PARTITION:
        nos_load = f"{rescan}; ext4load {iface} {devnum}:{u.partition_number} {load} /boot/nos.itb"
    elif u.medium is UBootMedium.RAW:
        blocks = -(-fit_size // 512)
        nos_load = f"{rescan}; {iface} dev {devnum}; {iface} read {load} 0x{u.offset // 512:x} 0x{blocks:x}"
    else:
        nos_load = f"cp.b 0x{u.flash_address:x} {load} 0x{fit_size:x}"
    # The configuration by name: a U-Boot built with CONFIG_FIT_BEST_MATCH (Debian's qemu_arm64)
    # ignores the FIT's `default` and looks for one whose fdt matches the board's compatible; a
    # FIT without a device tree (bootm_fdt below) then has none ("Could not find configuration
    # node"). One configuration: naming it is right everywhere.
    bootm = f"bootm {load}#{CONFIG}"
    if not u.fdt and u.bootm_fdt:  # no device tree in the FIT: the board's own (e.g. QEMU's)
        bootm += f" {load}:{RAMDISK} {u.bootm_fdt}"
    # In write order: nos_bootcmd last, so that an install stopped half-way leaves ONIE's.
    return {
        "provision_nos": f"{spec.nos_name} {spec.nos_version}",
        "nos_load": nos_load,
        "nos_bootargs": "setenv bootargs " + kernel_cmdline(spec, platform),
        "nos_bootcmd": f"echo Loading {spec.title.replace(';', '')} ...; run nos_load && run nos_bootargs && {bootm}",
    }


def render_uboot_env(spec: InstallerSpec, platform: PlatformInfo, fit_size: int) -> str:
    """One `name value` per line, in write order (install.sh calls fw_setenv once per line)."""
    return "".join(f"{k} {v}\n" for k, v in uboot_env(spec, platform, fit_size).items())


def render_install(
    templates_dir: Path, spec: InstallerSpec, platform: PlatformInfo = X86, fit: Path | None = None
) -> str:
    layout = spec.layout
    efi = platform.efi
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
            grub_efi_target=efi.grub_target,
            grub_efi_name=efi.loader,
            efi_fallback=efi.fallback,
            bios_possible=platform.arch == "x86_64",
            grub_video_modules="efi_gop all_video",
            uboot=platform.uboot if fit is not None else None,
            fw_env_config=platform.uboot.fw_env_config if platform.uboot else "",
            fit_size=fit.stat().st_size if fit is not None else 0,
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
            # GRUB's `serial` drives a PC UART (x86 port I/O); on arm64 the firmware's console
            # (EFI ConOut) is the serial line already (AAVMF, SBSA machines).
            pc_serial=platform.arch == "x86_64",
        )
    )
