"""The installer's progress callback, guarded (docs/security.md): a rate limit per source address,
capped fields, and who may speak for which device.

Order of refusals, cheapest first: 404 (reports off) → 429 (this source is over its rate) → 400
(malformed) → 401 (no token, a wrong, expired or ended one) → 403 (a good token from an address
that is not the device's lease, when its lease is known). Nothing refused reaches the event bus.

Without a token (`tokenless_by_lease`): ONIE's inexact, TFTP and waterfall modes fetch the
installer by names ONIE builds itself, so no URL of ours can carry a token. There, and only
there, a report without a token is accepted from an address holding a lease we ACKed, for the MAC
of that lease only (the report's `mac=` must be that MAC or absent): a host can then speak for
itself, never for another device. In exact mode (the default) every installer URL carries a
token, so a report without one is refused.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from onie.platform import normalise_mac
from provision.devices.lifecycle import Lifecycle
from provision.onie.progress import REPORT_STAGE_COMPLETE, REPORT_STATUS_FAILED, REPORT_STATUS_OK
from provision.server.access import LeaseIndex, Refusals
from provision.server.tokens import Claim, TokenError, Tokens

log = logging.getLogger("provision.serve")

REPORT_FIELDS = ("stage", "status", "nos", "version", "platform", "serial", "mac", "message")
# Each field's cap. Was 2,048 for every one of 8 (16 KiB a report, 748 MiB in 10 s of flood):
# a stage or a serial is a word, a message a line or two of an installer's error.
FIELD_MAX: Mapping[str, int] = {"message": 512, "nos": 64, "version": 64, "platform": 64}
FIELD_MAX_DEFAULT = 32  # stage, status, serial, mac
TOKEN_MAX = 128
SOURCES_KEPT = 8192  # rate-limit buckets (least recently used forgotten first)


@dataclass(frozen=True)
class Verdict:
    status: int  # 200: accepted
    error: str | None = None  # for the client (says what, never the secret's business)
    mac: str | None = None  # the device the report speaks for
    install_id: str | None = None  # the install it belongs to (the token's)
    why: str | None = None  # for the log


class RateLimiter:
    """A token bucket per source address: `rate` per second, `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sources: int = SOURCES_KEPT,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.sources = sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (level, at)

    def allow(self, source: str) -> bool:
        now = self.clock()
        level, at = self._buckets.pop(source, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        ok = level >= 1.0
        if ok:
            level -= 1.0
        self._buckets[source] = (level, now)
        while len(self._buckets) > self.sources:
            self._buckets.popitem(last=False)
        return ok


def capped_fields(source: Mapping[str, Any]) -> tuple[dict[str, str], int]:
    """The report's fields, each cut to its cap; and how many were cut."""
    fields: dict[str, str] = {}
    cut = 0
    for key in REPORT_FIELDS:
        value = source.get(key)
        if value is None:
            continue
        text = str(value)
        cap = FIELD_MAX.get(key, FIELD_MAX_DEFAULT)
        if len(text) > cap:
            text = text[:cap]
            cut += 1
        fields[key] = text
    return fields, cut


def is_terminal(fields: Mapping[str, str]) -> bool:
    """A report that ends its install (the lifecycle ends the arming on the same two)."""
    status = fields.get("status", "").lower()
    return status == REPORT_STATUS_FAILED or (
        status == REPORT_STATUS_OK and fields.get("stage", "").lower() == REPORT_STAGE_COMPLETE
    )


class ReportAuth:
    """Who may report for which device; `check` gives the verdict, `done` ends unarmed installs."""

    def __init__(
        self,
        tokens: Tokens,
        leases: LeaseIndex,
        fleet: Lifecycle | None,
        *,
        tokenless_by_lease: bool = False,
        refusals: Refusals | None = None,
    ) -> None:
        self.tokens = tokens
        self.leases = leases
        self.fleet = fleet
        self.tokenless_by_lease = tokenless_by_lease
        self.refusals = refusals or Refusals()
        self._armed_by_id: dict[str, str] = {}  # install id -> device name (a cache of the scan)

    def _arming_live(self, claim: Claim) -> bool:
        if self.fleet is None:
            return False
        name = self._armed_by_id.get(claim.install_id)
        if name is not None:
            intent = self.fleet.intent(name)
            if intent is not None and intent.install_id == claim.install_id:
                return intent.armed
        for dev in self.fleet.inventory.devices:
            intent = self.fleet.intent(dev.name)
            if intent is not None and intent.install_id == claim.install_id:
                if len(self._armed_by_id) > 4096:
                    self._armed_by_id.clear()
                self._armed_by_id[claim.install_id] = dev.name
                return intent.armed
        return False

    def live(self, claim: Claim) -> bool:
        """Is the install this token belongs to still on?"""
        if self.tokens.is_handout(claim.install_id):
            return self.tokens.handout_live(claim)
        return self._arming_live(claim)

    def check(self, remote: str | None, token: str | None, fields: dict[str, str]) -> Verdict:
        remote = remote or "?"
        if not token:
            return self._tokenless(remote, fields)
        if len(token) > TOKEN_MAX:
            return Verdict(401, "bad token", why="token too long")
        try:
            claim = self.tokens.verify(token)
        except TokenError as exc:
            return Verdict(401, "bad token", why=str(exc))
        if not self.live(claim):
            return Verdict(401, "this install has ended; its token no longer reports", why="install ended")
        holder = self.leases.ip_of(claim.mac)
        if holder is not None and remote != holder:
            return Verdict(
                403,
                "report from an address that does not hold this device's lease",
                why=f"token for {claim.mac} (lease {holder}) used from {remote}",
            )
        return Verdict(200, mac=claim.mac, install_id=claim.install_id)

    def _tokenless(self, remote: str, fields: dict[str, str]) -> Verdict:
        if not self.tokenless_by_lease:
            return Verdict(401, "token required: report to the URL the installer was handed", why="no token")
        mac = self.leases.mac_of(remote)
        if mac is None:
            return Verdict(401, "token required (no lease of ours at this address)", why="no token, no lease")
        claimed = normalise_mac(fields["mac"]) if fields.get("mac") else None
        if claimed is not None and claimed != mac:
            return Verdict(
                403,
                "report for another device than the one holding this address's lease",
                why=f"no token; lease {remote} is {mac}, report says {claimed}",
            )
        return Verdict(200, mac=mac)

    def refused(self, verdict: Verdict, remote: str | None) -> None:
        self.refusals.refuse(
            f"report_{verdict.status}", "report refused (%d) from %s: %s", verdict.status, remote or "?",
            verdict.why or verdict.error,
        )  # fmt: skip
        self.tokens.counters["refused"] += 1

    def done(self, verdict: Verdict, fields: Mapping[str, str]) -> None:
        """After the report's event: a terminal report ends an unarmed install's tokens (the
        lifecycle ends an arming itself, on the same event)."""
        self.tokens.counters["verified"] += 1
        if verdict.install_id and self.tokens.is_handout(verdict.install_id) and is_terminal(fields):
            self.tokens.end_handout(verdict.install_id)


__all__ = [
    "FIELD_MAX",
    "REPORT_FIELDS",
    "RateLimiter",
    "ReportAuth",
    "Verdict",
    "capped_fields",
    "is_terminal",
]
