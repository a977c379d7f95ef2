"""`provision status`: devices, leases and what each last fetched, read from `provision serve`'s store.

Its own module so that reading the store does not load the servers (aiohttp and pxe).
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from provision.cli.common import EXIT_ENV, EXIT_INPUT, CLIError, echo_json
from provision.config import lab as labconfig
from provision.config.inventory import Inventory
from provision.config.lab import DEFAULT_STATE_DIR
from provision.devices.status import snapshot
from provision.store.sqlite import Store, StoreError


def _ago(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    s = int(now - ts)
    when = datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S")
    if s < 120:
        return f"{when} ({s}s ago)"
    if s < 7200:
        return f"{when} ({s // 60}m ago)"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@click.command("status")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The folder `provision serve` keeps state in (default /var/lib/provision).",
)
@click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default=None, help="The SQLite file itself."
)
@click.option(
    "--lab", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Name devices from lab.yml."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(state_dir: Path | None, db: Path | None, lab: Path | None, as_json: bool) -> None:
    """Devices, leases, and what each last fetched (and when), from `provision serve`'s store.

    \b
      provision status                         # /var/lib/provision/provision.db
      provision status --state-dir /tmp/lab --json
      provision status --lab examples/lab.yml  # names and state dir from the lab file
    """
    inventory = Inventory([])
    if lab:
        cfg = labconfig.load_lab(lab, check_files=False)
        inventory = cfg.inventory
        state_dir = state_dir or cfg.paths.state_dir
        db = db or cfg.paths.db
    if db and state_dir:
        raise CLIError("give --db or --state-dir, not both", "drop one", EXIT_INPUT)
    path = db or (state_dir or DEFAULT_STATE_DIR) / "provision.db"
    if not path.is_file():
        raise CLIError(
            f"no provision state at {path}",
            "start `provision serve` first, or point --state-dir/--db at where it keeps its state",
            EXIT_ENV,
        )
    try:
        with Store(path) as store:
            snap = snapshot(store, inventory)
    except StoreError as exc:  # exit 3; the fix says where `status` looked
        exc.fix = "point --db/--state-dir at the state of `provision serve`"
        raise
    snap["db"] = str(path)
    if as_json:
        echo_json(snap)
        return
    now = snap["generated"]
    table = Table(title=f"provision status ({path})")
    for col in ("MAC", "name", "IP", "lease", "last event", "last fetched", "when", "stage"):
        table.add_column(col, no_wrap=col in ("MAC", "IP"))
    for row in snap["devices"]:
        lease = row["lease"]
        lease_s = "-" if not lease else lease["state"] + (" (expired)" if lease["expired"] else "")
        ev = row["last_event"]
        fetch = row["last_fetch"]
        cells = [
            row["mac"],
            row["name"] or row["hostname"] or "-",
            row["ip"] or "-",
            lease_s,
            f"{ev['kind']} {_ago(ev['ts'], now)}" if ev else "-",
            f"{fetch['protocol']} {fetch['path']}" if fetch else "-",
            _ago(fetch["ts"], now) if fetch else "-",
            row.get("stage") or "-",
        ]
        table.add_row(*cells)
    # Piped (a log, less, a test): lines as wide as the table needs rather than rich's 80 columns.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    if not snap["devices"]:
        click.echo("no devices seen yet")


COMMANDS = [status]
