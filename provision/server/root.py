"""`provision serve`: DHCP (or proxyDHCP), TFTP and HTTP on one asyncio loop, one policy, one store.

Composition only: lab.yml (or quick-mode flags) → LabConfig → pxe configs + BootPolicy; each
protocol's events go to the SQLite store and to the log keyed on MAC. Preflight checks turn the
usual failures (not root, interface missing or without IPv4, boot file missing, port in use) into
ServeError with a fix, before anything binds. SIGINT/SIGTERM stop the loop; servers close in
reverse order and the store commits last.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.boot import loaders as bootfiles
from provision.boot.policy import BootPolicy, ServerAddress, profile_console
from provision.config.lab import (
    Arch,
    BootConfig,
    BootEntry,
    KernelSet,
    LabConfig,
    Mode,
    Paths,
    Pool,
    Subnet,
    Unknown,
)
from provision.onie.wiring import identity_recorder
from provision.server import hostnet
from pxe.policy import Event, Policy

log = logging.getLogger("provision.server.root")

DHCP_PORT = 67  # RFC 2131
QUICK_ENTRY = "quick"


class ServeError(Exception):
    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message = message
        self.fix = fix


# -- quick mode --------------------------------------------------------------------------------
def quick_pool(iface: hostnet.InterfaceAddress) -> Pool:
    """Half of the interface's subnet, the half without our own address, minus network/broadcast."""
    net = iface.network
    if net.num_addresses < 8:
        raise ServeError(
            f"{iface.ifname}'s subnet {net} is too small for a pool",
            "give the interface a /29 or larger, or write a lab.yml with an explicit pool",
        )
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    mid = (first + last) // 2
    own = int(iface.address)
    lo, hi = (mid + 1, last) if own <= mid else (first, mid)
    return Pool(ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi))


def quick_config(
    iface: hostnet.InterfaceAddress,
    kernel: Path,
    initrd: Path | None,
    cmdline: str = "",
    kernel_arm64: Path | None = None,
    initrd_arm64: Path | None = None,
    cmdline_arm64: str | None = None,
    proxy: bool = False,
    state_dir: Path | None = None,
    http_port: int = 80,
) -> LabConfig:
    """A LabConfig that boots any machine on `iface` into one kernel (per arch)."""
    kernels = {Arch.X86_64: KernelSet(kernel, initrd, cmdline)}
    if kernel_arm64:
        kernels[Arch.ARM64] = KernelSet(kernel_arm64, initrd_arm64, cmdline_arm64 or cmdline)
    entry = BootEntry(QUICK_ENTRY, kernels, "from the command line")
    subnets = ()
    if not proxy:
        subnets = (Subnet(iface.network, iface.ifname, (quick_pool(iface),)),)
    return LabConfig(
        interfaces=(iface.ifname,),
        mode=Mode.PROXY if proxy else Mode.AUTHORITATIVE,
        subnets=subnets,
        boot=BootConfig({QUICK_ENTRY: entry}, QUICK_ENTRY, Unknown.DISCOVER, QUICK_ENTRY),
        paths=Paths(state_dir=state_dir) if state_dir else Paths(),
        http_port=http_port,
    )


# -- preflight ---------------------------------------------------------------------------------
def check_root() -> None:
    if os.geteuid() != 0:
        raise ServeError(
            "provision serve needs root (ports 67/69/80, binding to interfaces)",
            "run it with sudo, or as root inside the lab's network namespace",
        )


def check_boot_files(cfg: LabConfig) -> None:
    from provision.config.lab import check_files

    check_files(cfg)  # ConfigError with file:line


def resolve_interfaces(cfg: LabConfig) -> list[hostnet.InterfaceAddress]:
    found = []
    for ifname in cfg.interfaces:
        try:
            found.append(hostnet.interface_ipv4(ifname))
        except hostnet.NetInfoError as exc:
            raise ServeError(exc.message, exc.fix) from None
    for sub in cfg.subnets:
        if sub.interface:
            iface = next(i for i in found if i.ifname == sub.interface)
            if iface.address not in sub.network:
                raise ServeError(
                    f"subnet {sub.network} is on {sub.interface}, whose address is {iface.address}/"
                    f"{iface.network.prefixlen}",
                    f"give {sub.interface} an address in {sub.network}, or fix the subnet",
                )
    return found


def server_addresses(cfg: LabConfig, ifaces: list[hostnet.InterfaceAddress]) -> list[ServerAddress]:
    servers = [ServerAddress(i.network, str(i.address), i.ifname) for i in ifaces]
    for sub in cfg.subnets:
        if sub.interface is None:  # relayed: clients reach us at our first address (routed)
            servers.append(ServerAddress(sub.network, str(ifaces[0].address)))
    return servers


def _port_error(exc: OSError, proto: str, port: int, addr: str | None) -> ServeError:
    if exc.errno == errno.EADDRINUSE:
        err = hostnet.describe_port_in_use(proto, port, addr)
        return ServeError(err.message, err.fix)
    if exc.errno == errno.EACCES:
        return ServeError(f"no permission to bind {proto} port {port}", "run as root")
    return ServeError(f"cannot bind {proto} port {port} on {addr or 'all'}: {exc}", "check the interface")


# -- the running server ------------------------------------------------------------------------
@dataclass
class MacBook:
    """IP → MAC, so TFTP/HTTP requests (which carry only an IP) are tied to a device."""

    by_ip: dict[str, str] = field(default_factory=dict)

    def learn(self, event: Event) -> None:
        if event.kind in ("dhcp.ack", "dhcp.offer") and event.mac and event.ip:
            self.by_ip[event.ip] = event.mac

    def __call__(self, ip: str) -> str | None:
        return self.by_ip.get(ip)


def log_event(event: Event) -> None:
    detail = " ".join(f"{k}={v}" for k, v in sorted(event.detail.items()) if v not in (None, "", {}))
    level = logging.WARNING if event.kind.endswith(("error", "nak", "decline")) else logging.INFO
    log.log(level, "mac=%s ip=%s %s %s", event.mac or "-", event.ip or "-", event.kind, detail)


class Serve:
    """Start with `await start()`, stop with `await close()`; `run()` does both around signals."""

    def __init__(
        self, cfg: LabConfig, onie: Policy | None = None, on_ready: Callable[[], None] | None = None
    ):
        self.cfg = cfg
        self.onie = onie
        self.on_ready = on_ready
        self.store: Any = None
        self.macs = MacBook()
        self._closers: list[Callable[[], Any]] = []
        self._recorders: list[Callable[[Event], None]] = []
        self.policy: BootPolicy | None = None
        self.ifaces: list[hostnet.InterfaceAddress] = []

    # events from every protocol land here (on the loop thread)
    def sink(self, event: Event) -> None:
        self.macs.learn(event)
        observe = getattr(self.onie, "observe", None)
        if observe is not None:
            try:
                observe(event)
            except Exception:
                log.exception("onie policy: observe(%s) failed", event.kind)
        log_event(event)
        if self.store is not None:
            try:
                self.store.add_event(event)
                for record in self._recorders:
                    record(event)
            except Exception:  # the store must not take a server down with it
                log.exception("store: event %s for %s not recorded", event.kind, event.mac)

    def prepare(self) -> None:
        """Everything that can fail with an operator-fixable error, before binding anything."""
        check_root()
        check_boot_files(self.cfg)
        self.ifaces = resolve_interfaces(self.cfg)
        servers = server_addresses(self.cfg, self.ifaces)
        paths = self.cfg.paths
        want_arm64 = any(Arch.ARM64 in e.kernels for e in self.cfg.boot.entries.values())
        try:
            paths.state_dir.mkdir(parents=True, exist_ok=True)
            files = bootfiles.prepare(
                paths.ipxe_dir,
                paths.state_dir / "boot",
                sorted({s.address for s in servers}),
                paths.grub_arm64_modules,
                paths.grub_arm64_efi,
                want_arm64=want_arm64,
            )
        except bootfiles.BootFileError as exc:
            raise ServeError(exc.message, exc.fix) from None
        except OSError as exc:
            raise ServeError(
                f"state folder {paths.state_dir}: {exc}", "pick a writable --state-dir"
            ) from None
        from provision.config.profiles import ProfileRegistry

        self.policy = BootPolicy(
            self.cfg, servers, files, onie=self.onie, console_of=profile_console(ProfileRegistry())
        )
        attach = getattr(self.onie, "attach", None)
        if attach is not None:  # OniePolicy (provision.onie.policy): built before the server
            policy = self.policy
            attach(
                events=self.sink,
                mac_of_ip=self.macs,
                url_base=lambda client: policy.http_base(policy.server_for(client)) if client else None,
            )

    def _open_store(self) -> None:
        from provision.store.sqlite import Store, StoreError

        db = self.cfg.paths.db_path
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.store = Store(db)
        except StoreError as exc:
            raise ServeError(
                str(exc), f"move {db} aside (it is not a provision state file) or pick another --state-dir"
            ) from None
        self._recorders = []
        if self.onie is not None:
            # onie.discovered → the devices table's serial/platform (provision.onie.wiring)
            self._recorders.append(identity_recorder(self.store))
        for lease in self.store.leases():
            self.macs.by_ip[lease.ip] = lease.mac
        for dev in self.cfg.inventory.devices:
            if dev.ip and dev.mac:
                self.macs.by_ip.setdefault(dev.ip, dev.mac)

    def _roots(self) -> tuple[Path, Path]:
        p = self.cfg.paths
        tftp = p.tftp_root or p.state_dir / "tftp"
        http = p.http_root or p.state_dir / "http"
        for d in (tftp, http):
            d.mkdir(parents=True, exist_ok=True)
        return tftp, http

    def dhcp_config(self) -> Any:
        from pxe.dhcp import DhcpServerConfig, Reservation
        from pxe.dhcp import Mode as DhcpMode
        from pxe.dhcp import Subnet as DhcpSubnet

        addr = {i.ifname: str(i.address) for i in self.ifaces}
        subnets = tuple(
            DhcpSubnet(
                network=str(s.network),
                pools=tuple((str(p.first), str(p.last)) for p in s.pools),
                router=s.router,
                dns=s.dns,
                domain=s.domain,
                lease_time=s.lease_time,
                server_ip=addr.get(s.interface) if s.interface else str(self.ifaces[0].address),
                interface=s.interface or self._iface_for(s.network),
            )
            for s in self.cfg.subnets
        )
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

    def _iface_for(self, network: ipaddress.IPv4Network) -> str | None:
        for i in self.ifaces:
            if i.address in network:
                return i.ifname
        return None

    async def start(self) -> None:
        if self.policy is None:
            self.prepare()
        assert self.policy is not None
        from pxe.dhcp import start_dhcp
        from pxe.http import HttpConfig, start_http
        from pxe.tftp import TftpConfig, start_tftp

        self._open_store()
        self._closers.append(self.store.close)
        tftp_root, http_root = self._roots()
        try:
            for iface in self.ifaces:
                addr = str(iface.address)
                try:
                    tftp = await start_tftp(
                        TftpConfig(
                            root=tftp_root, bind_addr=addr, port=self.cfg.tftp_port, interface=iface.ifname
                        ),
                        self.policy,
                        self.sink,
                        self.macs,
                    )
                except OSError as exc:
                    raise _port_error(exc, "udp", self.cfg.tftp_port, addr) from None
                self._closers.append(tftp.close)
                try:
                    http = await start_http(
                        HttpConfig(
                            root=http_root,
                            bind_addr=addr,
                            port=self.cfg.http_port,
                            # lab.yml `onie.report: false` (OniePolicy.report_enabled) turns it off
                            accept_reports=getattr(self.onie, "report_enabled", True),
                        ),
                        self.policy,
                        self.sink,
                        api=StatusApi(self),
                        resolve_mac=self.macs,
                    )
                except OSError as exc:
                    raise _port_error(exc, "tcp", self.cfg.http_port, addr) from None
                self._closers.append(http.close)
            try:
                dhcp = await start_dhcp(self.dhcp_config(), self.policy, self.store, self.sink)
            except OSError as exc:  # pxe.dhcp.DhcpStartError names interface and port
                port = getattr(exc, "port", DHCP_PORT)
                err = _port_error(exc, "udp", port, None)
                where = getattr(exc, "interface", None)
                raise ServeError(
                    f"{err.message} (DHCP on {where})" if where else err.message, err.fix
                ) from None
            self._closers.append(dhcp.close)
        except BaseException:
            await self.close()
            raise
        names = ", ".join(f"{i.ifname} ({i.address})" for i in self.ifaces)
        log.info("serving %s on %s; state in %s", self.cfg.mode.value, names, self.cfg.paths.db_path)
        self.sink(Event(kind="serve.started", detail={"interfaces": list(self.cfg.interfaces)}))
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
        await self.start()
        try:
            await stop.wait()
        finally:
            if self.store is not None:
                self.sink(Event(kind="serve.stopped"))
            await self.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)


class StatusApi:
    """pxe.http's StatusProvider: the same view `provision status --json` prints."""

    def __init__(self, serve: Serve):
        self.serve = serve

    def status(self) -> dict[str, Any]:
        from provision.devices.status import snapshot

        return snapshot(self.serve.store, self.serve.cfg.inventory)

    def events(self, mac: str | None, since: float | None, limit: int) -> list[dict[str, Any]]:
        from provision.devices.status import event_dict

        return [event_dict(e) for e in self.serve.store.events(mac=mac, since=since, limit=limit)]
