"""Shared CLI pieces: exit codes, the error type commands raise, JSON output."""

from __future__ import annotations

import json
from typing import Any

import click

from provision.errors import EXIT_ENV, EXIT_FAILED, EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, ProvisionError


class CLIError(ProvisionError):
    """A check the CLI itself makes (arguments, files, root); pass the exit code it documents."""


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


__all__ = ["EXIT_ENV", "EXIT_FAILED", "EXIT_INPUT", "EXIT_OK", "EXIT_PARTIAL", "CLIError", "echo_json"]
