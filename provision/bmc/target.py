"""From an inventory entry or a --bmc URL to a driver: scheme, address, system, credentials, TLS."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from provision.bmc.base import BmcError, Driver
from provision.bmc.credentials import Credentials, resolve_credentials
from provision.bmc.ipmi import IpmiDriver
from provision.bmc.redfish.driver import RedfishDriver
from provision.bmc.redfish.origin import DEFAULT_PORTS, redact
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

IPMI_PORT = 623

# The only path a target URL may carry: one system of the service (DSP0266 §6.2 "URIs").
_SYSTEM_PATH = re.compile(r"/redfish/v1/Systems/([^/]+)/?")
_NO_PATH = ("", "/", "/redfish/v1", "/redfish/v1/")


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
    system: str | None = None  # a Systems member's Id; None: the BMC must have exactly one

    @property
    def address(self) -> str:
        base = self.base_url or f"ipmi://{self.host}:{self.port or IPMI_PORT}"
        return f"{base}/redfish/v1/Systems/{self.system}" if self.system else base

    @property
    def key(self) -> tuple[str, str, int, str | None]:
        """What identifies the machine acted on: (scheme, host, port, system). http and https of
        one host are two targets; the same URL given twice is one."""
        scheme = urlsplit(self.base_url).scheme if self.base_url else "ipmi"
        port = self.port or DEFAULT_PORTS.get(scheme, IPMI_PORT)
        return (scheme, self.host.lower(), port, self.system)


def system_from(name: str, addr: str, path: str, system: str | None) -> str | None:
    """The system a target names: the URL path (/redfish/v1/Systems/ID), or `system` (an Id or
    that path: --system, inventory `system:`). Both, and different: an error."""
    from_path = None
    if path not in _NO_PATH:
        match = _SYSTEM_PATH.fullmatch(path)
        if not match:
            raise TargetError(
                f"{name}: the path of the BMC address{addr} is not a system",
                fix="give the BMC alone (redfish://host) or one system: redfish://host/redfish/v1/Systems/ID",
            )
        from_path = unquote(match.group(1))
    if system is not None:
        match = _SYSTEM_PATH.fullmatch(system)
        system = unquote(match.group(1)) if match else system.strip("/")
        if not system:
            raise TargetError(f"{name}: empty system Id", fix="e.g. --system 1 or system: System.Embedded.1")
    if from_path and system and from_path != system:
        raise TargetError(
            f"{name}: the URL names system {from_path!r} but {system!r} was also asked for",
            fix="name the system once: in the URL path, with --system, or with `system:`",
        )
    return from_path or system


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
    system: str | None = None,
) -> BmcTarget:
    parts = urlsplit(url if "://" in url else f"redfish://{url}")
    shown = redact(url)
    # --bmc targets are named by their URL: say it once (the name leads every message).
    addr = "" if name == shown.rstrip("/") else f" {shown!r}"
    if "@" in parts.netloc:
        # A password in a URL lands in shell history, `ps` and logs; it is never echoed here.
        raise TargetError(
            f"{name}: the BMC address{addr} carries credentials (user:password@)",
            fix="drop them from the URL: give the user with --username (inventory: username) and "
            "the password with --password-env/--password-file (password_env/password_file)",
        )
    if parts.scheme not in SCHEMES:
        raise TargetError(
            f"{name}: unknown BMC scheme {parts.scheme!r}" + (f" in{addr}" if addr else ""),
            fix="use redfish://host[:port], redfish+http://host[:port] or ipmi://host[:port]",
        )
    if not parts.hostname:
        raise TargetError(f"{name}: no host in the BMC address{addr}", fix="e.g. redfish://10.0.0.5")
    try:
        port = parts.port
    except ValueError:
        raise TargetError(f"{name}: bad port in the BMC address{addr}") from None
    protocol, http_scheme = SCHEMES[parts.scheme]
    if protocol == "ipmi":
        if parts.path not in ("", "/") or system:
            raise TargetError(
                f"{name}: IPMI has no system selection",
                fix="use ipmi://host[:port] alone; a BMC with several systems needs Redfish",
            )
        chosen = None
    else:
        chosen = system_from(name, addr, parts.path, system)
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
        system=chosen,
    )


def open_driver(target: BmcTarget, *, power_timeout: float = 300.0) -> Driver:
    """A driver for the target, not yet connected: use it as a context manager."""
    if target.protocol == "ipmi":
        return IpmiDriver(
            target.name,
            target.host,
            target.port or IPMI_PORT,
            target.credentials,
            power_timeout=power_timeout,
            timeout=target.timeout,
        )
    http = RedfishHttp(
        target.base_url or "",
        target.credentials,
        tls=target.tls,
        timeout=target.timeout,
        connect_timeout=target.connect_timeout,
    )
    return RedfishDriver(target.name, http, system=target.system, power_timeout=power_timeout)
