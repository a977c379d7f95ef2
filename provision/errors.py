"""The one error type provision shows an operator: what went wrong, how to fix it, the exit code.

`ProvisionError` is a `click.ClickException`: click's own `main` catches it, calls `show()` and
exits with its `exit_code`. Every user-facing error (config, boot files, host networking, store,
BMC targets, the CLI's own checks) subclasses it with the exit code its kind of failure documents,
so a command lets them rise and never translates one error into another by hand.

Library errors from `onie` and `pxe` cannot subclass it (those packages never import provision);
the CLI translates them where it calls the library, once.
"""

from __future__ import annotations

from typing import IO, Any

import click

# The exit codes scripts rely on (also in `provision --help` and docs/).
EXIT_OK = 0  # success
EXIT_FAILED = 1  # the operation ran and failed: bad checksum, BMC refused, install failed
EXIT_INPUT = 2  # bad input: usage, config file errors
EXIT_ENV = 3  # environment: not root, interface missing, port in use, tool missing
EXIT_PARTIAL = 4  # some of many targets failed


class ProvisionError(click.ClickException):
    """An error for the operator: `message`, an optional `fix`, and the exit code.

    The class sets the default exit code for its kind of failure; `exit_code=` overrides it for one
    error (a CLI check that is about the environment rather than the input, say).
    """

    exit_code = EXIT_FAILED

    def __init__(self, message: str, fix: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.fix = fix
        if exit_code is not None:
            # click (8.2+) types exit_code as a ClassVar; an instance attribute still wins the
            # lookup click's main does (`sys.exit(e.exit_code)`), which is what we want here.
            self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        """`error: <message>` (red on a terminal) and `  fix: <fix>`, on stderr."""
        click.secho(
            f"error: {self.format_message()}", fg="red", file=file, err=file is None, color=self.show_color
        )
        if self.fix:
            click.echo(f"  fix: {self.fix}", file=file, err=file is None, color=self.show_color)


__all__ = ["EXIT_ENV", "EXIT_FAILED", "EXIT_INPUT", "EXIT_OK", "EXIT_PARTIAL", "ProvisionError"]
