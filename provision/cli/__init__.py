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

from provision import __version__

# One module per area, so that areas grow without editing each other.
_COMMAND_MODULES = (
    "provision.cli.installer_cmds",  # onie-installer, inspect, layout
    "provision.cli.profile_cmds",  # profiles list|show|validate, eeprom
    "provision.cli.serve_cmds",  # serve, status
    "provision.cli.onie_sim_cmds",  # onie-sim
    "provision.cli.bmc_cmds",  # power, boot, bmc
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="provision")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Bring bare metal to life: build ONIE installers, network-boot switches and servers, drive BMCs.

    \b
    Typical flow for a switch rollout:
      provision onie-installer examples/switch.yml      # build onie-installer-<platform>.bin
      provision serve examples/lab.yml                   # DHCP + TFTP + HTTP boot server
      provision power cycle leaf-01                      # BMC: power-cycle into ONIE
      provision status                                   # who booted, fetched, installed
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


for _name in _COMMAND_MODULES:
    for _command in importlib.import_module(_name).COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="provision")
