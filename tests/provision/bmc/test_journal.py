"""BMC operations reach provision serve's /metrics through the state store: `provision power`
(a CLI process, against the Redfish fixture BMC of tests/support/bmc) writes one bmc.operation
event per target, and the metrics tally aggregates them into latency and error series."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.bmc.journal import KIND_BMC_OPERATION
from provision.config.inventory import Inventory
from provision.server.metrics import Metrics
from provision.store.base import open_store
from provision.store.sqlite import Store
from tests.provision.bmc.test_cli import ENV, inventory
from tests.provision.server.test_metrics import scrape, served, value
from tests.support.bmc.fixture_bmc import FixtureBmc, FixtureServer, Quirks
from tests.support.cli import run_cli
from tests.support.ports import free_port
from tests.support.postgres import pg_cluster, pg_url  # noqa: F401  (fixtures)


def test_power_operations_are_recorded_for_metrics(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = state / "provision.db"
    with Store(db) as store:  # what `provision serve` made
        metrics = Metrics(served(), read=None, lab=lambda: Inventory([]))  # type: ignore[arg-type]
        metrics.start(store)
    bmc = FixtureBmc(Quirks())
    with FixtureServer(bmc) as srv:
        inv = inventory(tmp_path, {"good": srv.url, "gone": f"redfish+http://127.0.0.1:{free_port()}"})
        r = run_cli("power", "on", "good", "gone", "-i", inv, "--state-dir", str(state), env=ENV)
    assert r.returncode == 4, r.stderr  # one ok, one failed
    with Store(db) as store:
        events = [e for _, e in store.event_page(kinds=[KIND_BMC_OPERATION], limit=10)]
        facts = metrics.read_facts(store)
    assert sorted((e.detail["name"], e.detail["ok"]) for e in events) == [("gone", False), ("good", True)]
    assert all(e.detail["operation"] == "power-on" and e.detail["protocol"] == "redfish" for e in events)
    assert "127.0.0.1" not in str([e.detail for e in events])  # no BMC address in the store
    m = scrape(served(), facts)
    hist = "provision_bmc_operation_duration_seconds"
    assert value(m, hist, f"{hist}_count", operation="power-on", protocol="redfish") == 2
    errors = [s for s in m["provision_bmc_operation_errors"].samples if s.name.endswith("_total")]
    assert [(s.labels["operation"], s.value) for s in errors] == [("power-on", 1.0)]


def test_nothing_is_recorded_where_serve_keeps_no_database(tmp_path):
    bmc = FixtureBmc(Quirks())
    with FixtureServer(bmc) as srv:
        inv = inventory(tmp_path, {"good": srv.url})
        r = run_cli("power", "status", "good", "-i", inv, "--state-dir", str(tmp_path / "none"), env=ENV)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.postgres
def test_recorded_in_the_lab_files_postgresql_state(tmp_path, pg_url):  # noqa: F811
    with open_store(pg_url) as store:  # what a `provision serve` with `state:` made
        metrics = Metrics(served(), read=None, lab=lambda: Inventory([]))  # type: ignore[arg-type]
        metrics.start(store)
    bmc = FixtureBmc(Quirks())
    with FixtureServer(bmc) as srv:
        inv = Path(inventory(tmp_path, {"good": srv.url}))
        lab = tmp_path / "pg-lab.yml"
        lab.write_text(LAB_HEAD.format(url=pg_url) + inv.read_text())
        r = run_cli("power", "status", "good", "-i", str(lab), env=ENV)
    assert r.returncode == 0, r.stderr
    with open_store(pg_url) as store:
        facts = metrics.read_facts(store)
    hist = "provision_bmc_operation_duration_seconds"
    m = scrape(served(), facts)
    assert value(m, hist, f"{hist}_count", operation="power-status", protocol="redfish") == 1


LAB_HEAD = """\
interfaces: [pv0]
subnets:
  - network: 198.18.30.0/24
    interface: pv0
    pool: [198.18.30.100-198.18.30.110]
state: {url}
"""
