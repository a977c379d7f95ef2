"""From an inventory entry or a --bmc URL to a driver: scheme, address, credentials, TLS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from provision.bmc.base import BmcError, Driver
from provision.bmc.credentials import Credentials, resolve_credentials
from provision.bmc.ipmi import IpmiDriver
from provision.bmc.redfish.driver import RedfishDriver
from provision.bmc.redfish.tls import TlsPolicy, normalize_fingerprint
from provision.bmc.redfish.transport import RedfishHttp
from provision.errors import EXIT_INPUT

# URL scheme -> (protocol, HTTP scheme). redfish:// is HTTPS: BMCs serve Redfish over TLS.
SCHEMES = {
    "redfish": ("redfish", "https"),
    "https": ("redfish", "https"),
    "redfish+http": ("redfish", "http"),
    "http": ("redfish", "http"),
    "ipmi": ("ipmi", None),
}


class TargetError(BmcError):
    """A BMC address or option that cannot work (bad input, exit 2)."""

    exit_code = EXIT_INPUT


@dataclass(frozen=True)
class BmcTarget:
    name: str
    protocol: str  # "redfish" | "ipmi"
    host: str
    port: int | None
    base_url: str | None  # Redfish only
    credentials: Credentials
    tls: TlsPolicy
    timeout: float = 60.0
    connect_timeout: float = 10.0

    @property
    def address(self) -> str:
        return self.base_url or f"ipmi://{self.host}:{self.port or 623}"


def make_target(
    name: str,
    url: str,
    *,
    username: str | None = None,
    username_env: str | None = None,
    password_env: str | None = None,
    password_file: Path | str | None = None,
    insecure: bool = False,
    ca_cert: Path | str | None = None,
    fingerprint: str | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 10.0,
) -> BmcTarget:
    parts = urlsplit(url if "://" in url else f"redfish://{url}")
    if parts.scheme not in SCHEMES:
        raise TargetError(
            f"{name}: unknown BMC scheme {parts.scheme!r} in {url!r}",
            fix="use redfish://host[:port], redfish+http://host[:port] or ipmi://host[:port]",
        )
    if not parts.hostname:
        raise TargetError(f"{name}: no host in BMC address {url!r}", fix="e.g. redfish://10.0.0.5")
    try:
        port = parts.port
    except ValueError:
        raise TargetError(f"{name}: bad port in BMC address {url!r}") from None
    protocol, http_scheme = SCHEMES[parts.scheme]
    pin = None
    if fingerprint:
        try:
            pin = normalize_fingerprint(fingerprint)
        except ValueError as exc:
            raise TargetError(f"{name}: {exc}") from None
    if insecure and (pin or ca_cert):
        raise TargetError(
            f"{name}: --insecure together with --ca-cert/--fingerprint",
            fix="pick one: a CA or a pin verifies the BMC; insecure turns verification off",
        )
    if ca_cert and not Path(ca_cert).is_file():
        raise TargetError(f"{name}: CA certificate file {ca_cert} does not exist")
    creds: Credentials = resolve_credentials(
        username=username, username_env=username_env, password_env=password_env, password_file=password_file
    )
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    base_url = f"{http_scheme}://{netloc}{f':{port}' if port else ''}" if http_scheme else None
    return BmcTarget(
        name=name,
        protocol=protocol,
        host=host,
        port=port,
        base_url=base_url,
        credentials=creds,
        tls=TlsPolicy(insecure=insecure, ca_cert=Path(ca_cert) if ca_cert else None, fingerprint=pin),
        timeout=float(timeout),
        connect_timeout=float(connect_timeout),
    )


def open_driver(target: BmcTarget, *, power_timeout: float = 300.0) -> Driver:
    """A driver for the target, not yet connected: use it as a context manager."""
    if target.protocol == "ipmi":
        return IpmiDriver(
            target.name, target.host, target.port or 623, target.credentials, power_timeout=power_timeout
        )
    http = RedfishHttp(
        target.base_url or "",
        target.credentials,
        tls=target.tls,
        timeout=target.timeout,
        connect_timeout=target.connect_timeout,
    )
    return RedfishDriver(target.name, http, power_timeout=power_timeout)
