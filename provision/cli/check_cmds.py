"""`provision check`: every problem of lab.yml / switch.yml at once (provision.config.check)."""

from __future__ import annotations

from pathlib import Path

import click

from provision.cli.common import EXIT_INPUT, EXIT_OK, echo_json
from provision.config.check import ERROR, NOTE, WARNING, Report, check_file


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _show(report: Report) -> None:
    for severity, colour in ((ERROR, "red"), (WARNING, "yellow"), (NOTE, None)):
        for f in report.of(severity):
            click.secho(str(f).split("\n", 1)[0], fg=colour)
            if f.fix:
                click.echo(f"  fix: {f.fix}")
    more = f" ({report.dropped} more not shown)" if report.dropped else ""
    click.echo(
        f"{report.path} ({report.kind}): {_plural(len(report.errors), 'error')}, "
        f"{_plural(len(report.warnings), 'warning')}, {_plural(len(report.notes), 'note')}{more}",
        err=True,
    )


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of findings (docs/lab.md).")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 2).")
def check(files: tuple[Path, ...], as_json: bool, strict: bool) -> None:
    """Check lab.yml (or a switch.yml, told apart by its keys) and report EVERY problem at once.

    \b
    Each finding: file:line:col, severity, what is wrong, a stable code and the fix:
      lab.yml:14:11: error: pool 198.18.10.1-198.18.10.50 holds the router ... [pool-holds-router]
        fix: leave the router's address out of the pool
    `provision serve` runs the same checks before it binds. docs/lab.md lists every code.

    \b
    Exit codes: 0 no errors (warnings and notes allowed, unless --strict), 2 errors.
    --json prints a list of {severity, file, line, col, code, message, fix}.
    """
    reports = [check_file(path) for path in files]
    if as_json:
        echo_json([f.as_dict() for r in reports for f in r.findings])
    else:
        for report in reports:
            _show(report)
    failed = any(r.errors or (strict and r.warnings) for r in reports)
    click.get_current_context().exit(EXIT_INPUT if failed else EXIT_OK)


COMMANDS = [check]
