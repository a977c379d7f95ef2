from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provision.cli.devices_cmds import _fleet
from provision.cli.state import state_place
from provision.rollout.engine import Engine, create
from provision.rollout.plan import Plan, load_plan
from provision.store.rollouts import RolloutDevice, RolloutStore
from provision.store.sqlite import Store
from tests.provision.rollout.scripted import FakeServer, Fleet, factory

LAB = """\
interfaces: [eth9]
subnets:
  - network: 198.18.61.0/24
    interface: eth9
    pool: [198.18.61.100-198.18.61.199]
paths:
  state_dir: state
groups:
  spines:
    role: switch
devices:
"""
for _i in range(1, 9):
    LAB += (
        f"  - {{name: leaf-0{_i}, mac: '52:54:00:61:00:0{_i}', serial: L{_i}, role: switch, site: ams1, "
        f"rack: r{1 if _i <= 4 else 2}, tags: [tor, 'pod-{1 if _i % 2 else 2}']}}\n"
    )
LAB += """\
  - {name: spine-01, mac: '52:54:00:61:01:01', group: spines, site: ams1, rack: r9}
  - {name: srv-01, mac: '52:54:00:61:02:01', role: server, install: never, site: fra1}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text(LAB)
    return path


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    f = Fleet(tmp_path / "fleet")
    f.set_versions({f"leaf-0{i}": "1.0" for i in range(1, 9)} | {"spine-01": "1.0"})
    return f


@pytest.fixture
def server(fleet: Fleet, lab: Path) -> Iterator[FakeServer]:
    db = lab.parent / "state" / "provision.db"
    db.parent.mkdir(exist_ok=True)
    Store(db).close()  # the schema, before two connections race to create it
    srv = FakeServer(fleet, db)
    srv.start()
    yield srv
    srv.stop()


def plan_text(fleet: Fleet, body: str) -> str:
    """A plan with the scripted driver on `fleet` and short timeouts, plus `body`."""
    return (
        body
        + f"driver:\n  name: scripted\n  options: {{folder: '{fleet.folder}'}}\n"
        + ("" if "timeouts:" in body else "timeouts: {arm: 5, install: 10, boot: 5}\n")
    )


def make_plan(lab: Path, text: str, name: str = "plan.yml") -> Plan:
    path = lab.parent / name
    path.write_text(text)
    place = state_place(lab, None, None)
    with _fleet(place, write=False) as (fl, _store):
        inventory = fl.inventory
    return load_plan(path, inventory, drivers=("scripted",))


def run_engine(
    lab: Path, plan: Plan, *, poll: float = 0.05, on_tick: Callable[[Engine], None] | None = None
) -> tuple[int, str, list[RolloutDevice]]:
    """Create the rollout and run the engine in this process to its end: (exit code, id, rows)."""
    place = state_place(lab, None, None)
    with _fleet(place, write=True) as (fl, store):
        rid = create(store, plan, "test")
        engine = Engine(store, fl, rid, by="test", poll=poll, drivers=factory, on_tick=on_tick)
        code = asyncio.run(engine.run())
        return code, rid, RolloutStore(store).devices(rid)


def by_name(rows: list[RolloutDevice]) -> dict[str, RolloutDevice]:
    return {r.name: r for r in rows}


def db_of(lab: Path) -> Path:
    return lab.parent / "state" / "provision.db"


def events(lab: Path, kind: str) -> list[Any]:
    with Store(db_of(lab)) as store:
        return store.events(kinds=[kind])
