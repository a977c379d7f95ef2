"""The Redfish client against hostile or broken BMCs: links and redirects to another origin, an
answer trickled one byte per second, sessions answered 204, errors whose real message is not
the first one, 403, TLS faults. Fixture BMCs on 127.0.0.1 (tests/support/bmc/fixture_bmc.py)
stand in for the vendor behaviour; each test says which."""

from __future__ import annotations

import http.server
import ssl
import threading
import time

import pytest

from provision.bmc import (
    AuthError,
    BmcError,
    BootDevice,
    Forbidden,
    PowerAction,
    PowerState,
    Timeout,
    Unreachable,
    make_target,
    open_driver,
)
from provision.bmc.redfish.origin import ForeignOrigin
from tests.support.bmc.certs import make_pki
from tests.support.bmc.fixture_bmc import FixtureBmc, FixtureServer, Quirks, SilentServer, TrickleServer

PW_ENV = "FIXTURE_BMC_PW"


@pytest.fixture(autouse=True)
def pw_env(monkeypatch):
    monkeypatch.setenv(PW_ENV, "fixture-pass")


def driver(url: str, **kw):
    return open_driver(make_target("fx", url, username="admin", password_env=PW_ENV, **kw), power_timeout=10)


# --- credentials stay with the BMC's own origin --------------------------------------------------


@pytest.mark.parametrize("sessions", [False, True], ids=["basic", "session"])
def test_task_monitor_on_another_origin_is_not_followed(sessions):
    # The Reset answers 202 with a Location on another host:port: following it would carry the
    # X-Auth-Token (or Basic) there. The other origin must see no request at all.
    other = FixtureBmc()
    with FixtureServer(other) as elsewhere:
        monitor = f"http://127.0.0.1:{elsewhere.port}/redfish/v1/TaskService/TaskMonitors/1"
        bmc = FixtureBmc(Quirks(sessions=sessions, foreign_task_monitor=monitor))
        with FixtureServer(bmc) as srv, driver(srv.url) as d, pytest.raises(ForeignOrigin) as err:
            d.set_power(PowerAction.ON)
    assert other.requests == []
    assert bmc.resets == ["On"]  # the action itself ran on the right BMC
    assert f"127.0.0.1:{elsewhere.port}" in str(err.value) and "no credentials were sent" in str(err.value)


def test_redirect_to_another_origin_is_refused():
    # A 302 from the BMC to another host: requests would follow it with the X-Auth-Token header.
    other = FixtureBmc()
    with FixtureServer(other) as elsewhere:
        target = f"http://127.0.0.1:{elsewhere.port}/redfish/v1/Systems"
        bmc = FixtureBmc(Quirks(sessions=True, redirect_systems_to=target))
        with (
            FixtureServer(bmc) as srv,
            driver(srv.url) as d,
            pytest.raises(ForeignOrigin, match="redirected"),
        ):
            d.power_state()
        assert bmc.sessions_deleted  # the session on the real BMC was still logged out
    assert other.requests == []


def test_same_origin_redirect_is_followed():
    # /Systems -> 302 /Systems/ on the same origin: followed.
    bmc = FixtureBmc(Quirks(redirect_systems_to="/redfish/v1/Systems/"))
    with FixtureServer(bmc) as srv, driver(srv.url) as d:
        assert d.power_state() is PowerState.OFF
    assert [r.path for r in bmc.requests].count("/redfish/v1/Systems/") == 1


def test_scheme_change_is_another_origin():
    # Same host and port, https instead of http: another origin (RFC 6454), refused.
    bmc = FixtureBmc()
    with FixtureServer(bmc) as srv:
        bmc.quirks.foreign_system_member = f"https://127.0.0.1:{srv.port}/redfish/v1/Systems/Other"
        with (
            driver(srv.url, system="Other") as d,
            pytest.raises(ForeignOrigin, match=r"https://127\.0\.0\.1"),
        ):
            d.power_state()


def test_session_location_on_another_origin_never_gets_the_token():
    other = FixtureBmc()
    with FixtureServer(other) as elsewhere:
        loc = f"http://127.0.0.1:{elsewhere.port}/redfish/v1/SessionService/Sessions/1"
        bmc = FixtureBmc(Quirks(sessions=True, foreign_session_location=loc))
        with FixtureServer(bmc) as srv, driver(srv.url) as d:
            assert d.power_state() is PowerState.OFF  # the session works on the BMC itself
    assert other.requests == []  # logout was refused rather than sent elsewhere


def test_absolute_same_origin_links_still_work():
    # A task monitor Location written out absolute, on the BMC's own origin: followed.
    bmc = FixtureBmc()
    with FixtureServer(bmc) as srv:
        bmc.quirks.foreign_task_monitor = f"http://127.0.0.1:{srv.port}/redfish/v1/TaskService/TaskMonitors/1"
        with driver(srv.url) as d:
            d.set_power(PowerAction.ON)
    assert bmc.power == "On" and any("TaskMonitors" in r.path for r in bmc.requests)


# --- one overall deadline -------------------------------------------------------------------------


def test_trickled_answer_is_bounded_by_the_total_timeout():
    # One byte per second never trips a per-read timeout of 2 s; the answer has ~80 bytes.
    with TrickleServer(interval=0.5) as srv:
        start = time.monotonic()
        with pytest.raises(Timeout) as err, driver(srv.url, timeout=2, connect_timeout=2):
            pass
        took = time.monotonic() - start
    assert took < 4, took  # was 40 s at 0.5 s a byte (80 bytes) before
    assert srv.bytes_sent >= 2  # it really was trickling, not silent
    assert "no answer within 2 s" in str(err.value) and "--timeout" in err.value.fix


def test_hung_https_names_connect_timeout():
    # Accepts TCP, never completes the TLS handshake: bounded by --connect-timeout, and named so.
    with SilentServer() as srv:
        url = f"redfish://127.0.0.1:{srv.port}"
        start = time.monotonic()
        with pytest.raises(Timeout) as err, driver(url, timeout=30, connect_timeout=1):
            pass
    assert time.monotonic() - start < 5
    assert "no connection within 1 s" in str(err.value)
    assert "--connect-timeout" in err.value.fix and "--timeout " not in err.value.fix


# --- sessions --------------------------------------------------------------------------------------


def test_session_answered_204_is_used_and_deleted():
    # POST Sessions -> 204 No Content with X-Auth-Token and Location, no body (the client
    # ignored the token and fell back to Basic, so the session was never deleted).
    bmc = FixtureBmc(Quirks(sessions=True, session_204=True))
    with FixtureServer(bmc) as srv:
        with driver(srv.url) as d:
            assert d.http.auth_mode == "session"
            assert d.power_state() is PowerState.OFF
        assert bmc.sessions_deleted == ["/redfish/v1/SessionService/Sessions/1"]
        assert not bmc.sessions_live


# --- error texts -----------------------------------------------------------------------------------


def test_every_extended_info_message_is_shown():
    # iDRAC style: the first entry is generic, the one that says what failed comes second.
    bmc = FixtureBmc(Quirks(patch_error=("See other messages.", "HttpBootUri is not a valid URI.")))
    with FixtureServer(bmc) as srv, driver(srv.url) as d, pytest.raises(BmcError) as err:
        d.boot_once(BootDevice.HTTP, url="http://198.18.0.1/x.efi")
    assert err.value.bmc_message == "See other messages.; HttpBootUri is not a valid URI."
    assert err.value.message_id == "Fixture.1.0.E0" and err.value.status == 400


def test_403_is_a_privilege_problem_not_a_password():
    bmc = FixtureBmc(Quirks(forbid_resets=True))
    bmc.power = "On"
    with FixtureServer(bmc) as srv, driver(srv.url) as d, pytest.raises(AuthError) as err:
        d.set_power(PowerAction.OFF)
    assert err.value.status == 403 and isinstance(err.value, Forbidden)
    assert "password" not in err.value.fix and "privilege" in err.value.fix
    assert err.value.bmc_message == "There are insufficient privileges for the account"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    # A certificate for 127.0.0.2 only, served on 127.0.0.1: a host-name (IP) mismatch.
    return make_pki(tmp_path_factory.mktemp("pki"), host="127.0.0.2")


def _tls_server(pki):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert, pki.key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_hostname_mismatch_text_is_whole(pki):
    httpd = _tls_server(pki)
    try:
        url = f"redfish://127.0.0.1:{httpd.server_port}"
        with pytest.raises(Unreachable) as err, driver(url, ca_cert=pki.ca_cert):
            pass
    finally:
        httpd.shutdown()
        httpd.server_close()
    # Was cut at the first quote: "...certificate is not valid for".
    assert "certificate is not valid for '127.0.0.1'" in str(err.value)
    assert str(err.value).count("127.0.0.1") == 1  # the host once, not twice


def test_https_to_a_plain_http_port_does_not_suggest_ca_cert(pki):
    bmc = FixtureBmc()
    with FixtureServer(bmc) as srv:
        url = f"redfish://127.0.0.1:{srv.port}"  # HTTPS to a plain-HTTP port
        with pytest.raises(Unreachable) as err, driver(url, ca_cert=pki.ca_cert):
            pass
    assert "does not speak TLS" in str(err.value)
    assert "--ca-cert" not in (err.value.fix or "") and "redfish+http://" in err.value.fix


# --- identity -------------------------------------------------------------------------------------


def test_serial_and_model_from_the_chassis_when_the_system_lacks_them():
    # The System has SerialNumber "" and no Model, the Chassis it links to has both (a shape the
    # issue's survey of vendor mockups found); the System's own values win when present.
    bmc = FixtureBmc(Quirks(serial_on_chassis=True))
    with FixtureServer(bmc) as srv, driver(srv.url) as d:
        ident = d.identity()
    assert (ident.serial, ident.model, ident.manufacturer) == ("CH-778899", "Chassis-X", "Fixture Inc.")
    assert any(r.path == "/redfish/v1/Chassis/1U" for r in bmc.requests)
    plain = FixtureBmc()
    with FixtureServer(plain) as srv, driver(srv.url) as d:
        assert (d.identity().serial, d.identity().model) == ("FX123456", "FX-1000")
    assert not any("/Chassis/" in r.path for r in plain.requests)  # not read when not needed


def test_session_without_token_is_deleted_and_basic_used():
    # A 2xx to POST Sessions without X-Auth-Token: the session exists but is useless; it is
    # deleted at once (BMC session slots are few) and HTTP Basic carries on.
    bmc = FixtureBmc(Quirks(sessions=True, session_no_token=True))
    with FixtureServer(bmc) as srv, driver(srv.url) as d:
        assert d.http.auth_mode == "basic"
        assert d.power_state() is PowerState.OFF
    assert bmc.sessions_deleted == ["/redfish/v1/SessionService/Sessions/1"] and not bmc.sessions_live
