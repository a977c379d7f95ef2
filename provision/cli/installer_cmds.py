"""Commands: onie-installer (build), inspect (read one back), layout (show the disk plan)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, TransferSpeedColumn
from rich.progress import Progress as Bar
from rich.table import Table

from onie.installer import (
    BuildError,
    InstallerFormat,
    InstallerSpec,
    NotAnInstaller,
    PlatformInfo,
    Progress,
    UBootMedium,
    build,
    inspect,
)
from onie.installer.render import uboot_env
from onie.layout import Firmware, human_size, onie_partitions
from provision import resources
from provision.cli.common import EXIT_FAILED, EXIT_INPUT, CLIError, echo_json
from provision.config.profiles import ProfileRegistry
from provision.config.switchspec import load_switch_spec, resolve_platforms

_profiles_option = click.option(
    "--profiles",
    "profile_dirs",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Extra folder of hardware profile YAML files (repeatable; overrides shipped ids).",
)


def _source_date_epoch() -> int | None:
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise CLIError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds", exit_code=EXIT_INPUT)
    return int(raw)


@click.command("onie-installer")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the installers (created if missing).",
)
@click.option("--platform", "only", metavar="ID", help="Build only for this profile id from the spec.")
@click.option("--json", "as_json", is_flag=True, help="Print what was built as JSON.")
@_profiles_option
def onie_installer(
    spec: Path, out_dir: Path, only: str | None, as_json: bool, profile_dirs: tuple[Path, ...]
) -> None:
    """Build ONIE NOS installers from a switch spec (switch.yml).

    \b
    One file per platform, named as ONIE's discovery asks for it first:
      onie-installer-<arch>-<vendor>_<machine>-r<rev>.bin
    Serve the folder over HTTP/TFTP (or point DHCP option 114 at a file). The image is a
    busybox-sh script + tar payload; it checks its SHA-256 and the machine's platform before it
    touches the disk. Same inputs and SOURCE_DATE_EPOCH give byte-identical files.

    \b
    Example:
      examples/nos/build.sh && provision onie-installer examples/switch.yml -o out/
    """
    switch = load_switch_spec(spec)
    targets = resolve_platforms(switch, ProfileRegistry(folders=list(profile_dirs)), only)
    out_dir.mkdir(parents=True, exist_ok=True)
    epoch = _source_date_epoch()
    results = []
    show_bar = sys.stdout.isatty() and not as_json
    for profile, platform in targets:
        path = out_dir / platform.installer_name
        nos = switch.spec_for(profile.arch)
        dtbs = switch.dtbs.get(profile.arch)
        try:
            if show_bar:
                with Bar(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                ) as bar:
                    task = bar.add_task(path.name, total=None)

                    def update(p: Progress, bar=bar, task=task) -> None:
                        bar.update(task, completed=p.done, total=p.total)

                    result = build(nos, platform, path, resources.templates_dir(), update, epoch, dtbs)
            else:
                result = build(nos, platform, path, resources.templates_dir(), None, epoch, dtbs)
        except BuildError as exc:
            raise CLIError(
                f"{spec}: {profile.id}: {exc}", "change the spec (partitions or payload)", EXIT_INPUT
            ) from None
        except OSError as exc:
            raise CLIError(f"writing {path}: {exc}", "check the output folder and free space") from None
        results.append((profile, result))
    if as_json:
        echo_json(
            [
                {
                    "path": str(r.path),
                    "profile": p.id,
                    "platform": r.platform,
                    "size": r.size,
                    "payload_sha256": r.payload_sha256,
                    "payload_size": r.payload_size,
                }
                for p, r in results
            ]
        )
    else:
        for _, r in results:
            click.echo(str(r.path))


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def inspect_cmd(file: Path, as_json: bool) -> None:
    """Show what an ONIE installer carries and whether its checksum holds (exit 1 if not).

    Reads provision's installers and ONIE's demo "sharch" format (exit_marker + SHA-1 + tar).
    """
    try:
        info = inspect(file)
    except NotAnInstaller as exc:
        raise CLIError(str(exc), "give an ONIE installer (.bin) file", EXIT_INPUT) from None
    if as_json:
        echo_json(
            {
                "path": str(info.path),
                "format": info.format.value,
                "platform": info.platform,
                "arch": info.arch,
                "nos": info.nos_name,
                "version": info.nos_version,
                "checksum": {
                    "kind": info.checksum_kind,
                    "ok": info.checksum_ok,
                    "expected": info.expected,
                    "actual": info.actual,
                },
                "payload_offset": info.payload_offset,
                "payload_size": info.payload_size,
                "members": [{"name": m.name, "size": m.size} for m in info.members],
                "problems": list(info.problems),
            }
        )
    else:
        console = Console() if sys.stdout.isatty() else Console(width=170)
        fmt = "provision" if info.format is InstallerFormat.PROVISION else "ONIE demo (sharch)"
        console.print(f"[bold]{info.path}[/]  format: {fmt}")
        console.print(f"  NOS: {info.nos_name or '-'} {info.nos_version or ''}")
        console.print(f"  platform: {info.platform or '-'}  arch: {info.arch or '-'}")
        mark = "[green]verified[/]" if info.checksum_ok else "[red]MISMATCH[/]"
        console.print(
            f"  payload: {info.payload_size} bytes at offset {info.payload_offset}; "
            f"{info.checksum_kind} {mark} ({info.actual})"
        )
        table = Table("member", "size", show_edge=False)
        for m in info.members:
            table.add_row(m.name, f"{m.size:,}")
        console.print(table)
        for problem in info.problems:
            console.print(f"  [red]problem:[/] {problem}")
    if not info.checksum_ok:
        sys.exit(EXIT_FAILED)


@click.command("layout")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--platform", "only", metavar="ID", help="Show the plan for this profile id (default: each).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@_profiles_option
def layout_cmd(spec: Path, only: str | None, as_json: bool, profile_dirs: tuple[Path, ...]) -> None:
    """Show the disk plan: ONIE's partitions (kept untouched) and the NOS partitions after them."""
    switch = load_switch_spec(spec)
    targets = resolve_platforms(switch, ProfileRegistry(folders=list(profile_dirs)), only)
    # JSON-shaped (--json prints them as they are); the table below reads the same dicts.
    plans: list[dict[str, Any]] = []
    for profile, platform in targets:
        layout = switch.spec_for(profile.arch).layout
        if platform.uboot is not None:
            plans.append(_uboot_plan(switch.spec_for(profile.arch), profile.id, platform))
            continue
        firmware = Firmware.BIOS if profile.firmware == "bios" else Firmware.UEFI
        kept = onie_partitions(firmware)
        rows: list[dict[str, Any]] = [
            {
                "number": k.number,
                "label": k.name,
                "size": k.size,
                "type_guid": k.type_guid,
                "attributes": f"0x{k.attributes:016x}",
                "filesystem": k.filesystem,
                "owner": "ONIE (kept)",
                "note": k.why,
            }
            for k in kept
        ]
        for i, p in enumerate(layout.partitions, start=len(kept) + 1):
            note = {
                "boot": "kernel, initrd, GRUB, grubenv",
                "rootfs": "squashfs written raw",
                "data": "formatted empty",
            }[p.role.value]
            if p.slot:
                note += f" (slot {p.slot}{', installed' if p is layout.rootfs else ', spare'})"
            rows.append(
                {
                    "number": i,
                    "label": p.label,
                    "size": p.size,
                    "type_guid": p.type_guid,
                    "attributes": "0x0000000000000000",
                    "filesystem": p.filesystem.value,
                    "owner": f"{switch.spec.nos_name} ({p.role.value})",
                    "note": note,
                }
            )
        plans.append(
            {
                "profile": profile.id,
                "platform": profile.onie_platform,
                "firmware": firmware.value,
                "partitions": rows,
            }
        )
    if as_json:
        echo_json(plans)
        return
    # Not a terminal (a pipe, a log): rich would wrap at 80 columns and hide the GUIDs.
    console = Console() if sys.stdout.isatty() else Console(width=170)
    for plan in plans:
        if plan["firmware"] == "uboot":
            _print_uboot_plan(console, plan)
            continue
        table = Table(title=f"{plan['profile']} ({plan['platform']}, {plan['firmware']}): disk plan")
        for col in ("#", "label", "size", "type GUID", "attrs", "fs", "owner", "note"):
            table.add_column(col, no_wrap=col in ("type GUID", "label"))
        for r in plan["partitions"]:
            style = "dim" if r["owner"].startswith("ONIE") else None
            table.add_row(
                str(r["number"]),
                r["label"],
                human_size(r["size"]),
                r["type_guid"],
                r["attributes"],
                r["filesystem"],
                r["owner"],
                r["note"],
                style=style,
            )
        console.print(table)
    console.print(
        "Numbers are what sgdisk picks on a disk holding only ONIE; the installer finds "
        "partitions by label, and also firmware-detects UEFI vs BIOS at install time."
    )


def _uboot_plan(spec: InstallerSpec, profile_id: str, platform: PlatformInfo) -> dict[str, Any]:
    """A U-Boot platform's plan: where the FIT goes, and the environment the installer writes
    (docs/onie.md "U-Boot platforms"). FIT size unknown before a build: shown as <size>."""
    u = platform.uboot
    assert u is not None
    env = uboot_env(spec, platform, 0)
    env = {k: v.replace("0x0 ", "<size> ").replace(" 0x0", " <size>") if k == "nos_load" else v
           for k, v in env.items()}  # fmt: skip
    partitions: list[dict[str, Any]] = []
    if u.medium is UBootMedium.DISK:
        for p in spec.layout.partitions:
            partitions.append(
                {"label": p.label, "size": p.size, "role": p.role.value, "filesystem": p.filesystem.value,
                 "note": "nos.itb in /boot" if p is spec.layout.boot else ""}
            )  # fmt: skip
    region = {
        UBootMedium.DISK: f"{u.device}: new GPT partitions after the existing ones ({u.uboot_device})",
        UBootMedium.PARTITION: f"{u.device} (partition {u.partition_number} of {u.uboot_device}): /boot/nos.itb in its ext4",
        UBootMedium.RAW: f"{u.device} at byte 0x{u.offset:x}, up to {human_size(u.max_size)} ({u.uboot_device})",
        UBootMedium.MTD: f"MTD partition {u.mtd_name!r} (U-Boot address 0x{u.flash_address:x}, {human_size(u.max_size)})",
    }[u.medium]
    return {
        "profile": profile_id,
        "platform": platform.onie_platform,
        "firmware": "uboot",
        "medium": u.medium.value,
        "region": region,
        "fdt": u.fdt or None,
        "fw_env_config": u.fw_env_config.splitlines(),
        "env": env,
        "partitions": partitions,
        "kept": "bootcmd, onie_bootcmd, onie_boot_reason and every other ONIE variable",
    }


def _print_uboot_plan(console: Console, plan: dict[str, Any]) -> None:
    console.print(
        f"[bold]{plan['profile']} ({plan['platform']}, U-Boot)[/]: NOS FIT image -> {plan['region']}"
    )
    if plan["fdt"]:
        console.print(f"  device tree in the FIT: {plan['fdt']}")
    console.print("  fw_env.config (ONIE's /etc/fw_env.config wins when present):")
    for line in plan["fw_env_config"]:
        console.print(f"    {line}")
    if plan["partitions"]:
        table = Table("label", "size", "role", "fs", "note", title="NOS partitions")
        for p in plan["partitions"]:
            table.add_row(p["label"], human_size(p["size"]), p["role"], p["filesystem"], p["note"])
        console.print(table)
    table = Table("variable", "value", title="U-Boot environment written with fw_setenv -s")
    for k, v in plan["env"].items():
        table.add_row(k, v)
    console.print(table)
    console.print(f"  left alone: {plan['kept']}")


COMMANDS = [onie_installer, inspect_cmd, layout_cmd]
