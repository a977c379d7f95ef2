"""The ONIE half of the one decision point: which installer a switch gets, by URL and by every name.

The router (provision.server.router) hands a `Client` here when its DHCP options say ONIE
(provision.onie.identity), and every HTTP/TFTP path the server boot policy does not own. Two doors:

- `decide(client, identity)`: the exact installer URL (options 114 and 125 enterprise 42623
  sub-option 1, in `BootDecision.extra_options`) or, in the inexact modes, option 72 / siaddr / a
  bootfile name, as ONIE's discovery order reads them (docs/onie.md "Discovery");
- `render(client, path)`: the installer file for this switch under EVERY name of ONIE's waterfall
  (HTTP and TFTP, root, MAC directory and hex-IP directories), chosen by the ONIE-* request
  headers, else by what the switch said over DHCP from the same address; `RenderedFile.not_found()`
  for a name that does not fit this switch, so that ONIE moves on to its next name instead of
  taking another platform's installer.

Which installer: inventory device pin (`installer:` of the device matched by serial, MAC or
switch port) > `onie.devices` (serial or MAC) > `onie.switch_ports` (option 82 circuit-id) >
`onie.platforms` > the platform's file in `onie.installers` (`onie-installer-<platform>.bin` or a
header that names the platform).

Events (to the EventSink; the store keeps them, `provision.onie.progress` reads them):
`onie.discovered` {serial, platform, onie_version, source: dhcp|http|tftp} once per change or per
minute, and `installer.fetched` {path, file, platform, serial, protocol, nos, version, reason} when
a file is handed out (chosen over deriving it from http.sent: TFTP needs it too, and only the policy
knows that the file was an installer and why it was chosen).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from onie import discovery
from onie.identity import OnieIdentity
from provision.config.inventory import Device, Inventory
from provision.config.onie import DiscoveryMode, OnieSettings
from provision.devices.lifecycle import Gate, Lifecycle
from provision.onie.catalog import Catalog, CatalogEntry, Choice
from provision.onie.identity import identity_of
from provision.onie.progress import KIND_DISCOVERED, KIND_FETCHED
from pxe.policy import BootDecision, Client, Event, EventSink, RenderedFile, Service

log = logging.getLogger(__name__)

HTTP_DEFAULT_PORT = 80  # ONIE's inexact HTTP probes only port 80 (exec_installer `nc -w 10 $server 80`)
DISCOVERED_REPEAT_S = 60.0  # re-emit an unchanged onie.discovered at most once a minute


@dataclass
class _Seen:
    """What one switch (by MAC) told us, to answer its later headerless TFTP/HTTP requests."""

    identity: OnieIdentity
    circuit_id: str | None = None
    ip: str | None = None
    emitted: dict[str, tuple[OnieIdentity, float]] = field(default_factory=dict)  # source -> last


class OniePolicy:
    """decide + render for ONIE switches.

    `url_base` is where switches reach our HTTP server: a fixed `http://host[:port]`, or a function
    of the client (a multi-homed server answers each link with its own address). `onie.url` in
    lab.yml wins over both. `events` receives onie.discovered and installer.fetched; `mac_of_ip`
    ties a headerless TFTP/HTTP request to the switch that leased that address.
    """

    def __init__(
        self,
        settings: OnieSettings,
        inventory: Inventory | None = None,
        events: EventSink | None = None,
        url_base: str | Callable[[Client], str | None] | None = None,
        mac_of_ip: Callable[[str], str | None] | None = None,
        asic_of_platform: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        fleet: Lifecycle | None = None,
        callback_token: Callable[[str | None, str | None], str | None] | None = None,
    ):
        self.settings = settings
        self.events: EventSink = events or (lambda _e: None)
        # The lifecycle answers "may it install now" and holds the inventory (lab.yml + enrolled).
        # Without one (a policy built alone), intent lives in memory over `inventory`.
        self.fleet = fleet or Lifecycle(
            None, inventory or Inventory([]), self.events, unknown_install=settings.unknown_install(inventory)
        )
        self._url_base = settings.url or url_base
        # (mac, install id) -> the install's callback token, put in the exact-mode installer URL
        # (provision.server.tokens, docs/security.md); None: URLs carry no token
        self.callback_token = callback_token
        self.catalog = Catalog(settings.installers)
        self._mac_of_ip = mac_of_ip
        self._asic_of_platform = asic_of_platform
        self._clock = clock
        self._seen: dict[str, _Seen] = {}  # by mac
        self._ip_to_mac: dict[str, str] = {}

    def url_base(self, client: Client | None = None) -> str | None:
        base = self._url_base
        if callable(base):
            base = base(client) if client is not None else None
        return base.rstrip("/") if base else None

    # -- learning --------------------------------------------------------------------------------

    def learn(self, event: Event) -> None:
        """An event subscriber (the composition root subscribes it): a `dhcp.ack` ties the leased
        address to the switch, for its headerless TFTP/HTTP requests and its events' `ip`."""
        if event.kind == "dhcp.ack" and event.mac and event.ip:
            mac = discovery.normalise_mac(event.mac) or event.mac
            self._ip_to_mac[event.ip] = mac
            if mac in self._seen:
                self._seen[mac].ip = event.ip

    def _remember(
        self,
        mac: str,
        identity: OnieIdentity,
        source: str,
        circuit_id: str | None = None,
        ip: str | None = None,
    ) -> _Seen:
        """What this switch said, kept by MAC; `onie.discovered` when it says something new (or a
        minute went by). `ip`: the address the request came from, when the switch has one."""
        seen = self._seen.get(mac)
        if seen is None:
            seen = self._seen[mac] = _Seen(identity)
        else:
            seen.identity = discovery.merge(identity, seen.identity)
        if circuit_id:
            seen.circuit_id = circuit_id
        if ip and not seen.ip:
            seen.ip = ip
        now = self._clock()
        last = seen.emitted.get(source)
        if last is None or last[0] != identity or now - last[1] >= DISCOVERED_REPEAT_S:
            seen.emitted[source] = (identity, now)
            self.events(
                Event(
                    KIND_DISCOVERED,
                    mac=mac,
                    ip=seen.ip,
                    detail={
                        "serial": identity.serial,
                        "platform": identity.platform,
                        "onie_version": identity.onie_version,
                        "source": source,
                    },
                )
            )
        return seen

    def _lookup_mac(self, ip: str | None) -> str | None:
        if not ip:
            return None
        if ip in self._ip_to_mac:
            return self._ip_to_mac[ip]
        if self._mac_of_ip is not None:
            mac = self._mac_of_ip(ip)
            if mac:
                return discovery.normalise_mac(mac) or mac
        return None

    def _with_asic(self, identity: OnieIdentity) -> OnieIdentity:
        if identity.switch_asic or not identity.platform or self._asic_of_platform is None:
            return identity
        asic = self._asic_of_platform(identity.platform)
        return replace(identity, switch_asic=asic) if asic else identity

    # -- choosing --------------------------------------------------------------------------------

    def carry_over(self, old: OniePolicy) -> None:
        """After a reload: what switches told the old policy (identities, addresses), so their
        headerless TFTP/HTTP requests are still tied to them."""
        self._seen.update(old._seen)
        self._ip_to_mac.update(old._ip_to_mac)

    @property
    def inventory(self) -> Inventory:
        return self.fleet.inventory

    def _device(self, identity: OnieIdentity, circuit_id: str | None) -> Device | None:
        return self.fleet.inventory.find(mac=identity.mac, serial=identity.serial, circuit_id=circuit_id)

    def choose(
        self,
        identity: OnieIdentity,
        circuit_id: str | None = None,
        dev: Device | None = None,
        armed: str | None = None,
    ) -> Choice:
        """The installer for this switch, and why (first pin that applies, else the platform's).
        `dev`: the inventory device when the caller has looked it up already; `armed`: what it was
        armed with (`provision devices arm NAME --with FILE|VERSION`), before every other pin."""
        platform = identity.platform
        if dev is None:
            dev = self._device(identity, circuit_id)
        pins: list[tuple[str | None, str]] = [(armed, "armed with it")]
        if dev is not None:
            pins.append((dev.installer, f"inventory device {dev.name}"))
        pins.append((self.settings.devices.get(identity.serial or ""), "onie.devices (serial)"))
        pins.append((self.settings.devices.get(identity.mac or ""), "onie.devices (MAC)"))
        pins.append((self.settings.switch_ports.get(circuit_id or ""), f"onie.switch_ports ({circuit_id})"))
        pins.append((self.settings.platforms.get(platform or ""), "onie.platforms"))
        for pin, why in pins:
            if pin:
                choice = self.catalog.resolve_pin(pin, platform)
                return Choice(choice.entry, f"{choice.reason} ({why})")
        if not platform:
            return Choice(None, "the switch did not say its platform")
        with_asic = self._with_asic(identity)
        entry = self.catalog.for_identity(platform, with_asic.arch, with_asic.switch_asic)
        if entry is None:
            return Choice(None, f"no installer for {platform} in {self.settings.installers}")
        if entry.platform != platform:  # a generic name of ONIE's waterfall (Catalog.for_identity)
            return Choice(entry, f"generic name {entry.name} fits {platform}")
        return Choice(entry, f"platform default for {platform}")

    def installer_url(
        self, platform: str, client: Client | None = None, token: str | None = None
    ) -> str | None:
        """The exact-mode URL; with `token`, `?token=T`, which the installer sends back with
        every report (templates/installer/report.sh.j2, docs/security.md)."""
        base = self.url_base(client)
        if not base:
            return None
        url = f"{base}/{discovery.installer_file_name(platform)}"
        return f"{url}?token={token}" if token else url

    # -- DHCP --------------------------------------------------------------------------------------

    def decide(self, client: Client, identity: OnieIdentity | None = None) -> BootDecision | None:
        """None when the client is not ONIE or no installer fits it.

        `identity`: what the router already read from the request (provision.onie.identity); read
        here when a caller has not."""
        if identity is None:
            identity = identity_of(client)
        if identity is None or self.settings.installers is None:
            return None
        mac = discovery.normalise_mac(client.mac) or client.mac
        identity = discovery.merge(replace(identity, mac=identity.mac or mac), OnieIdentity())
        circuit = _circuit_text(client.circuit_id)
        seen = self._remember(mac, identity, "dhcp", circuit, ip=client.ip)
        if client.ip:
            seen.ip = client.ip
            self._ip_to_mac[client.ip] = mac
        dev = self._device(identity, circuit)
        gate = self.fleet.gate(dev, identity.platform, key=mac)
        if not gate.allowed:
            self.fleet.refused(dev, gate, mac, client.ip)
            return self._lease_only(dev, f"onie {identity.platform}: not offered: {gate.reason}")
        choice = self.choose(identity, circuit, dev, gate.target)
        if choice.entry is None or not identity.platform:
            # Still a lease (reserved or from the pool): a switch without a management address
            # falls back to link-local and loops through discovery, unreachable. Status says why.
            reason = choice.reason if identity.platform else "the switch did not say its platform"
            self.fleet.refused(dev, Gate(False, "no-installer", reason), mac, client.ip)
            return self._lease_only(dev, f"onie {identity.platform}: no installer: {reason}")
        decision = self._decision(identity.platform, choice, client, gate)
        if dev is not None:
            # The inventory's reservation for this switch (found by serial, MAC or switch port: the
            # port is how a not-yet-seen switch is known before its MAC is).
            decision = replace(
                decision, hostname=dev.hostname or dev.name, ip=dev.ip, note=f"{dev.name}: {decision.note}"
            )
        return decision

    @staticmethod
    def _lease_only(dev: Device | None, note: str) -> BootDecision:
        if dev is None:
            return BootDecision(note=note)
        return BootDecision(hostname=dev.hostname or dev.name, ip=dev.ip, note=f"{dev.name}: {note}")

    def _decision(
        self, platform: str, choice: Choice, client: Client, gate: Gate | None = None
    ) -> BootDecision:
        mode = self.settings.discovery
        token = None
        if mode is DiscoveryMode.EXACT and self.callback_token is not None:
            # Only the exact URL can carry a token: ONIE builds the inexact/TFTP names itself
            # (docs/security.md "Where no URL can carry a token").
            token = self.callback_token(client.mac, gate.install_id if gate is not None else None)
        url = self.installer_url(platform, client, token)
        name = discovery.installer_file_name(platform)
        extra: dict[int, bytes] = {}
        www = self._www_server(client)
        # Option 72 only where it is the way in (inexact). With the exact URL it only multiplies
        # tries: ONIE runs its HTTP waterfall on 72 after the URL, so a failing installer ran
        # again for every name (docs/onie.md "One try per arming").
        if www and mode is DiscoveryMode.INEXACT:
            extra[discovery.OPT_WWW_SERVER] = ipaddress.IPv4Address(www).packed
        note = f"onie {platform}: {choice.entry.label if choice.entry else '-'} ({choice.reason})"
        if mode is DiscoveryMode.EXACT and url:
            answer = discovery.answer_options(url)
            if discovery.OPT_VIVSO not in answer:
                log.warning("onie URL of %d bytes does not fit option 125; sending option 114 only", len(url))
            # 114 and 125 first: if the reply outgrows the client's option 57, the last go first
            return BootDecision(extra_options={**answer, **extra}, note=note)
        if mode in (DiscoveryMode.EXACT, DiscoveryMode.INEXACT, DiscoveryMode.TFTP):
            # No base URL (or not exact): siaddr + bootfile name reach our TFTP; ONIE tries 67 as a URL
            # first (fails quietly on a bare name), then tftp://siaddr/<name>.
            return BootDecision(bootfile=name, extra_options=extra, note=note + f"; bootfile {name}")
        # A lease alone leaves siaddr empty in pxe.dhcp's reply; ONIE's waterfall needs it.
        return BootDecision(next_server=self._server_ip(client), note=note + "; waterfall")

    def _server_ip(self, client: Client) -> str | None:
        base = self.url_base(client)
        host = urlsplit(base).hostname if base else None
        try:
            return str(ipaddress.IPv4Address(host or ""))
        except ValueError:
            return None

    def _www_server(self, client: Client) -> str | None:
        """Option 72 must be an IP and ONIE only tries port 80 there (docs/onie.md "Pitfalls")."""
        base = self.url_base(client)
        if not base:
            return None
        parts = urlsplit(base)
        if (parts.port or HTTP_DEFAULT_PORT) != HTTP_DEFAULT_PORT or parts.path not in ("", "/"):
            return None
        try:
            return str(ipaddress.IPv4Address(parts.hostname or ""))
        except ValueError:
            return None

    # -- HTTP and TFTP -----------------------------------------------------------------------------

    def render(self, client: Client, path: str) -> RenderedFile | None:
        """None for paths that are not ONIE names (the file tree answers); else the file or not-found."""
        if self.settings.installers is None:
            return None
        rel = discovery.normalise_path(path)
        directory, _, name = rel.rpartition("/")
        if not name.startswith(tuple(op.prefix for op in discovery.Operation)) or directory.count("/"):
            return None
        identity, mac, circuit = self._identity_for_request(client, directory)
        if identity is None or not identity.platform:
            # Nobody told us who asks. Only a name that spells a whole platform is unambiguous.
            platform = discovery.platform_from_name(name)
            if platform is None or directory:
                return RenderedFile.not_found()
            identity = discovery.complete(OnieIdentity(platform=platform))
        identity = self._with_asic(identity)
        match = discovery.match_request(rel, identity, ip=client.ip)
        if match is None or match.operation is not discovery.Operation.INSTALL:
            return RenderedFile.not_found()
        dev = self._device(replace(identity, mac=identity.mac or mac), circuit)
        gate = self.fleet.gate(dev, identity.platform, key=mac)
        if not gate.allowed:
            self.fleet.refused(dev, gate, mac, client.ip)
            return RenderedFile.not_found()
        choice = self.choose(identity, circuit, dev, gate.target)
        if choice.entry is None:
            log.info("onie %s asked %s: %s", mac, rel, choice.reason)
            return RenderedFile.not_found()
        self._fetched(client, mac, identity, rel, choice.entry, choice.reason)
        self.fleet.handed_out(dev, gate, mac, client.ip, what=choice.entry.name)
        return RenderedFile(path=choice.entry.path)

    def _identity_for_request(
        self, client: Client, directory: str
    ) -> tuple[OnieIdentity | None, str | None, str | None]:
        """Headers first (ONIE's wget sends them all), then the DHCP identity of this address/MAC."""
        identity = identity_of(client)
        mac = identity.mac if identity else None
        if mac is None and directory and len(directory) == 17:
            mac = discovery.normalise_mac(directory)  # the TFTP waterfall's MAC directory
        if mac is None:
            mac = self._lookup_mac(client.ip)
        seen = self._seen.get(mac) if mac else None
        if identity is not None and mac:
            identity = replace(identity, mac=mac)
            source = "http" if client.service is Service.HTTP else "tftp"
            if identity != OnieIdentity(mac=mac):
                seen = self._remember(mac, identity, source, ip=client.ip)
        if seen is not None:
            identity = discovery.merge(identity, seen.identity) if identity else seen.identity
            if client.ip and not seen.ip:
                seen.ip = client.ip
        return identity, mac, seen.circuit_id if seen else None

    def _fetched(
        self,
        client: Client,
        mac: str | None,
        identity: OnieIdentity,
        rel: str,
        entry: CatalogEntry,
        reason: str,
    ) -> None:
        self.events(
            Event(
                KIND_FETCHED,
                mac=mac,
                ip=client.ip,
                detail={
                    "path": rel,
                    "file": entry.name,
                    "platform": identity.platform,
                    "serial": identity.serial,
                    "protocol": client.service.value,
                    "nos": entry.nos_name,
                    "version": entry.nos_version,
                    "reason": reason,
                },
            )
        )


def _circuit_text(raw: bytes | None) -> str | None:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace").strip("\0 ")
    return text or None
