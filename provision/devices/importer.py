"""Devices in and out of the store: CSV in the columns of NetBox's device export, and YAML in the
shape of lab.yml's `devices:` (docs/lifecycle.md "Import and export").

Every value is checked by lab.yml's own device schema (provision.config.inventory.DEVICE), so a
CSV cell and a YAML key fail the same way, with the same fix. A CSV row becomes a YAML mapping
whose marks are the row's line and the cell's column: errors read `file.csv:LINE:COL: ...`.
Checking collects every error of the file before anything is written (exit 2, nothing imported).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from onie.platform import split_platform
from provision.config.errors import ConfigError, Mark
from provision.config.inventory import DEVICE, Device, Inventory, device_from_section
from provision.config.schema import Context, _compose
from provision.devices.lifecycle import device_doc

STR_TAG = "tag:yaml.org,2002:str"
SEQ_TAG = "tag:yaml.org,2002:seq"
MAP_TAG = "tag:yaml.org,2002:map"


@dataclass(frozen=True)
class CsvColumn:
    key: str  # lab.yml's device key
    header: str  # what `export --csv` writes
    aliases: tuple[str, ...]  # headers `import` takes (case-insensitive)


# NetBox's device export first (its column names), then ours, so that export -> import keeps
# everything. NetBox lists no MAC on a device (MACs live on interfaces): "MAC address" is added
# by whoever exports, as the column of the boot NIC.
CSV_COLUMNS = (
    CsvColumn("name", "Name", ("name",)),
    CsvColumn("serial", "Serial number", ("serial number", "serial")),
    CsvColumn("asset_tag", "Asset tag", ("asset tag", "asset_tag")),
    CsvColumn("profile", "Device type", ("device type", "device_type", "type")),
    CsvColumn("platform", "Platform", ("platform",)),
    CsvColumn("ip", "Primary IPv4", ("primary ipv4", "primary_ip4", "primary ip4", "ipv4 address")),
    CsvColumn("mac", "MAC address", ("mac address", "mac_address", "mac")),
    CsvColumn("site", "Site", ("site",)),
    CsvColumn("rack", "Rack", ("rack",)),
    CsvColumn("position", "Position", ("position", "position (u)")),
    CsvColumn("hostname", "hostname", ("hostname",)),
    CsvColumn("macs", "macs", ("macs", "other macs")),
    CsvColumn("switch_port", "switch_port", ("switch_port", "switch port")),
    CsvColumn("boot", "boot", ("boot",)),
    CsvColumn("installer", "installer", ("installer",)),
    CsvColumn("install", "install", ("install",)),
    CsvColumn("group", "group", ("group",)),
    CsvColumn("role", "provision_role", ("provision_role", "provision role")),
    CsvColumn("tags", "Tags", ("tags",)),
)
_LISTS = {"macs": " ", "tags": ","}  # list columns, and how export joins them
_BY_ALIAS = {alias: col for col in CSV_COLUMNS for alias in col.aliases}


@dataclass(frozen=True)
class Parsed:
    devices: list[tuple[Device, Mark | None]]  # the rows that passed the schema
    errors: list[ConfigError]  # the rows that did not
    ignored_columns: tuple[str, ...] = ()


class ImportErrors(ConfigError):
    """Every problem of an import file at once (exit 2), each with file:line:col and a fix."""

    def __init__(self, errors: list[ConfigError], source: Path | str):
        self.errors = sorted(errors, key=lambda e: (e.mark.line, e.mark.column) if e.mark else (0, 0))
        lines = [str(e) for e in self.errors]
        super().__init__(
            None,
            f"{source}: {len(errors)} problem(s), nothing imported:\n" + "\n".join(lines),
            "fix the rows above and import again (--dry-run checks without writing)",
            "import",
        )


def _mark(path: Path | str, line: int, column: int) -> yaml.Mark:
    return yaml.Mark(str(path), 0, line - 1, column - 1, None, 0)  # type: ignore[arg-type]


def _scalar(value: str, mark: yaml.Mark) -> yaml.ScalarNode:
    return yaml.ScalarNode(STR_TAG, value, mark, mark)


def doc_node(items: Iterable[tuple[str, str | list[str], yaml.Mark]], mark: yaml.Mark) -> yaml.MappingNode:
    """A YAML mapping made of (key, value, where) items, for the schema to check."""
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    for key, value, where in items:
        node: yaml.Node
        if isinstance(value, list):
            node = yaml.SequenceNode(SEQ_TAG, [_scalar(v, where) for v in value], where, where)
        else:
            node = _scalar(value, where)
        pairs.append((_scalar(key, where), node))
    return yaml.MappingNode(MAP_TAG, pairs, mark, mark)


def check_node(node: yaml.Node, ctx: Context) -> Device | None:
    """One device through lab.yml's schema, plus the checks the schema has no type for; every
    error of the device is collected (None when there was one)."""
    before = len(ctx.errors or [])
    try:
        section = DEVICE.check(node, ctx)
    except ConfigError as exc:
        ctx.collect(exc)
        return None
    platform = section.get("platform")
    if platform and split_platform(str(platform)) is None:
        ctx.collect(
            section.error(
                "platform",
                f"{platform!r} is not an ONIE platform",
                "write <arch>-<vendor>_<machine>-r<rev> (x86_64-accton_as7712_32x-r0), "
                "or leave it empty to take the profile's",
            )
        )
    if ctx.errors is not None and len(ctx.errors) > before:
        return None
    return device_from_section(section)


def parse_csv(
    text: str, path: Path | str
) -> tuple[list[tuple[Device, Mark | None]], list[ConfigError], tuple[str, ...]]:
    errors: list[ConfigError] = []
    ctx = Context(path, errors)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))  # Excel's UTF-8 BOM
    try:
        header = next(reader)
    except StopIteration:
        return [], [ConfigError(Mark(path, 1, 1), "empty file", "export devices from NetBox as CSV")], ()
    columns: list[CsvColumn | None] = []
    ignored: list[str] = []
    seen: dict[str, int] = {}
    for i, title in enumerate(header, start=1):
        col = _BY_ALIAS.get(title.strip().casefold())
        if col is not None and col.key in seen:
            errors.append(
                ConfigError(
                    Mark(path, 1, i),
                    f"column {title!r} repeats column {seen[col.key]} ({col.header})",
                    "keep one of them",
                )
            )
            col = None
        if col is None and title.strip():
            ignored.append(title.strip())
        elif col is not None:
            seen[col.key] = i
        columns.append(col)
    if "name" not in seen:
        errors.append(
            ConfigError(
                Mark(path, 1, 1),
                "no Name column",
                "the first line must name the columns: Name, Serial number, MAC address, Primary IPv4, ...",
            )
        )
        return [], errors, tuple(ignored)
    out: list[tuple[Device, Mark | None]] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        items: list[tuple[str, str | list[str], yaml.Mark]] = []
        for i, (col, cell) in enumerate(zip(columns, row, strict=False), start=1):
            value = cell.strip()
            if col is None or not value:
                continue
            if col.key == "ip" and "/" in value:
                value = value.split("/", 1)[0]  # NetBox writes the address with its prefix length
            if col.key in _LISTS:  # NetBox separates tags with commas, we MACs with spaces: take both
                items.append((col.key, value.replace(",", " ").split(), _mark(path, line, i)))
            else:
                items.append((col.key, value, _mark(path, line, i)))
        if len(row) > len(columns):
            errors.append(
                ConfigError(
                    Mark(path, line, len(columns) + 1),
                    "more cells than columns",
                    "quote cells holding commas",
                )
            )
            continue
        dev = check_node(doc_node(items, _mark(path, line, 1)), ctx)
        if dev is not None:
            out.append((dev, Mark(path, line, 1)))
    return out, errors, tuple(ignored)


def parse_yaml(text: str, path: Path | str) -> tuple[list[tuple[Device, Mark | None]], list[ConfigError]]:
    errors: list[ConfigError] = []
    ctx = Context(path, errors)
    try:
        node = _compose(text, path)
    except ConfigError as exc:
        return [], [exc]
    fix = "write `devices:` with one entry per machine, as in lab.yml"
    if not isinstance(node, yaml.MappingNode):
        return [], [ConfigError(Mark(path, 1, 1), "expected a mapping with a `devices:` list", fix)]
    for knode, vnode in node.value:
        if isinstance(knode, yaml.ScalarNode) and knode.value == "devices":
            if not isinstance(vnode, yaml.SequenceNode):
                return [], [ConfigError(ctx.mark(vnode), "`devices:` must be a list", fix)]
            out: list[tuple[Device, Mark | None]] = []
            for item in vnode.value:
                dev = check_node(item, ctx)
                if dev is not None:
                    out.append((dev, ctx.mark(item)))
            return out, errors
    return [], [ConfigError(Mark(path, 1, 1), "no `devices:` list in this file", fix)]


def parse_file(path: Path) -> Parsed:
    """Devices of a CSV (a .csv or .txt name) or YAML file, and the errors of the rows that
    failed (the caller adds its own checks, then reports them all at once: ImportErrors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            None, f"{path}: cannot read: {exc}", "check the path and that it is UTF-8 text"
        ) from None
    ignored: tuple[str, ...] = ()
    if path.suffix.lower() in (".csv", ".txt"):
        devices, errors, ignored = parse_csv(text, path)
    else:
        devices, errors = parse_yaml(text, path)
    return Parsed(devices, errors, ignored)


def check_against(
    devices: list[tuple[Device, Mark | None]], lab: Inventory, enrolled: Inventory, source: Path | str
) -> list[ConfigError]:
    """What the schema cannot see: a name lab.yml owns, and a name, MAC or serial twice (in the
    file, or held by another device: lab.yml's or an enrolled one of another name)."""
    errors: list[ConfigError] = []
    first: dict[str, tuple[str, Mark | None]] = {}
    for dev, mark in devices:
        if lab.named(dev.name) is not None:
            errors.append(
                ConfigError(
                    mark,
                    f"{dev.name!r} is in lab.yml ({lab.source or 'the lab file'}): lab.yml enrolls it",
                    "change it there, or give this row another name",
                    "lab-owned",
                )
            )
            continue
        keys = [("name", dev.name), *(("MAC", m) for m in dev.all_macs)]
        if dev.serial:
            keys.append(("serial", dev.serial.casefold()))
        for what, key in keys:
            tag = f"{what}:{key}"
            if tag in first:
                where = first[tag][1]
                errors.append(
                    ConfigError(
                        mark,
                        f"{what} {key} is also on {first[tag][0]!r}"
                        + (f" (line {where.line})" if where else ""),
                        "give each device its own name, MAC and serial",
                        "duplicate",
                    )
                )
            else:
                first[tag] = (dev.name, mark)
            if what == "name":
                continue
            for inv in (lab, enrolled):
                other = inv.by_mac(key) if what == "MAC" else inv.by_serial(key)
                if other is not None and other.name != dev.name:
                    errors.append(
                        ConfigError(
                            mark,
                            f"{what} {key} belongs to {other.name!r} ({'lab.yml' if inv is lab else 'enrolled'})",
                            f"forget {other.name} first, or fix this row's {what}",
                            "taken",
                        )
                    )
    return errors


def yaml_text(devices: Iterable[Device]) -> str:
    docs = [device_doc(d) for d in devices]
    head = "# provision devices export: `provision devices import` reads this back (docs/lifecycle.md)\n"
    return head + yaml.safe_dump({"devices": docs}, sort_keys=False, default_flow_style=False)


def csv_text(devices: Iterable[Device]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.header for c in CSV_COLUMNS])
    for dev in devices:
        doc: dict[str, Any] = device_doc(dev)
        writer.writerow(
            [
                _LISTS[c.key].join(doc.get(c.key) or ()) if c.key in _LISTS else str(doc.get(c.key) or "")
                for c in CSV_COLUMNS
            ]
        )
    return buf.getvalue()


__all__ = [
    "CSV_COLUMNS",
    "ImportErrors",
    "Parsed",
    "check_against",
    "csv_text",
    "parse_file",
    "yaml_text",
]
