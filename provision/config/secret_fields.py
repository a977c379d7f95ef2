"""Schema types for fields next to a secret, whose errors never echo the value.

What is typed by mistake into `password_env` is usually the password itself, and a BMC URL may
carry `user:password@`; the generic types quote a wrong value in their error, which would put
the password on the terminal and into CI logs (docs/bmc.md "Sessions and credentials").
"""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml

from provision.config.errors import ConfigError
from provision.config.schema import URL, Context, Str


class EnvVarName(Str):
    """The name of an environment variable; a wrong value is described, never shown."""

    def __init__(self) -> None:
        super().__init__(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")

    def check(self, node: yaml.Node, ctx: Context) -> str:
        try:
            return super().check(node, ctx)
        except ConfigError:
            raise ctx.error(
                node,
                "this is not an environment variable name (the value is not shown: it may be a password)",
                "write the NAME of a variable that holds the password (e.g. LAB_BMC_PW) and export "
                "it before running; never the password itself",
            ) from None


def redact_url(url: str) -> str:
    """`url` with any user:password@ replaced by ***@."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not shown)"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


class SecretFreeURL(URL):
    """A URL that must not carry credentials; errors show it with any user:password@ masked."""

    def check(self, node: yaml.Node, ctx: Context) -> str:
        value = self._scalar(node, ctx)
        shown = redact_url(value)
        try:
            has_userinfo = "@" in urlsplit(value).netloc
        except ValueError:
            has_userinfo = False
        if has_userinfo:
            raise ctx.error(
                node,
                f"{shown!r} carries credentials in the URL (user:password@)",
                "drop them from the URL: give `username:` and `password_env:` (or `password_file:`)",
            )
        try:
            return super().check(node, ctx)
        except ConfigError:
            raise ctx.error(node, f"{shown!r} is not {self.describe}", f"write {self.describe}") from None
