"""BMC credentials from the environment or a file; the password never reaches a log or repr."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from provision.bmc.base import BmcError
from provision.errors import EXIT_INPUT


class CredentialError(BmcError):
    """The credentials named in the inventory or on the command line cannot be read (exit 2)."""

    exit_code = EXIT_INPUT


class Secret:
    """A string that refuses to print itself: repr/str/format all give '***'."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: Secret | None


def resolve_credentials(
    *,
    username: str | None = None,
    username_env: str | None = None,
    password_env: str | None = None,
    password_file: Path | str | None = None,
    environ: dict[str, str] | None = None,
) -> Credentials:
    """Read the username (literal or env var) and password (env var or file)."""
    env = os.environ if environ is None else environ
    if username_env:
        if username_env not in env:
            raise CredentialError(
                f"environment variable {username_env} (the BMC username) is not set",
                fix=f"export {username_env}=... or give `username:` in the inventory",
            )
        username = env[username_env]
    password: Secret | None = None
    if password_env and password_file:
        raise CredentialError(
            "both a password variable and a password file are given",
            fix="use one of --password-env / --password-file (password_env / password_file)",
        )
    if password_env:
        if password_env not in env:
            raise CredentialError(
                f"environment variable {password_env} (the BMC password) is not set",
                fix=f"export {password_env}=... before running, or use --password-file",
            )
        password = Secret(env[password_env])
    elif password_file:
        path = Path(password_file)
        try:
            # One trailing newline is what `echo secret > file` leaves; it is never part of a password.
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CredentialError(
                f"cannot read the password file {path}: {exc.strerror}",
                fix="check the path and that it is readable by this user (chmod 600 is enough)",
            ) from None
        password = Secret(text[:-1] if text.endswith("\n") else text)
    return Credentials(username=username, password=password)
