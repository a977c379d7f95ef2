"""TLS towards a BMC: verified by default, against the system store, a CA file, or a pinned
certificate fingerprint. Unverified TLS only when asked for, per BMC.

BMCs ship self-signed certificates (docs/bmc.md "TLS"). Pinning the SHA-256 of the certificate the
operator saw once is the cheapest safe choice: urllib3 checks `assert_fingerprint` after the
handshake, before any request (so before any credential) is sent.
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")


def normalize_fingerprint(text: str) -> str:
    """'sha256:AB:CD:...' / 'abcd...' -> 64 lowercase hex digits; ValueError when it is not SHA-256."""
    value = text.strip().lower()
    value = value.removeprefix("sha256:").removeprefix("sha256=")
    value = value.replace(":", "").replace(" ", "")
    if not _HEX64.fullmatch(value):
        raise ValueError(
            f"{text!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed); "
            "get one with: openssl x509 -in cert.pem -noout -fingerprint -sha256"
        )
    return value


@dataclass(frozen=True)
class TlsPolicy:
    insecure: bool = False
    ca_cert: Path | None = None
    fingerprint: str | None = None  # normalized

    def describe(self) -> str:
        if self.fingerprint:
            return f"pinned sha256 {self.fingerprint[:16]}…"
        if self.ca_cert:
            return f"CA {self.ca_cert}"
        if self.insecure:
            return "UNVERIFIED (insecure)"
        return "system trust store"


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, fingerprint: str, **kw):
        self._fingerprint = fingerprint
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["assert_fingerprint"] = self._fingerprint
        return super().init_poolmanager(*args, **kwargs)


def system_trust_store() -> str | bool:
    """The operating system's CA bundle (Debian: /etc/ssl/certs/ca-certificates.crt), where
    `requests` alone would use certifi's copy: site CAs for BMCs are installed system-wide."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, paths.capath, paths.openssl_capath):
        if candidate and Path(candidate).exists():
            return candidate
    return True


def configure_session(session: requests.Session, policy: TlsPolicy, *, host: str) -> None:
    """Set `session.verify` and adapters according to the policy."""
    if policy.fingerprint:
        # The pin replaces chain and hostname checks: verify=False sets CERT_NONE, and urllib3
        # compares the peer certificate's digest with the pin before the request goes out.
        session.verify = False
        session.mount("https://", _PinnedAdapter(policy.fingerprint))
    elif policy.ca_cert:
        session.verify = str(policy.ca_cert)
    elif policy.insecure:
        log.warning("%s: TLS certificate NOT verified (insecure chosen for this BMC)", host)
        session.verify = False
    else:
        session.verify = system_trust_store()
    if session.verify is False:
        # The choice was made explicitly (pin or insecure) and logged once above; a warning per
        # request would bury the output.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
