"""`provision devices list|show|enroll|arm|disarm|forget|import|export`: intent, written to the
store `provision serve` reads (docs/lifecycle.md).

Every change goes through provision.devices.lifecycle.Lifecycle on the store, so a running
server sees it at its next request (it re-reads when the store's data_version changes), and each
one is an event naming who did it (`by`: cli:<user>). lab.yml's devices are enrolled by the lab
file: they can be armed and disarmed here, never enrolled, imported or forgotten.
"""

from __future__ import annotations

import fnmatch
import functools
import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from onie.platform import normalise_mac
from provision.cli.common import EXIT_ENV, EXIT_INPUT, CLIError, echo_json
from provision.cli.state import StatePlace, state_options, state_place
from provision.config.errors import ConfigError
from provision.config.inventory import Device, Inventory
from provision.config.profiles import ProfileRegistry
from provision.config.schema import Context
from provision.devices import importer
from provision.devices.lifecycle import InstallMode, Lifecycle, device_doc
from provision.devices.status import circuit_id, event_dict, snapshot
from provision.onie.catalog import Catalog
from provision.store.base import StateStore, open_store

GLOB_CHARS = "*?["


def who() -> str:
    """`cli:<user>`: the user behind sudo when there is one (root alone says little)."""
    user = os.environ.get("SUDO_USER") or ""
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
    return f"cli:{user}"


@contextmanager
def _fleet(place: StatePlace, write: bool) -> Iterator[tuple[Lifecycle, Any]]:
    """The lifecycle on the state store. Reading a state that does not exist yet reads an empty
    one (nothing written); writing creates the folder, as `provision serve` would."""
    path: Path | str = place.location
    if not place.exists():
        if write:
            try:
                place.db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CLIError(
                    f"cannot create the state folder {place.db.parent}: {exc}",
                    "give --state-dir a writable folder, or run as the user `provision serve` runs as",
                    EXIT_ENV,
                ) from None
        else:
            click.echo(f"note: no state at {place.db} yet ({place.how}): nothing enrolled or armed", err=True)
            path = ":memory:"
    store: StateStore  # (yielded as Any: rollout_cmds types it as the SQLite Store it needs today)
    with open_store(path) as store:
        yield Lifecycle(store, place.lab, store, groups=place.cfg.groups if place.cfg else None), store


def _enrolled(fleet: Lifecycle, lab: Inventory) -> Inventory:
    return Inventory([d for d in fleet.inventory.devices if lab.named(d.name) is None])


def _select(fleet: Lifecycle, names: tuple[str, ...], every: bool) -> tuple[list[Device], bool]:
    """Devices by name, glob or --all; (devices, chosen by pattern)."""
    inv = fleet.inventory
    if every:
        if names:
            raise CLIError("give names or --all, not both", "drop one", EXIT_INPUT)
        return list(inv.devices), True
    if not names:
        raise CLIError("which devices?", "name them (globs work: 'leaf-*'), or give --all", EXIT_INPUT)
    chosen: dict[str, Device] = {}
    pattern = False
    for name in names:
        if any(ch in name for ch in GLOB_CHARS):
            pattern = True
            hits = [d for d in inv.devices if fnmatch.fnmatchcase(d.name, name)]
            if not hits:
                raise CLIError(f"no device matches {name!r}", "provision devices list shows them", EXIT_INPUT)
            chosen.update((d.name, d) for d in hits)
            continue
        try:
            dev = inv.get(name)
        except KeyError as exc:
            raise CLIError(
                str(exc.args[0]),
                "enroll it first (provision devices enroll), or add it to lab.yml",
                EXIT_INPUT,
            ) from None
        chosen[dev.name] = dev
    return list(chosen.values()), pattern


# One registry and one catalog per folder for the whole command: checking `arm 'leaf-*'` or a
# rollout of 500 devices read every profile file and every installer header once per device
# (minutes of CPU at 500; bench/rollout.py).
@functools.cache
def _profiles() -> ProfileRegistry:
    return ProfileRegistry()


@functools.cache
def _catalog(folder: Path) -> Catalog:
    return Catalog(folder)


def _expected_platform(dev: Device) -> str | None:
    if dev.platform:
        return dev.platform
    if not dev.profile:
        return None
    try:
        return _profiles().get(dev.profile).onie_platform
    except (LookupError, ConfigError):
        return None


def _check_target(place: StatePlace, dev: Device, target: str) -> str | None:
    """Why `--with target` cannot work for `dev` (None: it can, or there is nothing to check it
    against): a boot entry of lab.yml, else an installer of the lab's installers folder."""
    cfg = place.cfg
    if cfg is None:
        return None
    if target in cfg.boot.entries:
        return None
    folder = cfg.onie.installers if cfg.onie is not None else None
    if folder is None or not Path(folder).is_dir():
        if cfg.boot.entries:
            return f"no boot entry {target!r} in {', '.join(sorted(cfg.boot.entries))}"
        return None
    choice = _catalog(Path(folder)).resolve_pin(target, _expected_platform(dev))
    if choice.entry is not None:
        return None
    entries = ", ".join(sorted(cfg.boot.entries))
    return choice.reason + (f"; nor is it a boot entry ({entries})" if entries else "")


@click.group("devices")
def devices() -> None:
    """The device lifecycle: enroll, arm (install once), disarm, forget, import, export.

    \b
      provision devices list --lab lab.yml
      provision devices arm leaf-01 --lab lab.yml            # it installs at its next ONIE boot
      provision devices arm 'leaf-*' --with 4.2.1 --lab lab.yml
      provision devices enroll spine-07 --from-seen 52:54:00:aa:bb:cc --lab lab.yml
      provision devices import netbox.csv --dry-run --lab lab.yml
    A running `provision serve` sees each change at once (no restart); docs/lifecycle.md.
    """


@devices.command("list")
@state_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def list_cmd(lab: Path | None, state_dir: Path | None, db: str | None, as_json: bool) -> None:
    """The devices (lab.yml's and the enrolled ones), their state and arming."""
    place = state_place(lab, state_dir, db)
    with _fleet(place, write=False) as (fleet, store):
        snap = snapshot(store, place.lab)
        inv = fleet.inventory
    rows = [r for r in snap["devices"] if r["known"]]
    if as_json:
        echo_json(
            {
                "version": snap["version"],
                "devices": [
                    {**device_doc(inv.get(r["name"])), "source": r["source"], "state": r["state"],
                     "since": r["since"], "arming": r["arming"]}
                    for r in rows
                ],
            }
        )  # fmt: skip
        return
    if not rows:
        click.echo("no devices: add them to lab.yml, or provision devices enroll|import")
        return
    header = ("NAME", "FROM", "MAC", "SERIAL", "IP", "STATE", "ARMED WITH")
    table = [header]
    for r in rows:
        dev = inv.get(r["name"])
        arming = r["arming"] or {}
        target = arming.get("target") if arming.get("armed") else None
        mode = Lifecycle.mode(dev)
        state = r["state"] if mode is InstallMode.ARMED else f"{r['state']} (install: {mode.value})"
        table.append(
            (
                dev.name,
                r["source"] or "-",
                dev.mac or "-",
                dev.serial or "-",
                dev.ip or "-",
                state,
                target or "-",
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@devices.command("show")
@click.argument("name")
@state_options
@click.option("--events", "n_events", type=click.IntRange(0, 10000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def show_cmd(
    name: str, lab: Path | None, state_dir: Path | None, db: str | None, n_events: int, as_json: bool
) -> None:
    """One device: its entry, state, arming and latest events."""
    place = state_place(lab, state_dir, db)
    with _fleet(place, write=False) as (fleet, store):
        (dev,), _ = _select(fleet, (name,), False)
        snap = snapshot(store, place.lab, filters=None)
        row = next(r for r in snap["devices"] if r["name"] == dev.name)
        found: list[tuple[int, Any]] = []
        for mac in row["macs"]:
            found += store.event_page(mac=mac, limit=n_events)
        lifecycle = [
            (i, e) for i, e in store.event_page(kinds=[
                "device.enrolled", "device.armed", "device.disarmed", "device.forgotten"], limit=1000)
            if e.mac is None and e.detail.get("name") == dev.name
        ]  # fmt: skip
        found += lifecycle
    found = sorted(dict(found).items())[-n_events:] if n_events else []
    doc = {
        "device": {**device_doc(dev), "source": dev.source},
        "status": row,
        "events": [event_dict(e, i) for i, e in found],
    }
    if as_json:
        echo_json(doc)
        return
    for key, value in doc["device"].items():
        click.echo(f"{key + ':':14} {value}")
    click.echo(f"{'state:':14} {row['state']} since {row['since'] or '-'}")
    if row["arming"]:
        a = row["arming"]
        if a["armed"]:
            click.echo(
                f"{'armed:':14} {a['armed_at']} by {a['armed_by']} with {a['target'] or 'the default'}"
            )
        else:
            click.echo(f"{'last arming:':14} {a['outcome']} {a['outcome_at']} by {a['outcome_by']}")
    if row["error"]:
        click.echo(f"{'last error:':14} {row['error']}")
    for e in doc["events"]:
        detail = " ".join(f"{k}={v}" for k, v in e["detail"].items() if v not in (None, ""))
        click.echo(f"  {e['time']} {e['kind']} {e['mac'] or ''} {detail}".rstrip())


@devices.command("arm")
@click.argument("names", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every device of the inventory.")
@click.option(
    "--with",
    "target",
    default=None,
    metavar="FILE|VERSION|ENTRY",
    help="What to install: an installer file or NOS version (switches), a boot entry (servers).",
)
@state_options
def arm_cmd(
    names: tuple[str, ...],
    every: bool,
    target: str | None,
    lab: Path | None,
    state_dir: Path | None,
    db: str | None,
) -> None:
    """Allow one install: the device installs at its next network boot, once.

    A successful install report ends the arming (install once); a failed one too (arm again to
    retry). Devices with `install: always|never` are not armed (they do not need it / must not).
    """
    place = state_place(lab, state_dir, db)
    by = who()
    with _fleet(place, write=True) as (fleet, _store):
        chosen, pattern = _select(fleet, names, every)
        problems: list[str] = []
        todo: list[Device] = []
        for dev in chosen:
            mode = Lifecycle.mode(dev)
            if mode is not InstallMode.ARMED:
                msg = f"{dev.name} has install: {mode.value}; arming changes nothing"
                if pattern:
                    click.echo(f"skipped: {msg}", err=True)
                    continue
                problems.append(msg + " (set install: armed in its lab.yml entry or group to arm it)")
                continue
            if target:
                why = _check_target(place, dev, target)
                if why:
                    problems.append(f"{dev.name}: --with {target}: {why}")
                    continue
            todo.append(dev)
        if problems:
            raise CLIError("; ".join(problems), "fix the above; nothing was armed", EXIT_INPUT)
        for dev in todo:
            intent = fleet.arm(dev.name, target, by)
            what = f" with {target}" if target else ""
            click.echo(f"armed {dev.name}{what} (install {intent.install_id}, by {by})")
        if not todo:
            click.echo("nothing armed", err=True)


@devices.command("disarm")
@click.argument("names", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every armed device.")
@click.option("--reason", default=None, help="Why (kept with the event).")
@state_options
def disarm_cmd(
    names: tuple[str, ...],
    every: bool,
    reason: str | None,
    lab: Path | None,
    state_dir: Path | None,
    db: str | None,
) -> None:
    """Withdraw an arming: the device is not handed an installer until armed again."""
    place = state_place(lab, state_dir, db)
    by = who()
    with _fleet(place, write=True) as (fleet, _store):
        chosen, pattern = _select(fleet, names, every)
        done = 0
        for dev in chosen:
            intent = fleet.intent(dev.name)
            if intent is None or not intent.armed:
                if not (pattern or every):
                    click.echo(f"{dev.name} is not armed", err=True)
                continue
            fleet.disarm(dev.name, by, reason)
            done += 1
            click.echo(f"disarmed {dev.name} (by {by})")
        if not done and (pattern or every):
            click.echo("nothing was armed", err=True)


def _doc_errors(doc: dict[str, Any]) -> tuple[Device | None, list[str]]:
    """A device from command-line values, through lab.yml's schema; errors name the option."""
    errors: list[ConfigError] = []
    where = importer._mark("<command line>", 1, 1)
    items = [(k, v, where) for k, v in doc.items() if v not in (None, "", [])]
    dev = importer.check_node(importer.doc_node(items, where), Context("<command line>", errors))
    out = []
    for e in errors:
        text = e.message
        key = next((k for k in doc if repr(doc[k]) in text or str(doc[k]) in text), None)
        option = f"--{key.replace('_', '-')}: " if key and key != "name" else ""
        out.append(option + text + (f" ({e.fix})" if e.fix else ""))
    return dev, out


@devices.command("enroll")
@click.argument("name")
@click.option(
    "--from-seen", "seen_mac", default=None, metavar="MAC", help="Take what ONIE reported for this MAC."
)
@click.option("--mac", default=None)
@click.option("--serial", default=None)
@click.option("--platform", default=None, help="The ONIE platform it must report.")
@click.option("--profile", default=None, help="Hardware profile id (provision profiles list).")
@click.option("--ip", default=None, help="Reserved address.")
@click.option("--hostname", default=None)
@click.option("--switch-port", default=None, help="Option 82 circuit-id of its switch port.")
@click.option("--boot", default=None, help="Boot entry of lab.yml (servers).")
@click.option("--installer", default=None, help="Installer pin (switches).")
@click.option("--install", type=click.Choice([m.value for m in InstallMode]), default=None)
@click.option("--group", default=None, help="A lab.yml `groups:` entry.")
@click.option("--role", type=click.Choice(["switch", "server", "virtual"]), default=None)
@click.option("--site", default=None)
@click.option("--rack", default=None)
@click.option("--position", default=None)
@click.option("--asset-tag", default=None)
@state_options
def enroll_cmd(name: str, seen_mac: str | None, lab: Path | None, state_dir: Path | None, db: str | None,
               **values: str | None) -> None:  # fmt: skip
    """Add a device to the inventory in the store (lab.yml's own devices are enrolled by lab.yml).

    With --from-seen MAC: the serial, platform, MAC and switch port (option 82) that the device
    reported when it asked (`provision status` lists what was seen); options given win.
    """
    place = state_place(lab, state_dir, db)
    if place.lab.named(name) is not None:
        raise CLIError(
            f"{name!r} is in {place.lab.source or 'lab.yml'}: lab.yml enrolls it",
            "change its entry there (provision devices arm works on it as it is)",
            EXIT_INPUT,
        )
    by = who()
    with _fleet(place, write=True) as (fleet, store):
        doc: dict[str, Any] = {"name": name, **values}
        if seen_mac:
            mac = normalise_mac(seen_mac)
            if mac is None:
                raise CLIError(
                    f"--from-seen {seen_mac!r} is not a MAC", "write aa:bb:cc:dd:ee:ff", EXIT_INPUT
                )
            rec = next((r for r in store.devices() if r.mac == mac), None)
            if rec is None:
                raise CLIError(
                    f"no device with MAC {mac} was seen in {place.where}",
                    "provision status lists what was seen (check --lab/--state-dir point at the server's state)",
                    EXIT_INPUT,
                )
            port = circuit_id(store.last_events([mac]).get(mac, []))
            seen = {"mac": mac, "serial": rec.serial, "platform": rec.platform, "switch_port": port}
            doc = {**{k: v for k, v in seen.items() if v}, **{k: v for k, v in doc.items() if v}}
            click.echo("from what it reported: " + ", ".join(f"{k}={v}" for k, v in seen.items() if v))
        dev, problems = _doc_errors(doc)
        if place.cfg is not None and dev is not None and dev.boot and dev.boot not in place.cfg.boot.entries:
            problems.append(f"--boot: no boot entry {dev.boot!r} in {place.lab.source}")
        if dev is not None and dev.group and place.cfg is not None and dev.group not in place.cfg.groups:
            problems.append(f"--group: no group {dev.group!r} in {place.lab.source}")
        if dev is not None:
            problems += [
                str(e.message) + f" ({e.fix})"
                for e in importer.check_against([(dev, None)], place.lab, _enrolled(fleet, place.lab), "")
            ]
        if problems or dev is None:
            raise CLIError("; ".join(problems) or "bad device", "nothing was enrolled", EXIT_INPUT)
        old = _enrolled(fleet, place.lab).named(name)
        fleet.enroll(replace(dev, source="store"), by)
        click.echo(
            f"{'updated' if old else 'enrolled'} {name} (by {by}); arm it to install: provision devices arm {name}"
        )


@devices.command("forget")
@click.argument("name")
@state_options
def forget_cmd(name: str, lab: Path | None, state_dir: Path | None, db: str | None) -> None:
    """Remove an enrolled device (and its arming) from the store; its events stay."""
    place = state_place(lab, state_dir, db)
    if place.lab.named(name) is not None:
        raise CLIError(
            f"{name!r} is in {place.lab.source or 'lab.yml'}: lab.yml enrolls it",
            "remove its entry from lab.yml instead",
            EXIT_INPUT,
        )
    with _fleet(place, write=True) as (fleet, _store):
        if _enrolled(fleet, place.lab).named(name) is None:
            raise CLIError(f"no enrolled device {name!r}", "provision devices list shows them", EXIT_INPUT)
        fleet.forget(name, who())
    click.echo(f"forgot {name}")


@devices.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and say what would change; write nothing.")
@state_options
def import_cmd(file: Path, dry_run: bool, lab: Path | None, state_dir: Path | None, db: str | None) -> None:
    """Enroll devices from NetBox's device CSV export or a YAML `devices:` list.

    Every bad row is reported at once (file:line:column and the fix) and nothing is imported.
    A device already enrolled under the same name is updated. Columns: docs/lifecycle.md.
    """
    place = state_place(lab, state_dir, db)
    parsed = importer.parse_file(file)
    if parsed.ignored_columns:
        click.echo(f"note: columns not used: {', '.join(parsed.ignored_columns)}", err=True)
    with _fleet(place, write=not dry_run) as (fleet, _store):
        enrolled = _enrolled(fleet, place.lab)
        # A row may re-import a device already enrolled (same name): its own MAC and serial are
        # not a clash with itself.
        others = Inventory([d for d in enrolled.devices if d.name not in {x.name for x, _ in parsed.devices}])
        errors = parsed.errors + importer.check_against(parsed.devices, place.lab, others, file)
        if place.cfg is not None:
            for dev, mark in parsed.devices:
                if dev.boot and dev.boot not in place.cfg.boot.entries:
                    errors.append(ConfigError(mark, f"no boot entry {dev.boot!r} in {place.lab.source}",
                                              f"one of: {', '.join(sorted(place.cfg.boot.entries)) or '(none)'}"))  # fmt: skip
        if errors:
            raise importer.ImportErrors(errors, file)
        by = f"{who()} import {file.name}"
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        for dev, _mark in parsed.devices:
            old = enrolled.named(dev.name)
            kind = "new" if old is None else "unchanged" if device_doc(old) == device_doc(dev) else "updated"
            counts[kind] += 1
            if kind != "unchanged" and not dry_run:
                fleet.enroll(replace(dev, source="store"), by)
            if kind != "unchanged":
                click.echo(
                    f"{'would ' if dry_run else ''}{'enroll' if kind == 'new' else 'update'} {dev.name}"
                )
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    click.echo(f"{'dry run: ' if dry_run else ''}{len(parsed.devices)} device(s) in {file}: {summary}")


@devices.command("export")
@click.option("--csv", "as_csv", is_flag=True, help="CSV in NetBox's column names (else YAML).")
@click.option("--all", "with_lab", is_flag=True, help="lab.yml's devices too (import refuses those names).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File (else stdout).",
)
@state_options
def export_cmd(
    as_csv: bool,
    with_lab: bool,
    output: Path | None,
    lab: Path | None,
    state_dir: Path | None,
    db: str | None,
) -> None:
    """The enrolled devices, as `provision devices import` reads them back."""
    place = state_place(lab, state_dir, db)
    with _fleet(place, write=False) as (fleet, _store):
        devs = fleet.inventory.devices if with_lab else _enrolled(fleet, place.lab).devices
    text = importer.csv_text(devs) if as_csv else importer.yaml_text(devs)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(devs)} device(s) to {output}", err=True)


COMMANDS = [devices]
