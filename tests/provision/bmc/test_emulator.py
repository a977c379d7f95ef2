"""`provision power|boot|bmc info` against sushy-emulator (fake driver) over TLS with htpasswd
(bcrypt) Basic auth: verified via --ca-cert and via a pinned fingerprint, refused without."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading

import pytest

from provision.bmc import make_target, open_driver
from tests.support.bmc.certs import make_pki
from tests.support.bmc.emulator import sushy_emulator
from tests.support.cli import run_cli

PASSWORD = "Emu-pass-4711"
ENV = {"EMU_PW": PASSWORD}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    work = tmp_path_factory.mktemp("sushy")
    pki = make_pki(work / "pki")
    with sushy_emulator(work / "emu", password=PASSWORD, tls=pki) as e:
        yield e, pki


def bmc_args(emu, *extra: str) -> tuple[str, ...]:
    e, _ = emu
    return (
        "--bmc",
        e.url.replace("https://", "redfish://"),
        "-u",
        e.username,
        "--password-env",
        "EMU_PW",
        *extra,
    )


def no_secret(r) -> None:
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    for text in (r.stdout, r.stderr):
        assert PASSWORD not in text and basic not in text


def test_status_verified_by_ca_cert(emu):
    _, pki = emu
    r = run_cli("power", "status", *bmc_args(emu, "--ca-cert", str(pki.ca_cert), "--json"), env=ENV)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] == 1 and doc["results"][0]["power_state"] in ("on", "off")
    no_secret(r)


def test_status_verified_by_pinned_fingerprint(emu):
    _, pki = emu
    r = run_cli("power", "status", *bmc_args(emu, "--fingerprint", pki.fingerprint, "--json"), env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["ok"] is True


def test_refused_without_ca_or_pin(emu):
    r = run_cli("power", "status", *bmc_args(emu), env=ENV)
    assert r.returncode == 1
    assert "TLS verification failed" in r.stderr and "--ca-cert" in r.stderr
    no_secret(r)


def test_refused_with_wrong_pin(emu):
    r = run_cli("power", "status", *bmc_args(emu, "--fingerprint", "ab" * 32, "--json"), env=ENV)
    assert r.returncode == 1
    err = json.loads(r.stdout)["results"][0]["error"]
    assert err["kind"] == "TlsError" and "Fingerprints did not match" in err["message"]


def test_insecure_is_an_explicit_choice(emu):
    r = run_cli("power", "status", *bmc_args(emu, "--insecure"), env=ENV)
    assert r.returncode == 0, r.stderr
    assert "NOT verified" in r.stderr  # the choice is logged


def test_power_on_wait_boot_info_cycle(emu):
    _, pki = emu
    ca = ("--ca-cert", str(pki.ca_cert))
    r = run_cli("power", "on", *bmc_args(emu, *ca, "--wait", "--wait-timeout", "60", "--json"), env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["power_state"] == "on"

    r = run_cli("boot", *bmc_args(emu, *ca, "--json"), "--once", "pxe", "--uefi", env=ENV)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"][0]
    assert res["applied"] is True and res["device"] == "pxe"
    # sushy-emulator keeps BootSourceOverrideEnabled at Continuous: reported, not hidden
    assert any("Continuous" in n for n in res["notes"])

    r = run_cli("bmc", "info", *bmc_args(emu, *ca, "--json"), env=ENV)
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)["results"][0]["identity"]
    assert ident["manufacturer"] == "Sushy Emulator"
    assert [n["mac"] for n in ident["nics"]] == ["00:5c:52:31:3a:9c"]
    assert ident["uuid"] == "27946b59-9e44-4fa7-8e91-f3527a1ef094"

    # PowerCycle answers 501 on the emulator: ForceOff, wait for Off, then On
    r = run_cli("power", "cycle", *bmc_args(emu, *ca, "--wait", "--wait-timeout", "90", "--json"), env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["power_state"] == "on"


def test_wrong_password_clear_error_and_never_printed_even_with_debug(emu):
    _, pki = emu
    r = run_cli(
        "-vv",
        "power",
        "status",
        *bmc_args(emu, "--ca-cert", str(pki.ca_cert)),
        env={"EMU_PW": "Wrong-pw-9931"},
    )
    assert r.returncode == 1
    assert "401" in r.stderr and "check the username and the password" in r.stderr
    assert "Wrong-pw-9931" not in r.stdout + r.stderr


def test_debug_output_never_contains_the_password(emu):
    _, pki = emu
    r = run_cli("-vv", "power", "status", *bmc_args(emu, "--ca-cert", str(pki.ca_cert)), env=ENV)
    assert r.returncode == 0, r.stderr
    assert "level=debug" in r.stderr  # -vv really logged the requests (logfmt)
    no_secret(r)


def test_virtual_media_insert_and_eject(emu, tmp_path, monkeypatch):
    e, pki = emu
    (tmp_path / "boot.iso").write_bytes(b"\0" * 4096)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    image = f"http://127.0.0.1:{httpd.server_port}/boot.iso"
    monkeypatch.setenv("EMU_PW", PASSWORD)
    target = make_target("emu", e.url, username=e.username, password_env="EMU_PW", ca_cert=pki.ca_cert)
    try:
        with open_driver(target) as d:
            d.insert_media(image)
            slot = d._media_slot()
            assert slot["Image"] == image and slot["Inserted"] is True
            d.eject_media()
            slot = d._media_slot()
            assert not slot.get("Inserted") and not slot.get("Image")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_inventory_tls_choices_per_device(emu, tmp_path):
    e, pki = emu
    url = e.url.replace("https://", "redfish://")
    common = f"      url: {url}\n      username: admin\n      password_env: EMU_PW\n"
    inv = tmp_path / "lab.yml"
    inv.write_text(
        "devices:\n"
        f"  - name: pinned\n    bmc:\n{common}      fingerprint: 'sha256:{pki.fingerprint}'\n"
        f"  - name: by-ca\n    bmc:\n{common}      ca_cert: {pki.ca_cert}\n"
        f"  - name: lax\n    bmc:\n{common}      insecure: true\n"
        f"  - name: strict\n    bmc:\n{common}"
    )
    # One run each: the four devices name the same BMC, and one run acts once per BMC system.
    ok = {}
    for name in ("pinned", "by-ca", "lax", "strict"):
        r = run_cli("power", "status", name, "-i", str(inv), "--json", env=ENV)
        ok[name] = json.loads(r.stdout)["results"][0]["ok"]
    assert ok == {"pinned": True, "by-ca": True, "lax": True, "strict": False}
    r = run_cli("power", "status", "pinned", "lax", "-i", str(inv), "--json", env=ENV)
    assert len(json.loads(r.stdout)["results"]) == 1 and "same BMC system as pinned" in r.stderr
    # --insecure on the command line never loosens an inventory device
    r = run_cli("power", "status", "strict", "-i", str(inv), "--insecure", env=ENV)
    assert r.returncode == 2 and "insecure: true" in r.stderr


def _serve_dir(directory) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_bmc_text_of_a_refused_http_boot_is_shown(emu, tmp_path):
    # sushy-emulator's fake driver downloads the image, then cannot store HttpBootUri and answers
    # 400 with a plain-text body; that text was dropped ("HTTP 400" alone) before.
    _, pki = emu
    (tmp_path / "boot.iso").write_bytes(b"\0" * 4096)
    httpd = _serve_dir(tmp_path)
    try:
        image = f"http://127.0.0.1:{httpd.server_port}/boot.iso"
        r = run_cli(
            "boot", *bmc_args(emu, "--ca-cert", str(pki.ca_cert)), "--once", "http", "--url", image, env=ENV
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "HTTP 400" in r.stderr and "BMC says: Failed to save HttpBootUri field value." in r.stderr
    no_secret(r)


def test_continuous_boot_override_is_a_warning_on_stderr(emu):
    # sushy-emulator (libvirt semantics) keeps BootSourceOverrideEnabled at Continuous: without
    # --json the operator saw nothing of it before.
    _, pki = emu
    r = run_cli("boot", *bmc_args(emu, "--ca-cert", str(pki.ca_cert)), "--once", "pxe", env=ENV)
    assert r.returncode == 0, r.stderr
    assert "next boot pxe" in r.stdout
    warning = next(x for x in r.stderr.splitlines() if x.startswith("warning:"))
    assert "Continuous" in warning and "every boot goes to Pxe" in warning


TWO_SYSTEMS = [
    {"uuid": "8c8b5a2e-0000-4000-8000-00000000000a", "name": "node-a", "power_state": "On", "nics": []},
    {"uuid": "8c8b5a2e-0000-4000-8000-00000000000b", "name": "node-b", "power_state": "On", "nics": []},
]


@pytest.fixture(scope="module")
def emu2(tmp_path_factory):
    """sushy-emulator with two systems behind one service (plain HTTP)."""
    systems = [dict(s, external_notifier=False) for s in TWO_SYSTEMS]
    with sushy_emulator(tmp_path_factory.mktemp("sushy2"), password=PASSWORD, systems=systems) as e:
        yield e


def _status(e, system: str) -> str:
    url = e.url.replace("http://", "redfish+http://") + f"/redfish/v1/Systems/{system}"
    r = run_cli(
        "power", "status", "--bmc", url, "-u", e.username, "--password-env", "EMU_PW", "--json", env=ENV
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["results"][0]["power_state"]


def test_two_systems_need_a_selection_and_only_the_selected_one_changes(emu2):
    a, b = (s["uuid"] for s in TWO_SYSTEMS)
    url = emu2.url.replace("http://", "redfish+http://")
    auth = ("-u", emu2.username, "--password-env", "EMU_PW")
    r = run_cli("power", "off", "--bmc", url, *auth, env=ENV)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert a in r.stderr and b in r.stderr and "none was selected" in r.stderr
    assert (_status(emu2, a), _status(emu2, b)) == ("on", "on")  # nothing acted on

    r = run_cli("power", "off", "--bmc", f"{url}/redfish/v1/Systems/{b}", *auth, "--wait", env=ENV)
    assert r.returncode == 0, r.stderr
    assert (_status(emu2, a), _status(emu2, b)) == ("on", "off")
    r = run_cli("power", "on", "--bmc", url, "--system", b, *auth, env=ENV)
    assert r.returncode == 0 and "on sent" in r.stdout
    r = run_cli("power", "on", "--bmc", url, "--system", a, *auth, env=ENV)
    assert r.returncode == 0 and "already on" in r.stdout
