"""Shared CLI pieces: exit codes, the error type commands raise, JSON output."""

from __future__ import annotations

import json
from typing import Any

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_ENV = 3
EXIT_PARTIAL = 4


class CLIError(Exception):
    """An error for the operator: what went wrong, how to fix it, which exit code."""

    def __init__(self, message: str, fix: str | None = None, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.exit_code = exit_code


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
