"""`provision rollout start|resume|status|pause|continue|abort|list`: reinstall devices in waves
with canaries and gates, the state in the store (docs/rollout.md).

`start` and `resume` run the engine in this process until the rollout ends, stops at a gate, or
is aborted; Ctrl-C or a kill leaves it resumable. `pause`, `continue` and `abort` only write the
store: the engine running the rollout (in another terminal) reads them at its next poll.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import click

from provision.cli.common import EXIT_ENV, EXIT_INPUT, CLIError, echo_json
from provision.cli.devices_cmds import _check_target, _expected_platform, _fleet, who
from provision.cli.state import StatePlace, state_options, state_place
from provision.config.inventory import Device
from provision.errors import EXIT_FAILED
from provision.onie.catalog import Catalog
from provision.rollout import drivers as driver_registry
from provision.rollout.engine import CANARY_PAUSE, Engine, abort, create, owner_alive, wave_to_accept
from provision.rollout.plan import Plan, load_plan, plan_from_flags
from provision.rollout.view import ENDED_STATES, iso, rollout_summaries, summary
from provision.store.base import open_store
from provision.store.rollouts import FINAL_STAGES, RolloutDevice, RolloutRecord, RolloutStore
from provision.store.sqlite import Store


def _known_drivers() -> list[str]:
    return sorted(driver_registry.DRIVERS)


def _target_check(place: StatePlace) -> Callable[[Device, str], str | None]:
    return lambda dev, target: _check_target(place, dev, target)


def _version_of(place: StatePlace) -> Callable[[Device, str], str | None]:
    """The NOS version a target installs, as `provision serve` would pick the installer (the
    catalog's pin resolution, docs/onie.md); "" for a boot entry (servers: no version to see)."""

    def version(dev: Device, target: str) -> str | None:
        cfg = place.cfg
        if cfg is None:
            return None
        if target in cfg.boot.entries:
            return ""
        folder = cfg.onie.installers if cfg.onie is not None else None
        if folder is None or not Path(folder).is_dir():
            return None
        entry = Catalog(Path(folder)).resolve_pin(target, _expected_platform(dev)).entry
        return entry.nos_version if entry is not None else None

    return version


def _open(place: StatePlace) -> Store:
    if not place.exists():
        raise CLIError(
            f"no provision state at {place.where} ({place.how}): no rollouts",
            "give --lab lab.yml (its paths.state_dir), --state-dir DIR or --db FILE|URL",
            EXIT_ENV,
        )
    # A PgStore too (--db postgresql://…, lab.yml state:): the rollout code uses only the
    # StateStore methods and RolloutStore (docs/scale-out.md); typed as the SQLite Store it was.
    return cast(Store, open_store(place.location))


def _find(store: Store, rollout_id: str) -> RolloutRecord:
    found = RolloutStore(store).find(rollout_id)
    exact = [r for r in found if r.id == rollout_id]
    if exact:
        return exact[0]
    if not found:
        raise CLIError(f"no rollout {rollout_id!r}", "`provision rollout list` shows them", EXIT_INPUT)
    if len(found) > 1:
        ids = ", ".join(r.id for r in found[:5])
        raise CLIError(
            f"{rollout_id!r} names {len(found)} rollouts ({ids})", "give more of the id", EXIT_INPUT
        )
    return found[0]


def _device_dict(d: RolloutDevice) -> dict[str, Any]:
    return {
        "name": d.name,
        "wave": d.wave,
        "stage": d.stage,
        "attempts": d.attempts,
        "install_id": d.install_id,
        "note": d.note,
        "error": d.error,
        "since": iso(d.since),
    }


def _status_doc(store: Store, rec: RolloutRecord) -> dict[str, Any]:
    rs = RolloutStore(store)
    devices = rs.devices(rec.id)
    return {
        "version": 1,
        "rollout": {
            **summary(rec, rs.stage_counts([rec.id]).get(rec.id, {})),
            "running": owner_alive(rec),
            "owner": rec.owner,
        },
        "devices": [_device_dict(d) for d in devices],
    }


# -- drawing ---------------------------------------------------------------------------------------

DEVICE_ROWS_MAX = 40
RECENT_LINES = 8
_COUNTS = ("pending", "arming", "installing", "installed", "verified", "failed", "skipped")
# Short headers: the table fits 80 columns. BOOT: installed, waiting to see the new version.
_HEADERS = ("PEND", "ARM", "INST", "BOOT", "OK", "FAIL", "SKIP")


def _wave_table(doc: dict[str, Any]) -> Any:
    from rich.table import Table  # optional heavy dependency: rich

    r = doc["rollout"]
    reason = f" ({r['reason']})" if r.get("reason") else ""
    table = Table(
        title=f"rollout {r['id']} {r['name']} → {r['target']}: {r['state']}{reason}", title_justify="left"
    )
    table.add_column("WAVE", justify="right")
    table.add_column("DEV", justify="right")
    for col in _HEADERS:
        table.add_column(col, justify="right")
    table.add_column("STATE")
    for w in r["waves"]:
        label = "canary" if w["index"] == 0 and doc.get("canaries") else str(w["index"])
        installed_only = w["installed"] - w["verified"]
        cells = [str(w[c]) if c != "installed" else str(installed_only) for c in _COUNTS]
        table.add_row(label, str(w["devices"]), *[c if c != "0" else "·" for c in cells], w["state"])
    return table


def _device_table(doc: dict[str, Any]) -> Any:
    from rich.table import Table  # optional heavy dependency: rich

    rows = doc["devices"]
    hidden = 0
    if len(rows) > DEVICE_ROWS_MAX:  # a rack is listed whole; 500 devices show what needs a look
        shown = [d for d in rows if d["stage"] != "verified"]
        hidden = len(rows) - len(shown)
        rows = shown
    title = "devices" + (f" ({hidden} verified not listed: status --json has them all)" if hidden else "")
    table = Table(title=title, title_justify="left")
    for col in ("DEVICE", "WAVE", "STAGE", "TRIES", "NOTE / ERROR"):
        table.add_column(col)
    for d in rows:
        text = d["error"] if d["stage"] == "failed" else (d["note"] or d["error"] or "")
        table.add_row(d["name"], str(d["wave"]), d["stage"], str(d["attempts"]), text or "")
    return table


def _console() -> Any:
    from rich.console import Console  # optional heavy dependency: rich

    return Console()


def _print_status(store: Store, rec: RolloutRecord, devices: bool = True) -> None:
    doc = _status_doc(store, rec)
    doc["canaries"] = rec.plan.get("canaries", 0)
    console = _console()
    console.print(_wave_table(doc))
    if devices:
        console.print(_device_table(doc))
    if rec.state == "paused" and (rec.reason or "").startswith(CANARY_PAUSE):
        console.print(f"paused {CANARY_PAUSE}: provision rollout continue {rec.id}")
    elif rec.state in ("running", "paused") and not owner_alive(rec):
        console.print(f"no engine runs it now: provision rollout resume {rec.id}")


class _Progress:
    """Live progress: on a terminal a rich table per wave redrawn at each poll; otherwise one
    line per device stage change (logs, CI)."""

    def __init__(self, store: Store, quiet: bool) -> None:
        self.store = store
        self.quiet = quiet
        self.tty = sys.stdout.isatty() and not quiet
        self.live: Any = None
        self.stages: dict[str, str] = {}
        self.recent: list[str] = []  # the last changes, under the live table

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.live import Live  # optional heavy dependency: rich

            self.live = Live(refresh_per_second=4, console=_console(), transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def tick(self, engine: Engine) -> None:
        if self.quiet:
            return
        lines = self._changes(engine)
        if self.live is None:
            for line in lines:
                click.echo(line)
            return
        from rich.console import Group  # optional heavy dependency: rich
        from rich.text import Text  # optional heavy dependency: rich

        self.recent = (self.recent + lines)[-RECENT_LINES:]
        doc = _status_doc(self.store, engine.rec)
        doc["canaries"] = engine.plan.canaries
        self.live.update(Group(_wave_table(doc), *(Text(line) for line in self.recent)))

    def _changes(self, engine: Engine) -> list[str]:
        """One line per device that changed stage since the last tick, and per rollout state."""
        now = time.strftime("%H:%M:%S")
        out = []
        for d in engine.devices():
            if self.stages.get(d.name) != d.stage:
                if d.name in self.stages or d.stage != "pending":
                    text = d.error if d.stage in ("failed", "pending") and d.error else d.note
                    out.append(f"{now} wave {d.wave} {d.name} {d.stage}" + (f": {text}" if text else ""))
                self.stages[d.name] = d.stage
        state = f"rollout:{engine.state}"
        if self.stages.get("\0") != state:
            if "\0" in self.stages or engine.state != "running":
                reason = f" ({engine.rec.reason})" if engine.rec.reason else ""
                out.append(f"{now} rollout {engine.id} {engine.state}{reason}")
            self.stages["\0"] = state
        return out


def _run(place: StatePlace, rollout_id: str, poll: float, as_json: bool) -> int:
    """Run the engine on a stored rollout until it ends; the exit code."""
    with _fleet(place, write=True) as (fleet, store):
        rec = _find(store, rollout_id)
        if owner_alive(rec):
            raise CLIError(
                f"rollout {rec.id} is being run by {rec.owner} (alive {time.time() - (rec.heartbeat or 0):.0f} s ago)",
                "watch it with `provision rollout status --watch`, or stop that process first",
                EXIT_ENV,
            )
        progress = _Progress(store, quiet=as_json)
        # ssh keys pinned on first use live with the rest of this state (docs/rollout.md "Drivers")
        state_dir = place.cfg.paths.state_dir if place.cfg is not None else None
        if place.url is None:
            state_dir = place.db.parent
        pins = {"ssh": {"pin_file": str(state_dir / "ssh_known_hosts")}} if state_dir else {}
        engine = Engine(
            store,
            fleet,
            rec.id,
            by=f"{who()} rollout {rec.id}",
            poll=poll,
            on_tick=progress.tick,
            driver_defaults=pins,
        )
        if not as_json:
            click.echo(
                f"rollout {rec.id} ({rec.name}): {len(engine.plan.devices)} device(s) in "
                f"{len(engine.plan.waves)} wave(s) → {engine.plan.target}; "
                f"pause/continue/abort: provision rollout pause|continue|abort {rec.id}"
            )
        try:
            with progress:
                code = asyncio.run(engine.run())
        except KeyboardInterrupt:
            click.echo(
                f"\ninterrupted: the rollout stays as it is; provision rollout resume {rec.id}", err=True
            )
            return EXIT_FAILED
        rec = _find(store, rec.id)
        if as_json:
            echo_json(_status_doc(store, rec))
        else:
            _print_status(store, rec)
            if rec.state == "stopped":
                click.echo(
                    f"stopped by a gate: {rec.reason}. After a look: provision rollout continue {rec.id} "
                    f"&& provision rollout resume {rec.id}; or provision rollout abort {rec.id}"
                )
        return code


# -- commands ---------------------------------------------------------------------------------------


@click.group("rollout")
def rollout() -> None:
    """Reinstall devices in waves: canaries first, gates between waves, resumable.

    \b
      provision rollout start examples/rollout.yml --lab lab.yml --dry-run   # the waves, nothing done
      provision rollout start examples/rollout.yml --lab lab.yml
      provision rollout start --devices 'leaf-*' --target 2.0 --driver ssh --canaries 1 \\
          --wave-size 10 --max-failure-percent 10 --lab lab.yml
      provision rollout status --watch --lab lab.yml            # from another terminal
      provision rollout pause ID | continue ID | abort ID --lab lab.yml
      provision rollout resume ID --lab lab.yml                 # after Ctrl-C, kill -9, reboot
    Exit codes of start/resume: 0 all done, 4 some failed, 1 stopped by a gate or aborted,
    2 bad plan. docs/rollout.md.
    """


@rollout.command("start")
@click.argument("plan_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--devices", "devices", multiple=True, metavar="NAME|GLOB", help="Devices (no plan file); repeat."
)
@click.option("--target", default=None, metavar="VERSION|INSTALLER|ENTRY", help="What to arm them with.")
@click.option(
    "--version", "version", default=None, help="The NOS version a done device reports (default: target)."
)
@click.option("--driver", default=None, help="Arming driver: ssh, bmc, qemu, manual.")
@click.option(
    "-o", "--driver-option", "driver_options", multiple=True, metavar="KEY=VALUE", help="Driver option."
)
@click.option(
    "--canaries", type=int, default=0, show_default=True, help="The first N devices go alone first."
)
@click.option("--wave-size", type=int, default=10, show_default=True)
@click.option("--max-parallel", type=int, default=None, help="In flight at once (default: wave size).")
@click.option("--max-failures", type=int, default=None, help="Stop when a wave has more failures than this.")
@click.option("--max-failure-percent", type=int, default=None, help="... or more than this % of a wave.")
@click.option("--pause-after-canaries", is_flag=True, help="Wait for `rollout continue` after the canaries.")
@click.option("--delay", type=int, default=0, show_default=True, help="Seconds between waves.")
@click.option("--retries", type=int, default=0, show_default=True, help="New armings of a failed device.")
@click.option("--name", default=None, help="A label for list and status.")
@click.option("--dry-run", is_flag=True, help="Print the waves; arm nothing, store nothing.")
@click.option(
    "--poll", type=float, default=1.0, show_default=True, help="Seconds between reads of the store."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable (the plan with --dry-run, else the end status)."
)
@state_options
def start_cmd(
    plan_file: Path | None,
    devices: tuple[str, ...],
    target: str | None,
    version: str | None,
    driver: str | None,
    driver_options: tuple[str, ...],
    canaries: int,
    wave_size: int,
    max_parallel: int | None,
    max_failures: int | None,
    max_failure_percent: int | None,
    pause_after_canaries: bool,
    delay: int,
    retries: int,
    name: str | None,
    dry_run: bool,
    poll: float,
    as_json: bool,
    lab: Path | None,
    state_dir: Path | None,
    db: Path | None,
) -> None:
    """Start a rollout from PLAN (YAML, docs/rollout.md) or from flags, and run it.

    \b
      provision rollout start tor-v2.yml --lab lab.yml --dry-run
      provision rollout start --devices 'leaf-*' --target 2.0 --driver manual --canaries 1 --lab lab.yml
    """
    place = state_place(lab, state_dir, db)
    flag_given = devices or target or driver or driver_options
    if plan_file and flag_given:
        raise CLIError(
            "give a plan file or --devices/--target/--driver, not both",
            "put everything in the plan file (docs/rollout.md), or drop the file",
            EXIT_INPUT,
        )
    with _fleet(place, write=False) as (fleet, _store):
        inventory = fleet.inventory
    if plan_file:
        plan = load_plan(
            plan_file,
            inventory,
            drivers=_known_drivers(),
            check_target=_target_check(place),
            version_of=_version_of(place),
        )
    else:
        options: dict[str, str] = {}
        for item in driver_options:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CLIError(f"-o {item!r}: expected KEY=VALUE", "for example -o user=admin", EXIT_INPUT)
            options[key] = value
        plan = plan_from_flags(
            inventory,
            devices=devices,
            target=target,
            drivers=_known_drivers(),
            name=name,
            version=version,
            canaries=canaries,
            wave_size=wave_size,
            max_parallel=max_parallel,
            max_failures=max_failures,
            max_failure_percent=max_failure_percent,
            pause_after_canaries=pause_after_canaries,
            delay=delay,
            retries=retries,
            driver=driver,
            options=options,
            check_target=_target_check(place),
            version_of=_version_of(place),
        )
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if dry_run:
        _dry_run(plan, as_json)
        return
    with _fleet(place, write=True) as (_fleet_w, store):
        _refuse_busy(store, plan)
        rollout_id = create(store, plan, who())
    sys.exit(_run(place, rollout_id, poll, as_json))


def _refuse_busy(store: Store, plan: Plan) -> None:
    """Two rollouts arming one device would each replace the other's arming: a device still in
    flight in a rollout that has not ended is not taken by a new one."""
    rs = RolloutStore(store)
    wanted = set(plan.devices)
    busy: dict[str, str] = {}
    for rec in rs.recent(200):
        if rec.state in ENDED_STATES:
            continue
        for d in rs.devices(rec.id):
            if d.name in wanted and d.stage not in FINAL_STAGES:
                busy.setdefault(d.name, rec.id)
    if busy:
        names = ", ".join(sorted(busy)[:10]) + (" ..." if len(busy) > 10 else "")
        ids = sorted(set(busy.values()))
        raise CLIError(
            f"{len(busy)} device(s) are in rollouts that have not ended ({', '.join(ids)}): {names}",
            f"let {'them' if len(ids) > 1 else 'it'} finish (provision rollout resume), or "
            f"provision rollout abort {ids[0]}; or leave those devices out",
            EXIT_INPUT,
        )


def _dry_run(plan: Plan, as_json: bool) -> None:
    if as_json:
        echo_json(plan.to_doc())
        return
    from rich.table import Table  # optional heavy dependency: rich

    gates = []
    if plan.max_failures is not None:
        gates.append(f"more than {plan.max_failures} failure(s) in a wave")
    if plan.max_failure_percent is not None:
        gates.append(f"more than {plan.max_failure_percent}% of a wave failed")
    table = Table(
        title=f"rollout {plan.name} → {plan.target} (dry run: nothing armed, nothing stored)",
        title_justify="left",
    )
    for col in ("WAVE", "DEVICES", "NAMES", "DRIVER"):
        table.add_column(col)
    for i, wave in enumerate(plan.waves):
        label = "canary" if i == 0 and plan.canaries else str(i)
        drivers = sorted({plan.drivers[n].name for n in wave})
        names = ", ".join(wave[:8]) + (f", … (+{len(wave) - 8})" if len(wave) > 8 else "")
        table.add_row(label, str(len(wave)), names, ", ".join(drivers))
    console = _console()
    console.print(table)
    console.print(
        f"{len(plan.devices)} device(s), {len(plan.waves)} wave(s), at most {plan.max_parallel} at once; "
        f"stops when: {' or '.join(gates) or 'never'}"
        + ("; any canary failure stops it" if plan.canaries else "")
        + (
            "; pauses after the canaries for `provision rollout continue`"
            if plan.pause_after_canaries
            else ""
        )
        + (f"; {plan.delay} s between waves" if plan.delay else "")
        + f"; timeouts arm {plan.timeouts['arm']} s, install {plan.timeouts['install']} s, "
        f"boot {plan.timeouts['boot']} s; {plan.retries} retr{'y' if plan.retries == 1 else 'ies'}"
    )


@rollout.command("resume")
@click.argument("rollout_id")
@click.option(
    "--poll", type=float, default=1.0, show_default=True, help="Seconds between reads of the store."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable end status.")
@state_options
def resume_cmd(
    rollout_id: str, poll: float, as_json: bool, lab: Path | None, state_dir: Path | None, db: Path | None
) -> None:
    """Run a rollout again from where it was left (after Ctrl-C, kill -9, a reboot).

    A device whose arming is outstanding is not armed again, one that reported installed is not
    installed again, and no device is skipped. A rollout a gate stopped needs `continue` first.

    \b
      provision rollout resume 6752c0a1b2c3d4 --lab lab.yml
    """
    place = state_place(lab, state_dir, db)
    with _open(place) as store:
        rec = _find(store, rollout_id)
    if rec.state == "stopped":
        raise CLIError(
            f"rollout {rec.id} was stopped by a gate: {rec.reason}",
            f"look at the failed devices (provision rollout status {rec.id}), then "
            f"`provision rollout continue {rec.id}` and resume; or abort it",
            EXIT_FAILED,
        )
    sys.exit(_run(place, rec.id, poll, as_json))


@rollout.command("status")
@click.argument("rollout_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (docs/rollout.md).")
@click.option(
    "--watch",
    type=float,
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Redraw every SECONDS (2 when not given); Ctrl-C ends it.",
)
@state_options
def status_cmd(
    rollout_id: str | None,
    as_json: bool,
    watch: float | None,
    lab: Path | None,
    state_dir: Path | None,
    db: Path | None,
) -> None:
    """One rollout's waves and devices (the newest when no ID is given).

    \b
      provision rollout status --lab lab.yml
      provision rollout status 6752c0a1 --json
      provision rollout status --watch 5
    """
    place = state_place(lab, state_dir, db)
    if watch is not None and watch <= 0:
        raise CLIError("--watch takes a number of seconds above 0", "for example --watch 5", EXIT_INPUT)
    with _open(place) as store:
        try:
            while True:
                rec = (
                    _find(store, rollout_id)
                    if rollout_id
                    else next(iter(RolloutStore(store).recent(1)), None)
                )
                if rec is None:
                    raise CLIError("no rollouts yet", "provision rollout start PLAN", EXIT_INPUT)
                if watch is not None and sys.stdout.isatty() and not as_json:
                    click.echo("\x1b[H\x1b[2J", nl=False)
                if as_json:
                    doc = _status_doc(store, rec)
                    if watch:  # one document per line
                        click.echo(json.dumps(doc, sort_keys=True))
                    else:
                        echo_json(doc)
                else:
                    _print_status(store, rec)
                if watch is None or rec.state in ENDED_STATES:
                    return
                time.sleep(watch)
        except KeyboardInterrupt:
            return


@rollout.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@state_options
def list_cmd(as_json: bool, limit: int, lab: Path | None, state_dir: Path | None, db: Path | None) -> None:
    """The newest rollouts, their state and progress."""
    place = state_place(lab, state_dir, db)
    with _open(place) as store:
        rows = rollout_summaries(store, limit)
    if as_json:
        echo_json({"version": 1, "rollouts": rows})
        return
    if not rows:
        click.echo("no rollouts yet: provision rollout start PLAN")
        return
    table = [("ID", "NAME", "TARGET", "STATE", "CREATED", "DONE", "FAILED", "DEVICES")]
    for r in rows:
        n = sum(w["devices"] for w in r["waves"])
        done = sum(w["verified"] + w["skipped"] for w in r["waves"])
        failed = sum(w["failed"] for w in r["waves"])
        table.append(
            (
                r["id"],
                r["name"],
                str(r["target"]),
                r["state"],
                r["created"][:19],
                str(done),
                str(failed),
                str(n),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _control(
    rollout_id: str, lab: Path | None, state_dir: Path | None, db: Path | None
) -> tuple[Store, RolloutRecord]:
    place = state_place(lab, state_dir, db)
    store = _open(place)
    try:
        return store, _find(store, rollout_id)
    except BaseException:
        store.close()
        raise


@rollout.command("pause")
@click.argument("rollout_id")
@state_options
def pause_cmd(rollout_id: str, lab: Path | None, state_dir: Path | None, db: Path | None) -> None:
    """No new device starts; those in flight finish. `continue` goes on."""
    store, rec = _control(rollout_id, lab, state_dir, db)
    with store:
        if not RolloutStore(store).set_state(rec.id, "paused", f"paused by {who()}", expect=("running",)):
            raise CLIError(f"rollout {rec.id} is {rec.state}, not running", "nothing to pause", EXIT_INPUT)
    click.echo(f"rollout {rec.id} paused: devices in flight finish, no new one starts")


@rollout.command("continue")
@click.argument("rollout_id")
@state_options
def continue_cmd(rollout_id: str, lab: Path | None, state_dir: Path | None, db: Path | None) -> None:
    """Go on after a pause, the canary pause, or a gate (its wave's failures are accepted)."""
    store, rec = _control(rollout_id, lab, state_dir, db)
    with store:
        rs = RolloutStore(store)
        gate = rec.state == "stopped" or (
            rec.state == "paused" and (rec.reason or "").startswith(CANARY_PAUSE)
        )
        if rec.state not in ("paused", "stopped"):
            raise CLIError(
                f"rollout {rec.id} is {rec.state}",
                "continue applies to a paused or stopped rollout",
                EXIT_INPUT,
            )
        if gate:
            rs.accept_wave(rec.id, wave_to_accept(rs.devices(rec.id)))
        rs.set_state(rec.id, "running", f"continued by {who()}", expect=("paused", "stopped"))
        alive = owner_alive(rec)
    if alive:
        click.echo(f"rollout {rec.id} continues (the engine of {rec.owner} goes on at its next poll)")
    else:
        click.echo(f"rollout {rec.id} may go on; no engine runs it now: provision rollout resume {rec.id}")


@rollout.command("abort")
@click.argument("rollout_id")
@click.option("--reason", default=None, help="Why (kept with the rollout).")
@state_options
def abort_cmd(
    rollout_id: str, reason: str | None, lab: Path | None, state_dir: Path | None, db: Path | None
) -> None:
    """Stop for good: outstanding armings are withdrawn (an install already running finishes)."""
    store, rec = _control(rollout_id, lab, state_dir, db)
    with store:
        if rec.state in ENDED_STATES:
            raise CLIError(
                f"rollout {rec.id} has already ended ({rec.state})", "nothing to abort", EXIT_INPUT
            )
        disarmed = abort(store, rec.id, who(), reason)
    click.echo(f"rollout {rec.id} aborted" + (f"; disarmed {', '.join(disarmed)}" if disarmed else ""))


COMMANDS = [rollout]
