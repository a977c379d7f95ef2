"""provision.errors: one error type, shown by click as `error:` / `  fix:` with its exit code."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from provision.bmc import BmcError, TargetError
from provision.bmc.credentials import CredentialError
from provision.boot.loaders import BootFileError
from provision.cli.common import CLIError
from provision.config import ConfigError, Mark
from provision.config.profiles import ProfileNotFound
from provision.errors import EXIT_ENV, EXIT_FAILED, EXIT_INPUT, ProvisionError
from provision.server.hostnet import NetInfoError
from provision.store.sqlite import StoreError


def _run(exc: Exception) -> click.testing.Result:
    @click.command()
    def cmd() -> None:
        raise exc

    return CliRunner().invoke(cmd, [])


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (CLIError("m"), EXIT_FAILED),
        (CLIError("m", exit_code=EXIT_ENV), EXIT_ENV),
        (ConfigError(None, "m"), EXIT_INPUT),
        (ProfileNotFound("m"), EXIT_INPUT),
        (TargetError("m"), EXIT_INPUT),
        (CredentialError("m"), EXIT_INPUT),
        (BmcError("m"), EXIT_FAILED),
        (NetInfoError("m"), EXIT_ENV),
        (BootFileError("m"), EXIT_ENV),
        (StoreError("m"), EXIT_ENV),
    ],
)
def test_every_user_facing_error_is_one_type_with_its_documented_exit_code(exc, code):
    assert isinstance(exc, ProvisionError)
    assert exc.exit_code == code
    result = _run(exc)
    assert result.exit_code == code
    assert result.output == "error: m\n"


def test_show_prints_message_then_fix():
    result = _run(ProvisionError("port 67 is in use", "stop dnsmasq", exit_code=EXIT_ENV))
    assert result.exit_code == EXIT_ENV
    assert result.output == "error: port 67 is in use\n  fix: stop dnsmasq\n"


def test_config_error_shows_its_place_first():
    exc = ConfigError(Mark("lab.yml", 3, 5), "unknown key 'nme'", "did you mean 'name'?")
    assert str(exc) == "lab.yml:3:5: unknown key 'nme'\n  fix: did you mean 'name'?"
    assert exc.message == "unknown key 'nme'"
    assert _run(exc).output == "error: lab.yml:3:5: unknown key 'nme'\n  fix: did you mean 'name'?\n"


def test_exit_code_override_stays_with_the_instance():
    CLIError("m", exit_code=EXIT_ENV)
    assert CLIError("m").exit_code == EXIT_FAILED


def test_kinds_callers_catch_by_their_old_bases_still_match():
    with pytest.raises(LookupError):
        raise ProfileNotFound("m")
    with pytest.raises(RuntimeError):
        raise StoreError("m")
