"""Building OniePolicy from lab.yml: its validated `onie:` section (provision.config.lab), our HTTP
address per link, and switch ASICs from the hardware profiles."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from provision.onie.policy import HTTP_DEFAULT_PORT, OniePolicy, settings_from_section
from provision.onie.progress import KIND_DISCOVERED
from pxe.policy import Client, Event

# -- building from lab.yml ---------------------------------------------------------------------------


class _LinkUrl:
    """`http://<our address on the client's link>[:port]`, as serve's BootPolicy picks it."""

    def __init__(self, interfaces: tuple[str, ...], http_port: int):
        self.interfaces = interfaces
        self.http_port = http_port
        # Read now, outside the server's event loop: pyroute2's IPRoute runs its own loop and
        # refuses to start inside a running one (seen under `provision serve`).
        self._addrs = self._read()

    def _read(self) -> list[tuple[ipaddress.IPv4Network, str]]:
        from provision.server import hostnet

        found = []
        for ifname in self.interfaces:
            try:
                i = hostnet.interface_ipv4(ifname)
            except (hostnet.NetInfoError, RuntimeError, OSError):
                continue
            found.append((i.network, str(i.address)))
        return found

    def _addresses(self) -> list[tuple[ipaddress.IPv4Network, str]]:
        return self._addrs

    def __call__(self, client: Client | None) -> str | None:
        addrs = self._addresses()
        if not addrs:
            return None
        server = addrs[0][1]
        for hint in (client.relay, client.ip) if client else ():
            if not hint:
                continue
            try:
                addr = ipaddress.IPv4Address(hint)
            except ValueError:
                continue
            server = next((s for net, s in addrs if addr in net), server)
            break
        return (
            f"http://{server}" if self.http_port == HTTP_DEFAULT_PORT else f"http://{server}:{self.http_port}"
        )


def profile_asics() -> dict[str, str]:
    """ONIE platform → switch ASIC from the hardware profiles (for the `<arch>-<asic>` name)."""
    from provision.config.profiles import ProfileRegistry

    return {
        p.onie_platform: p.switch_asic for p in ProfileRegistry().all() if p.onie_platform and p.switch_asic
    }


def policy_from_lab(cfg) -> OniePolicy:  # noqa: ANN001 - provision.config.lab.LabConfig
    """The policy `provision serve` hands ONIE clients to. Call `attach(events=..., mac_of_ip=...)`
    once the server's event sink exists, or onie.discovered/installer.fetched are dropped."""
    settings = settings_from_section(cfg.onie)
    asics = profile_asics()
    return OniePolicy(
        settings,
        inventory=cfg.inventory,
        url_base=_LinkUrl(tuple(cfg.interfaces), cfg.http_port),
        asic_of_platform=asics.get,
    )


def identity_recorder(store) -> Callable[[Event], None]:  # noqa: ANN001 - provision.store.sqlite.Store
    """An event sink to chain after the store's: `onie.discovered` → `store.upsert_device(mac,
    serial=, platform=, identity=)`, so the devices table names each switch's serial and platform.
    Everything else passes by. (The identity stays derivable from events: this is a convenience
    index, kept up to date by the same events.)"""

    def record(event: Event) -> None:
        if event.kind != KIND_DISCOVERED or not event.mac:
            return
        detail = dict(event.detail)
        store.upsert_device(
            event.mac, serial=detail.get("serial"), platform=detail.get("platform"), identity=detail
        )

    return record
