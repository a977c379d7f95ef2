from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mark:
    """A place in a config file; line and column are 1-based, as editors show them."""

    file: Path | str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ConfigError(Exception):
    """A config problem an operator can fix: where, what is wrong, what to write instead."""

    def __init__(self, mark: Mark | None, message: str, fix: str | None = None):
        self.mark = mark
        self.message = message
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.mark}: " if self.mark else ""
        text = f"{where}{self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text
