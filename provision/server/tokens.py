"""Per-install callback tokens: who may report an install's progress (docs/security.md).

    token = base64url(VERSION(1) MAC(6) EXPIRES(4, unix s) INSTALL_ID(8) HMAC-SHA256(secret, those)[:12])

42 characters. The token names its device, its install and its expiry, and the keyed hash binds
the three: the server checks a report without a table lookup, and nobody without the secret can
make one. It rides in the URLs a device is handed (ONIE's exact-mode installer URL in options
114/125, a server's `provision.report=` on the kernel command line), and comes back in the
report's `token=`. It is binary and short because the exact URL rides in a DHCP reply twice
(options 114 and 125) and a 576-byte reply leaves about 300 bytes for every option. A token is
only as long-lived as its install: the report endpoint also asks whether the install is still on
(`ReportAuth.live`): an arming that ended (installed, failed, disarmed, re-armed) takes its
tokens with it, whatever their expiry says.

Install ids: an arming has one (provision.devices.lifecycle, stored). Devices that install without
an arming (onie.unknown: install, or `install: always`) get one per hand-out here, in memory: the
same id while that install is on (every DHCP answer of one install carries it), a new one once a
report ended it. A restart forgets them; the installer's later reports are then refused (401)
and the next hand-out starts a new install. Armed installs survive a restart (their id is stored).

The secret: 32 random bytes in the state dir (`api-secret`, mode 0600), made at first start,
never logged. A secret readable by others is refused: tokens made with it could be forged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provision.errors import EXIT_ENV, ProvisionError

SECRET_FILE = "api-secret"
READ_TOKEN_FILE = "api-read-token"
SECRET_BYTES = 32
VERSION = 1
SIG_BYTES = 12  # 96 bits of the HMAC: far beyond guessing at any report rate, short for option 125
_BODY = struct.Struct(">B6sI8s")  # version, MAC, expiry, install id
TOKEN_LEN = len(base64.urlsafe_b64encode(b"\0" * (_BODY.size + SIG_BYTES)).rstrip(b"="))
HANDOUTS_KEPT = 4096  # in-memory install ids of unarmed installs (oldest forgotten first)


class SecretError(ProvisionError):
    """The state dir's secret cannot be used (exit 3: the state dir is the environment)."""

    exit_code = EXIT_ENV


class TokenError(ValueError):
    """A token that does not verify; the message says why (for the log, never for the client)."""


@dataclass(frozen=True)
class Claim:
    mac: str  # aa:bb:cc:dd:ee:ff
    install_id: str
    expires: int


def load_secret(state_dir: Path) -> bytes:
    """The server secret, created (0600, exclusive) at first start."""
    path = state_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SecretError(f"cannot create {path}: {exc.strerror}", "pick a writable --state-dir") from None
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"cannot read {path}: {exc.strerror}", "run provision serve as root") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}): callback tokens "
            "made with it could be forged",
            f"delete {path} (a new one is made at start; tokens handed out so far stop working), "
            f"or chmod 600 {path} if nobody else could have read it",
        )
    if len(data) != SECRET_BYTES:
        raise SecretError(
            f"{path} holds {len(data)} bytes, not {SECRET_BYTES}",
            f"delete {path}; a new one is made at start (tokens handed out so far stop working)",
        )
    return data


def _mac_bytes(mac: str) -> bytes | None:
    try:
        raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    except ValueError:
        return None
    return raw if len(raw) == 6 else None


def _install_bytes(install_id: str) -> bytes | None:
    """Install ids are 16 hex digits (provision.devices.lifecycle's `secrets.token_hex(8)`)."""
    try:
        raw = bytes.fromhex(install_id)
    except ValueError:
        return None
    return raw if len(raw) == 8 else None


class Tokens:
    """Mint and verify callback tokens; remember the install ids of unarmed hand-outs."""

    def __init__(self, secret: bytes, ttl: float = 86400, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("secret too short")
        self._secret = secret
        self.ttl = ttl
        self.clock = clock
        # unarmed installs: mac -> install id while it is on; install id -> mac
        self._handout_of: OrderedDict[str, str] = OrderedDict()
        self._handout_mac: dict[str, str] = {}
        self.counters = {"minted": 0, "verified": 0, "refused": 0, "handouts_forgotten": 0}

    def __repr__(self) -> str:  # never the secret
        return f"Tokens(ttl={self.ttl}, live_handouts={len(self._handout_mac)})"

    def read_token(self) -> str:
        """The bearer token of `api: {read: token}` (derived: no second secret to keep)."""
        return hmac.new(self._secret, b"provision read api", hashlib.sha256).hexdigest()

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:SIG_BYTES]

    def mint(self, mac: str, install_id: str, expires: int | None = None) -> str:
        mac_raw, install_raw = _mac_bytes(mac), _install_bytes(install_id)
        if mac_raw is None or install_raw is None:
            raise ValueError(f"cannot mint a token for mac {mac!r} install {install_id!r}")
        if expires is None:
            expires = int(self.clock() + self.ttl)
        body = _BODY.pack(VERSION, mac_raw, expires, install_raw)
        self.counters["minted"] += 1
        return base64.urlsafe_b64encode(body + self._sign(body)).rstrip(b"=").decode()

    def verify(self, token: str) -> Claim:
        """The claim a token makes, or TokenError: malformed, bad signature, expired."""
        if len(token) != TOKEN_LEN:
            raise TokenError("malformed token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        body, sig = raw[: _BODY.size], raw[_BODY.size :]
        version, mac_raw, expires, install_raw = _BODY.unpack(body)
        if version != VERSION:
            raise TokenError("unknown token version")
        if not hmac.compare_digest(sig, self._sign(body)):
            raise TokenError("bad signature")
        if self.clock() > expires:
            raise TokenError("expired")
        return Claim(":".join(f"{b:02x}" for b in mac_raw), install_raw.hex(), expires)

    # -- install ids of unarmed installs ---------------------------------------------------------

    def handout_id(self, mac: str) -> str:
        """The install id of `mac`'s unarmed install: the current one while it is on, else new."""
        mac = mac.lower()
        current = self._handout_of.get(mac)
        if current is not None:
            self._handout_of.move_to_end(mac)
            return current
        install_id = secrets.token_hex(8)  # the same form as an arming's
        self._handout_of[mac] = install_id
        self._handout_mac[install_id] = mac
        while len(self._handout_of) > HANDOUTS_KEPT:
            _, old = self._handout_of.popitem(last=False)
            self._handout_mac.pop(old, None)
            self.counters["handouts_forgotten"] += 1
        return install_id

    def is_handout(self, install_id: str) -> bool:
        """An unarmed install's id that is still on (an ended or forgotten one is not)."""
        return install_id in self._handout_mac

    def handout_live(self, claim: Claim) -> bool:
        return self._handout_mac.get(claim.install_id) == claim.mac

    def end_handout(self, install_id: str) -> None:
        """A report ended this unarmed install: its tokens die, the next hand-out gets a new id."""
        mac = self._handout_mac.pop(install_id, None)
        if mac is not None and self._handout_of.get(mac) == install_id:
            del self._handout_of[mac]

    def for_handout(self, mac: str | None, install_id: str | None) -> str | None:
        """The token to put in a URL handed to `mac` under a gate whose arming is `install_id`
        (None: an unarmed install, which gets its in-memory id). None without a MAC."""
        if not mac or _mac_bytes(mac) is None:
            return None
        install_id = install_id or self.handout_id(mac)
        if _install_bytes(install_id) is None:
            return None  # not an id this server made; its reports need the lease instead
        return self.mint(mac, install_id)


def write_read_token(state_dir: Path, tokens: Tokens) -> Path:
    """`api: {read: token}`: the bearer token, for the operator, in a 0600 file of the state dir."""
    path = state_dir / READ_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tokens.read_token() + "\n")
    os.chmod(path, 0o600)
    return path


__all__ = [
    "READ_TOKEN_FILE",
    "SECRET_FILE",
    "Claim",
    "SecretError",
    "TokenError",
    "Tokens",
    "load_secret",
    "write_read_token",
]
