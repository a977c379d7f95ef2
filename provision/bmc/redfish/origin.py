"""The BMC's origin (scheme, host, port; RFC 6454 §4) and the rule that credentials never leave it.

A Redfish service hands out URLs: `@odata.id` links, a session's or a task's `Location`, HTTP
redirects. They are normally paths; when one is absolute and names another origin (a hostile
or misconfigured BMC, a proxy rewriting links), following it would send the session token or the
Basic credentials to that other host. Such a URL is refused, never followed (docs/bmc.md
"Sessions and credentials").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from provision.bmc.base import BmcError
from provision.config.secret_fields import redact_url as redact

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = None
        return cls(scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme, 0))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class ForeignOrigin(BmcError):
    """The BMC pointed at a URL of another origin; nothing was sent there."""


def check_same_origin(own: Origin, url: str, how: str) -> None:
    """Raise ForeignOrigin unless `url` (absolute) is on `own`; `how` says where it came from."""
    other = Origin.of(url)
    if other != own:
        raise ForeignOrigin(
            f"the BMC {how} {redact(url)}, which is not its own origin {own}: not followed, and "
            "no credentials were sent there",
            fix="if that address is the same BMC (another name, port or scheme), use it in the "
            "target URL; otherwise the BMC is misconfigured or not the machine you meant",
        )
