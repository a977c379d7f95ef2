"""The Redfish driver against small fixture BMCs, one quirk path each (docs/bmc.md quirks table)."""

from __future__ import annotations

import pytest

from provision.bmc import (
    AuthError,
    BmcError,
    BootDevice,
    BootMode,
    PowerAction,
    PowerState,
    Timeout,
    Unreachable,
    make_target,
    open_driver,
)
from tests.support.bmc.fixture_bmc import FixtureBmc, FixtureServer, Quirks, SilentServer
from tests.support.ports import free_port

PW_ENV = "FIXTURE_BMC_PW"


@pytest.fixture
def pw_env(monkeypatch):
    monkeypatch.setenv(PW_ENV, "fixture-pass")


def driver(url: str, **kw):
    target = make_target("fx", url, username="admin", password_env=PW_ENV, **kw)
    return open_driver(target, power_timeout=10)


def serve(**quirks) -> tuple[FixtureBmc, FixtureServer]:
    bmc = FixtureBmc(Quirks(**quirks))
    return bmc, FixtureServer(bmc)


def test_system_found_through_collection_at_self(pw_env):
    _bmc, srv = serve(system_id="Self")
    with srv, driver(srv.url) as d:
        assert d.system_path == "/redfish/v1/Systems/Self"
        assert d.power_state() is PowerState.OFF
        ident = d.identity()
    assert (ident.model, ident.serial, ident.bios_version) == ("FX-1000", "FX123456", "2.4.1")
    assert [n.mac for n in ident.nics] == ["aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"]


def test_reset_values_only_through_actioninfo(pw_env):
    # Supermicro: no ResetType@Redfish.AllowableValues, only @Redfish.ActionInfo; this BMC has
    # no PowerCycle, so a cycle of a running machine must be ForceOff then On.
    bmc, srv = serve(reset_via_actioninfo=True, allowed_resets=("On", "ForceOff", "ForceRestart"))
    bmc.power = "On"
    with srv, driver(srv.url) as d:
        d.set_power(PowerAction.CYCLE)
    assert bmc.resets == ["ForceOff", "On"]
    assert any(r.path.endswith("/ResetActionInfo") for r in bmc.requests)


def test_reset_while_off_is_power_on_and_reset_while_on_is_force_restart(pw_env):
    bmc, srv = serve()
    with srv, driver(srv.url) as d:
        d.set_power(PowerAction.RESET)  # off -> On, never a reset (iLO 400s it)
        d.set_power(PowerAction.RESET)  # on -> ForceRestart
        d.set_power(PowerAction.ON)  # already on: nothing sent
        d.set_power(PowerAction.OFF)
    assert bmc.resets == ["On", "ForceRestart", "ForceOff"]


def test_unlisted_reset_type_is_unsupported_with_bmc_values(pw_env):
    bmc, srv = serve(allowed_resets=("On", "ForceOff"))
    bmc.power = "On"
    with (
        srv,
        driver(srv.url) as d,
        pytest.raises(BmcError, match="no ResetType for graceful-off among On, ForceOff"),
    ):
        d.set_power(PowerAction.GRACEFUL_OFF)
    assert bmc.resets == []


def test_patch_with_if_match_required(pw_env):
    bmc, srv = serve(require_if_match=True)
    with srv, driver(srv.url) as d:
        result = d.boot_once(BootDevice.PXE, BootMode.UEFI)
    assert result.applied and not result.pending
    patches = [r for r in bmc.requests if r.method == "PATCH"]
    assert [p.headers.get("If-Match") for p in patches] == ['"1"']
    assert bmc.boot["BootSourceOverrideTarget"] == "Pxe" and bmc.boot["BootSourceOverrideEnabled"] == "Once"


def test_weak_etag_falls_back_to_strong(pw_env):
    # HPE iLO 5: hands out W/"n" and refuses it in If-Match (412); the strong form works.
    bmc, srv = serve(require_if_match=True, weak_etag=True)
    with srv, driver(srv.url) as d:
        d.boot_once(BootDevice.DISK)
    tags = [r.headers.get("If-Match") for r in bmc.requests if r.method == "PATCH"]
    assert tags == ['W/"1"', '"1"']
    assert bmc.boot["BootSourceOverrideTarget"] == "Hdd"


def test_503_retry_after_then_success(pw_env):
    bmc, srv = serve(busy_503=2, retry_after="1")
    with srv, driver(srv.url) as d:
        d.set_power(PowerAction.ON)
    posts = [r for r in bmc.requests if r.method == "POST"]
    assert len(posts) == 3 and bmc.resets == ["On"] and bmc.power == "On"


def test_503_forever_gives_up_with_bmc_message(pw_env):
    bmc, srv = serve(busy_503=100, retry_after="0")
    with srv, driver(srv.url) as d, pytest.raises(BmcError) as err:
        d.set_power(PowerAction.ON)
    assert err.value.status == 503 and err.value.message_id == "Base.1.8.ServiceTemporarilyUnavailable"
    assert len([r for r in bmc.requests if r.method == "POST"]) == 6  # the retry table's attempts


def test_patch_not_applied_without_settings_is_a_clear_error(pw_env):
    _bmc, srv = serve(patch_ignored=True)
    with (
        srv,
        driver(srv.url) as d,
        pytest.raises(BmcError, match="reads back without BootSourceOverrideTarget"),
    ):
        d.boot_once(BootDevice.PXE)


def test_patch_not_applied_goes_to_settings_object(pw_env):
    # AMI/Supermicro: 200 that changes nothing; the @Redfish.Settings object takes it, pending reset.
    bmc, srv = serve(patch_ignored=True, settings_object=True)
    with srv, driver(srv.url) as d:
        result = d.boot_once(BootDevice.CD, BootMode.LEGACY)
    assert result.pending and not result.applied
    assert bmc.pending_boot == {
        "BootSourceOverrideTarget": "Cd",
        "BootSourceOverrideEnabled": "Once",
        "BootSourceOverrideMode": "Legacy",
    }


def test_http_boot_url(pw_env):
    bmc, srv = serve()
    with srv, driver(srv.url) as d:
        d.boot_once(BootDevice.HTTP, BootMode.UEFI, "http://198.18.0.1/boot.efi")
    assert bmc.boot["BootSourceOverrideTarget"] == "UefiHttp"
    assert bmc.boot["HttpBootUri"] == "http://198.18.0.1/boot.efi"


def test_session_login_and_logout(pw_env):
    bmc, srv = serve(sessions=True)
    with srv:
        with driver(srv.url) as d:
            assert d.http.auth_mode == "session"
            assert d.power_state() is PowerState.OFF
            assert len(bmc.sessions_live) == 1
        assert bmc.sessions_live == set()
        assert bmc.sessions_deleted == ["/redfish/v1/SessionService/Sessions/1"]
        # no request after login carried Basic credentials
        assert not any("Authorization" in r.headers for r in bmc.requests)


def test_session_logged_out_even_when_the_operation_fails(pw_env):
    bmc, srv = serve(sessions=True, allowed_resets=("On",))
    bmc.power = "On"
    with srv:
        with pytest.raises(BmcError), driver(srv.url) as d:
            d.set_power(PowerAction.OFF)
        assert bmc.sessions_live == set() and len(bmc.sessions_deleted) == 1


def test_session_wrong_password_is_auth_error(monkeypatch):
    monkeypatch.setenv(PW_ENV, "not-the-password")
    _bmc, srv = serve(sessions=True)
    with srv, pytest.raises(AuthError) as err, driver(srv.url):
        pass
    assert err.value.message_id == "Base.1.8.NoValidSession"
    assert "not-the-password" not in str(err.value)


def test_basic_wrong_password_is_auth_error(monkeypatch):
    monkeypatch.setenv(PW_ENV, "not-the-password")
    _bmc, srv = serve()
    with srv, pytest.raises(AuthError), driver(srv.url) as d:
        d.power_state()


def test_task_monitor_flow(pw_env):
    bmc, srv = serve(reset_as_task=True, task_polls=2)
    with srv, driver(srv.url) as d:
        d.set_power(PowerAction.ON)
    monitor = [r for r in bmc.requests if "TaskMonitors" in r.path]
    assert len(monitor) == 3 and bmc.power == "On"


def test_task_failure_carries_message(pw_env):
    _bmc, srv = serve(reset_as_task=True, task_polls=1, task_fails=True)
    with srv, driver(srv.url) as d, pytest.raises(BmcError) as err:
        d.set_power(PowerAction.ON)
    assert err.value.message_id == "Fixture.1.0.ResetFailed" and "Exception" in err.value.message


def test_bmc_that_never_answers_times_out(pw_env):
    with (
        SilentServer() as srv,
        pytest.raises(Timeout, match="no answer within 1 s") as err,
        driver(srv.url, timeout=1, connect_timeout=1),
    ):
        pass
    assert err.value.fix and "hung" in err.value.fix


def test_closed_port_is_unreachable(pw_env):
    port = free_port()
    with pytest.raises(Unreachable, match="Connection refused"), driver(f"redfish+http://127.0.0.1:{port}"):
        pass


def _patches(bmc):
    return [r.body["Boot"] for r in bmc.requests if r.method == "PATCH"]


def test_unchanged_enabled_is_not_resent_but_supermicro_gets_the_full_request(pw_env):
    bmc, srv = serve()
    bmc.boot["BootSourceOverrideEnabled"] = "Once"
    with srv, driver(srv.url) as d:
        d.boot_once(BootDevice.PXE)
    assert _patches(bmc) == [{"BootSourceOverrideTarget": "Pxe"}]

    bmc, srv = serve(manufacturer="Supermicro")
    bmc.boot["BootSourceOverrideEnabled"] = "Once"
    with srv, driver(srv.url) as d:
        d.boot_once(BootDevice.PXE)
    assert _patches(bmc) == [
        {
            "BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideEnabled": "Once",
            "BootSourceOverrideMode": "UEFI",
        }
    ]


def test_mode_refused_sys444_retries_without_mode(pw_env):
    bmc, srv = serve(refuse_mode=True)
    with srv, driver(srv.url) as d:
        result = d.boot_once(BootDevice.PXE, BootMode.UEFI)
    assert [("BootSourceOverrideMode" in p) for p in _patches(bmc)] == [True, False]
    assert result.applied and any("SYS444" in n for n in result.notes)


def test_if_match_required_but_no_etag_offered_is_a_clear_error(pw_env):
    _bmc, srv = serve(require_if_match=True, no_etag=True)
    with srv, driver(srv.url) as d, pytest.raises(BmcError, match="demands If-Match") as err:
        d.boot_once(BootDevice.PXE)
    assert err.value.status == 428 and err.value.message_id == "Base.1.8.PreconditionRequired"


def test_expired_session_logs_in_again_once(pw_env):
    bmc, srv = serve(sessions=True, expire_sessions_after=3)
    with srv:
        with driver(srv.url) as d:
            for _ in range(3):
                assert d.power_state() is PowerState.OFF
        assert bmc.sessions_expired == ["tok1"]
        assert bmc.sessions_deleted == ["/redfish/v1/SessionService/Sessions/2"] and not bmc.sessions_live


def test_lenovo_reset_is_off_then_on(pw_env):
    bmc, srv = serve(manufacturer="Lenovo")
    bmc.power = "On"
    with srv, driver(srv.url) as d:
        d.set_power(PowerAction.RESET)
    assert bmc.resets == ["ForceOff", "On"]
