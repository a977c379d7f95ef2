"""`provision power`, `provision boot`, `provision bmc info`: BMC control for many machines at once.

Targets are inventory names (-i lab.yml, or $PROVISION_INVENTORY) or ad-hoc `--bmc URL`s. Every
target runs concurrently (bounded by --parallel); the exit status says how it went overall.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from provision.bmc import (
    BmcTarget,
    BootDevice,
    BootMode,
    PowerAction,
    journal,
    make_target,
)
from provision.bmc.base import OFF_SETTLE_WITHOUT_WAIT, SETTLED_STATE, Driver
from provision.bmc.redfish.origin import redact
from provision.bmc.runner import Operation, TargetResult, run_all
from provision.cli.common import EXIT_FAILED, EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, CLIError, echo_json
from provision.config.inventory import load_inventory

INVENTORY_ENV = "PROVISION_INVENTORY"


def target_options(fn: Callable) -> Callable:
    """The options every BMC command shares (targets, credentials, TLS, timeouts, output)."""
    options = [
        click.argument("targets", nargs=-1, metavar="TARGET..."),
        click.option(
            "-i",
            "--inventory",
            type=click.Path(dir_okay=False),
            envvar=INVENTORY_ENV,
            help=f"YAML file with a `devices:` list (lab.yml) [env {INVENTORY_ENV}].",
        ),
        click.option(
            "--bmc",
            "bmc_urls",
            multiple=True,
            metavar="URL",
            help="Ad-hoc BMC instead of an inventory name: redfish://host[:port] (HTTPS), "
            "redfish+http://host[:port], ipmi://host[:port]; one system of several: "
            "redfish://host/redfish/v1/Systems/ID. Repeatable.",
        ),
        click.option("--username", "-u", help="BMC user for --bmc targets."),
        click.option(
            "--password-env", metavar="VAR", help="Environment variable holding the password (--bmc)."
        ),
        click.option(
            "--password-file",
            type=click.Path(dir_okay=False),
            help="File holding the password (--bmc); one trailing newline is ignored.",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            help="Do not verify the BMC's TLS certificate (--bmc targets only; per device: `insecure: true`).",
        ),
        click.option(
            "--ca-cert", type=click.Path(dir_okay=False), help="Verify TLS against this CA/certificate PEM."
        ),
        click.option(
            "--fingerprint",
            metavar="SHA256",
            help="Pin the BMC certificate's SHA-256 (openssl x509 -noout -fingerprint -sha256).",
        ),
        click.option(
            "--system",
            metavar="ID",
            help="The system to act on where a BMC manages several (a Systems member's Id, as in "
            "redfish://host/redfish/v1/Systems/ID).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 3600),
            help="Seconds a whole answer may take, from connection to last byte [60].",
        ),
        click.option(
            "--connect-timeout",
            type=click.FloatRange(0.1, 600),
            help="Seconds to connect, TLS handshake included [10].",
        ),
        click.option(
            "--parallel",
            "-P",
            type=click.IntRange(1, 256),
            default=8,
            show_default=True,
            help="Targets at once.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document with every result."),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False),
            help="Record each operation's time and outcome in provision serve's database there, for "
            "its /metrics [default: the lab file's state store (paths.state_dir or state: URL) when -i "
            "is a lab file; nothing is recorded where serve has no database].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


# A target to run, or a result known before running (a device without `bmc:`).
Planned = BmcTarget | TargetResult


def resolve_targets(
    targets: tuple[str, ...],
    inventory: str | None,
    bmc_urls: tuple[str, ...],
    username: str | None,
    password_env: str | None,
    password_file: str | None,
    insecure: bool,
    ca_cert: str | None,
    fingerprint: str | None,
    timeout: float | None,
    connect_timeout: float | None,
    system: str | None = None,
) -> list[Planned]:
    """Inventory names and --bmc URLs to targets, duplicates removed (by scheme, host, port and
    system: the same URL twice acts once). Input problems are a ProvisionError with exit 2
    (CLIError here, TargetError/CredentialError from make_target, ConfigError from the
    inventory); a device without `bmc:` is a failed result, and the others still run."""
    if not targets and not bmc_urls:
        raise CLIError(
            "no targets given", "name devices from the inventory, or give --bmc redfish://host", EXIT_INPUT
        )
    out: list[Planned] = []
    if targets:
        if not inventory:
            raise CLIError(
                f"{targets[0]!r} is an inventory name but no inventory was given",
                f"pass -i lab.yml or export {INVENTORY_ENV}=lab.yml, or use --bmc URL",
                EXIT_INPUT,
            )
        if insecure:
            raise CLIError(
                "--insecure applies to --bmc targets only, not to inventory devices",
                "set `insecure: true` in that device's bmc: block (a per-BMC choice), or pass --ca-cert/--fingerprint",
                EXIT_INPUT,
            )
        inv = load_inventory(inventory)
        for name in dict.fromkeys(targets):
            try:
                device = inv.get(name)
            except KeyError as exc:
                raise CLIError(
                    str(exc.args[0]), "check the name in the inventory's `devices:`", EXIT_INPUT
                ) from None
            if device.bmc is None:
                where = f"{device.mark}: " if device.mark else ""
                out.append(
                    TargetResult(
                        name,
                        "-",
                        False,
                        "failed",
                        error=f"{where}no `bmc:` in the inventory for this device",
                        error_kind="NoBmc",
                        fix="add bmc: {url: redfish://...} to it, or leave it out of this command",
                        exit_code=EXIT_INPUT,
                    )
                )
                continue
            b = device.bmc
            out.append(
                make_target(
                    name,
                    b.url,
                    username=b.username,
                    username_env=b.username_env,
                    password_env=b.password_env,
                    password_file=b.password_file,
                    # The command line may tighten or pick a trust anchor, never loosen one
                    # silently: --insecure applies to --bmc targets only.
                    insecure=b.insecure,
                    ca_cert=ca_cert or b.ca_cert,
                    fingerprint=fingerprint or b.fingerprint,
                    timeout=timeout or b.timeout,
                    connect_timeout=connect_timeout or b.connect_timeout,
                    system=system or b.system,
                )
            )
    for url in bmc_urls:
        out.append(
            make_target(
                redact(url).rstrip("/"),
                url,
                username=username,
                password_env=password_env,
                password_file=password_file,
                insecure=insecure,
                ca_cert=ca_cert,
                fingerprint=fingerprint,
                timeout=timeout or 60,
                connect_timeout=connect_timeout or 10,
                system=system,
            )
        )
    return _dedupe(out)


def _dedupe(planned: list[Planned]) -> list[Planned]:
    """One target per (scheme, host, port, system): acting twice on one machine in one run is
    never wanted (a power cycle twice is two cycles)."""
    seen: dict[tuple, str] = {}
    out: list[Planned] = []
    for p in planned:
        if isinstance(p, BmcTarget):
            first = seen.get(p.key)
            if first is not None:
                if first != p.name:
                    click.echo(f"warning: {p.name} is the same BMC system as {first}; acting once", err=True)
                continue
            seen[p.key] = p.name
        out.append(p)
    return out


def execute(
    planned: list[Planned],
    op: Operation,
    title: str,
    parallel: int,
    as_json: bool,
    power_timeout: float = 300.0,
    record_in: str | Path | None = None,
) -> None:
    """Run, render (progress on a terminal, then a table or JSON), and exit with the summary code.
    `record_in`: the state store the operations are recorded in (provision.bmc.journal)."""
    targets = [p for p in planned if isinstance(p, BmcTarget)]
    done = _run_with_progress(targets, op, title, parallel, as_json, power_timeout) if targets else []
    journal.record(record_in, title, zip(targets, done, strict=True))
    ran = iter(done)
    results = [p if isinstance(p, TargetResult) else next(ran) for p in planned]
    ok = sum(r.ok for r in results)
    if as_json:
        echo_json({"results": [r.to_json() for r in results], "ok": ok, "failed": len(results) - ok})
    else:
        _render_table(results, title)
    _print_warnings(results)
    sys.exit(exit_status(results))


def exit_status(results: list[TargetResult]) -> int:
    """0 all ok; 4 some failed; when all failed: 2 if every failure was bad input (several
    systems and none selected, no `bmc:`), else 1 (docs/exit-codes.md)."""
    ok = sum(r.ok for r in results)
    if ok == len(results):
        return EXIT_OK
    if ok:
        return EXIT_PARTIAL
    return EXIT_INPUT if all(r.exit_code == EXIT_INPUT for r in results) else EXIT_FAILED


def _print_warnings(results: list[TargetResult]) -> None:
    for r in results:
        for warning in r.data.get("warnings") or ():
            click.echo(f"warning: {r.name}: {warning}", err=True)


def _run_with_progress(targets, op, title, parallel, as_json, power_timeout) -> list[TargetResult]:
    if not sys.stderr.isatty() or as_json:
        return run_all(targets, op, parallel=parallel, power_timeout=power_timeout)
    with Progress(
        SpinnerColumn(),
        TextColumn(f"{title}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(targets))

        def done(result: TargetResult) -> None:
            progress.update(task, advance=1, description=f"{result.name}: {result.summary}")

        return run_all(targets, op, parallel=parallel, power_timeout=power_timeout, on_done=done)


def _render_table(results: list[TargetResult], title: str) -> None:
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    table = Table(title=title, title_justify="left")
    table.add_column("target")
    table.add_column("BMC")
    table.add_column("result")
    table.add_column("time", justify="right")
    for r in results:
        result = f"[green]{r.summary}[/]" if r.ok else "[red]FAILED[/]"
        table.add_row(r.name, r.address, result, f"{r.seconds:.1f}s")
    console.print(table)
    failed = [r for r in results if not r.ok]
    ok = len(results) - len(failed)
    err = Console(stderr=True, soft_wrap=True)
    for r in failed:
        err.print(f"[red]error[/]: {r.name}: {r.error}", markup=True, highlight=False)
        if r.message_id or r.bmc_message:
            said = ": ".join(x for x in (r.message_id, r.bmc_message) if x)
            err.print(f"  BMC says: {said}", markup=False, highlight=False)
        if r.fix:
            err.print(f"  fix: {r.fix}", markup=False, highlight=False)
    console.print(f"{ok} ok, {len(failed)} failed")


# --- power ---------------------------------------------------------------------------------------

POWER_ACTIONS = {
    "on": PowerAction.ON,
    "off": PowerAction.OFF,
    "graceful-off": PowerAction.GRACEFUL_OFF,
    "cycle": PowerAction.CYCLE,
    "reset": PowerAction.RESET,
}


def _power_op(action: PowerAction | None, wait: bool, wait_timeout: float) -> Operation:
    def op(driver: Driver, target: BmcTarget) -> tuple[str, dict[str, Any]]:
        if action is None:
            state = driver.power_state()
            return state.value, {"power_state": state.value}
        start = time.monotonic()
        sent = driver.set_power(action)
        want = SETTLED_STATE[action]
        data: dict[str, Any] = {"action": action.value, "sent": sent}
        if not sent:
            # Nothing went to the BMC: the machine already was in the wanted state.
            return f"already {want.value}", {**data, "power_state": want.value}
        if wait:
            # --wait-timeout bounds the whole action (a cycle's own wait for Off included).
            left = max(1.0, wait_timeout - (time.monotonic() - start))
            state = driver.wait_power(want, left)
            return f"{action.value}: {state.value}", {**data, "power_state": state.value}
        return f"{action.value} sent", data

    return op


@click.command("power")
@click.argument(
    "action", type=click.Choice(["status", *POWER_ACTIONS]), metavar="status|on|off|graceful-off|cycle|reset"
)
@target_options
@click.option("--wait", is_flag=True, help="Wait until the power state has settled (on or off).")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(1, 3600),
    default=300,
    show_default=True,
    help="Seconds --wait may take.",
)
def power_cmd(action: str, wait: bool, wait_timeout: float, parallel: int, as_json: bool, **kw: Any) -> None:
    """Show or change the power state of machines through their BMCs.

    \b
    cycle  = off then on (PowerCycle, or ForceOff + On where the BMC lacks it)
    reset  = warm reset when on, power on when off
    graceful-off = ask the OS to shut down (ACPI)

    \b
    Examples:
      provision power status leaf-01 leaf-02 -i lab.yml
      provision power cycle leaf-01 --wait
      PW=secret provision power on --bmc redfish://10.0.0.5 -u admin --password-env PW --ca-cert bmc.pem

    A BMC that manages several systems needs one named: in the URL
    (redfish://host/redfish/v1/Systems/ID), with --system ID or `system:` in the inventory.

    Exit status: 0 all ok, 4 some failed, 1 all failed, 2 bad input.
    """
    record_in = journal.state_db(kw.pop("state_dir"), kw.get("inventory"))
    targets = resolve_targets(**kw)
    act = POWER_ACTIONS.get(action)
    # Without --wait a cycle done as off-then-on still waits for Off, briefly (OFF_SETTLE_WITHOUT_WAIT).
    settle = wait_timeout if wait else min(wait_timeout, OFF_SETTLE_WITHOUT_WAIT)
    execute(
        targets, _power_op(act, wait, wait_timeout), f"power {action}", parallel, as_json, settle, record_in
    )


# --- boot ----------------------------------------------------------------------------------------


def _boot_op(device: BootDevice, mode: BootMode | None, url: str | None) -> Operation:
    def op(driver: Driver, target: BmcTarget) -> tuple[str, dict[str, Any]]:
        result = driver.boot_once(device, mode, url)
        summary = f"next boot {device.value}" + (" (pending reset)" if result.pending else "")
        data = {
            "device": device.value,
            "mode": mode.value if mode else None,
            "url": url,
            "applied": result.applied,
            "pending": result.pending,
            "notes": list(result.notes),
            "warnings": list(result.warnings),
        }
        return summary, data

    return op


@click.command("boot")
@target_options
@click.option(
    "--once",
    "device",
    type=click.Choice([d.value for d in BootDevice]),
    required=True,
    help="Boot device for the next boot only.",
)
@click.option("--uefi", "mode", flag_value="uefi", help="Ask for UEFI boot (some BMCs need it every time).")
@click.option("--legacy", "mode", flag_value="legacy", help="Ask for legacy BIOS boot.")
@click.option("--url", help="With --once http: the URL UEFI HTTP boot fetches (Redfish HttpBootUri).")
def boot_cmd(device: str, mode: str | None, url: str | None, parallel: int, as_json: bool, **kw: Any) -> None:
    """Set the next boot (once) of machines: pxe, http (UEFI HTTP, optionally --url), disk, cd.

    The change is read back from the BMC; where the live setting is refused, it goes to the
    BMC's pending Settings object and applies at the next reset. Follow with `provision power
    reset` (or cycle).

    \b
    Examples:
      provision boot leaf-01 leaf-02 --once pxe --uefi
      provision boot srv-07 --once http --url http://198.18.0.1/boot.efi
    """
    boot_device = BootDevice(device)
    if url and boot_device is not BootDevice.HTTP:
        raise CLIError("--url only goes with --once http", "drop --url, or use --once http", EXIT_INPUT)
    record_in = journal.state_db(kw.pop("state_dir"), kw.get("inventory"))
    targets = resolve_targets(**kw)
    execute(
        targets,
        _boot_op(boot_device, BootMode(mode) if mode else None, url),
        f"boot --once {device}",
        parallel,
        as_json,
        record_in=record_in,
    )


# --- bmc info ----------------------------------------------------------------------------------


def _info_op(driver: Driver, target: BmcTarget) -> tuple[str, dict[str, Any]]:
    ident = driver.identity()
    macs = ", ".join(n.mac for n in ident.nics) or "-"
    parts = [p for p in (ident.manufacturer, ident.model) if p]
    summary = (
        f"{' '.join(parts) or '?'} serial {ident.serial or '?'} BIOS {ident.bios_version or '?'} MACs {macs}"
    )
    return summary, {"identity": ident.to_json()}


@click.group("bmc")
def bmc_group() -> None:
    """Ask BMCs about their machines."""


@bmc_group.command("info")
@target_options
def bmc_info_cmd(parallel: int, as_json: bool, **kw: Any) -> None:
    """Model, serial, BIOS version, power state and NIC MACs, as the BMC reports them.

    Use the MACs and serial to fill the inventory (`mac:`, `macs:`, `serial:`).

    \b
    Example:
      provision bmc info leaf-01 --json
    """
    record_in = journal.state_db(kw.pop("state_dir"), kw.get("inventory"))
    execute(resolve_targets(**kw), _info_op, "bmc info", parallel, as_json, record_in=record_in)


COMMANDS = [power_cmd, boot_cmd, bmc_group]
