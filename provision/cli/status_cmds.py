"""`provision status`: one line per device, read from `provision serve`'s store.

Its own module so that reading the store does not load the servers (aiohttp and pxe). The table
fits the terminal (COLUMNS, else the terminal's width, else 100 columns): narrower, it drops
columns in `DROP_ORDER` and shortens the last error. The JSON is docs/lifecycle.md "status --json".
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from provision.cli.common import EXIT_ENV, EXIT_INPUT, CLIError, echo_json
from provision.cli.state import StatePlace, state_options, state_place
from provision.cli.watch import ENV_SERVER, EventStream, StreamUnavailable, server_url, stream_query
from provision.cli.watch import read_token as stream_token
from provision.devices.status import STATE_CODES, Filters, parse_time, snapshot
from provision.store.base import open_store
from provision.store.sqlite import StoreError

DEFAULT_WIDTH = 100
ERROR_ROOM = 36
IDLE_REDRAW_S = 30.0  # --watch on the stream, nothing happening: the SINCE column still ages
SEP = "  "


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    cap: int  # widest it gets; 0: whatever is left (the last error)
    least: int = 4


COLUMNS = (
    Column("name", "NAME/MAC", 20, 12),
    Column("ip", "IP", 15),
    Column("serial", "SERIAL", 16),
    Column("platform", "PLATFORM", 28),
    Column("nos", "NOS", 18),
    Column("state", "STATE", 10, 10),
    Column("since", "SINCE", 8),
    Column("error", "LAST ERROR", 0, 10),
)
# Narrower than everything: drop these first (the name, state and last error always stay).
DROP_ORDER = ("platform", "serial", "nos", "ip", "since")


def ago(ts: float | None, now: float) -> str:
    """How long ago, in the one unit an operator reads at a glance: 45s, 3m, 2h, 5d ago."""
    if ts is None:
        return "-"
    s = max(0, int(now - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def _cell(row: dict[str, Any], key: str, now: float) -> str:
    if key == "name":
        return str(row["name"] or row["mac"] or "-")
    if key == "since":
        return ago(parse_time(row["since"]) if row["since"] else None, now)
    if key == "nos":
        nos = row["nos"]
        return " ".join(str(x) for x in (nos["name"], nos["version"]) if x) if nos else "-"
    if key == "state" and row["state"] == "armed" and row["arming"] and row["arming"]["target"]:
        return "armed"
    value = row.get(key)
    return "-" if value in (None, "") else str(value).replace("\n", " ")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def render_table(rows: list[dict[str, Any]], width: int, now: float) -> list[str]:
    """The table as lines no wider than `width`."""
    cells = [{c.key: _cell(r, c.key, now) for c in COLUMNS} for r in rows]
    widths = {
        c.key: max([len(c.title), *(len(x[c.key]) for x in cells)]) if c.cap == 0 else
        min(c.cap, max([len(c.title), *(len(x[c.key]) for x in cells)]))
        for c in COLUMNS
    }  # fmt: skip
    shown = list(COLUMNS)

    # The last error is what an operator looks for: it keeps room for ERROR_ROOM characters (or
    # its longest text) before the optional columns do.
    room = min(widths["error"], ERROR_ROOM)

    def need() -> int:
        fixed = sum(widths[c.key] if c.cap else room for c in shown)
        return fixed + len(SEP) * (len(shown) - 1)

    for key in DROP_ORDER:
        if need() <= width:
            break
        shown = [c for c in shown if c.key != key]
    # Still too wide (a very narrow terminal): the capped columns give way down to their least.
    for c in shown:
        while need() > width and c.cap and widths[c.key] > c.least:
            widths[c.key] -= 1
    rest = width - sum(widths[c.key] for c in shown if c.cap) - len(SEP) * (len(shown) - 1)
    widths["error"] = max(1, min(widths["error"], rest))
    lines = [SEP.join(_cut(c.title, widths[c.key]).ljust(widths[c.key]) for c in shown).rstrip()]
    for x in cells:
        lines.append(SEP.join(_cut(x[c.key], widths[c.key]).ljust(widths[c.key]) for c in shown).rstrip())
    return [line[:width] for line in lines]


def terminal_width() -> int:
    """COLUMNS when set (scripts, `watch`), else the terminal's width, else 100."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH


def _summary(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    parts = [f"{counts[s]} {s}" for s in STATE_CODES if counts.get(s)]
    n = len(rows)
    return f"{n} device{'s' if n != 1 else ''}" + (f" ({', '.join(parts)})" if parts else "")


def _read(place: StatePlace, filters: Filters) -> dict[str, Any]:
    try:
        with open_store(place.location) as store:
            snap = snapshot(store, place.lab, filters=filters)
    except StoreError as exc:  # exit 3; the fix says where `status` looked
        exc.fix = f"point --lab/--state-dir/--db at the state of `provision serve` ({place.how})"
        raise
    snap["db"] = place.where  # a PostgreSQL URL without its password
    return snap


def _draw(place: StatePlace, filters: Filters, as_json: bool, width: int | None) -> None:
    snap = _read(place, filters)
    if as_json:
        if width is None:
            echo_json(snap)
        else:  # --watch --json: one document per line
            click.echo(json.dumps(snap, sort_keys=True, default=str))
        return
    w = width or terminal_width()
    now = time.time()
    rows = snap["devices"]
    if rows:
        for line in render_table(rows, w, now):
            click.echo(line)
    else:
        click.echo("no devices" + (" match" if filters != Filters() else " seen yet"))
    where = place.where if place.url else place.db.resolve()
    click.echo(_cut(f"{_summary(rows)} · state: {where} ({place.how})", w))
    if place.hint:
        click.echo(_cut(place.hint, w))


def _watch(place: StatePlace, filters: Filters, as_json: bool, interval: float, server: str | None) -> None:
    """--watch: a redraw after each burst of the server's events (provision.cli.watch), or every
    `interval` seconds when the stream cannot be followed; with --json one document per change."""
    tty = sys.stdout.isatty() and not as_json
    base = server_url(server, place.cfg)
    token = stream_token(place.cfg.paths.state_dir if place.cfg is not None else place.db.parent)
    why = "" if base is not None else " (no server URL: --server, or --lab on the server)"
    shown: str | None = None

    def redraw(live: str | None) -> None:
        nonlocal shown
        if as_json and live is not None:
            snap = _read(place, filters)
            same = json.dumps(
                {k: v for k, v in snap.items() if k != "generated"}, sort_keys=True, default=str
            )
            if same != shown:  # one document per change
                shown = same
                click.echo(json.dumps(snap, sort_keys=True, default=str))
            return
        if tty:
            click.echo("\x1b[H\x1b[2J", nl=False)  # home, clear: redraw in place
        width = terminal_width()
        _draw(place, filters, as_json, width)
        if tty:
            how = f"live: {live}" if live else f"every {interval:g}s{why}"
            click.echo(_cut(f"{how} · Ctrl-C to stop", width))
        elif not as_json:
            click.echo("")

    while True:
        stream = None
        if base is not None:
            try:
                stream = EventStream(base, stream_query(filters), token)
            except StreamUnavailable as exc:
                why = f" (event stream: {exc})"
        if stream is None:
            redraw(None)
            time.sleep(interval)
            continue
        try:
            redraw(stream.url)
            for _ in stream.changes(idle=None if as_json else IDLE_REDRAW_S):
                redraw(stream.url)
        except StreamUnavailable as exc:
            why = f" (event stream: {exc})"
            time.sleep(min(interval, 2.0))  # then the stream again, else a poll
        finally:
            stream.close()


@click.command("status")
@state_options
@click.option("--state", "states", multiple=True, type=click.Choice(STATE_CODES), help="Only this state.")
@click.option("--platform", "platforms", multiple=True, help="Only this platform (a glob: '*accton*').")
@click.option("--name", "names", multiple=True, help="Only devices named like this (a glob: 'leaf-*').")
@click.option("--mac", "macs", multiple=True, help="Only this MAC (a glob: '52:54:00:*').")
@click.option(
    "--watch",
    type=float,
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Redraw on each change, following the server's event stream; every SECONDS (2 when not "
    "given) when the stream cannot be reached. Ctrl-C ends it.",
)
@click.option(
    "--server",
    envvar=ENV_SERVER,
    metavar="URL",
    help="The server's HTTP base URL for --watch (http://10.0.0.1[:port]; env PROVISION_SERVER). "
    "Default: lab.yml's first interface address and http_port, with --lab.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (docs/lifecycle.md).")
def status(
    lab: Path | None,
    state_dir: Path | None,
    db: str | None,
    states: tuple[str, ...],
    platforms: tuple[str, ...],
    names: tuple[str, ...],
    macs: tuple[str, ...],
    watch: float | None,
    server: str | None,
    as_json: bool,
) -> None:
    """Each device's lifecycle state and since when, serial, platform, NOS and last error.

    \b
      provision status --lab lab.yml                 # names and state folder from the lab file
      provision status --lab lab.yml --watch         # redraw as events happen (event stream)
      provision status --state installing --watch 5  # every 5 s when the stream is unreachable
      provision status --name 'leaf-*' --json        # schema: docs/lifecycle.md
      COLUMNS=80 provision status                    # narrower: fewer columns
      provision status --db postgresql://provision@db1/provision   # every server sharing it
    """
    place = state_place(lab, state_dir, db)
    if not place.exists():
        raise CLIError(
            f"no provision state at {place.where} ({place.how})",
            "start `provision serve` first; or give --lab lab.yml (its paths.state_dir) or "
            "--state-dir DIR where `provision serve` keeps its state",
            EXIT_ENV,
        )
    if watch is not None and watch <= 0:
        raise CLIError("--watch takes a number of seconds above 0", "for example --watch 5", EXIT_INPUT)
    filters = Filters(states=states, platforms=platforms, names=names, macs=tuple(m.lower() for m in macs))
    if watch is None:
        _draw(place, filters, as_json, None)
        return
    try:
        _watch(place, filters, as_json, watch, server)
    except KeyboardInterrupt:
        return  # exit 0: stopping a watch is not an error


COMMANDS = [status]
