"""Run pxe.dhcp in its own process for the real-peer tests (tests/support/dhcp_netns.py starts it).

    python -m tests.support.dhcp_server '{"interfaces": ["s0"], "subnets": [...], "db": "/tmp/x.db"}'

Config keys: mode (authoritative|proxy), interfaces, subnets (Subnet fields; pools as [[a,b]]),
reservations, db (SQLite path for provision.store.sqlite; absent: in memory), synchronous, authoritative,
bootfile / bootfile_uefi / bootfile_http / onie_url / next_server: a static policy; ignore_macs:
macs the policy says "not ours" for; hostname_prefix. Prints READY once the sockets are bound, and
one JSON line per event when "print_events" is true.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from onie.discovery import answer_options
from pxe.dhcp import DhcpServerConfig, Mode, Reservation, Subnet, start_dhcp
from pxe.policy import BootDecision, Client, Event


class StaticPolicy:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.ignore = {m.lower() for m in cfg.get("ignore_macs", [])}

    def decide(self, client: Client) -> BootDecision | None:
        if client.mac in self.ignore:
            return None
        bootfile = self.cfg.get("bootfile")
        if client.is_http_boot and self.cfg.get("bootfile_http"):
            bootfile = self.cfg["bootfile_http"]
        elif client.arch in (6, 7, 10, 11) and self.cfg.get("bootfile_uefi"):
            bootfile = self.cfg["bootfile_uefi"]
        prefix = self.cfg.get("hostname_prefix")
        return BootDecision(
            hostname=f"{prefix}{client.mac.replace(':', '')}" if prefix else None,
            bootfile=bootfile,
            next_server=self.cfg.get("next_server"),
            extra_options=answer_options(self.cfg["onie_url"]) if self.cfg.get("onie_url") else {},
            note="static test policy",
        )

    def render(self, client: Client, path: str):
        return None


def build_config(cfg: dict) -> DhcpServerConfig:
    subnets = tuple(
        Subnet(
            network=s["network"],
            pools=tuple(tuple(p) for p in s.get("pools", [])),
            router=s.get("router"),
            dns=tuple(s.get("dns", [])),
            domain=s.get("domain"),
            lease_time=s.get("lease_time", 3600),
            server_ip=s.get("server_ip"),
            interface=s.get("interface"),
            relays=tuple(s.get("relays", [])),
        )
        for s in cfg.get("subnets", [])
    )
    return DhcpServerConfig(
        interfaces=tuple(cfg["interfaces"]),
        subnets=subnets,
        reservations=tuple(Reservation(**r) for r in cfg.get("reservations", [])),
        mode=Mode(cfg.get("mode", "authoritative")),
        authoritative=cfg.get("authoritative", True),
        decline_quarantine=cfg.get("decline_quarantine", 600.0),
        offer_timeout=cfg.get("offer_timeout", 30.0),
    )


async def main(cfg: dict) -> None:
    store = None
    if cfg.get("db"):
        from provision.store.sqlite import Store

        store = Store(cfg["db"], synchronous=cfg.get("synchronous", "FULL"))

    def sink(event: Event) -> None:
        if store is not None:
            store.add_event(event)
        if cfg.get("print_events"):
            print(
                json.dumps({"kind": event.kind, "mac": event.mac, "ip": event.ip, **event.detail}), flush=True
            )

    server = await start_dhcp(build_config(cfg), StaticPolicy(cfg), store, sink)
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    print(json.dumps({"stats": server.stats, "refused": server.handler.refusals.counts}), flush=True)
    if store is not None:
        store.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
