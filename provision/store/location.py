"""Where the state store is: a SQLite file path or a PostgreSQL URL (stdlib only, so that every
command can tell without importing a database driver)."""

from __future__ import annotations

from pathlib import Path

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: str | Path | None) -> bool:
    """A PostgreSQL connection URL (libpq's URI form), as opposed to a SQLite file path."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def redact(location: str | Path) -> str:
    """The location for messages and logs: a URL's password replaced by ***."""
    text = str(location)
    if not is_url(text):
        return text
    scheme, _, rest = text.partition("://")
    auth, at, host = rest.partition("@")
    if at and ":" in auth:
        auth = auth.split(":", 1)[0] + ":***"
    return f"{scheme}://{auth}{at}{host}"


__all__ = ["POSTGRES_SCHEMES", "is_url", "redact"]
