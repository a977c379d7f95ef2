"""Who may read what: the lease index, the per-device file guard and the read policy of the API
(docs/security.md).

- `LeaseIndex`: MAC ↔ address of the leases this server ACKed (committed before the ACK left),
  learnt from `dhcp.ack` events, forgotten on release, decline and expiry, seeded from the store
  at start. "The device's lease is known" means a current entry here.
- `DeviceFileGuard`: a pxe.Policy in front of the router; a per-device file (`ipxe/<mac>.ipxe`,
  `grub/by-mac/<mac>.cfg`, every name carrying a MAC under ipxe/ or grub/) is served only to the
  address holding that MAC's lease when one is known: the device itself, not its neighbour
  reading its kernel command line. Refused as not found (pxe's files are found or not; a 404
  tells the asker nothing more). Without a known lease (proxy mode, a device with a static
  address) the file is served as before.
- `ReadGuard`: /api/v1/status, /api/v1/events and /api/v1/stream for this host, the `read_from` networks,
  anyone with the read token (`read: token`), or everyone (`read: open`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from provision.boot.policy import GRUB_DIR, IPXE_SCRIPT_DIR, mac_from_path
from provision.config.security import ApiSettings, ReadAccess
from pxe.dhcp.leases import Lease, LeaseState
from pxe.logsafe import safe
from pxe.policy import BootDecision, Client, Event, Policy, RenderedFile

log = logging.getLogger("provision.serve")

WARN_EVERY_S = 60.0  # refusals: counted always, logged once a minute per kind
READ_PATHS: tuple[str, ...] = ("/api/v1/status", "/api/v1/events", "/metrics")
READ_PATHS += ("/api/v1/stream",)  # the events, live (provision.server.stream)


class LeaseIndex:
    """MAC ↔ IP of the leases we ACKed and that still run. An event subscriber."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._ip_of: dict[str, tuple[str, float]] = {}  # mac -> (ip, expires)
        self._mac_of: dict[str, str] = {}  # ip -> mac

    def seed(self, leases: Iterable[Lease]) -> None:
        now = self.clock()
        for lease in leases:
            if lease.state is LeaseState.BOUND and lease.expires > now:
                self._bind(lease.mac.lower(), lease.ip, lease.expires)

    def _bind(self, mac: str, ip: str, expires: float) -> None:
        old = self._ip_of.get(mac)
        if old is not None and self._mac_of.get(old[0]) == mac:
            del self._mac_of[old[0]]
        other = self._mac_of.get(ip)
        if other is not None and other != mac:
            self._ip_of.pop(other, None)
        self._ip_of[mac] = (ip, expires)
        self._mac_of[ip] = mac

    def _unbind(self, mac: str, ip: str | None) -> None:
        held = self._ip_of.get(mac)
        if held is not None and (ip is None or held[0] == ip):
            del self._ip_of[mac]
            if self._mac_of.get(held[0]) == mac:
                del self._mac_of[held[0]]

    KINDS = ("dhcp.ack", "dhcp.release", "dhcp.decline")  # what `learn` reads

    def learn(self, event: Event) -> None:
        if not event.mac:
            return
        mac = event.mac.lower()
        detail = event.detail
        if event.kind == "dhcp.ack" and event.ip:
            if detail.get("inform") or detail.get("proxy"):
                return  # INFORM: an address it already has from elsewhere; proxyDHCP: no lease
            lease_time = detail.get("lease_time")
            seconds = float(lease_time) if isinstance(lease_time, int | float) else 3600.0
            self._bind(mac, event.ip, self.clock() + seconds)
        elif (event.kind == "dhcp.release" and detail.get("released", True)) or (
            event.kind == "dhcp.decline" and detail.get("quarantined")
        ):
            self._unbind(mac, event.ip)  # the address is no longer this device's

    __call__ = learn

    def ip_of(self, mac: str) -> str | None:
        """The address holding `mac`'s current lease, or None when none is known."""
        held = self._ip_of.get(mac.lower())
        if held is None:
            return None
        if held[1] <= self.clock():
            self._unbind(mac.lower(), held[0])
            return None
        return held[0]

    def mac_of(self, ip: str) -> str | None:
        mac = self._mac_of.get(ip)
        return mac if mac is not None and self.ip_of(mac) == ip else None


class Refusals:
    """Counted always; one log line per kind a minute, with how many since the last one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.counts: dict[str, int] = {}
        self._logged: dict[str, tuple[float, int]] = {}

    def refuse(self, kind: str, message: str, *args: object) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = self.clock()
        last = self._logged.get(kind)
        if last is not None and now - last[0] < WARN_EVERY_S:
            return
        since = self.counts[kind] - (last[1] if last else 0)
        self._logged[kind] = (now, self.counts[kind])
        log.warning(
            message + " (%d refused since the last such line, %d in all)",
            *args, since, self.counts[kind],
            extra={"fields": {"refusal": kind, "since_last": since, "total": self.counts[kind]}},
        )  # fmt: skip


class DeviceFileGuard:
    """`pxe.Policy` in front of another: per-device files only to the device's own address."""

    def __init__(self, inner: Policy, leases: LeaseIndex, refusals: Refusals | None = None) -> None:
        self.inner = inner
        self.leases = leases
        self.refusals = refusals or Refusals()

    def decide(self, client: Client) -> BootDecision | None:
        return self.inner.decide(client)

    def render(self, client: Client, path: str) -> RenderedFile | None:
        rel = path.lstrip("/")
        if rel.split("/", 1)[0] in (IPXE_SCRIPT_DIR, GRUB_DIR):
            mac = mac_from_path(rel)
            holder = self.leases.ip_of(mac) if mac else None
            if holder is not None and client.ip != holder:
                self.refusals.refuse(
                    "device_file",
                    "refused %s to %s: that file belongs to %s, whose lease is %s",
                    safe(rel), safe(client.ip or "?"), mac, holder,
                )  # fmt: skip
                return RenderedFile.not_found()
        return self.inner.render(client, path)


def _is_loopback(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


@dataclass
class ReadGuard:
    """The read policy of /api/v1/status and /api/v1/events (lab.yml `api.read`)."""

    settings: ApiSettings
    own_addresses: Callable[[], Sequence[str]] = lambda: ()
    read_token: str | None = None
    refusals: Refusals | None = None

    def allowed(self, remote: str | None, authorization: str | None) -> bool:
        if self.settings.read is ReadAccess.OPEN:
            return True
        try:
            ip = ipaddress.ip_address((remote or "").split("%", 1)[0])
        except ValueError:
            return False
        if _is_loopback(ip) or str(ip) in self.own_addresses():
            return True
        if isinstance(ip, ipaddress.IPv4Address) and any(ip in n for n in self.settings.read_from):
            return True
        if self.settings.read is ReadAccess.TOKEN and self.read_token and authorization:
            scheme, _, given = authorization.partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), self.read_token)
        return False

    def wrap(self, routes: Iterable[web.RouteDef]) -> list[web.RouteDef]:
        """The API's routes with the read ones behind this policy (the handlers stay as written)."""
        out: list[web.RouteDef] = []
        for r in routes:
            if r.method == "GET" and r.path in READ_PATHS:
                out.append(web.RouteDef(r.method, r.path, self._guarded(r.handler), r.kwargs))
            else:
                out.append(r)
        return out

    def wrap_all(self, routes: Iterable[web.RouteDef]) -> list[web.RouteDef]:
        """Every GET of `routes` behind this policy (the web page: it shows what status shows)."""
        return [
            web.RouteDef(r.method, r.path, self._guarded(r.handler), r.kwargs) if r.method == "GET" else r
            for r in routes
        ]

    def _guarded(self, handler: Any) -> Any:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.allowed(request.remote, request.headers.get("Authorization")):
                if self.refusals is not None:
                    self.refusals.refuse(
                        "api_read", "refused %s to %s (api.read: %s)",
                        safe(request.path), safe(request.remote or "?"), self.settings.read.value,
                    )  # fmt: skip
                how = {
                    ReadAccess.LOCAL: "read it on the server, or list your management network in "
                    "lab.yml api.read_from",
                    ReadAccess.TOKEN: "send Authorization: Bearer <the state dir's api-read-token>",
                }.get(self.settings.read, "")
                return web.json_response({"error": f"forbidden: {how}"}, status=403)
            result: web.StreamResponse = await handler(request)
            return result

        return guarded


__all__ = ["DeviceFileGuard", "LeaseIndex", "ReadGuard", "Refusals"]
