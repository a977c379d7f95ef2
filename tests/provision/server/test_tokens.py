"""Callback tokens, the lease index, the report rate limit and field caps (pure; the attacks
against a running server are in test_callbacks_netns.py)."""

from __future__ import annotations

import base64
import ipaddress
import os
import stat

import pytest

from provision.config.lab import load_lab
from provision.config.security import ApiSettings, ReadAccess
from provision.server.access import LeaseIndex, ReadGuard
from provision.server.reports import FIELD_MAX_DEFAULT, RateLimiter, ReportAuth, capped_fields
from provision.server.tokens import SECRET_FILE, TOKEN_LEN, SecretError, TokenError, Tokens, load_secret
from pxe.policy import Event

MAC = "52:54:00:aa:bb:01"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_secret_created_0600_once_and_refused_when_readable(tmp_path):
    first = load_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    assert len(first) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(tmp_path) == first  # kept, not remade
    os.chmod(path, 0o644)
    with pytest.raises(SecretError) as err:
        load_secret(tmp_path)
    assert err.value.exit_code == 3 and "readable by others" in err.value.message
    assert first.hex() not in err.value.message and "delete" in (err.value.fix or "")
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(SecretError, match="holds 5 bytes"):
        load_secret(tmp_path)


def _tampered(token: str, offset: int, value: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[offset] = value
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_token_binds_mac_install_and_expiry():
    clock = Clock()
    tokens = Tokens(b"k" * 32, ttl=600, clock=clock)
    token = tokens.mint(MAC, "0123456789abcdef")
    assert len(token) == TOKEN_LEN == 42 and token.replace("-", "").replace("_", "").isalnum()
    claim = tokens.verify(token)
    assert (claim.mac, claim.install_id, claim.expires) == (MAC, "0123456789abcdef", 1_000_600)
    assert "k" * 8 not in repr(tokens)
    forged = [
        _tampered(token, 6, 0x02),  # another device (last byte of the MAC)
        _tampered(token, 10, 0xFF),  # a longer life (expiry's last byte)
        _tampered(token, 18, 0x00),  # another install
        _tampered(token, 25, 0x00),  # the signature
        token[:-1],
        "v1.garbage",
        "",
    ]
    for bad in forged:
        with pytest.raises(TokenError):
            tokens.verify(bad)
    other = Tokens(b"x" * 32, clock=clock)  # another server's secret
    with pytest.raises(TokenError, match="bad signature"):
        other.verify(token)
    clock.now += 601
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token)


def test_handout_ids_one_per_install():
    tokens = Tokens(b"k" * 32)
    first = tokens.handout_id(MAC)
    assert tokens.handout_id(MAC.upper()) == first  # every answer of one install: one id
    claim = tokens.verify(tokens.for_handout(MAC, None) or "")
    assert claim.install_id == first and tokens.handout_live(claim)
    tokens.end_handout(first)
    assert not tokens.handout_live(claim)
    assert tokens.handout_id(MAC) != first  # the next hand-out is a new install
    assert tokens.for_handout(None, None) is None and tokens.for_handout("", "x") is None


def test_lease_index_follows_ack_release_decline_and_expiry():
    clock = Clock()
    leases = LeaseIndex(clock)
    leases(Event("dhcp.ack", mac=MAC, ip="198.18.0.10", detail={"lease_time": 60}))
    assert leases.ip_of(MAC) == "198.18.0.10" and leases.mac_of("198.18.0.10") == MAC
    leases(Event("dhcp.ack", mac=MAC, ip="198.18.0.11", detail={"inform": True}))  # no lease
    leases(Event("dhcp.offer", mac=MAC, ip="198.18.0.12"))  # an offer is no lease
    assert leases.ip_of(MAC) == "198.18.0.10"
    leases(Event("dhcp.ack", mac="52:54:00:aa:bb:02", ip="198.18.0.10", detail={"lease_time": 60}))
    assert leases.ip_of(MAC) is None  # the address moved to another device
    leases(Event("dhcp.ack", mac=MAC, ip="198.18.0.20", detail={"lease_time": 60}))
    leases(Event("dhcp.release", mac=MAC, ip="198.18.0.20", detail={"released": True}))
    assert leases.ip_of(MAC) is None
    leases(Event("dhcp.ack", mac=MAC, ip="198.18.0.21", detail={"lease_time": 60}))
    clock.now += 61
    assert leases.ip_of(MAC) is None and leases.mac_of("198.18.0.21") is None


def test_rate_limiter_bucket_per_source():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=5, clock=clock)
    got = [limiter.allow("198.18.0.66") for _ in range(8)]
    assert got == [True] * 5 + [False] * 3
    assert limiter.allow("198.18.0.10")  # another source has its own bucket
    clock.now += 1.0
    assert [limiter.allow("198.18.0.66") for _ in range(3)] == [True, True, False]


def test_fields_capped_and_counted():
    fields, cut = capped_fields({"stage": "x" * 5000, "message": "m" * 5000, "mac": MAC, "other": "y"})
    assert len(fields["stage"]) == FIELD_MAX_DEFAULT and len(fields["message"]) == 512
    assert "other" not in fields and cut == 2


def test_report_auth_verdicts_without_a_server():
    tokens = Tokens(b"k" * 32)
    leases = LeaseIndex()
    auth = ReportAuth(tokens, leases, None)
    token = tokens.for_handout(MAC, None)
    assert auth.check("198.18.0.10", None, {}).status == 401
    assert auth.check("198.18.0.10", "v1.x", {}).status == 401
    assert auth.check("198.18.0.10", token, {}).status == 200  # no lease known: any address
    leases(Event("dhcp.ack", mac=MAC, ip="198.18.0.10", detail={"lease_time": 600}))
    assert auth.check("198.18.0.66", token, {}).status == 403
    ok = auth.check("198.18.0.10", token, {})
    assert ok.status == 200 and ok.mac == MAC
    auth.done(ok, {"stage": "complete", "status": "ok"})
    assert auth.check("198.18.0.10", token, {}).status == 401  # the install ended
    # tokenless, only where no URL could carry a token: the lease's own MAC only
    lax = ReportAuth(tokens, leases, None, tokenless_by_lease=True)
    assert lax.check("198.18.0.10", None, {}).mac == MAC
    assert lax.check("198.18.0.10", None, {"mac": "52:54:00:aa:bb:09"}).status == 403
    assert lax.check("198.18.0.99", None, {}).status == 401


def test_read_guard():
    local = ReadGuard(ApiSettings(), own_addresses=lambda: ["198.18.0.1"])
    assert local.allowed("127.0.0.1", None) and local.allowed("::1", None)
    assert local.allowed("198.18.0.1", None) and not local.allowed("198.18.0.66", None)
    mgmt = ReadGuard(ApiSettings(read_from=(ipaddress.IPv4Network("10.9.0.0/24"),)))
    assert mgmt.allowed("10.9.0.5", None) and not mgmt.allowed("10.9.1.5", None)
    tok = ReadGuard(ApiSettings(read=ReadAccess.TOKEN), read_token="abc")
    assert tok.allowed("198.18.0.66", "Bearer abc") and not tok.allowed("198.18.0.66", "Bearer abd")
    assert ReadGuard(ApiSettings(read=ReadAccess.OPEN)).allowed("198.18.0.66", None)


def test_lab_sections(tmp_path):
    lab = tmp_path / "lab.yml"
    lab.write_text(
        "interfaces: [eth1]\nmode: proxy\n"
        "api: {read: token, read_from: [10.9.0.0/24], report_rate: 0.5, report_burst: 10}\n"
        "events: {keep_per_device: 200, keep_days: 7}\n"
    )
    cfg = load_lab(lab)
    assert cfg.api.read is ReadAccess.TOKEN and cfg.api.report_rate == 0.5 and cfg.api.report_burst == 10
    assert str(cfg.api.read_from[0]) == "10.9.0.0/24"
    assert (cfg.events.keep_per_device, cfg.events.keep_days) == (200, 7)
    lab.write_text("interfaces: [eth1]\nmode: proxy\n")
    cfg = load_lab(lab)
    assert cfg.api.read is ReadAccess.LOCAL and cfg.events.keep_per_device == 1000
