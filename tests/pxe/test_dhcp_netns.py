"""pxe.dhcp against real clients (ISC dhclient, busybox udhcpc, dhcrelay, dnsmasq) in namespaces.

Addresses: 198.18.0.0/15 only; everything lives in namespaces these tests create.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sqlite3
import sys
import time

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from dhcp4.codec import decode, mac_to_chaddr
from dhcp4.options import MessageType
from pxe.dhcp import DhcpServerConfig, DhcpStartError, start_dhcp
from tests.support.dhcp_netns import (
    ROOT,
    SUBNET,
    dhclient_lease,
    dhclient_release,
    last_report,
    recv_all,
    server_config,
    socket_in,
    start_server,
    udhcpc_lease,
)
from tests.support.netns import namespaces, veth
from tests.support.tools import require_root, require_tool

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]


def leases_in(db) -> dict[str, tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        return {mac: (ip, state) for ip, mac, state in con.execute("SELECT ip, mac, state FROM leases")}
    finally:
        con.close()


def events_in(db, kind=None, settle: float = 0.6) -> list[tuple]:
    """Events in the store. A running server writes events within its flush interval (0.25 s)
    rather than with each reply, so wait that long first; 0 when the server has stopped."""
    time.sleep(settle)
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT kind, mac, ip, detail FROM events ORDER BY id").fetchall()
    finally:
        con.close()
    return [r for r in rows if kind is None or r[0] == kind]


def mac_of(ns, ifname) -> str:
    return ns.run(["cat", f"/sys/class/net/{ifname}/address"]).stdout.strip()


def crafted(mtype: str, mac: str, xid: int, options: list, **bootp) -> bytes:
    """A client packet built by scapy (the independent encoder)."""
    bootp.setdefault("flags", 0x8000)
    return bytes(
        BOOTP(op=1, xid=xid, chaddr=mac_to_chaddr(mac), **bootp)
        / DHCP(options=[("message-type", mtype), *options, "end"])
    )


def test_dhclient_and_udhcpc_get_leases_kept_across_kill9(dhcp_net, tmp_path):
    require_tool("dhclient")
    require_tool("busybox")
    cli = dhcp_net.client
    proc = dhcp_net.start()
    ip1 = dhclient_lease(cli, "c0", tmp_path)
    assert ip1.startswith("198.18.0.1") and 100 <= int(ip1.split(".")[-1]) <= 199
    mac = mac_of(cli, "c0")
    assert leases_in(dhcp_net.db)[mac] == (ip1, "bound")
    seen = last_report(tmp_path, "dhclient")
    assert seen == {"router": "198.18.0.1", "mask": "255.255.255.0", "dns": "198.18.0.1",
                    "domain": "lab.test", "lease": "3600"}  # fmt: skip
    # udhcpc from the same interface (same MAC) gets the same address
    assert udhcpc_lease(cli, "c0", tmp_path) == ip1
    assert last_report(tmp_path, "udhcpc") == seen
    # kill -9: no chance to flush anything; the lease must already be on disk
    dhcp_net.server.stop(proc, sig=signal.SIGKILL)
    assert leases_in(dhcp_net.db)[mac] == (ip1, "bound")
    dhcp_net.start(dhcp_net.cfg)
    assert udhcpc_lease(cli, "c0", tmp_path) == ip1
    (tmp_path / "dhclient.leases").unlink()  # forget client-side state: the server remembers
    assert dhclient_lease(cli, "c0", tmp_path) == ip1
    kinds = [k for k, *_ in events_in(dhcp_net.db)]
    # One event per packet, its outcome: a lease is an offer and an ack (docs/netboot.md "Events")
    assert {"dhcp.offer", "dhcp.ack"} <= set(kinds) and "dhcp.discover" not in kinds


def test_release_frees_and_the_same_client_gets_the_same_ip(dhcp_net, tmp_path):
    require_tool("dhclient")
    cli = dhcp_net.client
    dhcp_net.start()
    ip = dhclient_lease(cli, "c0", tmp_path)
    # dhclient -r sends its RELEASE from the leased address, so the interface must hold it
    cli.run(["ip", "addr", "add", f"{ip}/24", "dev", "c0"])
    dhclient_release(cli, "c0", tmp_path)
    for _ in range(50):
        if leases_in(dhcp_net.db).get(mac_of(cli, "c0"), ("", ""))[1] == "released":
            break
        time.sleep(0.1)
    assert leases_in(dhcp_net.db)[mac_of(cli, "c0")] == (ip, "released")
    assert events_in(dhcp_net.db, "dhcp.release")
    cli.run(["ip", "addr", "flush", "dev", "c0"])
    (tmp_path / "dhclient.leases").unlink(missing_ok=True)
    assert dhclient_lease(cli, "c0", tmp_path) == ip


def test_decline_quarantines_the_address(dhcp_net, tmp_path):
    cli = dhcp_net.client
    cli.run(["ip", "addr", "add", "198.18.0.2/24", "dev", "c0"])
    dhcp_net.start(subnets=[{**SUBNET, "pools": [["198.18.0.100", "198.18.0.101"]]}])
    with socket_in(cli, "c0") as sock:
        mac = "52:54:00:de:c1:01"
        sock.sendto(crafted("discover", mac, 1, []), ("255.255.255.255", 67))
        offer = decode(recv_all(sock, 3, want=1)[0][0])
        bad = offer.yiaddr
        sock.sendto(
            crafted("request", mac, 1, [("requested_addr", bad), ("server_id", "198.18.0.1")]),
            ("255.255.255.255", 67),
        )
        assert decode(recv_all(sock, 3, want=1)[0][0]).message_type is MessageType.ACK
        sock.sendto(
            crafted("decline", mac, 2, [("requested_addr", bad), ("server_id", "198.18.0.1")]),
            ("255.255.255.255", 67),
        )
        # two other clients: only the other address is left for them, then none
        offers = []
        for i, other in enumerate(("52:54:00:de:c1:02", "52:54:00:de:c1:03")):
            sock.sendto(crafted("discover", other, 10 + i, []), ("255.255.255.255", 67))
            got = [decode(d) for d, _ in recv_all(sock, 2)]
            offers += [p.yiaddr for p in got if p.xid == 10 + i]
        assert bad not in offers and len(offers) == 1
        assert leases_in(dhcp_net.db)[mac] == (bad, "declined")
        # and the decliner itself gets the other address, never the declined one again
        sock.sendto(crafted("discover", mac, 20, []), ("255.255.255.255", 67))
        again = [decode(d).yiaddr for d, _ in recv_all(sock, 2) if decode(d).xid == 20]
        assert bad not in again


def test_relay_with_dhcrelay_and_option82_echoed_last(tmp_path):
    require_root()
    dhcrelay = require_tool("dhcrelay")
    require_tool("dhclient")
    with namespaces(3) as (srv, relay, cli):
        veth(srv, "s0", relay, "r1", "198.18.0.1/24", "198.18.0.2/24")
        veth(relay, "r0", cli, "c0", "198.18.1.1/24", None)
        relay.run(["sysctl", "-w", "net.ipv4.ip_forward=1"])
        srv.run(["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2"])
        relayed = {
            "network": "198.18.1.0/24",
            "pools": [["198.18.1.50", "198.18.1.60"]],
            "router": "198.18.1.1",
            "relays": ["198.18.0.2"],  # dhcrelay's address towards us: the source of what it relays
        }
        cfg = server_config(tmp_path, subnets=[SUBNET, relayed])
        start_server(srv, cfg, tmp_path / "server.log")
        # -a: add option 82 (circuit-id = the interface name); dhcrelay strips it from replies
        relay.popen([dhcrelay, "-d", "-4", "-a", "-id", "r0", "-iu", "r1", "198.18.0.1"], text=True)
        time.sleep(1.0)
        ip = dhclient_lease(cli, "c0", tmp_path)
        assert ip.startswith("198.18.1.") and 50 <= int(ip.split(".")[-1]) <= 60
        acks = [d for k, m, i, d in events_in(cfg["db"], "dhcp.ack")]
        assert any('"relay":"198.18.1.1"' in d and f'"circuit_id":"{b"r0".hex()}"' in d for d in acks), acks

    # Byte-level check of the echo with a crafted relayed packet (scapy), from a relay port 67.
    with namespaces(2) as (srv, relay):
        veth(srv, "s0", relay, "r1", "198.18.0.1/24", "198.18.0.2/24")
        relay.run(["ip", "addr", "add", "198.18.1.1/32", "dev", "r1"])
        srv.run(["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2"])
        cfg = server_config(tmp_path, subnets=[SUBNET, relayed], db=str(tmp_path / "second.db"))
        start_server(srv, cfg, tmp_path / "server2.log")
        with socket_in(relay, None, port=67) as sock:
            rai = bytes([1, 6]) + b"Eth1/7" + bytes([2, 4]) + b"rk42"
            pkt = crafted(
                "discover",
                "52:54:00:00:82:01",
                77,
                [("relay_agent_information", rai)],
                giaddr="198.18.1.1",
                hops=1,
                flags=0,
            )
            sock.sendto(pkt, ("198.18.0.1", 67))
            ((data, addr),) = recv_all(sock, 3, want=1)
            assert addr[1] == 67
            reply = decode(data)
            assert reply.yiaddr.startswith("198.18.1.") and reply.giaddr == "198.18.1.1"
            assert list(reply.options)[-1] == 82 and reply.options[82] == rai
            assert data.rstrip(b"\0").endswith(bytes([82, len(rai)]) + rai + b"\xff")
            # scapy, the oracle, agrees on the last option
            opts = [o for o in BOOTP(data)[DHCP].options if isinstance(o, tuple)]
            assert opts[-1][0] == "relay_agent_information" and opts[-1][1] == rai


def test_proxydhcp_next_to_dnsmasq(tmp_path):
    """dnsmasq hands out addresses; we only add boot information (BIOS now, UEFI via 4011)."""
    require_root()
    require_tool("dnsmasq")
    with namespaces(4) as (br, dns, prx, cli):
        br.run(["ip", "link", "add", "br0", "type", "bridge"])
        br.run(["ip", "link", "set", "br0", "up"])
        for ns, port, ifname, addr in ((dns, "b1", "d0", "198.18.0.1/24"), (prx, "b2", "s0", "198.18.0.3/24"),
                                       (cli, "b3", "c0", None)):  # fmt: skip
            veth(br, port, ns, ifname, None, addr)
            br.run(["ip", "link", "set", port, "master", "br0"])
        dnsmasq = ["dnsmasq", "--no-daemon", "--port=0", "--interface=d0", "--bind-interfaces", "--conf-file=/dev/null",
                   "--dhcp-range=198.18.0.50,198.18.0.60,1h", "--leasefile-ro", "--pid-file=", "--log-facility=-"]  # fmt: skip
        with open(tmp_path / "dnsmasq.log", "w") as log:  # dnsmasq holds its own copy of the fd
            dns.popen(dnsmasq, text=True, stdout=log, stderr=log)
        cfg = {"mode": "proxy", "interfaces": ["s0"], "subnets": [{"network": "198.18.0.0/24", "interface": "s0"}],
               "db": str(tmp_path / "proxy.db"), "bootfile": "undionly.kpxe", "bootfile_uefi": "ipxe.efi"}  # fmt: skip
        start_server(prx, cfg, tmp_path / "proxy.log")
        time.sleep(0.5)
        with socket_in(cli, "c0") as sock:
            mac = "52:54:00:bb:00:01"
            guid = bytes([0]) + bytes(range(16))
            pxe_opts = [
                ("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001"),
                (93, b"\x00\x00"),
                (97, guid),
            ]
            for _ in range(3):
                sock.sendto(crafted("discover", mac, 0x1111, pxe_opts), ("255.255.255.255", 67))
                replies = [decode(d) for d, _ in recv_all(sock, 2, want=2)]
                if len(replies) == 2:
                    break
            by_server = {p.ip_option(54): p for p in replies if p.xid == 0x1111}
            assert set(by_server) == {"198.18.0.1", "198.18.0.3"}, replies
            address, boot = by_server["198.18.0.1"], by_server["198.18.0.3"]
            assert address.yiaddr.startswith("198.18.0.") and address.file == b""
            assert boot.yiaddr == "0.0.0.0" and boot.file == b"undionly.kpxe" and boot.siaddr == "198.18.0.3"
            assert (
                boot.options[60] == b"PXEClient"
                and boot.options[43] == bytes([6, 1, 8])
                and boot.options[97] == guid
            )
            # UEFI: the proxy offer sends it to port 4011 (no 43, no file), where it gets the file
            uefi = [
                ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003000"),
                (93, b"\x00\x07"),
                (97, guid),
            ]
            sock.sendto(crafted("discover", "52:54:00:bb:00:02", 0x2222, uefi), ("255.255.255.255", 67))
            got = {decode(d).ip_option(54): decode(d) for d, _ in recv_all(sock, 2, want=2)}
            offer = got["198.18.0.3"]
            assert offer.file == b"" and 43 not in offer.options and offer.options[60] == b"PXEClient"
            lease_ip = got["198.18.0.1"].yiaddr
            cli.run(["ip", "addr", "add", f"{lease_ip}/24", "dev", "c0"])
            sock.sendto(
                crafted("request", "52:54:00:bb:00:02", 0x3333, uefi, ciaddr=lease_ip, flags=0),
                ("198.18.0.3", 4011),
            )
            ((data, src),) = recv_all(sock, 3, want=1)
            ack = decode(data)
            assert src == ("198.18.0.3", 4011)
            assert ack.message_type is MessageType.ACK and ack.file == b"ipxe.efi" and ack.yiaddr == "0.0.0.0"
            assert ack.options[97] == guid


def _garbage(rng: random.Random) -> list[bytes]:
    mac = "52:54:00:66:66:66"
    good = crafted("discover", mac, 5, [("vendor_class_id", b"PXEClient:Arch:00000")])
    cases = [
        b"",
        b"\x01",
        good[:100],
        good[:239],
        good[:236] + b"\x00\x00\x00\x00" + good[240:],  # bad cookie
        good[:240] + bytes([60, 200]) + b"short",  # length past the end
        good[:240] + bytes([53, 1, 1]) + bytes([52, 1, 3]),  # overload with empty file/sname
        good[:240] + bytes([53, 1, 1]) + bytes([52, 1, 77]),  # overload with a bad value
        good[:240]
        + bytes([53, 1, 1])
        + b"".join(bytes([224, 255]) + bytes(255) for _ in range(200)),  # huge options
        good[:2] + b"\x00" + good[3:],  # zero-length chaddr
        good[:2] + b"\xff" + good[3:],  # hlen 255
        good[:240] + bytes([53, 1, 99]),  # unknown message type
        good[:240] + bytes([53, 0]),  # empty message type
        good[:240] + bytes([53, 1, 3, 50, 3, 1, 2, 3, 54, 1, 1]),  # short addresses
        good[:240] + bytes([53, 1, 1, 82, 3, 1, 9, 0]),  # option 82 sub-option overflow
        good[:240] + bytes([53, 1, 1, 93, 1, 0, 97, 3, 0, 1, 2, 77, 5, 9, 1, 2]),  # broken 93/97/77
        b"\x02" + good[1:],  # a BOOTREPLY sent to the server
    ]
    cases += [rng.randbytes(rng.randrange(1, 1500)) for _ in range(300)]
    cases += [
        good[:240] + bytes([53, 1, rng.randrange(1, 9)]) + rng.randbytes(rng.randrange(0, 600))
        for _ in range(300)
    ]
    return cases


def test_garbage_never_stops_the_server(dhcp_net, tmp_path):
    require_tool("busybox")
    srv, cli = dhcp_net.server, dhcp_net.client
    proc = dhcp_net.start()
    with socket_in(cli, "c0") as sock:
        for data in _garbage(random.Random(1)):
            sock.sendto(data, ("255.255.255.255", 67))
    assert proc.poll() is None
    ip = udhcpc_lease(cli, "c0", tmp_path)
    assert ip.startswith("198.18.0.")
    assert proc.poll() is None
    srv.stop(proc)
    stats = [line for line in proc.stdout.read().splitlines() if '"stats"' in line]
    assert stats and '"errors": 0' in stats[0], stats
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_unknown_machine_is_ignored_but_recorded(dhcp_net, tmp_path):
    require_tool("busybox")
    cli = dhcp_net.client
    mac = mac_of(cli, "c0")
    dhcp_net.start(ignore_macs=[mac])
    r = cli.run(
        ["busybox", "udhcpc", "-f", "-q", "-n", "-t", "2", "-T", "1", "-i", "c0", "-s", "/bin/true"],
        check=False,
    )
    assert r.returncode != 0  # no lease: not ours
    ignored = events_in(dhcp_net.db, "dhcp.ignored")
    assert ignored and ignored[0][1] == mac


def test_unicast_reply_to_client_without_broadcast_flag(dhcp_net, tmp_path):
    """iPXE leaves the broadcast flag clear: the reply goes unicast to yiaddr at chaddr."""
    srv, cli = dhcp_net.server, dhcp_net.client
    mac = mac_of(cli, "c0")
    dhcp_net.start()
    # The client side owns the offered address range so the kernel accepts a unicast to it.
    cli.run(["ip", "addr", "add", "198.18.0.100/24", "dev", "c0"])
    with socket_in(cli, "c0") as sock:
        opts = [("user_class", b"iPXE"), ("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001"),
                ("requested_addr", "198.18.0.100")]  # fmt: skip
        sock.sendto(crafted("discover", mac, 0x4242, opts, flags=0), ("255.255.255.255", 67))
        ((data, _),) = recv_all(sock, 3, want=1)
        offer = decode(data)
        assert offer.yiaddr == "198.18.0.100" and offer.flags == 0
        neigh = srv.run(["ip", "neigh", "show", "198.18.0.100", "dev", "s0"]).stdout
        assert mac in neigh


def test_max_size_and_pxe_quirks_on_the_wire(dhcp_net, tmp_path):
    cli = dhcp_net.client
    cli.run(["ip", "addr", "add", "198.18.0.2/24", "dev", "c0"])
    url = "http://198.18.0.1/onie/" + "n" * 300
    dhcp_net.start(onie_url=url, bootfile_http="http://198.18.0.1/ipxe.efi")
    with socket_in(cli, "c0") as sock:
        http = [("vendor_class_id", b"HTTPClient:Arch:00016:UNDI:003000"), (93, b"\x00\x10"),
                ("max_dhcp_size", 1472)]  # fmt: skip
        sock.sendto(crafted("discover", "52:54:00:77:00:01", 9, http), ("255.255.255.255", 67))
        ((data, _),) = recv_all(sock, 3, want=1)
        p = decode(data)
        assert p.options[60] == b"HTTPClient" and p.options[67] == b"http://198.18.0.1/ipxe.efi"
        assert p.options[114] == url.encode()  # > 255 bytes: split on the wire, joined here
        assert 125 not in p.options  # a 125 sub-option cannot hold it (logged)
        assert len(data) <= 1472
        # without option 57 the same reply must fit 576 - 28: the long optional 114 goes
        sock.sendto(crafted("discover", "52:54:00:77:00:02", 10, http[:2]), ("255.255.255.255", 67))
        ((data, _),) = recv_all(sock, 3, want=1)
        assert len(data) <= 548 and decode(data).options[67] == b"http://198.18.0.1/ipxe.efi"


def test_bind_is_per_interface(dhcp_net, tmp_path):
    """A request arriving on an interface we were not given is not answered."""
    srv, cli = dhcp_net.server, dhcp_net.client
    cli.run(["ip", "addr", "add", "198.18.0.2/24", "dev", "c0"])
    veth(srv, "s9", cli, "c9", "198.18.9.1/24", "198.18.9.2/24")
    other = {"network": "198.18.9.0/24", "pools": [["198.18.9.10", "198.18.9.20"]], "interface": "s9"}
    dhcp_net.start(subnets=[SUBNET, other])
    with socket_in(cli, "c9") as sock:
        sock.sendto(crafted("discover", "52:54:00:99:00:01", 1, []), ("255.255.255.255", 67))
        assert recv_all(sock, 1.5) == []
    assert os.path.exists(dhcp_net.db)
    assert not events_in(dhcp_net.db, "dhcp.discover")


def test_renewing_unicast_and_rebinding_broadcast(dhcp_net, tmp_path):
    cli = dhcp_net.client
    dhcp_net.start()
    mac = "52:54:00:4e:4e:01"
    with socket_in(cli, "c0") as sock:
        sock.sendto(crafted("discover", mac, 1, []), ("255.255.255.255", 67))
        ip = decode(recv_all(sock, 3, want=1)[0][0]).yiaddr
        sock.sendto(
            crafted("request", mac, 2, [("requested_addr", ip), ("server_id", "198.18.0.1")]),
            ("255.255.255.255", 67),
        )
        assert decode(recv_all(sock, 3, want=1)[0][0]).message_type is MessageType.ACK
        cli.run(["ip", "addr", "add", f"{ip}/24", "dev", "c0"])
        # RENEWING: unicast from ciaddr to the server; the ACK comes back to ciaddr:68
        sock.sendto(crafted("request", mac, 3, [], ciaddr=ip, flags=0), ("198.18.0.1", 67))
        ((data, _src),) = recv_all(sock, 3, want=1)
        assert decode(data).message_type is MessageType.ACK and decode(data).yiaddr == ip
        # REBINDING: the same request broadcast
        sock.sendto(crafted("request", mac, 4, [], ciaddr=ip, flags=0), ("255.255.255.255", 67))
        assert decode(recv_all(sock, 3, want=1)[0][0]).message_type is MessageType.ACK
    states = [d for k, m, i, d in events_in(dhcp_net.db, "dhcp.ack") if m == mac]
    assert '"state":"selecting"' in states[0]
    assert '"state":"renewing"' in states[1] and '"state":"rebinding"' in states[2]


def test_start_errors_name_interface_and_cause(dhcp_net):
    async def start(cfg):
        return await start_dhcp(cfg, None, None, lambda e: None)

    with pytest.raises(DhcpStartError, match=r"no-such-if0.*no such interface"):
        asyncio.run(start(DhcpServerConfig(interfaces=("no-such-if0",))))
    # port taken: another server (here a plain socket) already bound to port 67 on that device
    srv = dhcp_net.server
    holder = socket_in(srv, None, port=67)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    try:
        result = srv.run([sys.executable, "-c", (
            "import asyncio\n"
            "from pxe.dhcp import DhcpServerConfig, DhcpStartError, start_dhcp\n"
            "async def m():\n"
            "    await start_dhcp(DhcpServerConfig(interfaces=('s0',)), None, None, print)\n"
            "try:\n    asyncio.run(m())\nexcept DhcpStartError as e:\n    print('ERR', e)\n"
        )], cwd=str(ROOT), check=False)  # fmt: skip
    finally:
        holder.close()
    assert "ERR cannot listen on s0 UDP port 67" in result.stdout, result.stdout + result.stderr


def test_init_reboot_on_the_wrong_subnet_gets_a_nak_then_a_new_lease(dhcp_net, tmp_path):
    """dhclient remembers an address from elsewhere: INIT-REBOOT, our NAK, then a fresh DORA."""
    require_tool("dhclient")
    cli = dhcp_net.client
    dhcp_net.start()
    (tmp_path / "dhclient.leases").write_text(
        'lease {\n  interface "c0";\n  fixed-address 198.18.5.5;\n  option subnet-mask 255.255.255.0;\n'
        "  option dhcp-lease-time 86400;\n  option dhcp-server-identifier 198.18.5.1;\n"
        "  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  expire 4 2037/01/01 00:00:00;\n}\n"
    )
    ip = dhclient_lease(cli, "c0", tmp_path)
    assert ip.startswith("198.18.0.") and 100 <= int(ip.split(".")[-1]) <= 199
    naks = events_in(dhcp_net.db, "dhcp.nak")
    assert naks and naks[0][2] == "198.18.5.5" and "not on subnet" in naks[0][3]
