"""`provision lab fleet`: a simulated switch fleet for rollout rehearsals (docs/rollout.md "Rehearsal")."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from onie import discovery
from provision.cli.common import EXIT_ENV, CLIError
from provision.lab.fleet import FleetSpec, run_fleet


@click.group("lab")
def lab() -> None:
    """Lab rehearsal tools (simulated fleets)."""


def _platform(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not discovery.split_platform(value):
        raise click.BadParameter(f"{value!r} is not <arch>-<vendor>_<machine>-r<rev>")
    return value


@lab.command("fleet")
@click.option("-i", "--interface", required=True, help="Interface the switches live on (inside a namespace).")
@click.option("-n", "--count", type=click.IntRange(1, 5000), default=10, show_default=True)
@click.option("--first-ip", required=True, help="The first switch's NOS address; the others count up.")
@click.option("--prefix", type=click.IntRange(8, 30), default=16, show_default=True)
@click.option(
    "--names", default="leaf-{n:03d}", show_default=True, help="Python format of the names ({n} from 1)."
)
@click.option("-p", "--platform", default="x86_64-kvm_x86_64-r0", show_default=True, callback=_platform)
@click.option(
    "--profile",
    default="kvm_x86_64",
    show_default=True,
    help="Hardware profile in the inventory ('' for none).",
)
@click.option(
    "--nos-version", default="1.0", show_default=True, help="The version every switch runs at start."
)
@click.option(
    "--mac", default="02:4c:41:00:00:00", show_default=True, help="MACs count up from the one after it."
)
@click.option("--serial", default="FLEET", show_default=True, help="Serials <serial>-0001, ...")
@click.option(
    "--fail-rate", type=click.FloatRange(0, 1), default=0.0, help="Share whose first install fails."
)
@click.option(
    "--hang-rate", type=click.FloatRange(0, 1), default=0.0, help="Share whose first installer hangs."
)
@click.option(
    "--wrong-platform-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share whose installer check says wrong platform.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Which switches get the faults.")
@click.option("--no-verify", is_flag=True, help="Do not check the installer's checksum and platform.")
@click.option("--boot-delay", type=click.FloatRange(0, 600), default=1.0, show_default=True)
@click.option("--cycle-wait", type=click.FloatRange(0, 600), default=20.0, show_default=True)
@click.option("--ssh-port", type=click.IntRange(1, 65535), default=22, show_default=True)
@click.option(
    "--authorized-keys",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public keys that may log in as root on every switch.",
)
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Root's password on every switch (password auth is off without it).",
)
@click.option(
    "--dir",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="State: inventory.yml, known_hosts, status.json, installs.jsonl, the NOS roots.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout.")
def fleet(
    interface: str,
    count: int,
    first_ip: str,
    prefix: int,
    names: str,
    platform: str,
    profile: str,
    nos_version: str,
    mac: str,
    serial: str,
    fail_rate: float,
    hang_rate: float,
    wrong_platform_rate: float,
    seed: int,
    no_verify: bool,
    boot_delay: float,
    cycle_wait: float,
    ssh_port: int,
    authorized_keys: Path | None,
    password_file: Path | None,
    folder: Path,
    as_json: bool,
) -> None:
    """Run COUNT simulated switches on INTERFACE until SIGTERM/SIGINT.

    Each switch runs a NOS stand-in reachable over ssh (a real sshd, root login) at its own
    address; the rollout's ssh driver arms it, it reboots into ONIE discovery against your
    `provision serve`, installs (reports with the install's token) and comes back at the new
    version. Writes DIR/inventory.yml (lab.yml devices), DIR/known_hosts, DIR/status.json, then
    DIR/ready. Run it in a network namespace: it adds COUNT addresses to INTERFACE.

    \b
    Example (inside a namespace linked to the server's):
      provision lab fleet -i fl0 -n 50 --first-ip 198.18.64.10 --prefix 16 \\
          --authorized-keys ~/.ssh/id_ed25519.pub --fail-rate 0.02 --dir /tmp/fleet
    """
    try:
        ipaddress.IPv4Address(first_ip)
        names.format(n=1)
    except (ValueError, KeyError, IndexError) as exc:
        raise CLIError(f"bad --first-ip or --names: {exc}") from None
    if fail_rate + hang_rate + wrong_platform_rate > 1:
        raise CLIError("--fail-rate + --hang-rate + --wrong-platform-rate exceed 1")
    for tool in ("sshd", "busybox", "unshare", "chroot", "ip"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise CLIError(
                f"{tool} not found",
                fix="run scripts/setup.sh (openssh-server, busybox-static)",
                exit_code=EXIT_ENV,
            )
    spec = FleetSpec(
        interface=interface,
        count=count,
        first_ip=first_ip,
        prefix=prefix,
        names=names,
        platform=platform,
        profile=profile or None,
        version=nos_version,
        mac=mac,
        serial=serial,
        fail_rate=fail_rate,
        hang_rate=hang_rate,
        wrong_platform_rate=wrong_platform_rate,
        seed=seed,
        verify=not no_verify,
        boot_delay=boot_delay,
        cycle_wait=cycle_wait,
        ssh_port=ssh_port,
        authorized_keys=authorized_keys,
        password=password_file.read_text().rstrip("\n") if password_file else None,
    )

    def say(event: dict[str, Any]) -> None:
        if as_json:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        else:
            extra = " ".join(
                f"{k}={v}" for k, v in event.items() if k not in ("time", "switch", "event") and v is not None
            )
            click.echo(f"{event['switch']}: {event['event']} {extra}", err=True)

    def ready(f: Any) -> None:
        click.echo(
            f"fleet: {count} switches up on {interface}; inventory in {folder / 'inventory.yml'}", err=True
        )

    asyncio.run(run_fleet(spec, folder, say, ready))


COMMANDS = [lab]
