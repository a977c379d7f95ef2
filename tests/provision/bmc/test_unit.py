"""Pure pieces of provision.bmc: credentials, fingerprints, Retry-After, error parsing, targets."""

from __future__ import annotations

import logging

import pytest

from provision.bmc import BmcError, TargetError, make_target
from provision.bmc.base import BootMode
from provision.bmc.credentials import CredentialError, Secret, resolve_credentials
from provision.bmc.redfish import quirks
from provision.bmc.redfish.tls import normalize_fingerprint
from provision.bmc.redfish.transport import RETRY_RULES, retry_after_seconds


def test_secret_never_prints(caplog):
    s = Secret("hunter2-xyz")
    assert "hunter2" not in repr(s) + str(s) + f"{s}" + f"{s!r}"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").debug(
            "creds %s %r",
            s,
            resolve_credentials(username="u", password_env="P", environ={"P": "hunter2-xyz"}),
        )
    assert "hunter2" not in caplog.text
    assert s.reveal() == "hunter2-xyz"


def test_credentials_from_env_and_file(tmp_path):
    c = resolve_credentials(username_env="U", password_env="P", environ={"U": "root", "P": "pw"})
    assert c.username == "root" and c.password.reveal() == "pw"
    f = tmp_path / "pw"
    f.write_text("file-pw\n")
    assert resolve_credentials(password_file=f, environ={}).password.reveal() == "file-pw"
    f.write_text("keeps  spaces \n\n")
    assert resolve_credentials(password_file=f, environ={}).password.reveal() == "keeps  spaces \n"


def test_credentials_errors_name_the_variable_or_file(tmp_path):
    with pytest.raises(CredentialError, match="BMC_PW") as err:
        resolve_credentials(password_env="BMC_PW", environ={})
    assert "export BMC_PW" in err.value.fix
    with pytest.raises(CredentialError, match="cannot read the password file"):
        resolve_credentials(password_file=tmp_path / "missing", environ={})
    with pytest.raises(CredentialError, match="both"):
        resolve_credentials(password_env="A", password_file=tmp_path / "x", environ={"A": "1"})


def test_fingerprint_forms():
    want = "ab" * 32
    assert normalize_fingerprint(":".join(["AB"] * 32)) == want
    assert normalize_fingerprint("sha256:" + want.upper()) == want
    with pytest.raises(ValueError, match="SHA-256"):
        normalize_fingerprint("ab" * 20)  # a SHA-1


def test_retry_after_forms():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None


def test_retry_table_is_data():
    names = [r.name for r in RETRY_RULES]
    assert names == ["service-unavailable", "idrac-busy", "get-server-error"]
    idrac = {
        "error": {
            "@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.8.SYS518", "Message": "iDRAC is not ready"}]
        }
    }
    assert RETRY_RULES[1].match("PATCH", 400, idrac)
    assert not RETRY_RULES[2].match("POST", 500, {})


def test_extended_info_and_error_text():
    body = {
        "error": {
            "code": "Base.1.0.GeneralError",
            "@Message.ExtendedInfo": [
                {"MessageId": "X.1.PropertyNotWritable", "Message": "Boot is read-only"}
            ],
        }
    }
    assert quirks.extended_info(body) == ("X.1.PropertyNotWritable", "Boot is read-only")
    assert quirks.extended_info({"error": {"code": "C", "message": "M"}}) == ("C", "M")
    assert quirks.extended_info({}) == (None, None)
    assert str(BmcError("boot failed", message_id="X.1.Y", bmc_message="nope")) == "boot failed [X.1.Y: nope]"


def test_reset_values_from_actioninfo_and_etags():
    system = {"Actions": {"#ComputerSystem.Reset": {"target": "/r"}}}
    info = {"Parameters": [{"Name": "ResetType", "AllowableValues": ["On", "ForceOff"]}]}
    assert quirks.allowed_reset_types(system, info) == ("On", "ForceOff")
    assert quirks.allowed_reset_types(system, None) == quirks.DEFAULT_RESET_TYPES
    assert quirks.strong_etag('W/"12"') == '"12"' and quirks.strong_etag('"12"') == '"12"'


def test_boot_body_sends_mode_only_when_asked():
    body = quirks.boot_override_body("Pxe", None, None, current={})
    assert "BootSourceOverrideMode" not in body["Boot"]
    body = quirks.boot_override_body("UefiHttp", BootMode.UEFI, "http://a/b", current={})
    assert body["Boot"]["BootSourceOverrideMode"] == "UEFI" and body["Boot"]["HttpBootUri"] == "http://a/b"


def test_make_target_schemes():
    t = make_target("a", "redfish://10.0.0.5:8443")
    assert (t.protocol, t.base_url) == ("redfish", "https://10.0.0.5:8443")
    assert make_target("b", "redfish+http://h").base_url == "http://h"
    t = make_target("c", "ipmi://h:6230")
    assert (t.protocol, t.port, t.base_url) == ("ipmi", 6230, None)
    assert make_target("d", "10.0.0.9").base_url == "https://10.0.0.9"
    with pytest.raises(TargetError, match="unknown BMC scheme"):
        make_target("e", "telnet://h")


def test_both_drivers_satisfy_the_protocol():
    from provision.bmc import Driver, open_driver

    for url in ("redfish://198.18.0.5", "ipmi://198.18.0.6"):
        drv = open_driver(make_target("t", url))  # not connected: constructing sends nothing
        assert isinstance(drv, Driver)
