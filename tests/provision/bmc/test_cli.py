"""CLI behaviour with an inventory: many targets concurrently, partial failure, bad input,
unreachable and hung BMCs, and that no password reaches any output."""

from __future__ import annotations

import json
import threading

import pytest

from tests.support.bmc.fixture_bmc import FixtureBmc, FixtureServer, Quirks, SilentServer
from tests.support.cli import run_cli
from tests.support.ports import free_port

PASSWORD = "fixture-pass"
ENV = {"LAB_BMC_PW": PASSWORD}


def inventory(tmp_path, devices: dict[str, str], **bmc_extra) -> str:
    lines = ["devices:"]
    for name, url in devices.items():
        lines += [
            f"  - name: {name}",
            "    bmc:",
            f"      url: {url}",
            "      username: admin",
            "      password_env: LAB_BMC_PW",
        ]
        lines += [f"      {k}: {v}" for k, v in bmc_extra.items()]
    path = tmp_path / "lab.yml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def clean(r) -> None:
    assert PASSWORD not in r.stdout and PASSWORD not in r.stderr


def test_two_devices_run_concurrently(tmp_path):
    # Both BMCs hold their first request until the other one has arrived: this only passes when
    # the two targets really run at the same time.
    barrier = threading.Barrier(2, timeout=20)
    a, b = FixtureBmc(Quirks(barrier=barrier)), FixtureBmc(Quirks(barrier=barrier, system_id="1"))
    with FixtureServer(a) as sa, FixtureServer(b) as sb:
        inv = inventory(tmp_path, {"srv-a": sa.url, "srv-b": sb.url})
        r = run_cli("power", "on", "srv-a", "srv-b", "-i", inv, "--parallel", "2", "--json", env=ENV)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [x["name"] for x in doc["results"]] == ["srv-a", "srv-b"]
    assert doc["ok"] == 2 and a.resets == ["On"] and b.resets == ["On"]
    clean(r)


def test_partial_failure_exit_4_with_table_and_errors(tmp_path):
    bmc = FixtureBmc(Quirks())
    closed = free_port()
    with FixtureServer(bmc) as srv:
        inv = inventory(tmp_path, {"good": srv.url, "gone": f"redfish+http://127.0.0.1:{closed}"})
        r = run_cli("power", "status", "good", "gone", env={**ENV, "PROVISION_INVENTORY": inv})
    assert r.returncode == 4, r.stderr
    assert "good" in r.stdout and "FAILED" in r.stdout and "1 ok, 1 failed" in r.stdout
    assert "gone" in r.stderr and "Connection refused" in r.stderr and "fix:" in r.stderr
    clean(r)


def test_all_failed_exit_1(tmp_path):
    inv = inventory(
        tmp_path,
        {"x": f"redfish+http://127.0.0.1:{free_port()}", "y": f"redfish+http://127.0.0.1:{free_port()}"},
    )
    r = run_cli("power", "status", "x", "y", "-i", inv, env=ENV)
    assert r.returncode == 1


def test_hung_bmc_times_out_clearly(tmp_path):
    with SilentServer() as srv:
        inv = inventory(tmp_path, {"hung": srv.url}, timeout=1, connect_timeout=1)
        r = run_cli("power", "status", "hung", "-i", inv, "--json", env=ENV)
    assert r.returncode == 1
    err = json.loads(r.stdout)["results"][0]["error"]
    assert err["kind"] == "Timeout" and "no answer within 1 s" in err["message"]


def test_timeout_option_overrides_inventory(tmp_path):
    with SilentServer() as srv:
        inv = inventory(tmp_path, {"hung": srv.url})
        r = run_cli("bmc", "info", "hung", "-i", inv, "--timeout", "0.5", env=ENV)
    assert r.returncode == 1 and "no answer within 0.5 s" in r.stderr


def test_bmc_error_shows_message_id_and_message(tmp_path):
    bmc = FixtureBmc(Quirks(busy_503=100, retry_after="0"))
    with FixtureServer(bmc) as srv:
        inv = inventory(tmp_path, {"busy": srv.url})
        r = run_cli("power", "on", "busy", "-i", inv, env=ENV)
    assert r.returncode == 1
    assert "Base.1.8.ServiceTemporarilyUnavailable: busy" in r.stderr


def test_boot_http_url_and_info_over_sessions_with_debug_log(tmp_path):
    bmc = FixtureBmc(Quirks(sessions=True))
    with FixtureServer(bmc) as srv:
        inv = inventory(tmp_path, {"s1": srv.url})
        r = run_cli(
            "-vv", "boot", "s1", "-i", inv, "--once", "http", "--url", "http://198.18.0.1/x.efi", env=ENV
        )
        assert r.returncode == 0, r.stderr
        r2 = run_cli("-vv", "bmc", "info", "s1", "-i", inv, "--json", env=ENV)
    assert r2.returncode == 0, r2.stderr
    assert bmc.boot["HttpBootUri"] == "http://198.18.0.1/x.efi"
    assert json.loads(r2.stdout)["results"][0]["identity"]["serial"] == "FX123456"
    assert len(bmc.sessions_deleted) == 2 and not bmc.sessions_live  # both runs logged out
    for run in (r, r2):
        assert "level=debug" in run.stderr  # logfmt (provision/logs.py)
        clean(run)


def test_password_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    bmc = FixtureBmc(Quirks())
    with FixtureServer(bmc) as srv:
        r = run_cli("power", "status", "--bmc", srv.url, "-u", "admin", "--password-file", str(pw), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["power_state"] == "off"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("power", "status"), "no targets given"),
        (("power", "status", "leaf-01"), "no inventory was given"),
        (("power", "status", "--bmc", "ftp://x"), "unknown BMC scheme"),
        (
            ("power", "status", "--bmc", "redfish://127.0.0.1", "--password-env", "NOPE_UNSET_VAR"),
            "NOPE_UNSET_VAR",
        ),
        (
            ("power", "status", "--bmc", "redfish://127.0.0.1", "--fingerprint", "12:34"),
            "not a SHA-256 fingerprint",
        ),
        (
            ("boot", "--bmc", "redfish://127.0.0.1", "--once", "pxe", "--url", "http://a/b"),
            "--url only goes with",
        ),
        (
            ("power", "status", "--bmc", "redfish://127.0.0.1", "--insecure", "--fingerprint", "ab" * 32),
            "pick one",
        ),
    ],
)
def test_bad_input_exit_2(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr


def test_unknown_inventory_name_suggests(tmp_path):
    inv = inventory(tmp_path, {"leaf-01": "redfish://127.0.0.1"})
    r = run_cli("power", "status", "leaf-1", "-i", inv)
    assert r.returncode == 2 and "did you mean leaf-01" in r.stderr


def test_inventory_schema_error_names_file_and_line(tmp_path):
    path = tmp_path / "lab.yml"
    path.write_text("devices:\n  - name: a\n    bmc:\n      url: redfish://h\n      insecur: true\n")
    r = run_cli("power", "status", "a", "-i", str(path))
    assert r.returncode == 2 and "lab.yml:5" in r.stderr


def test_progress_on_a_terminal(tmp_path):
    # stderr on a pseudo-terminal switches the rich progress display on; stdout (a pipe) keeps
    # the plain summary table.
    import os
    import pty
    import subprocess

    from tests.support.cli import cli_argv, cli_env

    a, b = FixtureBmc(Quirks()), FixtureBmc(Quirks())
    with FixtureServer(a) as sa, FixtureServer(b) as sb:
        inv = inventory(tmp_path, {"p1": sa.url, "p2": sb.url})
        master, slave = pty.openpty()
        try:
            proc = subprocess.run(
                cli_argv("power", "on", "p1", "p2", "-i", inv),
                env=cli_env(ENV),
                stdout=subprocess.PIPE,
                stderr=slave,
                text=True,
                timeout=120,
            )
            os.close(slave)
            seen = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(master)
    assert proc.returncode == 0
    assert "2 ok, 0 failed" in proc.stdout
    assert b"\x1b[" in seen  # the terminal got the progress display's control sequences
    assert PASSWORD.encode() not in seen
