"""provision serve's pieces without the network: quick mode, the IP→MAC book, port holders, status."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
from pathlib import Path

import pytest

from provision.config.inventory import Device, Inventory
from provision.config.lab import Arch, Mode, Subnet, Unknown
from provision.devices.status import snapshot
from provision.errors import ProvisionError
from provision.server import hostnet
from provision.server.events import AddressBook
from provision.server.preflight import server_addresses
from provision.server.quick import quick_config, quick_pool
from provision.store.sqlite import Store
from pxe.dhcp import Lease, LeaseState
from pxe.policy import Event
from tests.support.cli import run_cli


def iface(addr: str) -> hostnet.InterfaceAddress:
    i = ipaddress.IPv4Interface(addr)
    return hostnet.InterfaceAddress("eth1", 2, i.ip, i.network)


def test_quick_pool_takes_the_half_without_us():
    p = quick_pool(iface("198.18.20.1/24"))
    assert (str(p.first), str(p.last)) == ("198.18.20.128", "198.18.20.254")
    p = quick_pool(iface("198.18.20.200/24"))
    assert (str(p.first), str(p.last)) == ("198.18.20.1", "198.18.20.127")
    with pytest.raises(ProvisionError) as exc:
        quick_pool(iface("198.18.20.1/30"))
    assert exc.value.exit_code == 2 and "/29" in (exc.value.fix or "")


def test_quick_config_boots_everyone(tmp_path):
    k = tmp_path / "vmlinuz"
    cfg = quick_config(iface("198.18.20.1/24"), k, None, "quiet", kernel_arm64=tmp_path / "Image")
    assert cfg.mode is Mode.AUTHORITATIVE and cfg.boot.unknown is Unknown.DISCOVER
    entry = cfg.boot.entries[cfg.boot.discover]
    assert entry.for_arch(Arch.X86_64).kernel == k
    assert entry.for_arch(Arch.ARM64).cmdline == "quiet"
    assert str(cfg.subnets[0].network) == "198.18.20.0/24"
    proxy = quick_config(iface("198.18.20.1/24"), k, None, proxy=True)
    assert proxy.mode is Mode.PROXY and proxy.subnets == ()


def test_server_addresses_cover_relayed_subnets(tmp_path):
    cfg = quick_config(iface("198.18.20.1/24"), tmp_path / "k", None)
    relayed = Subnet(ipaddress.IPv4Network("198.19.5.0/24"))
    cfg = dataclasses.replace(cfg, subnets=(*cfg.subnets, relayed))
    servers = server_addresses(cfg, [iface("198.18.20.1/24")])
    assert [(str(s.network), s.address) for s in servers] == [
        ("198.18.20.0/24", "198.18.20.1"),
        ("198.19.5.0/24", "198.18.20.1"),
    ]


def test_address_book_learns_from_acks():
    book = AddressBook()
    book.learn(Event("dhcp.ack", mac="52:54:00:00:00:01", ip="198.18.20.5"))
    book.learn(Event("tftp.sent", mac="52:54:00:00:00:09", ip="198.18.20.9"))
    assert book("198.18.20.5") == "52:54:00:00:00:01"
    assert book("198.18.20.9") is None
    # pxe.http's resolver: our lease first, else the MAC ONIE names itself by
    assert book.for_request("198.18.20.5", {"ONIE-ETH-ADDR": "52:54:00:00:00:02"}) == "52:54:00:00:00:01"
    assert book.for_request("198.18.20.7", {"ONIE-ETH-ADDR": "52-54-00-00-00-02"}) == "52:54:00:00:00:02"
    assert book.for_request("198.18.20.7", {}) is None


def test_port_holder_is_named():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        err = hostnet.describe_port_in_use("udp", port, "127.0.0.1")
    assert f"UDP port 127.0.0.1:{port} is in use by python" in err.message
    assert f"pid {__import__('os').getpid()}" in err.message
    assert "stop python" in err.fix


def test_missing_interface_is_clear():
    with pytest.raises(hostnet.NetInfoError) as exc:
        hostnet.interface_ipv4("nope-if0")
    assert "not found" in exc.value.message and "ip -br link" in exc.value.fix


def _store(tmp_path: Path) -> Path:
    db = tmp_path / "provision.db"
    with Store(db) as store:
        store.save_lease(
            Lease("198.18.20.11", "52:54:00:00:00:01", LeaseState.BOUND, 9e9, "198.18.20.0/24", "box")
        )
        store.add_event(Event("dhcp.ack", mac="52:54:00:00:00:01", ip="198.18.20.11", ts=100.0))
        store.add_event(
            Event(
                "tftp.sent",
                mac="52:54:00:00:00:01",
                ip="198.18.20.11",
                detail={"path": "undionly.kpxe", "bytes": 5},
                ts=101.0,
            )
        )
        store.add_event(
            Event(
                "http.sent",
                mac="52:54:00:00:00:01",
                ip="198.18.20.11",
                detail={"path": "/ipxe/x.ipxe"},
                ts=102.0,
            )
        )
        store.add_event(Event("dhcp.ignored", mac="52:54:00:00:00:99", ts=103.0))
        store.commit()
    return db


def test_snapshot_shows_lease_and_last_fetch(tmp_path):
    db = _store(tmp_path)
    inv = Inventory([Device("box-01", mac="52:54:00:00:00:01"), Device("never", mac="52:54:00:00:00:77")])
    with Store(db) as store:
        snap = snapshot(store, inv, now=200.0)
    rows = {r["mac"]: r for r in snap["devices"]}
    box = rows["52:54:00:00:00:01"]
    assert box["name"] == "box-01" and box["ip"] == "198.18.20.11" and box["lease"]["state"] == "bound"
    assert box["last_fetch"] == {
        "path": "/ipxe/x.ipxe",
        "protocol": "http",
        "bytes": None,
        "time": "1970-01-01T00:01:42.000Z",
    }
    assert box["state"] == "enrolled" and snap["version"] == 1 and snap["generated"].endswith("Z")
    assert rows["52:54:00:00:00:99"]["last_event"]["kind"] == "dhcp.ignored"
    assert rows["52:54:00:00:00:77"]["last_event"] is None  # listed though never seen


def test_status_cli(tmp_path):
    db = _store(tmp_path)
    out = run_cli("status", "--db", str(db), "--json")
    assert out.returncode == 0, out.stderr
    assert {r["mac"] for r in json.loads(out.stdout)["devices"]} == {"52:54:00:00:00:01", "52:54:00:00:00:99"}
    human = run_cli("status", "--db", str(db))
    assert human.returncode == 0 and "52:54:00:00:00:01" in human.stdout and "unknown" in human.stdout
    missing = run_cli("status", "--state-dir", str(tmp_path / "nothing"))
    assert missing.returncode == 3 and "no provision state" in missing.stderr and "--lab" in missing.stderr
    (tmp_path / "junk.db").write_bytes(b"not sqlite" * 100)
    junk = run_cli("status", "--db", str(tmp_path / "junk.db"))
    assert junk.returncode == 3 and "junk.db" in junk.stderr


def test_serve_usage_errors(tmp_path):
    none = run_cli("serve")
    assert none.returncode == 2 and "nothing to serve" in none.stderr
    both = run_cli("serve", str(tmp_path / "lab.yml"), "-i", "eth9")
    assert both.returncode == 2
    nokernel = run_cli("serve", "-i", "lo")
    assert nokernel.returncode == 2 and "--kernel" in nokernel.stderr
    nofile = run_cli("serve", str(tmp_path / "absent.yml"))
    assert nofile.returncode == 2 and "absent.yml" in nofile.stderr


def test_serve_help_teaches():
    out = run_cli("serve", "--help")
    assert out.returncode == 0 and "undionly.kpxe" in out.stdout and "provision status" in out.stdout
