"""Where the shipped data lives: templates/ and hardware-profiles/.

In a wheel they are under provision/_data (pyproject force-include); in a source checkout or an
editable install they are at the top of the repository, beside this package.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

_PKG = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shipped data folder {name!r} not found beside {_PKG}; reinstall provision")


def templates_dir() -> Path:
    return _find("templates")


def profiles_dir() -> Path:
    return _find("hardware-profiles")


@functools.cache
def template_env() -> jinja2.Environment:
    """The Jinja2 environment for every shipped template (iPXE scripts, grub.cfg, installer)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # iPXE scripts, grub.cfg and shell, not HTML
    )
