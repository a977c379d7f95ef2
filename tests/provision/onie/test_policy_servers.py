"""OniePolicy behind the real front ends (pxe.http, pxe.tftp) on 127.0.0.1, fetched with onie-sim's
own HTTP and TFTP clients: headers choose the file, names that do not fit are 404 / TFTP error 1,
and the policy's events (onie.discovered, installer.fetched) come out next to the servers' own."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from onie import discovery
from onie.identity import OnieIdentity
from provision.config.onie import OnieSettings
from provision.onie import simulator_net as net
from provision.onie.policy import OniePolicy
from provision.server.events import AddressBook
from pxe.http import HttpConfig, start_http
from pxe.policy import Client, Event, Service
from pxe.tftp.server import TftpConfig, start_tftp

KVM = "x86_64-kvm_x86_64-r0"
ACCTON = "x86_64-accton_as7712_32x-r0"
MAC = "52:54:00:aa:bb:01"


def make_installers(folder: Path) -> dict[str, str]:
    sums = {}
    for platform in (KVM, ACCTON):
        data = f"#!/bin/sh\ntarget_platform='{platform}'\nexit 0\n".encode() + bytes(range(256)) * 40
        (folder / discovery.installer_file_name(platform)).write_bytes(data)
        sums[platform] = hashlib.sha256(data).hexdigest()
    return sums


def test_http_front_end(tmp_path):
    folder = tmp_path / "installers"
    folder.mkdir()
    sums = make_installers(folder)
    (tmp_path / "www").mkdir()
    events: list[Event] = []
    policy = OniePolicy(OnieSettings(installers=folder), events=events.append, url_base="http://127.0.0.1")
    ident = discovery.complete(
        OnieIdentity(platform=ACCTON, mac=MAC.upper(), serial="AS-9", onie_version="2023.05")
    )
    headers = discovery.request_headers(ident)

    async def run() -> dict[str, net.Fetch]:
        server = await start_http(
            HttpConfig(root=tmp_path / "www", bind_addr="127.0.0.1", port=0), policy, events.append
        )
        out = {}
        try:
            async with net.http_session(None) as session:
                for name in (
                    f"onie-installer-{ACCTON}",
                    "onie-installer-x86_64.bin",
                    f"onie-installer-{KVM}.bin",
                    "onie-installer-accton_as7712_32x",
                ):
                    out[name] = await net.http_get(session, f"{server.url}/{name}", headers, tmp_path / "dl")
                # no ONIE headers at all: only the exact platform name is served
                out["anonymous-exact"] = await net.http_get(
                    session, f"{server.url}/onie-installer-{KVM}.bin", {}, tmp_path / "dl2"
                )
                out["anonymous-generic"] = await net.http_get(
                    session, f"{server.url}/onie-installer", {}, tmp_path / "dl3"
                )
        finally:
            await server.close()
        return out

    got = asyncio.run(run())
    assert got[f"onie-installer-{ACCTON}"].sha256 == sums[ACCTON]
    assert got["onie-installer-x86_64.bin"].sha256 == sums[ACCTON]
    assert got[f"onie-installer-{KVM}.bin"].outcome is net.Outcome.NOT_FOUND
    assert got["onie-installer-accton_as7712_32x"].outcome is net.Outcome.OK
    assert got["anonymous-exact"].sha256 == sums[KVM]
    assert got["anonymous-generic"].outcome is net.Outcome.NOT_FOUND
    kinds = [e.kind for e in events]
    discovered = [e for e in events if e.kind == "onie.discovered"]
    assert len(discovered) == 1 and discovered[0].mac == MAC
    assert discovered[0].detail == {
        "serial": "AS-9",
        "platform": ACCTON,
        "onie_version": "2023.05",
        "source": "http",
    }
    fetched = [e for e in events if e.kind == "installer.fetched"]
    assert len(fetched) == 4 and {e.detail["protocol"] for e in fetched} == {"http"}
    assert kinds.count("http.sent") == 6


def test_tftp_front_end_waterfall(tmp_path):
    folder = tmp_path / "installers"
    folder.mkdir()
    sums = make_installers(folder)
    (tmp_path / "tftp").mkdir()
    events: list[Event] = []
    book = AddressBook()
    policy = OniePolicy(
        OnieSettings(installers=folder), events=events.append, url_base="http://127.0.0.1", mac_of_ip=book
    )
    # the switch said who it is over DHCP, then got 127.0.0.1 (so its hex directory is 7F000001)
    opts = discovery.request_options(OnieIdentity(platform=KVM, serial="KVM-9"))
    policy.decide(Client(mac=MAC, service=Service.DHCP, options=opts))
    book.learn(Event("dhcp.ack", mac=MAC, ip="127.0.0.1"))
    ident = discovery.complete(OnieIdentity(platform=KVM, mac=MAC.upper()))
    paths = [e.path for e in discovery.tftp_waterfall(ident, "127.0.0.1")]
    assert paths[1] == f"7F000001/onie-installer-{KVM}"

    async def run() -> dict[str, net.Fetch]:
        server = await start_tftp(
            TftpConfig(root=tmp_path / "tftp", bind_addr="127.0.0.1", port=0), policy, events.append
        )
        out = {}
        try:
            for n, path in enumerate([*paths, f"7F000002/onie-installer-{KVM}", f"onie-installer-{ACCTON}"]):
                out[path] = await net.tftp_get(
                    "127.0.0.1", path, tmp_path / f"t{n}", "127.0.0.1", server.port
                )
            out["blksize"] = await net.tftp_get(
                "127.0.0.1", paths[0], tmp_path / "tb", "127.0.0.1", server.port, blksize=1468
            )
        finally:
            server.close()
        return out

    got = asyncio.run(run())
    for path in paths:
        assert got[path].outcome is net.Outcome.OK and got[path].sha256 == sums[KVM], path
    assert got[f"7F000002/onie-installer-{KVM}"].outcome is net.Outcome.NOT_FOUND
    assert got[f"onie-installer-{ACCTON}"].outcome is net.Outcome.NOT_FOUND
    assert got["blksize"].sha256 == sums[KVM]
    fetched = [e for e in events if e.kind == "installer.fetched"]
    assert len(fetched) == len(paths) + 1 and all(
        e.mac == MAC and e.detail["protocol"] == "tftp" for e in fetched
    )
