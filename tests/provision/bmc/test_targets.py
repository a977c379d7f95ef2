"""Which machine a command acts on, and what it says it did: system selection on BMCs with
several systems, targets identified by (scheme, host, port, system), a batch with a device
without `bmc:`, "already on", the power-cycle fallback, warnings on stderr, and credentials
never echoed from a URL or a mistyped `password_env`.

The multi-system BMC is a fixture (tests/support/bmc/fixture_bmc.py) standing in for the DMTF
public-bladed mockup and NVIDIA GB200/DPU BMCs: one service, several Systems members."""

from __future__ import annotations

import json
import time

import pytest

from provision.bmc import PowerAction, SystemSelectionError, TargetError, make_target, open_driver
from tests.support.bmc.fixture_bmc import FixtureBmc, FixtureServer, Quirks
from tests.support.cli import run_cli

PASSWORD = "fixture-pass"
ENV = {"LAB_BMC_PW": PASSWORD}
AUTH = ("-u", "admin", "--password-env", "LAB_BMC_PW")


def inventory(tmp_path, devices: dict[str, dict | None]) -> str:
    lines = ["devices:"]
    for name, bmc in devices.items():
        lines.append(f"  - name: {name}")
        if bmc is None:
            continue
        lines += ["    bmc:", "      username: admin", "      password_env: LAB_BMC_PW"]
        lines += [f"      {k}: {v}" for k, v in bmc.items()]
    path = tmp_path / "lab.yml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def blades() -> FixtureBmc:
    bmc = FixtureBmc(Quirks(system_id="A", extra_systems=("B", "C")))
    bmc.power = "On"
    bmc.powers = dict.fromkeys(bmc.powers, "On")
    return bmc


# --- system selection --------------------------------------------------------------------------------


def test_several_systems_and_no_selection_is_an_error_that_lists_them():
    bmc = blades()
    with FixtureServer(bmc) as srv:
        r = run_cli("power", "off", "--bmc", srv.url, *AUTH, env=ENV)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "3 systems (A, B, C)" in r.stderr and "nothing was done" in r.stderr
    assert bmc.reset_log == []  # never the first one


def test_system_path_in_the_url_selects_it():
    # Was: `power off redfish://bmc/redfish/v1/Systems/B` powered off the FIRST system.
    bmc = blades()
    with FixtureServer(bmc) as srv:
        r = run_cli("power", "off", "--bmc", f"{srv.url}/redfish/v1/Systems/B", *AUTH, "--json", env=ENV)
    assert r.returncode == 0, r.stderr
    assert bmc.reset_log == [("B", "ForceOff")]
    res = json.loads(r.stdout)["results"][0]
    assert res["bmc"].endswith("/redfish/v1/Systems/B")


def test_system_option_and_inventory_field():
    bmc = blades()
    with FixtureServer(bmc) as srv:
        r = run_cli("power", "off", "--bmc", srv.url, "--system", "C", *AUTH, env=ENV)
        assert r.returncode == 0, r.stderr
        assert bmc.reset_log == [("C", "ForceOff")]


def test_inventory_system_field(tmp_path):
    bmc = blades()
    with FixtureServer(bmc) as srv:
        inv = inventory(tmp_path, {"blade-b": {"url": srv.url, "system": "B"}})
        r = run_cli("bmc", "info", "blade-b", "-i", inv, "--json", env=ENV)
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)["results"][0]["identity"]
    assert ident["serial"] == "BLADE-B" and ident["system"] == "/redfish/v1/Systems/B"


def test_unknown_system_lists_the_real_ones(monkeypatch):
    monkeypatch.setenv("LAB_BMC_PW", PASSWORD)
    bmc = blades()
    with FixtureServer(bmc) as srv:
        target = make_target("x", srv.url, username="admin", password_env="LAB_BMC_PW", system="Z")
        with open_driver(target) as d, pytest.raises(SystemSelectionError, match="it has A, B, C"):
            d.set_power(PowerAction.OFF)
    assert bmc.reset_log == []


def test_conflicting_system_sources_and_bad_paths_are_input_errors():
    with pytest.raises(TargetError, match="names system 'B' but 'C'"):
        make_target("x", "redfish://h/redfish/v1/Systems/B", system="C")
    with pytest.raises(TargetError, match="is not a system"):
        make_target("x", "redfish://h/redfish/v1/Managers/1")
    with pytest.raises(TargetError, match="IPMI has no system"):
        make_target("x", "ipmi://h", system="B")
    assert make_target("x", "redfish://h/redfish/v1/Systems/System.Embedded.1/").system == "System.Embedded.1"
    assert make_target("x", "redfish://h", system="/redfish/v1/Systems/1").system == "1"


# --- target identity --------------------------------------------------------------------------------


def test_target_key_is_scheme_host_port_system():
    keys = {
        make_target("a", u).key
        for u in ("redfish://h", "https://H:443", "redfish://h/", "redfish://h/redfish/v1/")
    }
    assert keys == {("https", "h", 443, None)}
    assert make_target("b", "redfish+http://h").key == ("http", "h", 80, None)
    assert make_target("c", "redfish://h/redfish/v1/Systems/B").key == ("https", "h", 443, "B")


def test_same_url_twice_acts_once():
    bmc = FixtureBmc(Quirks(allowed_resets=("On", "ForceOff", "ForceRestart")))
    bmc.power = "On"
    with FixtureServer(bmc) as srv:
        r = run_cli("power", "reset", "--bmc", srv.url, "--bmc", srv.url + "/", *AUTH, "--json", env=ENV)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["results"]) == 1 and bmc.resets == ["ForceRestart"]


def test_http_and_https_of_one_host_are_two_targets():
    # Same host and port, two schemes: two results (they collapsed into one name before). The
    # https one fails (the port speaks plain HTTP): its own result, not the other's.
    bmc = FixtureBmc()
    with FixtureServer(bmc) as srv:
        https = srv.url.replace("redfish+http://", "redfish://")
        r = run_cli("power", "status", "--bmc", srv.url, "--bmc", https, *AUTH, "--json", env=ENV)
    assert r.returncode == 4, r.stderr
    results = json.loads(r.stdout)["results"]
    assert [(x["name"].split(":")[0], x["ok"]) for x in results] == [
        ("redfish+http", True),
        ("redfish", False),
    ]


# --- batches and what is reported ----------------------------------------------------------------


def test_device_without_bmc_fails_alone_and_the_rest_runs(tmp_path):
    bmc = FixtureBmc()
    with FixtureServer(bmc) as srv:
        inv = inventory(tmp_path, {"good": {"url": srv.url}, "switch-1": None})
        r = run_cli("power", "on", "good", "switch-1", "-i", inv, "--json", env=ENV)
    assert r.returncode == 4, r.stderr
    doc = json.loads(r.stdout)
    assert [(x["name"], x["ok"]) for x in doc["results"]] == [("good", True), ("switch-1", False)]
    assert "no `bmc:`" in doc["results"][1]["error"]["message"] and bmc.resets == ["On"]


def test_already_on_when_nothing_was_sent(tmp_path):
    bmc = FixtureBmc()
    bmc.power = "On"
    with FixtureServer(bmc) as srv:
        r = run_cli("power", "on", "--bmc", srv.url, *AUTH, env=ENV)
        rj = run_cli("power", "on", "--bmc", srv.url, *AUTH, "--json", env=ENV)
    assert r.returncode == 0, r.stderr
    assert "already on" in r.stdout and "on sent" not in r.stdout
    assert json.loads(rj.stdout)["results"][0]["sent"] is False
    assert bmc.resets == []


def test_errors_name_the_host_once():
    with FixtureServer(FixtureBmc(Quirks(busy_503=100, retry_after="0"))) as srv:
        r = run_cli("power", "on", "--bmc", srv.url, *AUTH, env=ENV)
    assert r.returncode == 1
    line = next(x for x in r.stderr.splitlines() if x.startswith("error:"))
    assert line.count(f"127.0.0.1:{srv.port}") == 1, line


def test_clear_text_warning_on_redfish_http():
    with FixtureServer(FixtureBmc()) as srv:
        r = run_cli("power", "status", "--bmc", srv.url, *AUTH, env=ENV)
    assert r.returncode == 0
    assert "clear text" in r.stderr and "level=warning" in r.stderr


# --- the power-cycle fallback --------------------------------------------------------------------


def test_cycle_fallback_without_wait_does_not_wait_300_s():
    # No PowerCycle: ForceOff, wait for Off, On; the fixture is Off at once. Without --wait the
    # Off wait is bounded short, and the machine ends On.
    bmc = FixtureBmc(Quirks(allowed_resets=("On", "ForceOff")))
    bmc.power = "On"
    with FixtureServer(bmc) as srv:
        start = time.monotonic()
        r = run_cli("power", "cycle", "--bmc", srv.url, *AUTH, env=ENV)
    assert r.returncode == 0, r.stderr
    assert bmc.resets == ["ForceOff", "On"] and bmc.power == "On"
    assert time.monotonic() - start < 30


class _StuckOn(FixtureBmc):
    """ForceOff is accepted but the power state keeps reading On (a BMC whose reading lags)."""

    def system(self, path=None):
        data = super().system(path)
        data["PowerState"] = "On"
        return data


def test_cycle_fallback_never_leaves_the_machine_off_silently():
    bmc = _StuckOn(Quirks(allowed_resets=("On", "ForceOff")))
    bmc.power = "On"
    with FixtureServer(bmc) as srv:
        start = time.monotonic()
        r = run_cli(
            "power", "cycle", "--bmc", srv.url, *AUTH, "--wait", "--wait-timeout", "3", "--json", env=ENV
        )
    took = time.monotonic() - start
    assert r.returncode == 1
    err = json.loads(r.stdout)["results"][0]["error"]["message"]
    assert "did not read Off" in err and "On was sent anyway" in err
    assert bmc.resets == ["ForceOff", "On"]  # On still went out
    assert took < 20, took  # --wait-timeout 3 bounded the wait for Off


# --- credentials never echoed ----------------------------------------------------------------------


def test_password_in_a_bmc_url_is_refused_and_not_echoed(tmp_path):
    r = run_cli("power", "status", "--bmc", "redfish://admin:Hunter2-secret@10.0.0.5")
    assert r.returncode == 2 and "carries credentials" in r.stderr
    assert "Hunter2-secret" not in r.stdout + r.stderr
    inv = inventory(tmp_path, {"x": {"url": "redfish://admin:Hunter2-secret@10.0.0.5"}})
    r = run_cli("power", "status", "x", "-i", inv)
    assert r.returncode == 2 and "lab.yml:" in r.stderr and "carries credentials" in r.stderr
    assert "Hunter2-secret" not in r.stdout + r.stderr
    inv = inventory(tmp_path, {"x": {"url": "redfsh://admin:Hunter2-secret@10.0.0.5"}})  # bad scheme too
    r = run_cli("power", "status", "x", "-i", inv)
    assert r.returncode == 2 and "Hunter2-secret" not in r.stdout + r.stderr


def test_password_typed_into_password_env_is_not_echoed(tmp_path):
    path = tmp_path / "lab.yml"
    path.write_text(
        "devices:\n  - name: x\n    bmc:\n      url: redfish://10.0.0.5\n      password_env: 'S3cret!pw'\n"
    )
    r = run_cli("power", "status", "x", "-i", str(path))
    assert r.returncode == 2 and "lab.yml:5" in r.stderr and "environment variable name" in r.stderr
    assert "S3cret" not in r.stdout + r.stderr


def test_cycle_fallback_without_wait_is_bounded_short_and_still_sends_on():
    # No --wait: the wait for Off is bounded by 60 s, or --wait-timeout when shorter (here 2 s),
    # never 300 s; the stuck reading is reported and On still goes out.
    bmc = _StuckOn(Quirks(allowed_resets=("On", "ForceOff")))
    bmc.power = "On"
    with FixtureServer(bmc) as srv:
        start = time.monotonic()
        r = run_cli("power", "cycle", "--bmc", srv.url, *AUTH, "--wait-timeout", "2", env=ENV)
    assert time.monotonic() - start < 15
    assert r.returncode == 1 and "On was sent anyway" in r.stderr
    assert bmc.resets == ["ForceOff", "On"]
