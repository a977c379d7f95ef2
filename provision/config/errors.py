"""Where a config error is (`Mark`: file, line, column) and the error itself, exit 2 with a fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from provision.errors import EXIT_INPUT, ProvisionError


@dataclass(frozen=True)
class Mark:
    """A place in a config file; line and column are 1-based, as editors show them."""

    file: Path | str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ConfigError(ProvisionError):
    """A config problem an operator can fix: where, what is wrong, what to write instead (exit 2)."""

    exit_code = EXIT_INPUT

    def __init__(self, mark: Mark | None, message: str, fix: str | None = None, code: str | None = None):
        self.mark = mark
        # A stable name for the rule that failed (`provision check --json`, docs/lab.md): scripts
        # match on it, never on the message text.
        self.code = code
        super().__init__(message, fix)

    def format_message(self) -> str:
        """`file:line:col: message`, as compilers and editors show a place."""
        return f"{self.mark}: {self.message}" if self.mark else self.message

    def __str__(self) -> str:
        text = self.format_message()
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


@dataclass(frozen=True)
class Finding:
    """One result of `provision check`: severity ("error", "warning", "note"), a stable code
    (docs/lab.md lists them), where, what, and the fix."""

    severity: str
    code: str
    mark: Mark | None
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The documented JSON shape of `provision check --json` (docs/lab.md)."""
        return {
            "severity": self.severity,
            "file": str(self.mark.file) if self.mark else None,
            "line": self.mark.line if self.mark else None,
            "col": self.mark.column if self.mark else None,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
        }

    def __str__(self) -> str:
        where = f"{self.mark}: " if self.mark else ""
        text = f"{where}{self.severity}: {self.message} [{self.code}]"
        return text + (f"\n  fix: {self.fix}" if self.fix else "")


class ConfigErrors(ConfigError):
    """Several config errors found in one pass (`provision check`, `provision serve`): shown all
    at once; `mark`, `message`, `fix` and `code` are the first one's, for callers that want one."""

    def __init__(self, findings: list[Finding], dropped: int = 0):
        first = findings[0]
        super().__init__(first.mark, first.message, first.fix, first.code)
        self.findings = findings
        self.dropped = dropped

    def format_message(self) -> str:
        more = f"\n... and {self.dropped} more" if self.dropped else ""
        n = len(self.findings) + self.dropped
        head = f"{n} error{'s' if n != 1 else ''} in the configuration:\n"
        return head + "\n".join(str(f) for f in self.findings) + more

    def __str__(self) -> str:
        return self.format_message()

    def show(self, file: IO[Any] | None = None) -> None:
        """Every error with its fix (the one-error form would print only the first fix)."""
        click.secho(f"error: {self.format_message()}", fg="red", file=file, err=file is None)
