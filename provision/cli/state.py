"""Where `provision serve` keeps its state, as `status` and `devices` find it: --db (a SQLite file
or a postgresql:// URL), --state-dir, the lab file's `state:` URL or paths (state_dir / db), else
the default folder. Says which one was used, so an
operator looking at an empty table knows where it looked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from provision.cli.common import EXIT_INPUT, CLIError
from provision.config import lab as labconfig
from provision.config.inventory import Inventory
from provision.config.lab import DEFAULT_STATE_DIR, LabConfig
from provision.store.base import is_url, redact


def state_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--lab, --state-dir and --db: where a command finds the state (state_place reads them)."""
    fn = click.option(
        "--db",
        default=None,
        metavar="FILE|URL",
        help="The SQLite file itself, or the PostgreSQL URL (postgresql://…) several servers share.",
    )(fn)
    fn = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where `provision serve` keeps state (default /var/lib/provision).",
    )(fn)
    fn = click.option(
        "--lab",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="lab.yml: its devices, and the state folder it names (paths.state_dir).",
    )(fn)
    return fn


@dataclass(frozen=True)
class StatePlace:
    db: Path
    how: str  # how the path was chosen, for messages
    lab: Inventory  # lab.yml's devices (empty without --lab)
    cfg: LabConfig | None = None
    hint: str | None = None  # said under the table: how to point elsewhere
    url: str | None = None  # PostgreSQL (docs/scale-out.md): `db` is then unused

    @property
    def location(self) -> str | Path:
        """What provision.store.base.open_store opens."""
        return self.url or self.db

    @property
    def where(self) -> str:
        """For messages: the file, or the URL without its password."""
        return redact(self.url) if self.url else str(self.db)

    def exists(self) -> bool:
        """A PostgreSQL URL is taken as existing: opening it says what is wrong, if anything."""
        return self.url is not None or self.db.is_file()


def state_place(lab: Path | None, state_dir: Path | None, db: str | Path | None) -> StatePlace:
    if db and state_dir:
        raise CLIError("give --db or --state-dir, not both", "drop one", EXIT_INPUT)
    cfg = labconfig.load_lab(lab, check_files=False) if lab else None
    inventory = cfg.inventory if cfg else Inventory([])
    if db and is_url(str(db)):
        return StatePlace(Path(), "--db", inventory, cfg, url=str(db))
    if db:
        return StatePlace(Path(db), "--db", inventory, cfg)
    if state_dir:
        return StatePlace(state_dir / "provision.db", "--state-dir", inventory, cfg)
    if cfg is not None and cfg.state is not None:
        return StatePlace(Path(), f"state: of {lab}", inventory, cfg, url=cfg.state)
    if cfg is not None:
        return StatePlace(cfg.paths.db_path, f"paths of {lab}", inventory, cfg)
    return StatePlace(
        DEFAULT_STATE_DIR / "provision.db",
        "the default state folder",
        inventory,
        None,
        hint=f"state lives in {DEFAULT_STATE_DIR} unless lab.yml says otherwise: "
        "--lab lab.yml (its paths.state_dir, and names from its devices) or --state-dir DIR",
    )
