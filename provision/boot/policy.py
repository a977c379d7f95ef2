"""The server boot policy: what a network-booting server gets. The router (provision.server.router)
asks it for every client that is not an ONIE switch, and first for every file.

Stages, by what the client says of itself (docs/netboot.md "Option 93" table, from QEMU's firmware):
  BIOS PXE (arch 0)              → undionly.kpxe over TFTP
  UEFI x64 PXE (arch 7; 9 too)   → ipxe.efi (or snponly.efi) over TFTP
  UEFI x64 HTTP boot (arch 16)   → http://server/ipxe.efi
  iPXE (user class iPXE / 175)   → http://server/ipxe/<mac>.ipxe: kernel + initrd over HTTP
  ARM64 UEFI PXE (arch 11)       → grubaa64.efi over TFTP → grub/by-mac/<mac>.cfg → Image + initrd
  ARM64 UEFI HTTP boot (arch 19) → http://server/grubaa64-http-<server>.efi → same grub.cfg over HTTP
  no arch (a plain DHCP client)  → an address only, if the machine is ours
Unknown MACs: None (silent) with `unknown: ignore`, the `discover` entry with `unknown: discover`.

Pure: no sockets, no clock, no database. Everything it needs comes in at construction.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dhcp4.options import ARCH_BIOS, ARCH_EFI_ARM64, ARCH_EFI_BC, ARCH_EFI_X64, ARCH_HTTP_ARM64, ARCH_HTTP_X64
from provision import resources
from provision.boot import loaders as bootfiles
from provision.config.inventory import Device
from provision.config.lab import Arch, BootEntry, KernelSet, LabConfig, Unknown, device_entry
from provision.devices.lifecycle import Gate, Lifecycle
from pxe.policy import BootDecision, Client, Policy, RenderedFile

log = logging.getLogger(__name__)

X64_EFI_ARCHES = (ARCH_EFI_X64, ARCH_EFI_BC)

IPXE_SCRIPT_DIR = "ipxe"
GRUB_DIR = "grub"
BOOT_DIR = "boot"  # boot/<entry>/<arch>/<file name>: kernels and initrds, over TFTP and HTTP

_DISCOVER = Unknown.DISCOVER  # an enum member read through its class costs a metaclass lookup
_DECISIONS_MAX = 4096  # remembered decisions (BootPolicy.decide), dropped all at once when full
_MAC_IN_PATH = re.compile(r"([0-9a-f]{2}(?:[:-][0-9a-f]{2}){5})", re.IGNORECASE)


class Stage:
    """Names for what a request is, used in notes and events (strings kept stable for logs)."""

    BIOS_PXE = "bios-pxe"
    UEFI_PXE = "uefi-x64-pxe"
    UEFI_HTTP = "uefi-x64-http"
    IPXE = "ipxe"
    ARM64_PXE = "arm64-pxe"
    ARM64_HTTP = "arm64-http"
    LEASE_ONLY = "lease-only"


@dataclass(frozen=True)
class ServerAddress:
    """One of our addresses and the network it serves (directly attached or via relays)."""

    network: ipaddress.IPv4Network
    address: str
    interface: str | None = None  # the local interface it is on; None for relayed networks


def mac_dashes(mac: str) -> str:
    return mac.lower().replace(":", "-")


def mac_from_path(path: str) -> str | None:
    m = _MAC_IN_PATH.search(path)
    return m.group(1).lower().replace("-", ":") if m else None


class BootPolicy(Policy):
    def __init__(
        self,
        cfg: LabConfig,
        servers: Sequence[ServerAddress],
        files: bootfiles.BootFiles,
        console_of: Callable[[Device], str | None] | None = None,
        fleet: Lifecycle | None = None,
        callback_token: Callable[[str | None, str | None], str | None] | None = None,
    ):
        if not servers:
            raise ValueError("BootPolicy needs at least one server address")
        self.cfg = cfg
        # Whether a known server installs now (armed, once) or boots its disk; the inventory with
        # the enrolled devices. Without one (a policy built alone), intent lives in memory.
        self.fleet = fleet or Lifecycle(None, cfg.inventory)
        self.servers = list(servers)
        self.files = files
        self.console_of = console_of or (lambda _d: None)
        # (mac, install id) -> the install's callback token (provision.server.tokens); None: the
        # report URL carries no token (a policy built alone, in a test)
        self.callback_token = callback_token
        self.env = resources.template_env()
        # (id(device) or 0, arch, is_ipxe, server_ip, MAC when iPXE) -> (the device, its decision):
        # decide() asks for the same few answers per DHCP exchange (bench/dhcp.py). The device
        # object is kept and compared by identity, so a re-enrolled or edited device (a new
        # object in the inventory) is decided afresh; a reloaded lab.yml is a new BootPolicy.
        self._decisions: dict[tuple[int, int | None, bool, str, str], tuple[Device | None, BootDecision]] = {}

    # -- who is asking ---------------------------------------------------------------------------
    def server_for(self, client: Client) -> str:
        """Our address on the client's network. The front end says it (`Client.server_ip`: the
        address siaddr and option 54 carry, or the one a TFTP/HTTP request came in on), so URLs
        always agree with the DHCP answer. Without it (a Client built by hand): by relay (giaddr),
        then the interface the request came in on, then the client's IP or the device's reserved
        IP, else the first. The interface comes before the IPs because an unknown client on a
        second directly attached link has no IP yet, and a relayed request arrives on the
        interface towards the relay, so giaddr must be asked first."""
        if client.server_ip:
            return client.server_ip
        device = self.device(client.mac)
        if client.relay is None and client.interface is not None:
            for s in self.servers:
                if s.interface == client.interface:
                    return s.address
        for hint in (client.relay, client.ip, device.ip if device else None):
            if hint:
                try:
                    addr = ipaddress.IPv4Address(hint)
                except ValueError:
                    continue
                for s in self.servers:
                    if addr in s.network:
                        return s.address
        return self.servers[0].address

    def http_base(self, server: str) -> str:
        port = self.cfg.http_port
        if ":" in server:
            # A request that came over IPv6 link-local (ONIE's fallback): RFC 3986 brackets the
            # address and RFC 6874 writes its zone as %25<interface>.
            server = "[" + server.replace("%", "%25") + "]"
        return f"http://{server}" if port == 80 else f"http://{server}:{port}"

    def device(self, mac: str | None) -> Device | None:
        return self.fleet.inventory.by_mac(mac) if mac else None

    def _ours(self, device: Device | None) -> bool:
        return device is not None or self.cfg.boot.unknown is _DISCOVER

    # -- DHCP: what to give ----------------------------------------------------------------------
    def decide(self, client: Client) -> BootDecision | None:
        device = self.device(client.mac)
        if not self._ours(device):
            return None
        server = client.server_ip
        if not server:  # a Client built by hand: server_for() looks further, no memo
            return self._decide(client, device)
        key = (id(device) if device is not None else 0, client.arch, client.is_ipxe, server,
               client.mac if client.is_ipxe else "")  # fmt: skip
        hit = self._decisions.get(key)
        if hit is not None and hit[0] is device:
            return hit[1]
        decision = self._decide(client, device)
        if len(self._decisions) >= _DECISIONS_MAX:
            self._decisions.clear()
        self._decisions[key] = (device, decision)
        return decision

    def _decide(self, client: Client, device: Device | None) -> BootDecision:
        hostname = (device.hostname or device.name) if device else None
        ip = device.ip if device else None
        stage, bootfile = self._bootfile(client)
        who = device.name if device else "unknown (discover)"
        if bootfile is None:
            return BootDecision(hostname=hostname, ip=ip, note=f"{who}: {stage}")
        return BootDecision(hostname=hostname, ip=ip, bootfile=bootfile, note=f"{who}: {stage} → {bootfile}")

    def stage_of(self, client: Client) -> str:
        return self._bootfile(client)[0]

    def _bootfile(self, client: Client) -> tuple[str, str | None]:
        server = self.server_for(client)
        if client.is_ipxe:
            return Stage.IPXE, f"{self.http_base(server)}/{IPXE_SCRIPT_DIR}/{mac_dashes(client.mac)}.ipxe"
        arch = client.arch
        loader = self.cfg.boot.uefi_x64_loader  # X64Loader
        if arch == ARCH_BIOS:
            return Stage.BIOS_PXE, bootfiles.UNDIONLY
        if arch in X64_EFI_ARCHES:
            return Stage.UEFI_PXE, loader.value
        if arch == ARCH_HTTP_X64:
            # The firmware's HTTP boot may run on any NIC: ipxe.efi brings its own drivers, but
            # snponly.efi uses the one the firmware booted from, which is what HTTP boot just used.
            return Stage.UEFI_HTTP, f"{self.http_base(server)}/{loader.value}"
        if arch == ARCH_EFI_ARM64:
            return Stage.ARM64_PXE, bootfiles.GRUB_ARM64_TFTP
        if arch == ARCH_HTTP_ARM64:
            return Stage.ARM64_HTTP, f"{self.http_base(server)}/{bootfiles.grub_http_name(server)}"
        return Stage.LEASE_ONLY, None

    # -- TFTP/HTTP: per-device files ---------------------------------------------------------------
    def render(self, client: Client, path: str) -> RenderedFile | None:
        rel = path.lstrip("/")
        parts = rel.split("/")
        if parts[0] == IPXE_SCRIPT_DIR and rel.endswith(".ipxe"):
            return self._ipxe_script(client, rel)
        if parts[0] == GRUB_DIR and rel.endswith(".cfg"):
            return self._grub_cfg(client, rel)
        if parts[0] == BOOT_DIR and len(parts) == 4:
            return self._boot_file(parts[1], parts[2], parts[3])
        binary = self.files.by_name(rel)
        if binary is not None:
            ctype = "application/efi" if binary.suffix == ".efi" else "application/octet-stream"
            return RenderedFile(path=binary, content_type=ctype)
        return None

    def _resolve(self, client: Client, path: str) -> tuple[str, Device | None]:
        mac = mac_from_path(path) or (client.mac.lower() if client.mac else "")
        return mac, self.device(mac)

    def _entry(self, device: Device | None, gate: Gate | None = None) -> BootEntry | None:
        """The device's boot entry; an arming `--with ENTRY` names another for this install."""
        if gate is not None and gate.target and gate.target in self.cfg.boot.entries:
            return self.cfg.boot.entries[gate.target]
        return device_entry(self.cfg, device)

    def _cmdline(self, device: Device | None, ks: KernelSet, report_url: str | None = None) -> str:
        cmdline = ks.cmdline
        console = self.console_of(device) if device else None
        if console and "console=" not in cmdline:
            cmdline = f"{cmdline} console={console}".strip()
        if report_url:
            # Where the installer reports `stage=complete status=ok` (docs/lifecycle.md): the
            # report ends the arming, and the next boot goes to the local disk.
            cmdline = f"{cmdline} provision.report={report_url}".strip()
        return cmdline

    def _gate(self, client: Client, mac: str, device: Device | None) -> Gate | None:
        """None: boot the entry (an unknown machine in `discover`); else the lifecycle's answer."""
        if device is None:
            return None
        return self.fleet.gate(device, key=mac)

    def _report_url(self, client: Client, mac: str, gate: Gate | None = None) -> str:
        """Where the installer reports. With a callback token (docs/security.md) the URL is
        `?token=T` alone: the token names the MAC and the install, and a URL without `&` needs no
        quoting on GRUB's `linux` line (`&` is a GRUB metacharacter) nor in iPXE's."""
        base = f"{self.http_base(self.server_for(client))}/api/v1/report"
        token = None
        if self.callback_token is not None:
            token = self.callback_token(mac, gate.install_id if gate is not None else None)
        if token:
            return f"{base}?token={token}"
        return f"{base}?mac={mac_dashes(mac)}"

    def _local(self, template: str, device: Device, mac: str, gate: Gate) -> RenderedFile:
        text = self.env.get_template(template).render(name=device.name, mac=mac, reason=gate.reason)
        return RenderedFile(content=text.encode(), content_type="text/plain")

    def _ipxe_script(self, client: Client, path: str) -> RenderedFile:
        mac, device = self._resolve(client, path)
        if not self._ours(device):
            return RenderedFile.not_found()
        gate = self._gate(client, mac, device)
        if gate is not None and not gate.allowed:
            assert device is not None
            return self._local("ipxe/local.ipxe.j2", device, mac, gate)
        entry = self._entry(device, gate)
        ks = entry.for_arch(Arch.X86_64) if entry else None
        if entry is None or ks is None:
            reason = "no boot entry" if entry is None else f"entry {entry.name!r} has no x86_64 kernel"
            text = self.env.get_template("ipxe/none.ipxe.j2").render(mac=mac, reason=reason)
            return RenderedFile(content=text.encode(), content_type="text/plain")
        base = f"{self.http_base(self.server_for(client))}/{BOOT_DIR}/{entry.name}/{Arch.X86_64.value}"
        text = self.env.get_template("ipxe/boot.ipxe.j2").render(
            name=device.name if device else "unknown",
            mac=mac,
            entry=entry.name,
            arch=Arch.X86_64.value,
            kernel_url=f"{base}/{ks.kernel.name}",
            initrd_url=f"{base}/{ks.initrd.name}" if ks.initrd else None,
            initrd_name=ks.initrd.name if ks.initrd else None,
            cmdline=self._cmdline(device, ks, self._report_url(client, mac, gate) if gate else None),
        )
        if gate is not None:
            self.fleet.handed_out(device, gate, mac, client.ip, what=entry.name)
        return RenderedFile(content=text.encode(), content_type="text/plain")

    def _grub_cfg(self, client: Client, path: str) -> RenderedFile:
        mac, device = self._resolve(client, path)
        if not mac:
            # GRUB's plain $prefix/grub.cfg from an address we cannot tie to a MAC: have GRUB ask
            # again by the MAC it booted from (grub/by-mac/<mac>.cfg).
            text = self.env.get_template("grub/redirect.cfg.j2").render()
            return RenderedFile(content=text.encode(), content_type="text/plain")
        if not self._ours(device):
            return RenderedFile.not_found()
        gate = self._gate(client, mac, device)
        if gate is not None and not gate.allowed:
            assert device is not None
            return self._local("grub/local.cfg.j2", device, mac, gate)
        entry = self._entry(device, gate)
        ks = entry.for_arch(Arch.ARM64) if entry else None
        if entry is None or ks is None:
            reason = "no boot entry" if entry is None else f"entry {entry.name!r} has no arm64 kernel"
            text = self.env.get_template("grub/none.cfg.j2").render(mac=mac or "?", reason=reason)
            return RenderedFile(content=text.encode(), content_type="text/plain")
        # Paths relative to GRUB's root: (tftp,server) after PXE, (http,server) after HTTP boot,
        # so the kernel comes the way GRUB itself came.
        base = f"/{BOOT_DIR}/{entry.name}/{Arch.ARM64.value}"
        text = self.env.get_template("grub/grub.cfg.j2").render(
            name=device.name if device else "unknown",
            mac=mac or "?",
            entry=entry.name,
            arch=Arch.ARM64.value,
            kernel_path=f"{base}/{ks.kernel.name}",
            initrd_path=f"{base}/{ks.initrd.name}" if ks.initrd else None,
            cmdline=self._cmdline(device, ks, self._report_url(client, mac, gate) if gate else None),
        )
        if gate is not None:
            self.fleet.handed_out(device, gate, mac, client.ip, what=entry.name)
        return RenderedFile(content=text.encode(), content_type="text/plain")

    def _boot_file(self, entry_name: str, arch_name: str, file_name: str) -> RenderedFile:
        entry = self.cfg.boot.entries.get(entry_name)
        try:
            arch = Arch(arch_name)
        except ValueError:
            return RenderedFile.not_found()
        ks = entry.for_arch(arch) if entry else None
        if ks is None:
            return RenderedFile.not_found()
        for candidate in (ks.kernel, ks.initrd):
            if candidate is not None and candidate.name == file_name:
                return RenderedFile(path=candidate)
        return RenderedFile.not_found()


def _replace(d: BootDecision, **kw: object) -> BootDecision:
    return dataclasses.replace(d, **kw)  # type: ignore[arg-type]


def profile_console(registry: object) -> Callable[[Device], str | None]:
    """console=ttyS0,115200 from a device's hardware profile, when it names one we know."""

    def console_of(device: Device) -> str | None:
        if not device.profile:
            return None
        try:
            profile = registry.get(device.profile)  # type: ignore[attr-defined]
        except LookupError:
            return None
        return f"{profile.console.device},{profile.console.speed}"

    return console_of


__all__ = ["BootPolicy", "ServerAddress", "Stage", "mac_from_path", "profile_console"]
