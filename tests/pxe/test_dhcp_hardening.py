"""A hostile host on the boot LAN against pxe.dhcp, with real clients served during and after.

The attacker is scapy (it builds every forged packet); the legitimate clients are ISC dhclient,
busybox udhcpc and, behind ISC dhcrelay, dhclient again. docs/netboot.md "DHCP hardening" says
what is refused and why. Addresses: 198.18.0.0/15, in namespaces these tests create.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dhcp4.codec import decode
from dhcp4.options import MessageType
from tests.pxe.test_dhcp_netns import crafted, events_in, leases_in, mac_of
from tests.support.dhcp_netns import (
    SUBNET,
    dhclient_lease,
    recv_all,
    server_config,
    socket_in,
    start_server,
    udhcpc_lease,
)
from tests.support.netns import NetNS, namespaces, veth
from tests.support.tools import require_tool

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]
SERVER = "198.18.0.1"


def stop_and_count(ns: NetNS, proc) -> dict[str, int]:
    """Stop our server; the refusal counters it printed on the way out."""
    ns.stop(proc)
    line = next(x for x in proc.stdout.read().splitlines() if '"stats"' in x)
    stats = json.loads(line)
    assert stats["stats"]["errors"] == 0, stats
    return dict(stats["refused"])


def log_lines(path: Path, needle: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if needle in line]


def random_mac(rng: random.Random) -> str:
    return "52:54:00:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


def workdir(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir(exist_ok=True)
    return tmp_path / name


class Flood:
    """Send `packets()` in a loop from a thread until stopped: the attack runs while a real client
    is being served, not only before it."""

    def __init__(self, sock, packets: Callable[[], list[tuple[bytes, tuple[str, int]]]]) -> None:
        self.sock, self.packets, self.sent = sock, packets, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for data, dest in self.packets():
                self.sock.sendto(data, dest)
                self.sent += 1
            time.sleep(0.01)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_forged_declines_lock_nobody_out(boot_lan, tmp_path):
    """DECLINE from any MAC used to quarantine any address for 600 s (49 of 50 free addresses
    with 50 packets; one packet locked a reserved device out). Now only the lease's owner (chaddr
    and client-id) is heard, and a reserved address is never quarantined."""
    require_tool("dhclient")
    require_tool("busybox")
    lan = boot_lan(dev=None, other=None, attacker="198.18.0.66/24")
    dev_mac, other_mac = mac_of(lan["dev"], "e0"), mac_of(lan["other"], "e0")
    cfg = server_config(tmp_path, reservations=[{"mac": dev_mac, "ip": "198.18.0.10", "hostname": "dev1"}])
    log = tmp_path / "server.log"
    proc = start_server(lan.server, cfg, log)
    assert dhclient_lease(lan["dev"], "e0", workdir(tmp_path, "dev")) == "198.18.0.10"
    other_ip = udhcpc_lease(lan["other"], "e0", workdir(tmp_path, "other"))
    rng = random.Random(7)
    pool = [f"198.18.0.{i}" for i in range(100, 200)]

    def forged() -> list[tuple[bytes, tuple[str, int]]]:
        sid = ("server_id", SERVER)
        out = [crafted("decline", random_mac(rng), rng.randrange(1 << 32), [("requested_addr", ip), sid])
               for ip in pool]  # fmt: skip
        # the lease holders' own MACs: the reserved device (no quarantine whatever the client-id)
        # and udhcpc's with a client-id that is not the one its lease carries
        out.append(crafted("decline", dev_mac, 1, [("requested_addr", "198.18.0.10"), sid]))
        out.append(crafted("decline", other_mac, 2, [("requested_addr", other_ip), sid,
                                                      ("client_id", b"\x01forged")]))  # fmt: skip
        return [(p, ("255.255.255.255", 67)) for p in out]

    with socket_in(lan["attacker"], "e0") as sock, Flood(sock, forged) as flood:
        time.sleep(0.3)
        # during: a new client and the reserved device (from scratch) are served as before
        (tmp_path / "dev" / "dhclient.leases").unlink()
        assert dhclient_lease(lan["dev"], "e0", workdir(tmp_path, "dev")) == "198.18.0.10"
        assert udhcpc_lease(lan["other"], "e0", workdir(tmp_path, "other")) == other_ip
    assert flood.sent >= 2 * 102
    # after: nothing was quarantined, both still get their addresses
    leases = leases_in(cfg["db"])
    assert "declined" not in {state for _, state in leases.values()}, leases
    assert leases[dev_mac] == ("198.18.0.10", "bound") and leases[other_mac] == (other_ip, "bound")
    assert udhcpc_lease(lan["dev"], "e0", workdir(tmp_path, "dev")) == "198.18.0.10"
    assert udhcpc_lease(lan["other"], "e0", workdir(tmp_path, "other")) == other_ip
    declines = events_in(cfg["db"], "dhcp.decline")
    assert declines and {mac for _, mac, _, _ in declines} == {dev_mac}  # forged MACs write nothing
    assert all('"quarantined":false' in d for *_, d in declines)
    refused = stop_and_count(lan.server, proc)
    assert refused["decline_refused"] >= flood.sent - refused.get("decline_reserved", 0) - 1
    assert refused["decline_reserved"] >= 2
    assert len(log_lines(log, "ignored DHCPDECLINE")) == 1  # one line a minute, not one per packet
    assert len(log_lines(log, "declined its reserved 198.18.0.10")) == 1


def test_blind_requests_get_silence_and_naks_only_where_rfc2131_says(dhcp_net, tmp_path):
    """RFC 2131 §4.3.2: INIT-REBOOT with no record → silent (a blind REQUEST used to be ACKed for
    the whole lease time); wrong network or someone else's address → NAK. RENEWING/REBINDING
    (ciaddr) with no record → silent too."""
    require_tool("dhclient")
    cli = dhcp_net.client
    proc = dhcp_net.start()
    held = dhclient_lease(cli, "c0", tmp_path)
    mac = mac_of(cli, "c0")
    rng = random.Random(3)
    blind = {random_mac(rng): f"198.18.0.{150 + i}" for i in range(20)}
    with socket_in(cli, "c0") as sock:
        for i, (stranger, ip) in enumerate(blind.items()):
            sock.sendto(
                crafted("request", stranger, 100 + i, [("requested_addr", ip)]), ("255.255.255.255", 67)
            )
        assert recv_all(sock, 2) == []  # silence, not an ACK and not a NAK
        # someone else's address (dhclient holds it), and an address from another network: NAK
        stranger = random_mac(rng)
        for xid, ip in ((200, held), (201, "198.18.5.5")):
            sock.sendto(crafted("request", stranger, xid, [("requested_addr", ip)]), ("255.255.255.255", 67))
            ((data, _),) = recv_all(sock, 3, want=1)
            nak = decode(data)
            assert nak.message_type is MessageType.NAK and nak.xid == xid
        # RENEWING (unicast from ciaddr) and REBINDING (broadcast) with no record: silent
        cli.run(["ip", "addr", "add", "198.18.0.170/24", "dev", "c0"])
        renew = crafted("request", stranger, 300, [], ciaddr="198.18.0.170", flags=0)
        sock.sendto(renew, (SERVER, 67))
        sock.sendto(crafted("request", stranger, 301, [], ciaddr="198.18.0.170"), ("255.255.255.255", 67))
        assert recv_all(sock, 2) == []
        cli.run(["ip", "addr", "del", "198.18.0.170/24", "dev", "c0"])
    leases = leases_in(dhcp_net.db)
    assert set(leases) == {mac} and leases[mac] == (held, "bound")
    ignored = [d for _, m, _, d in events_in(dhcp_net.db, "dhcp.ignored") if m in blind]
    assert len(ignored) == 20 and all("no record" in d for d in ignored)
    # dhclient's own INIT-REBOOT (its lease file names `held`): the server has the record → ACK
    assert dhclient_lease(cli, "c0", tmp_path) == held
    reboot_acks = [d for _, m, _, d in events_in(dhcp_net.db, "dhcp.ack") if m == mac]
    assert '"state":"init-reboot"' in reboot_acks[-1]
    # a server that lost its records stays silent to that INIT-REBOOT; dhclient then falls back
    # to DISCOVER and is served (the coexistence RFC 2131 §4.3.2 asks for)
    dhcp_net.server.stop(proc)
    fresh = server_config(tmp_path, db=str(tmp_path / "fresh.db"))
    dhcp_net.start(fresh)
    assert dhclient_lease(cli, "c0", tmp_path, timeout=40).startswith("198.18.0.")
    kinds = [(k, d) for k, m, _, d in events_in(fresh["db"]) if m == mac]
    assert any(k == "dhcp.ignored" and "no record" in d for k, d in kinds), kinds
    assert any(k == "dhcp.ack" and '"state":"selecting"' in d for k, d in kinds), kinds


def test_relay_fields_from_a_directly_attached_host_are_refused(boot_lan, tmp_path):
    """giaddr, 82.5 (RFC 3527) and 82.11 (RFC 5107) are believed only from the subnet's listed
    relays: the attacker gets no lease from the relayed subnet and we never send to the victim's
    port 67; the real relay (ISC dhcrelay) keeps serving its client during and after."""
    dhcrelay = require_tool("dhcrelay")
    require_tool("dhclient")
    lan = boot_lan(relay="198.18.0.2/24", attacker="198.18.0.66/24", victim="198.18.0.77/24")
    relay, attacker, victim = lan["relay"], lan["attacker"], lan["victim"]
    relayed = {"network": "198.18.1.0/24", "pools": [["198.18.1.50", "198.18.1.60"]],
               "router": "198.18.1.1", "relays": ["198.18.0.2"]}  # fmt: skip
    lan.server.run(["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2"])
    cfg = server_config(tmp_path, subnets=[SUBNET, relayed])
    log = tmp_path / "server.log"
    proc = start_server(lan.server, cfg, log)
    with namespaces(1, prefix="behind") as (cli,):
        veth(relay, "r0", cli, "c0", "198.18.1.1/24", None)
        relay.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        relay.popen([dhcrelay, "-d", "-4", "-a", "-id", "r0", "-iu", "e0", SERVER], text=True)
        time.sleep(1.0)
        ip = dhclient_lease(cli, "c0", workdir(tmp_path, "cli"))
        assert ip.startswith("198.18.1.")
        link_selection = bytes([5, 4, 198, 18, 1, 0])
        override = bytes([11, 4, 198, 18, 0, 77])
        rng = random.Random(5)

        def forged() -> list[tuple[bytes, tuple[str, int]]]:
            m = random_mac(rng)
            rai = [("relay_agent_information", link_selection + override)]
            out = [
                crafted("discover", m, 1, [], giaddr="198.18.1.1", flags=0),  # the relayed subnet
                crafted("discover", m, 2, [], giaddr="198.18.0.77", flags=0),  # the victim's port 67
                crafted("discover", m, 3, rai, giaddr="198.18.0.66", flags=0),  # itself, with 82.5
                crafted("request", m, 4, [("requested_addr", "198.18.1.55")], giaddr="198.18.0.77"),
            ]
            return [(p, (SERVER, 67)) for p in out] + [(p, ("255.255.255.255", 67)) for p in out]

        with (
            socket_in(victim, "e0", port=67) as victim_sock,
            socket_in(attacker, "e0") as sock,
            Flood(sock, forged) as flood,
        ):
            time.sleep(0.3)
            (tmp_path / "cli" / "dhclient.leases").unlink()
            cli.run(["ip", "addr", "flush", "dev", "c0"])
            assert dhclient_lease(cli, "c0", workdir(tmp_path, "cli")) == ip  # during the flood
            time.sleep(0.3)
            # the victim hears the attacker's broadcasts, but never a word from us
            assert [a for _, a in recv_all(victim_sock, 0.5) if a[0] == SERVER] == []
        with socket_in(attacker, "e0") as sock:
            assert recv_all(sock, 1.0) == []  # nothing came back to the attacker either
            # a directly attached host's option 82 (82.5 naming the relayed subnet, 82.11 naming
            # the victim) is not believed: it is served from its own link, by us
            m = random_mac(rng)
            sock.sendto(crafted("discover", m, 9, [("relay_agent_information", link_selection + override)]),
                        ("255.255.255.255", 67))  # fmt: skip
            ((data, _),) = recv_all(sock, 3, want=1)
            offer = decode(data)
            assert offer.message_type is MessageType.OFFER
            assert offer.yiaddr.startswith("198.18.0.") and offer.ip_option(54) == SERVER
        assert flood.sent >= 2 * 8
        # after: the relay's client renews and starts over as before
        (tmp_path / "cli" / "dhclient.leases").unlink()
        assert dhclient_lease(cli, "c0", workdir(tmp_path, "cli")) == ip
    leases = leases_in(cfg["db"])
    assert [ip for ip, _ in leases.values() if ip.startswith("198.18.1.")] == [ip]
    refused = stop_and_count(lan.server, proc)
    assert refused["relay_not_listed"] >= flood.sent
    assert refused["option82_from_client"] == 1
    assert len(log_lines(log, "relayed from 198.18.0.66")) == 1  # logged once, not per packet
    assert not log_lines(log, "relayed from 198.18.0.2 ")  # the real relay is never refused


def test_pool_exhaustion_is_one_warning_a_minute_and_counted(dhcp_net, tmp_path):
    """Two addresses, taken by a hostile host's DORA, then a DISCOVER flood: one warning line for
    the subnet (not one per DISCOVER), a counter; the reserved device is served throughout and a
    freed address goes to the next client."""
    require_tool("busybox")
    cli = dhcp_net.client
    mac = mac_of(cli, "c0")
    small = {**SUBNET, "pools": [["198.18.0.100", "198.18.0.101"]]}
    proc = dhcp_net.start(subnets=[small], reservations=[{"mac": mac, "ip": "198.18.0.10"}])
    log = tmp_path / "server.log"
    rng = random.Random(11)
    with socket_in(cli, "c0") as sock:
        holders = {}
        for xid in (1, 2):  # the hostile host takes the pool with two full DORAs
            m = random_mac(rng)
            sock.sendto(crafted("discover", m, xid, []), ("255.255.255.255", 67))
            ip = decode(recv_all(sock, 3, want=1)[0][0]).yiaddr
            sock.sendto(crafted("request", m, xid, [("requested_addr", ip), ("server_id", SERVER)]),
                        ("255.255.255.255", 67))  # fmt: skip
            assert decode(recv_all(sock, 3, want=1)[0][0]).message_type is MessageType.ACK
            holders[m] = ip
        for xid in range(100, 200):
            sock.sendto(crafted("discover", random_mac(rng), xid, []), ("255.255.255.255", 67))
        assert recv_all(sock, 1.5) == []
        assert udhcpc_lease(cli, "c0", tmp_path) == "198.18.0.10"  # during: the reserved device
        for xid in range(200, 250):
            sock.sendto(crafted("discover", random_mac(rng), xid, []), ("255.255.255.255", 67))
        time.sleep(0.5)
        warned = log_lines(log, "pool of 198.18.0.0/24 exhausted")
        assert len(warned) == 1 and "2 addresses: 2 leased" in warned[0], warned
        # after: one holder releases (from its address, RFC 2131 §4.4.6); the next client gets it
        m, ip = next(iter(holders.items()))
        cli.run(["ip", "addr", "add", f"{ip}/24", "dev", "c0"])
        sock.sendto(crafted("release", m, 3, [("server_id", SERVER)], ciaddr=ip, flags=0), (SERVER, 67))
        time.sleep(0.3)
        cli.run(["ip", "addr", "del", f"{ip}/24", "dev", "c0"])
        sock.sendto(crafted("discover", random_mac(rng), 300, []), ("255.255.255.255", 67))
        assert [decode(d).yiaddr for d, _ in recv_all(sock, 3, want=1)] == [ip]
    assert udhcpc_lease(cli, "c0", tmp_path) == "198.18.0.10"
    refused = stop_and_count(dhcp_net.server, proc)
    assert refused["pool_exhausted 198.18.0.0/24"] == 150
    assert len(log_lines(log, "exhausted")) == 1
