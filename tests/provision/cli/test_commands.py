"""The `provision` group loads each command from its module on first use: every command a module
exports is listed, and a command that does not need the boot servers starts without them."""

from __future__ import annotations

import importlib
import subprocess
import sys

from provision.cli import _COMMANDS, cli
from tests.support.cli import REPO, cli_env


def test_every_exported_command_is_listed_under_its_own_name():
    exported = {}
    for module in sorted(set(_COMMANDS.values())):
        for command in importlib.import_module(module).COMMANDS:
            exported[command.name] = module
    assert exported == _COMMANDS
    assert sorted(cli.list_commands(None)) == sorted(_COMMANDS)  # type: ignore[arg-type]


def test_commands_without_servers_do_not_load_them():
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from provision.cli import cli\n"
        "for argv in (['inspect', '--help'], ['status', '--help'], ['onie-installer', '--help']):\n"
        "    assert CliRunner().invoke(cli, argv).exit_code == 0, argv\n"
        "print(sorted(m for m in ('aiohttp', 'pxe.http', 'provision.server.root') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
