"""`provision profiles ...` (hardware profiles) and `provision eeprom ...` (ONIE TlvInfo EEPROMs)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from onie.eeprom import EepromError, TlvInfo, VendorExtension, decode
from provision.cli.common import EXIT_FAILED, EXIT_INPUT, CLIError, echo_json
from provision.config import ConfigError
from provision.config.eeprom_spec import load_eeprom_spec
from provision.config.profiles import (
    ENV_PROFILES_DIR,
    HardwareProfile,
    ProfileRegistry,
    env_folders,
    load_profile,
    profile_files,
)
from provision.resources import profiles_dir


def _console(err: bool = False) -> Console:
    # Piped output (scripts, tests) gets a wide console so that table cells never wrap
    # an ONIE platform string in two.
    stream = sys.stderr if err else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200)


_profiles_dir_option = click.option(
    "--profiles-dir",
    "profiles_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Also read profiles from DIR (repeatable; also ${ENV_PROFILES_DIR}, ':'-separated). "
    "A profile there overrides a shipped one with the same id.",
)


def _registry(profiles_dirs: tuple[Path, ...]) -> ProfileRegistry:
    return ProfileRegistry(list(profiles_dirs))


@click.group("profiles")
def profiles_group() -> None:
    """Hardware profiles: what each switch or server is and how to boot it.

    \b
    A profile is one YAML file: ONIE platform (x86_64-accton_as7712_32x-r0), CPU arch,
    firmware (uefi/bios/uboot), serial console, install disk hints, switch ASIC, kernel
    modules to load and to blacklist, extra kernel command line, BMC kind. Shipped profiles
    come from ONIE's machine/ tree; add your own with --profiles-dir or $PROVISION_PROFILES_DIR.

    \b
      provision profiles list
      provision profiles show accton_as7712_32x
      provision profiles validate my-profiles/
    """


@profiles_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of profiles) for scripts.")
@_profiles_dir_option
def list_cmd(as_json: bool, profiles_dirs: tuple[Path, ...]) -> None:
    """List every known profile: id, kind, ONIE platform, arch, firmware, console."""
    profiles = _registry(profiles_dirs).all()
    if as_json:
        echo_json([p.as_dict() for p in profiles])
        return
    table = Table(title=f"{len(profiles)} hardware profiles")
    for column in ("id", "kind", "platform", "arch", "firmware", "console"):
        table.add_column(column, no_wrap=True)
    for p in profiles:
        table.add_row(
            p.id, p.kind, p.onie_platform or "-", p.arch, p.firmware, f"{p.console.device} {p.console.speed}"
        )
    _console().print(table)


@profiles_group.command("show")
@click.argument("profile_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_profiles_dir_option
def show_cmd(profile_id: str, as_json: bool, profiles_dirs: tuple[Path, ...]) -> None:
    """Show one profile in full, with the kernel arguments it implies."""
    profile = _registry(profiles_dirs).get(profile_id)  # ProfileNotFound: exit 2
    if as_json:
        echo_json(profile.as_dict())
        return
    _console().print(_profile_table(profile))


def _profile_table(p: HardwareProfile) -> Table:
    table = Table(title=f"{p.id}: {p.description}" if p.description else p.id, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("kind", p.kind),
        ("vendor", p.vendor + (f" (IANA {p.vendor_id})" if p.vendor_id is not None else "")),
        ("machine", p.machine),
        ("revision", str(p.revision)),
        ("onie_platform", p.onie_platform or "-"),
        ("arch", p.arch),
        ("firmware", p.firmware),
        ("partition_type", p.partition_type),
        ("console", f"{p.console.device} {p.console.speed}"),
        ("disk", ", ".join(x for x in (p.disk_device_hint, p.disk_bus_path) if x) or "-"),
        ("switch_asic", p.switch_asic or "-"),
        ("modules.load", " ".join(p.modules_load) or "-"),
        ("modules.blacklist", " ".join(p.modules_blacklist) or "-"),
        ("cmdline", p.cmdline or "-"),
        ("kernel args", " ".join(p.kernel_args())),
        ("bmc", p.bmc),
        ("references", "\n".join(p.references) or "-"),
        ("file", str(p.source) if p.source else "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@profiles_group.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: counts and errors with file/line.")
@_profiles_dir_option
def validate_cmd(paths: tuple[Path, ...], as_json: bool, profiles_dirs: tuple[Path, ...]) -> None:
    """Check profile files or folders (default: the shipped ones, plus --profiles-dir).

    Prints every problem as file:line:col with a fix, and exits 2 if any; exits 0 and
    prints the count when all are valid.
    """
    targets = list(paths) or [profiles_dir(), *env_folders(), *profiles_dirs]
    files = profile_files(targets)
    if not files:
        raise CLIError("no profile files (*.yml) in " + ", ".join(map(str, targets)), exit_code=EXIT_INPUT)
    errors: list[ConfigError] = []
    valid = 0
    for path in files:
        try:
            load_profile(path)
            valid += 1
        except ConfigError as exc:
            errors.append(exc)
    if as_json:
        echo_json({"valid": valid, "invalid": len(errors), "errors": [_error_dict(e) for e in errors]})
    else:
        for error in errors:
            error.show()
        message = f"{valid} of {len(files)} profile(s) valid"
        click.echo(message, err=bool(errors))
    if errors:
        sys.exit(EXIT_INPUT)


def _error_dict(exc: ConfigError) -> dict[str, object]:
    mark = exc.mark
    return {
        "file": str(mark.file) if mark else None,
        "line": mark.line if mark else None,
        "column": mark.column if mark else None,
        "message": exc.message,
        "fix": exc.fix,
    }


@click.group("eeprom")
def eeprom_group() -> None:
    """ONIE TlvInfo system EEPROMs: decode a dump, encode one from YAML.

    \b
      provision eeprom decode /sys/bus/i2c/devices/0-0050/eeprom
      provision eeprom encode examples/eeprom/kvm-leaf.yml -o leaf.bin
    """


@eeprom_group.command("decode")
@click.argument("source", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def decode_cmd(source: Path, as_json: bool) -> None:
    """Decode a TlvInfo EEPROM dump (a file, or - for stdin).

    Shows each record (code, name, length, value) and whether the CRC-32 matches.
    Exit 0: valid. Exit 1: the CRC does not match, or the block is corrupt. Exit 2: no such file.
    """
    name = "<stdin>" if str(source) == "-" else str(source)
    try:
        data = sys.stdin.buffer.read() if str(source) == "-" else source.read_bytes()
    except OSError as exc:
        raise CLIError(f"{name}: cannot read: {exc.strerror}", exit_code=EXIT_INPUT) from None
    try:
        info = decode(data, verify_crc=False)
    except EepromError as exc:
        raise CLIError(
            f"{name}: not a valid TlvInfo EEPROM: {exc}",
            "check that this is the system EEPROM (onie-syseeprom reads the same bytes)",
            EXIT_FAILED,
        ) from None
    if as_json:
        echo_json(_info_dict(info, name))
    else:
        _print_info(info, name)
    if not info.crc_valid:
        sys.exit(EXIT_FAILED)


def _info_dict(info: TlvInfo, name: str) -> dict[str, object]:
    records = []
    for tlv in info.tlvs:
        value = tlv.typed
        if isinstance(value, VendorExtension):
            shown: object = {"iana": value.iana, "data": value.data.hex()}
        elif isinstance(value, bytes):
            shown = value.hex()
        else:
            shown = value
        records.append(
            {"code": tlv.code, "name": tlv.name, "title": tlv.title, "length": len(tlv.value), "value": shown}
        )
    return {
        "source": name,
        "version": info.version,
        "total_length": len(info.encode()) - 11,
        "crc": f"0x{info.crc:08X}" if info.crc is not None else None,
        "crc_computed": f"0x{info.crc_computed:08X}" if info.crc_computed is not None else None,
        "crc_valid": info.crc_valid,
        "tlvs": records,
    }


def _print_info(info: TlvInfo, name: str) -> None:
    console = _console()
    total = len(info.encode()) - 11
    table = Table(title=f"{name}: TlvInfo v{info.version}, {total} bytes of TLVs")
    table.add_column("code", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("len", justify="right")
    table.add_column("value")
    for tlv in info.tlvs:
        table.add_row(f"0x{tlv.code:02X}", tlv.title, str(len(tlv.value)), tlv.text)
    crc = f"0x{info.crc:08X}" if info.crc is not None else "-"
    table.add_row("0xFE", "CRC-32", "4", crc + (" ok" if info.crc_valid else " BAD"))
    console.print(table)
    if info.crc_valid:
        console.print(f"CRC-32 {crc} ok")
    else:
        click.secho(
            f"error: CRC-32 mismatch: stored {crc}, computed 0x{info.crc_computed:08X}: "
            "the EEPROM is corrupt or was edited without updating its CRC",
            fg="red",
            err=True,
        )


@eeprom_group.command("encode")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Where to write the EEPROM image (- for stdout).",
)
@click.option(
    "--pad",
    type=click.IntRange(11, 65536),
    default=None,
    help="Pad the image with 0xFF (erased EEPROM bytes) to this many bytes, e.g. 256 for a 24c02.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set or replace one key of the spec (repeatable), e.g. --set serial_number=ABC123 "
    "--set base_mac=52:54:00:00:00:02: one spec per product, these per device.",
)
@_profiles_dir_option
def encode_cmd(
    spec: Path, output: Path, pad: int | None, overrides: tuple[str, ...], profiles_dirs: tuple[Path, ...]
) -> None:
    """Encode a TlvInfo EEPROM image from a YAML spec (see examples/eeprom/kvm-leaf.yml).

    \b
    Keys (written in file order): product_name, part_number, serial_number, base_mac,
    manufacture_date (MM/DD/YYYY hh:mm:ss), device_version (0-255), label_revision,
    platform_name, onie_version, mac_count (0-65535), manufacturer, country_code (2 letters),
    vendor, diag_version, service_tag, vendor_extensions (a list of {iana:, hex:|text:}),
    and profile: <hardware profile id> to take platform_name from a profile.
    The CRC-32 record is added at the end. Errors name file:line:col.
    """
    registry = _registry(profiles_dirs)
    info = load_eeprom_spec(spec, registry, overrides)
    image = info.encode()
    if pad is not None:
        if pad < len(image):
            raise CLIError(
                f"the image is {len(image)} bytes, more than --pad {pad}",
                "use a larger --pad",
                EXIT_INPUT,
            )
        image += b"\xff" * (pad - len(image))
    if str(output) == "-":
        sys.stdout.buffer.write(image)
        sys.stdout.buffer.flush()
    else:
        try:
            output.write_bytes(image)
        except OSError as exc:
            raise CLIError(f"{output}: cannot write: {exc.strerror}", exit_code=EXIT_INPUT) from None
    crc = decode(image).crc or 0
    click.echo(
        f"wrote {len(image)} bytes ({len(info.tlvs)} TLVs, CRC-32 0x{crc:08X}) to {output}",
        err=str(output) == "-",
    )


COMMANDS: list = [profiles_group, eeprom_group]
