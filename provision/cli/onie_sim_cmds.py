"""`provision onie-sim`: rehearse a switch rollout by playing ONIE's discovery against a server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from onie import discovery
from onie.installer.model import Stage
from provision.cli.common import EXIT_ENV, EXIT_FAILED, EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, CLIError, echo_json
from provision.onie import simulator
from provision.onie.simulator import SimResult
from provision.onie.simulator_installer import FAIL_STAGES, Behaviour

DEFAULT_PLATFORM = "x86_64-kvm_x86_64-r0"


def _check_platform(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not discovery.split_platform(value):
            raise click.BadParameter(
                f"{value!r} is not <arch>-<vendor>_<machine>-r<rev>, e.g. {DEFAULT_PLATFORM}"
            )
    return values or (DEFAULT_PLATFORM,)


def _check_mac(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    mac = discovery.normalise_mac(value)
    if mac is None:
        raise click.BadParameter(f"{value!r} is not a MAC address such as 52:54:00:12:34:56")
    return mac


@click.command("onie-sim")
@click.option("-i", "--interface", required=True, help="Interface to send DHCP on (needs root).")
@click.option(
    "-p",
    "--platform",
    "platforms",
    multiple=True,
    callback=_check_platform,
    help=f"ONIE platform the switch claims (default {DEFAULT_PLATFORM}); repeat to mix platforms under --count.",
)
@click.option("--serial", help="Serial number (option 61, ONIE-SERIAL-NUMBER); with --count, <serial>-<n>.")
@click.option(
    "--mac", callback=_check_mac, help="MAC (chaddr, ONIE-ETH-ADDR); with --count, counts up from it."
)
@click.option("--onie-version", default="2023.05", show_default=True, help="ONIE-VERSION and User-Agent.")
@click.option("--switch-asic", help="For the <arch>-<asic> default name (e.g. bcm, mlnx, qemu).")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Simulated switches at once.",
)
@click.option(
    "--verify", is_flag=True, help="Check the installer (checksum, platform) as it would check itself."
)
@click.option(
    "--save", "save_dir", type=click.Path(file_okay=False, path_type=Path), help="Keep the installers here."
)
@click.option(
    "--no-configure",
    is_flag=True,
    help="Do not put the leased address on the interface (TFTP/HTTP then use the interface's own).",
)
@click.option("--tftp-port", type=click.IntRange(1, 65535), default=69, show_default=True, hidden=True)
@click.option(
    "--tftp-blksize", type=click.IntRange(8, 65464), default=None, help="Ask TFTP blksize (ONIE asks none)."
)
@click.option(
    "--fail-at",
    type=click.Choice([s.value for s in FAIL_STAGES]),
    help="The installer fails at this stage: reports '<stage> failed' and exits 1; ONIE goes on.",
)
@click.option("--hang", is_flag=True, help="The installer reports 'started', then never returns.")
@click.option(
    "--wrong-platform",
    is_flag=True,
    help="The installer's platform check fails: reports 'verified failed \"wrong platform ...\"'.",
)
@click.option("--no-report", is_flag=True, help="The installer sends no progress reports.")
@click.option(
    "--cycles",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Discovery cycles at most: after a failed installer ONIE goes on down its list, then starts over.",
)
@click.option(
    "--cycle-wait",
    type=click.FloatRange(0, 600),
    default=0.0,
    show_default=True,
    help=f"Seconds between cycles (ONIE waits about {simulator.ONIE_CYCLE_WAIT_S:g}).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every switch's attempts.")
def onie_sim(
    interface: str,
    platforms: tuple[str, ...],
    serial: str | None,
    mac: str | None,
    onie_version: str,
    switch_asic: str | None,
    count: int,
    verify: bool,
    save_dir: Path | None,
    no_configure: bool,
    tftp_port: int,
    tftp_blksize: int | None,
    fail_at: str | None,
    hang: bool,
    wrong_platform: bool,
    no_report: bool,
    cycles: int,
    cycle_wait: float,
    as_json: bool,
) -> None:
    """Play an ONIE switch's installer discovery, exactly in ONIE's order, and say what it got.

    \b
    DHCP with ONIE's options (60 onie_vendor:<platform>, 77, 61 serial, 125 enterprise 42623,
    55), then: option 125.1 URL, option 114, HTTP on 72/siaddr/54/150 port 80 with every default
    name, option 67 as URL, TFTP bootfile, then the TFTP waterfall (MAC dir, hex-IP dirs, names).
    HTTP requests carry ONIE's ONIE-* headers and User-Agent; timeouts are ONIE's 3 s.

    \b
    A fetched installer is played as provision's installer: GET <server>/api/v1/report with
    started, verified, partitioned, payload, bootloader, then complete ok (the token= of its URL
    carried over); --fail-at, --hang, --wrong-platform and --no-report change that. After a
    failed installer discovery goes on down the list, then starts a new cycle (--cycles).

    \b
    Examples:
      provision onie-sim -i eth1                                 # one kvm_x86_64 switch
      provision onie-sim -i eth1 -p x86_64-accton_as7712_32x-r0 --serial AS1 --verify
      provision onie-sim -i eth1 --count 20 -p x86_64-kvm_x86_64-r0 -p arm64-acme_s1-r0 --json
      provision onie-sim -i eth1 --fail-at payload --cycles 2   # how often is it re-run?

    Exit 0 when every switch installed (an installer ran and exited 0), 1 when none did, 4 when
    some did, 3 when the interface cannot be used (not root, no such interface).
    """
    if os.geteuid() != 0:
        raise CLIError(
            "onie-sim needs root (port 68, SO_BINDTODEVICE, addresses)", "run it with sudo", EXIT_ENV
        )
    if not os.path.exists(f"/sys/class/net/{interface}"):
        raise CLIError(f"no interface {interface!r}", "pick one from `ip link`", EXIT_ENV)
    if save_dir and save_dir.exists() and not save_dir.is_dir():
        raise CLIError(f"{save_dir} is not a folder", "give --save a folder", EXIT_INPUT)
    idents = simulator.switches(platforms, count, mac, serial, onie_version, switch_asic)
    options = simulator.SimOptions(
        interface=interface,
        verify=verify,
        configure=not no_configure,
        save_dir=save_dir,
        tftp_port=tftp_port,
        tftp_blksize=tftp_blksize,
        installer=Behaviour(
            report=not no_report,
            fail_at=Stage(fail_at) if fail_at else None,
            hang=hang,
            wrong_platform=wrong_platform,
        ),
        cycles=cycles,
        cycle_wait=cycle_wait,
    )
    say = None if as_json or count > 1 else (lambda m: click.echo(f"  {m}", err=True))
    try:
        with _progress(count) as on_done:
            results = asyncio.run(simulator.simulate(options, idents, say, on_done))
    except OSError as exc:
        raise CLIError(
            f"cannot use {interface}: {exc.strerror or exc}", "is another DHCP client on port 68?", EXIT_ENV
        ) from None
    found = sum(1 for r in results if r.found)
    installed = sum(1 for r in results if r.installed)
    runs = sum(len(r.runs) for r in results)
    if as_json:
        echo_json(
            {
                "switches": [r.as_dict() for r in results],
                "found": found,
                "installed": installed,
                "installer_runs": runs,
                "count": len(results),
            }
        )
    else:
        for n, r in enumerate(results, start=1):
            _print_result(n, len(results), r)
        if len(results) > 1:
            click.echo(f"{installed}/{len(results)} switches installed ({runs} installer runs)")
    if installed == len(results):
        raise SystemExit(EXIT_OK)
    raise SystemExit(EXIT_FAILED if installed == 0 else EXIT_PARTIAL)


@contextlib.contextmanager
def _progress(count: int) -> Iterator[Callable[[Any], None] | None]:
    """A rich progress bar on stderr while many switches discover (only on a terminal)."""
    if count < 2 or not sys.stderr.isatty():
        yield None
        return
    with Progress(
        TextColumn("onie-sim"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("switches", total=count)
        yield lambda _result: bar.advance(task)


def _print_result(n: int, total: int, r: SimResult) -> None:
    i = r.identity
    click.echo(f"switch {n}/{total}: mac {i.mac}  serial {i.serial}  platform {i.platform}")
    if r.lease:
        lease = r.lease
        extras = [
            f"{k}={v}"
            for k, v in (
                ("125.1", lease.onie_url),
                ("114", lease.default_url),
                ("72", ",".join(lease.www_servers)),
                ("siaddr", lease.siaddr),
                ("66", lease.tftp_name),
                ("67", lease.bootfile),
                ("file", lease.boot_file),
            )
            if v
        ]
        click.echo(f"  dhcp: {lease.ip}/{lease.prefix} from {lease.server_id}  " + " ".join(extras))
    for k, a in enumerate(r.attempts, start=1):
        size = f" {a.size} bytes" if a.size else ""
        cycle = f"[{a.cycle}] " if r.cycles > 1 else ""
        click.echo(
            f"  {k:3}. {cycle}{a.step.value:18} {a.url}  -> {a.outcome.value}{size} {a.detail}".rstrip()
        )
        for rep in a.run.reports if a.run else ():
            answer = f"HTTP {rep.http_status}" if rep.http_status is not None else rep.error
            click.echo(f"         report {rep.stage} {rep.status}: {answer}")
        if a.run and a.run.not_reported:
            click.echo(f"         no reports: {a.run.not_reported}")
    if r.runs:
        per = ", ".join(str(sum(1 for a in r.runs if a.cycle == n)) for n in range(1, r.cycles + 1))
        click.echo(f"  installer runs: {len(r.runs)} in {r.cycles} cycle(s) ({per})")
    if r.found and r.found.run and not r.installed:
        f = r.found
        click.echo(click.style(f"  hangs: {f.url}: {f.run.message if f.run else ''}", fg="yellow"))
    elif r.found:
        f = r.found
        line = f"  installed: {f.url} ({f.size} bytes, sha256 {f.sha256[:16]}…)"
        if f.verify:
            line += f" verify ok: {f.verify.get('nos') or ''} {f.verify.get('version') or ''} for {f.verify.get('platform')}"
        click.echo(click.style(line, fg="green"))
        if f.saved:
            click.echo(f"  saved: {f.saved}")
    elif r.runs:
        click.echo(click.style(f"  install failed: {r.runs[-1].detail}", fg="red"))
    else:
        click.echo(click.style(f"  no installer: {r.error or 'every source tried'}", fg="red"))


COMMANDS: list = [onie_sim]
