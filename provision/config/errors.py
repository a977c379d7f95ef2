"""Where a config error is (`Mark`: file, line, column) and the error itself, exit 2 with a fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    def __init__(self, mark: Mark | None, message: str, fix: str | None = None):
        self.mark = mark
        super().__init__(message, fix)

    def format_message(self) -> str:
        """`file:line:col: message`, as compilers and editors show a place."""
        return f"{self.mark}: {self.message}" if self.mark else self.message

    def __str__(self) -> str:
        text = self.format_message()
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text
