"""Where `provision serve` keeps its state, as `status` and `devices` find it: --db, --state-dir,
the lab file's paths (state_dir / db), else the default folder. Says which one was used, so an
operator looking at an empty table knows where it looked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provision.cli.common import EXIT_INPUT, CLIError
from provision.config import lab as labconfig
from provision.config.inventory import Inventory
from provision.config.lab import DEFAULT_STATE_DIR, LabConfig


@dataclass(frozen=True)
class StatePlace:
    db: Path
    how: str  # how the path was chosen, for messages
    lab: Inventory  # lab.yml's devices (empty without --lab)
    cfg: LabConfig | None = None
    hint: str | None = None  # said under the table: how to point elsewhere


def state_place(lab: Path | None, state_dir: Path | None, db: Path | None) -> StatePlace:
    if db and state_dir:
        raise CLIError("give --db or --state-dir, not both", "drop one", EXIT_INPUT)
    cfg = labconfig.load_lab(lab, check_files=False) if lab else None
    inventory = cfg.inventory if cfg else Inventory([])
    if db:
        return StatePlace(db, "--db", inventory, cfg)
    if state_dir:
        return StatePlace(state_dir / "provision.db", "--state-dir", inventory, cfg)
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
