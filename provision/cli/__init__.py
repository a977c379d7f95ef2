"""The `provision` command. Subcommands live in small modules; each exports COMMANDS.

Exit codes (scripts rely on them):
  0 success · 1 the operation ran and failed (bad checksum, BMC refused, install failed)
  2 bad input (usage, config file errors) · 3 environment (not root, port in use, tool missing)
  4 partial: some of many targets failed
(provision.errors holds them. Every error a command raises for the operator is a
provision.errors.ProvisionError: click prints it, `error: ...` and `  fix: ...`, and exits with its code.)
"""

from __future__ import annotations

import importlib
import logging

import click

from provision import __version__, logs

# Each command and the module that defines it (one module per area, so that areas grow without
# editing each other). A module is imported only when one of its commands runs or help lists
# them: `provision onie-installer` and `provision status` then start without aiohttp and the boot
# servers, which only `serve` and `onie-sim` need.
_COMMANDS = {
    "onie-installer": "provision.cli.installer_cmds",
    "inspect": "provision.cli.installer_cmds",
    "layout": "provision.cli.installer_cmds",
    "profiles": "provision.cli.profile_cmds",
    "eeprom": "provision.cli.profile_cmds",
    "serve": "provision.cli.serve_cmds",
    "status": "provision.cli.status_cmds",
    "devices": "provision.cli.devices_cmds",
    "onie-sim": "provision.cli.onie_sim_cmds",
    "power": "provision.cli.bmc_cmds",
    "boot": "provision.cli.bmc_cmds",
    "bmc": "provision.cli.bmc_cmds",
    "check": "provision.cli.check_cmds",
    "rollout": "provision.cli.rollout_cmds",
    "lab": "provision.cli.lab_cmds",
}


class _CommandsByModule(click.Group):
    """click's Group, with each subcommand loaded from its module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMANDS.get(cmd_name)
        if module is None:
            return None
        for command in importlib.import_module(module).COMMANDS:
            if command.name == cmd_name:
                return command
        raise LookupError(f"{module} does not define the command {cmd_name!r}")


@click.group(
    cls=_CommandsByModule, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="provision")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    envvar=logs.ENV_FORMAT,
    show_default=True,
    help="Log lines as logfmt (text) or one JSON object per line (json); env PROVISION_LOG_FORMAT. "
    "Keys: docs/observability.md.",
)
def cli(verbose: int, log_format: str) -> None:
    """Bring bare metal to life: build ONIE installers, network-boot switches and servers, drive BMCs.

    \b
    Typical flow for a switch rollout:
      provision onie-installer examples/switch.yml      # build onie-installer-<platform>.bin
      provision check examples/lab.yml                   # every problem of the lab file at once
      provision serve examples/lab.yml                   # DHCP + TFTP + HTTP boot server
      provision rollout start rollout.yml --lab lab.yml  # reinstall in waves (--dry-run first)
      provision status                                   # who booted, fetched, installed
      provision --log-format json serve lab.yml          # logs for Loki/Elasticsearch
    """
    logs.configure(max(logging.WARNING - 10 * verbose, logging.DEBUG), log_format)


def main() -> None:
    cli(prog_name="provision")
