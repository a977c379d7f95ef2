"""`provision serve`: the composition root. Builds the store, the policies and the servers, and
hands each its dependencies; nothing else wires anything.

    lab.yml (or quick-mode flags) -> LabConfig
      -> preflight (root, interfaces, subnets on their links)  -> ServeError with a fix
      -> boot loaders (iPXE, GRUB arm64)                         -> BootPolicy
      -> the `onie:` section                                     -> OniePolicy
      -> Router(BootPolicy, OniePolicy): the one pxe.Policy every front end asks
      -> EventBus: address book, log, store, ONIE identity index
      -> pxe TFTP + HTTP (with the /api/v1 routes) per interface, pxe DHCP on all of them

SIGINT/SIGTERM stop the loop; servers close in reverse order and the store commits last.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from provision.boot import loaders
from provision.boot.policy import BootPolicy, ServerAddress, profile_console
from provision.config.check import check_config
from provision.config.inventory import Device
from provision.config.lab import Arch, LabConfig, Subnet, check_files, load_lab
from provision.config.onie import DiscoveryMode
from provision.config.profiles import ProfileRegistry
from provision.devices.lifecycle import Lifecycle
from provision.errors import ProvisionError
from provision.onie.policy import OniePolicy
from provision.onie.progress import KIND_DISCOVERED, KIND_REPORT, record_identity
from provision.server import hostnet
from provision.server.access import DeviceFileGuard, LeaseIndex, ReadGuard, Refusals
from provision.server.api import Api
from provision.server.events import AddressBook, EventBus, OfferHold, log_event
from provision.server.metrics import Metrics
from provision.server.preflight import (
    ServeError,
    check_root,
    link_local_address,
    plan_descriptors,
    port_error,
    resolve_interfaces,
    server_addresses,
)
from provision.server.reports import RateLimiter, ReportAuth
from provision.server.router import Router
from provision.server.stream import EventStream
from provision.server.summary import summary_fields, summary_lines
from provision.server.tokens import Tokens, load_secret, write_read_token
from provision.server.web import WebPage, shadowed_files
from provision.store.base import StateStore, open_store, redact
from provision.store.integrity import open_checked
from provision.store.retention import prune_forever
from provision.store.sqlite import StoreError
from pxe.dhcp import DhcpServer, DhcpServerConfig, DhcpStartError, Reservation, start_dhcp
from pxe.dhcp import Mode as DhcpMode
from pxe.dhcp import Subnet as DhcpSubnet
from pxe.http import HttpConfig, HttpLimits, start_http
from pxe.policy import Client, Event
from pxe.tftp import TftpConfig, start_tftp

log = logging.getLogger("provision.serve")


def switch_asics(registry: ProfileRegistry) -> dict[str, str]:
    """ONIE platform → switch ASIC from the hardware profiles (for ONIE's `<arch>-<asic>` name)."""
    return {p.onie_platform: p.switch_asic for p in registry.all() if p.onie_platform and p.switch_asic}


def expected_platform(registry: ProfileRegistry) -> Callable[[Device], str | None]:
    """The ONIE platform a device must report: its own `platform:`, else its profile's."""

    def platform_of(dev: Device) -> str | None:
        if dev.platform:
            return dev.platform
        if not dev.profile:
            return None
        try:
            return registry.get(dev.profile).onie_platform
        except LookupError:
            return None

    return platform_of


def build_fleet(cfg: LabConfig, events: EventBus, registry: ProfileRegistry) -> Lifecycle:
    """The lifecycle (intent in the store once it is open: `attach`), subscribed to the events."""
    onie = cfg.onie
    fleet = Lifecycle(
        None,
        cfg.inventory,
        events,
        unknown_install=onie.unknown_install(cfg.inventory) if onie is not None else False,
        expected_platform=expected_platform(registry),
        reports=onie.report if onie is not None else True,
        groups=cfg.groups,
    )
    events.subscribe("lifecycle", fleet.on_event, kinds=[KIND_REPORT])
    return fleet


def build_router(
    cfg: LabConfig,
    servers: list[ServerAddress],
    files: loaders.BootFiles,
    events: EventBus,
    addresses: AddressBook,
    registry: ProfileRegistry,
    fleet: Lifecycle | None = None,
    tokens: Tokens | None = None,
) -> Router:
    """The one policy: the server boot policy, and the ONIE policy when lab.yml has `onie:`.
    `tokens`: callback tokens in the URLs handed out (docs/security.md)."""
    fleet = fleet or build_fleet(cfg, events, registry)
    token_for = tokens.for_handout if tokens is not None else None
    boot = BootPolicy(
        cfg, servers, files, console_of=profile_console(registry), fleet=fleet, callback_token=token_for
    )
    onie = None
    if cfg.onie is not None:

        def url_base(client: Client) -> str:
            # The same address the DHCP answer names (Client.server_ip), as boot URLs use.
            return boot.http_base(boot.server_for(client))

        onie = OniePolicy(
            cfg.onie,
            inventory=cfg.inventory,
            events=events,
            url_base=url_base,
            mac_of_ip=addresses,
            asic_of_platform=switch_asics(registry).get,
            fleet=fleet,
            callback_token=token_for,
        )
        events.subscribe("onie policy", onie.learn, kinds=["dhcp.ack"])
    return Router(boot, onie)


class BootServer:
    """Start with `await start()`, stop with `await close()`; `run()` does both around signals."""

    def __init__(self, cfg: LabConfig, on_ready: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.on_ready = on_ready
        self.store: StateStore | None = None
        self._offers: OfferHold | None = None
        self.addresses = AddressBook()
        self.events = EventBus()
        self.events.subscribe("address book", self.addresses.learn, kinds=AddressBook.KINDS)
        self.events.subscribe("log", log_event)
        # MAC <-> address of the leases we ACKed: who may report for a device, and fetch its files
        self.leases = LeaseIndex()
        self.events.subscribe("lease index", self.leases.learn, kinds=LeaseIndex.KINDS)
        self.tokens: Tokens | None = None
        self.refusals = Refusals()
        self.policy: Router | None = None
        self.fleet: Lifecycle | None = None
        self.registry = ProfileRegistry()
        self.dhcp: DhcpServer | None = None
        self.api: Api | None = None
        self._files = loaders.BootFiles(cfg.paths.ipxe_dir)
        self._files_for: tuple[bool, tuple[str, ...]] = (False, ())
        self.ifaces: list[hostnet.InterfaceAddress] = []
        self.front_ends: list[Any] = []  # the TFTP and HTTP servers, per interface
        self._closers: list[Callable[[], Any]] = []
        self.metrics: Metrics | None = None  # GET /metrics (docs/observability.md)
        self.stream: EventStream | None = None  # GET /api/v1/stream (its `counters`, `subscribers`)
        self._guard: ReadGuard | None = None

    def prepare(self) -> None:
        """Everything that can fail with an operator-fixable error, before binding anything."""
        # `provision check`'s rules first: every error of the lab file at once (exit 2), and
        # warnings in the log; a valid lab starts as before.
        report = check_config(self.cfg)
        for finding in report.warnings:
            log.warning("%s", str(finding).replace("\n ", ";"))
        report.raise_errors()
        check_root()
        check_files(self.cfg)  # ConfigError with file:line
        self.ifaces = resolve_interfaces(self.cfg)
        servers = server_addresses(self.cfg, self.ifaces)
        files = self._boot_files(self.cfg, servers)
        # The callback tokens' secret (state dir, 0600, made at first start): SecretError, exit 3
        self.tokens = Tokens(load_secret(self.cfg.paths.state_dir), ttl=self.cfg.api.token_ttl)
        self.fleet = build_fleet(self.cfg, self.events, self.registry)
        self.policy = build_router(
            self.cfg, servers, files, self.events, self.addresses, self.registry, self.fleet, self.tokens
        )

    def _boot_files(self, cfg: LabConfig, servers: list[ServerAddress]) -> loaders.BootFiles:
        paths = cfg.paths
        want_arm64 = any(Arch.ARM64 in e.kernels for e in cfg.boot.entries.values())
        try:
            paths.state_dir.mkdir(parents=True, exist_ok=True)
            self._files = loaders.prepare(
                paths.ipxe_dir,
                paths.state_dir / "boot",
                sorted({s.address for s in servers}),
                paths.grub_arm64_modules,
                paths.grub_arm64_efi,
                want_arm64=want_arm64,
            )
        except OSError as exc:
            raise ServeError(
                f"state folder {paths.state_dir}: {exc}", "pick a writable --state-dir"
            ) from None
        self._files_for = (want_arm64, tuple(sorted({s.address for s in servers})))
        return self._files

    # -- reload (SIGHUP) -------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the lab file, check it, and swap the policies, the inventory and the DHCP
        subnets in one step between two packets; or keep the running configuration and say why.
        Leases, events, intents and offers in flight are untouched; the slow part (reading and
        checking files) runs in a thread, so DHCP goes on answering meanwhile."""
        source = self.cfg.source
        if source is None or self.policy is None or self.fleet is None:
            log.warning("reload: nothing to re-read (quick mode has no lab file)")
            return False
        try:
            cfg = await asyncio.to_thread(self._read_lab, source)
            servers = server_addresses(cfg, self.ifaces)
            files = self._files
            want = (any(Arch.ARM64 in e.kernels for e in cfg.boot.entries.values()),
                    tuple(sorted({s.address for s in servers})))  # fmt: skip
            if want != self._files_for:
                files = await asyncio.to_thread(self._boot_files, cfg, servers)
        except ProvisionError as exc:
            log.error(
                "reload of %s refused, the running configuration stays: %s", source, exc.format_message(),
                extra={"fields": {"source": str(source), "error": exc.format_message()}},
            )  # fmt: skip
            self.events(Event(kind="serve.reload_refused", detail={"error": exc.format_message()}))
            return False
        old_onie = self.policy.onie
        self.events.unsubscribe("onie policy")
        router = build_router(
            cfg, servers, files, self.events, self.addresses, self.registry, self.fleet, self.tokens
        )
        if old_onie is not None and router.onie is not None:
            router.onie.carry_over(old_onie)  # what switches said, for their headerless requests
        # From here on nothing awaits: the swap is atomic for every front end.
        self.cfg = cfg
        self.fleet.reload(
            cfg.inventory,
            unknown_install=cfg.onie.unknown_install(cfg.inventory) if cfg.onie is not None else False,
            reports=cfg.onie.report if cfg.onie is not None else True,
            groups=cfg.groups,
        )
        self.policy.swap(router.boot, router.onie)
        if self.dhcp is not None:
            self.dhcp.reconfigure(self.dhcp_config())
        if self.api is not None:
            self.api.accept_reports = cfg.onie.report if cfg.onie is not None else True
        for line in summary_lines(cfg, self.ifaces, self.fleet, router):
            log.info("reloaded: %s", line, extra=summary_fields(line, "reload"))
        self.events(Event(kind="serve.reloaded", detail={"source": str(source)}))
        return True

    def _read_lab(self, source: Path) -> LabConfig:
        """lab.yml again, checked as `provision check` does; what needs a restart is refused."""
        cfg = load_lab(source, check_files=True)
        report = check_config(cfg)
        for finding in report.warnings:
            log.warning("%s", str(finding).replace("\n ", ";"))
        report.raise_errors()
        restart = ("interfaces", "mode", "tftp_port", "state")
        fixed = [k for k in restart if getattr(cfg, k) != getattr(self.cfg, k)]
        if fixed:
            raise ServeError(f"{', '.join(fixed)} changed", "restart provision serve to apply that")
        if (cfg.paths, cfg.http_port) != (self.cfg.paths, self.cfg.http_port):
            log.warning("reload: paths/http_port differ from the running ones; restart to apply them")
        if (cfg.api, cfg.events) != (self.cfg.api, self.cfg.events):
            # The read guard, the report limiter and retention are built once at start.
            log.warning("reload: the api:/events: sections changed; restart to apply them")
            cfg = dataclasses.replace(cfg, api=self.cfg.api, events=self.cfg.events)
        # Paths and the HTTP port stay as running (they may come from --state-dir/--http-port).
        return dataclasses.replace(cfg, paths=self.cfg.paths, http_port=self.cfg.http_port)

    def _open_store(self) -> StateStore:
        store: StateStore
        if self.cfg.state is not None:
            # PostgreSQL, shared with other `provision serve` instances (docs/scale-out.md)
            try:
                store = open_store(self.cfg.state)
            except StoreError as exc:
                raise ServeError(
                    str(exc),
                    exc.fix
                    or "check lab.yml `state:` (host, database, user; the password in ~/.pgpass) "
                    "and that the PostgreSQL server is up",
                ) from None
            log.info("state in PostgreSQL %s (schema %d)", redact(self.cfg.state), store.schema_version)
        else:
            db = self.cfg.paths.db_path
            db.parent.mkdir(parents=True, exist_ok=True)
            try:
                # WAL checked before SQLite replays it, quick_check after (provision.store.integrity)
                store = open_checked(db)
            except StoreError as exc:
                raise ServeError(
                    str(exc),
                    exc.fix
                    or f"move {db} aside (it is not a provision state file) or pick another --state-dir",
                ) from None
        # A lease's offer is stored only when no ack follows (OfferHold): one row per lease
        self._offers = OfferHold(store.add_event)
        self.events.subscribe("store", self._offers)
        if self.fleet is not None:
            self.fleet.attach(store)  # intent (enrolled devices, armings) lives in the store
        if self.cfg.onie is not None:
            # onie.discovered -> the devices table's serial and platform
            self.events.subscribe("onie identity", record_identity(store), kinds=[KIND_DISCOVERED])
        self.leases.seed(store.leases())
        for lease in store.leases():
            self.addresses.by_ip[lease.ip] = lease.mac
        for dev in self.cfg.inventory.devices:
            if dev.ip and dev.mac:
                self.addresses.by_ip.setdefault(dev.ip, dev.mac)
        return store

    def _report_auth(self) -> ReportAuth:
        assert self.tokens is not None
        onie = self.cfg.onie
        return ReportAuth(
            self.tokens,
            self.leases,
            self.fleet,
            # Only where no URL of ours can carry a token (docs/security.md)
            tokenless_by_lease=onie is not None and onie.discovery is not DiscoveryMode.EXACT,
            refusals=self.refusals,
        )

    def _read_guard(self) -> ReadGuard:
        if self._guard is not None:  # one policy (and one read token) for every guarded route
            return self._guard
        assert self.tokens is not None
        read_token = None
        if self.cfg.api.read.value == "token":
            read_token = self.tokens.read_token()
            path = write_read_token(self.cfg.paths.state_dir, self.tokens)
            log.info("api.read: token; the bearer token is in %s", path)
        self._guard = ReadGuard(
            self.cfg.api,
            own_addresses=lambda: [str(i.address) for i in self.ifaces],
            read_token=read_token,
            refusals=self.refusals,
        )
        return self._guard

    def _roots(self) -> tuple[Path, Path]:
        p = self.cfg.paths
        tftp = p.tftp_root or p.state_dir / "tftp"
        http = p.http_root or p.state_dir / "http"
        for d in (tftp, http):
            d.mkdir(parents=True, exist_ok=True)
        return tftp, http

    def dhcp_config(self) -> DhcpServerConfig:
        subnets = tuple(self._dhcp_subnet(s) for s in self.cfg.subnets)
        reservations = tuple(
            Reservation(d.mac, d.ip, d.hostname or d.name)
            for d in self.cfg.inventory.devices
            if d.mac and d.ip
        )
        return DhcpServerConfig(
            interfaces=self.cfg.interfaces,
            subnets=subnets,
            reservations=reservations,
            mode=DhcpMode(self.cfg.mode.value),
        )

    def _dhcp_subnet(self, s: Subnet) -> DhcpSubnet:
        if s.interface:
            ifname: str | None = s.interface
            server_ip = next(str(i.address) for i in self.ifaces if i.ifname == s.interface)
        else:
            # Named without its interface: the interface on that network if there is one (siaddr
            # and every URL then name an address the link reaches), else the first (a relayed
            # subnet, reached routed), as `preflight.server_addresses` says.
            local = next((i for i in self.ifaces if i.address in s.network), None)
            ifname = local.ifname if local else None
            server_ip = str((local or self.ifaces[0]).address)
        return DhcpSubnet(
            network=str(s.network),
            pools=tuple((str(p.first), str(p.last)) for p in s.pools),
            router=s.router,
            dns=s.dns,
            domain=s.domain,
            lease_time=s.lease_time,
            server_ip=server_ip,
            interface=ifname,
            relays=s.relays,
        )

    def _close_store(self) -> None:
        if self._offers is not None:
            self._offers.flush()  # the offers still waiting for an ack go in before it closes
            self._offers = None
        self.events.unsubscribe("store")
        self.events.unsubscribe("onie identity")
        if self.fleet is not None:
            self.fleet.attach(None)
        if self.store is not None:
            self.store.close()
        self.store = None

    async def _bind(self, start: Awaitable[Any], proto: str, port: int, addr: str | None) -> Any:
        try:
            server = await start
        except OSError as exc:
            raise port_error(exc, proto, port, addr) from None
        self._closers.append(server.close)
        self.front_ends.append(server)  # their `stats` counters (bounds reached, per server)
        return server

    async def start(self) -> None:
        if self.policy is None:
            self.prepare()
        assert self.policy is not None
        store = self.store = self._open_store()
        self._closers.append(self._close_store)
        tftp_root, http_root = self._roots()
        report = self.cfg.onie.report if self.cfg.onie is not None else True
        api = self.api = Api(
            lambda: self.store,
            self.cfg.inventory,
            self.events,
            accept_reports=report,
            fleet=self.fleet,
            report_auth=self._report_auth(),
            report_limit=RateLimiter(self.cfg.api.report_rate, self.cfg.api.report_burst),
        )
        self._closers.append(api.close)
        guard = self._read_guard()
        page = WebPage(api, lambda: self.dhcp.config if self.dhcp is not None else None)
        for path in shadowed_files(http_root):
            log.warning("%s is not served: the status page owns that path (docs/web.md); rename it", path)
        routes = guard.wrap(api.routes()) + guard.wrap_all(page.routes())
        # GET /api/v1/stream: the store's events as SSE, under the read policy of /api/v1/events
        stream = self.stream = EventStream(
            lambda: self.store,
            lambda: api.inventory,
            keepalive=self.cfg.api.stream_keepalive,
            max_subscribers=self.cfg.api.stream_subscribers,
        )
        self.events.subscribe("stream", stream.publish)
        routes = [*routes, *self._read_guard().wrap(stream.routes())]
        # Per-device files (iPXE scripts, grub.cfg) only to the address holding the MAC's lease
        policy = DeviceFileGuard(self.policy, self.leases, self.refusals)
        retention = asyncio.get_running_loop().create_task(
            prune_forever(lambda: self.store, self.cfg.events), name="event retention"
        )
        self._closers.append(retention.cancel)
        # GET /metrics, under the read policy of /api/v1/status; counts from the store from now on
        self.metrics = Metrics(self, api._off_loop, lambda: api.lab)
        self.metrics.start(store)
        routes = [*routes, *self._read_guard().wrap(self.metrics.routes())]
        # Descriptors: the soft limit raised to what the TFTP/HTTP caps need (caps lowered to fit
        # a low hard limit), so both refuse new work at their caps, never with EMFILE.
        plan = plan_descriptors(len(self.ifaces), HttpLimits().backlog)
        log.info("%s", plan.summary)
        try:
            for iface in self.ifaces:
                addr = str(iface.address)
                tftp = TftpConfig(
                    root=tftp_root,
                    bind_addr=addr,
                    port=self.cfg.tftp_port,
                    interface=iface.ifname,
                    max_transfers=plan.tftp_transfers,
                )
                await self._bind(
                    start_tftp(tftp, policy, self.events, self.addresses),
                    "udp",
                    self.cfg.tftp_port,
                    addr,
                )
                # HTTP also on the link's IPv6 link-local address: ONIE's fallback when DHCP
                # gave it nothing is to try its IPv6 link-local neighbours (docs/netboot.md).
                link_local = link_local_address(iface.ifname)
                if link_local is None:
                    log.info("HTTP on %s: no IPv6 link-local address there, IPv4 only", iface.ifname)
                http = HttpConfig(
                    root=http_root,
                    bind_addr=addr,
                    port=self.cfg.http_port,
                    also_bind=(link_local,) if link_local else (),
                    limits=HttpLimits(max_connections=plan.http_connections),
                )
                await self._bind(
                    start_http(http, policy, self.events, routes, self.addresses.for_request),
                    "tcp",
                    self.cfg.http_port,
                    addr,
                )
            try:
                dhcp = await start_dhcp(self.dhcp_config(), self.policy, store, self.events)
            except DhcpStartError as exc:  # names the interface and the port
                err = port_error(exc, "udp", exc.port, None)
                raise ServeError(f"{err.message} (DHCP on {exc.interface})", err.fix) from None
            self.dhcp = dhcp
            self._closers.append(dhcp.close)
        except BaseException:
            await stream.close()
            await self.close()
            raise
        self._closers.append(stream.close)  # streams end before the HTTP servers close
        names = ", ".join(f"{i.ifname} ({i.address})" for i in self.ifaces)
        log.info(
            "serving %s on %s; state in %s", self.cfg.mode.value, names, redact(self.cfg.state_location),
            extra={"fields": {"mode": self.cfg.mode.value, "interfaces": list(self.cfg.interfaces),
                              "db": redact(self.cfg.state_location)}},
        )  # fmt: skip
        if self.fleet is not None:
            for line in summary_lines(self.cfg, self.ifaces, self.fleet, self.policy):
                log.info("%s", line, extra=summary_fields(line, "start"))
        self.events(Event(kind="serve.started", detail={"interfaces": list(self.cfg.interfaces)}))
        if self.on_ready:
            self.on_ready()

    async def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("while stopping")
        self.store = None

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reloading: set[asyncio.Task[bool]] = set()

        def on_hup() -> None:
            # One reload at a time; a SIGHUP during one is folded into it (it reads the file anew).
            if not reloading:
                task = loop.create_task(self.reload())
                reloading.add(task)
                task.add_done_callback(reloading.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        await self.start()
        try:
            await stop.wait()
        finally:
            if self.store is not None:
                self.events(Event(kind="serve.stopped"))
            await self.close()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
