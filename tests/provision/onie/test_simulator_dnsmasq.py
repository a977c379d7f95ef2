"""`provision onie-sim` against a real peer: dnsmasq configured as docs/onie.md says
(`--dhcp-vendorclass=set:onie,onie_vendor:`, `vi-encap:42623,1,<url>` / option 114) plus
`python3 -m http.server` and tftp-hpa serving installer names. Namespaces joined by a veth,
198.18.30.0/24."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from onie import discovery
from tests.support.cli import onie_sim
from tests.support.netns import linked_pair
from tests.support.tools import require_root, require_tool

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.30.1"
KVM = "x86_64-kvm_x86_64-r0"
ACCTON = "x86_64-accton_as7712_32x-r0"


def fake_installer(folder: Path, name: str, body: str = "demo") -> bytes:
    data = f"#!/bin/sh\n# {name}\necho {body}\nexit 0\n".encode()
    (folder / name).write_bytes(data)
    return data


@pytest.fixture
def link():
    require_root()
    with linked_pair("os0", "oc0", f"{SERVER_IP}/24", prefix="os") as pair:
        yield pair.server, pair.client


def start_dnsmasq(server, tmp_path: Path, *options: str):
    dnsmasq = require_tool("dnsmasq")
    argv = [
        dnsmasq,
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=os0",
        "--bind-interfaces",
        "--dhcp-authoritative",
        f"--dhcp-leasefile={tmp_path / 'leases'}",
        f"--pid-file={tmp_path / 'dnsmasq.pid'}",
        "--dhcp-range=198.18.30.100,198.18.30.200,255.255.255.0,1h",
        "--log-dhcp",
        *options,
    ]
    return server.popen(argv)


def start_http(server, root: Path, port: int = 80):
    return server.popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", SERVER_IP, "--directory", str(root)]
    )


def wait_port(ns, port: int) -> None:
    ns.run(
        [
            "sh",
            "-c",
            f"for i in $(seq 100); do ss -ltn | grep -q ':{port} ' && exit 0; sleep 0.1; done; exit 1",
        ]
    )


def test_exact_url_from_vivso(link, tmp_path):
    server, client = link
    root = tmp_path / "www"
    root.mkdir()
    body = fake_installer(root, "nos.bin")
    url = f"http://{SERVER_IP}/nos.bin"
    dns = start_dnsmasq(
        server,
        tmp_path,
        "--dhcp-vendorclass=set:onie,onie_vendor:",
        f"--dhcp-option=tag:onie,vi-encap:42623,1,{url}",
    )
    start_http(server, root)
    wait_port(server, 80)
    rc, doc, out = onie_sim(client, "--serial", "SIM-1", "--mac", "52:54:00:30:00:01")
    sw = doc["switches"][0]
    assert rc == 0, out.stderr
    assert sw["lease"]["onie_url"] == url
    first = sw["attempts"][0]
    assert {k: first[k] for k in ("step", "url", "outcome", "detail", "bytes", "cycle")} == {
        "step": "exact: option 125.1",
        "url": url,
        "outcome": "ok",
        "detail": "HTTP 200",
        "bytes": len(body),
        "cycle": 1,
    }
    # ONIE ran it; its progress reports went to the server it came from, which (a plain file
    # server) answers 404: reports are best-effort, the install still counts
    run = first["run"]
    assert run["outcome"] == "installed" and run["exit_code"] == 0
    assert [(r["stage"], r["status"]) for r in run["reports"]] == [
        ("started", "progress"),
        ("verified", "progress"),
        ("partitioned", "progress"),
        ("payload", "progress"),
        ("bootloader", "progress"),
        ("complete", "ok"),
    ]
    assert {r["http_status"] for r in run["reports"]} == {404}
    assert run["reports"][0]["url"].startswith(f"http://{SERVER_IP}/api/v1/report?stage=started&")
    assert sw["outcome"] == "installed" and sw["installer_runs"] == 1 and doc["installed"] == 1
    assert sw["installer"]["url"] == url
    server.stop(dns)
    log = dns.stdout.read().decode()
    # dnsmasq saw ONIE's vendor class and tagged the switch
    assert f"vendor class: onie_vendor:{KVM}" in log and "tags: onie" in log


def test_option_114_and_http_headers_seen(link, tmp_path):
    server, client = link
    root = tmp_path / "www"
    root.mkdir()
    fake_installer(root, "by114.bin")
    url = f"http://{SERVER_IP}/by114.bin"
    start_dnsmasq(
        server, tmp_path, "--dhcp-vendorclass=set:onie,onie_vendor:", f"--dhcp-option=tag:onie,114,{url}"
    )
    http = start_http(server, root)
    wait_port(server, 80)
    rc, doc, _ = onie_sim(client)
    sw = doc["switches"][0]
    assert rc == 0 and sw["installer"]["url"] == url
    assert [a["step"] for a in sw["attempts"]] == ["exact: option 114"]
    server.stop(http)
    assert 'GET /by114.bin HTTP/1.1" 200' in http.stdout.read().decode()


def test_inexact_http_waterfall_names(link, tmp_path):
    """No URL in DHCP: option 72 (an address) and siaddr, port 80, names most precise first."""
    server, client = link
    root = tmp_path / "www"
    root.mkdir()
    fake_installer(root, "onie-installer-x86_64.bin")  # the 10th name for an asic-less kvm switch
    start_dnsmasq(server, tmp_path, f"--dhcp-option=72,{SERVER_IP}")
    start_http(server, root)
    wait_port(server, 80)
    rc, doc, _ = onie_sim(client)
    sw = doc["switches"][0]
    assert rc == 0
    tried = [a["url"].rsplit("/", 1)[-1] for a in sw["attempts"]]
    assert tried == [
        f"onie-installer-{KVM}",
        f"onie-installer-{KVM}.bin",
        "onie-installer-x86_64-kvm_x86_64",
        "onie-installer-x86_64-kvm_x86_64.bin",
        "onie-installer-kvm_x86_64",
        "onie-installer-kvm_x86_64.bin",
        "onie-installer-x86_64",
        "onie-installer-x86_64.bin",
    ]
    assert [a["outcome"] for a in sw["attempts"]] == ["not-found"] * 7 + ["ok"]
    assert sw["attempts"][0]["step"] == "inexact HTTP"


def test_tftp_waterfall_against_tftpd_hpa(link, tmp_path):
    """No HTTP at all: ONIE falls to the TFTP waterfall on siaddr; the MAC directory wins."""
    server, client = link
    tftpd = require_tool("in.tftpd")
    root = tmp_path / "tftp"
    mac = "52:54:00:30:00:07"
    (root / mac.upper().replace(":", "-")).mkdir(parents=True)
    fake_installer(root / mac.upper().replace(":", "-"), f"onie-installer-{ACCTON}")
    start_dnsmasq(server, tmp_path, f"--dhcp-boot=,,{SERVER_IP}")  # siaddr only, no file
    server.popen([tftpd, "--foreground", "--address", f"{SERVER_IP}:69", "--secure", str(root)])
    rc, doc, _ = onie_sim(client, "--mac", mac, "--platform", ACCTON)
    sw = doc["switches"][0]
    assert rc == 0, sw
    last = sw["attempts"][-1]
    assert last["step"] == "TFTP waterfall" and last["outcome"] == "ok"
    assert last["url"] == f"tftp://{SERVER_IP}/52-54-00-30-00-07/onie-installer-{ACCTON}"
    assert sw["attempts"][0]["detail"] == "port 80 closed"


def test_nothing_found_exit_1(link, tmp_path):
    server, client = link
    start_dnsmasq(server, tmp_path)
    (tmp_path / "tftp").mkdir()
    server.popen(
        [
            require_tool("in.tftpd"),
            "--foreground",
            "--address",
            f"{SERVER_IP}:69",
            "--secure",
            str(tmp_path / "tftp"),
        ]
    )
    rc, doc, _ = onie_sim(client)
    sw = doc["switches"][0]
    assert rc == 1 and sw["installer"] is None
    outcomes = {a["outcome"] for a in sw["attempts"]}
    assert outcomes <= {"refused", "not-found"} and "not-found" in outcomes


# -- --verify: the checks a real installer makes of itself, before ONIE would run it ------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A real installer for kvm_x86_64 from `provision onie-installer` (the installer area)."""
    from tests.support.cli import run_cli
    from tests.support.installer import write_spec

    folder = tmp_path_factory.mktemp("built")
    spec = write_spec(folder)
    out = run_cli("onie-installer", str(spec), "-o", str(folder / "out"))
    assert out.returncode == 0, out.stderr
    (path,) = (folder / "out").glob("onie-installer-*.bin")
    assert path.name == f"onie-installer-{KVM}.bin"
    return path


def serve_one(server, tmp_path: Path, src: Path, name: str, data: bytes | None = None) -> str:
    root = tmp_path / "www"
    root.mkdir()
    (root / name).write_bytes(data if data is not None else src.read_bytes())
    url = f"http://{SERVER_IP}/{name}"
    start_dnsmasq(
        server,
        tmp_path,
        "--dhcp-vendorclass=set:onie,onie_vendor:",
        f"--dhcp-option=tag:onie,vi-encap:42623,1,{url}",
    )
    start_http(server, root)
    wait_port(server, 80)
    return url


def test_verify_ok(link, tmp_path, built):
    server, client = link
    url = serve_one(server, tmp_path, built, "nos.bin")
    rc, doc, _ = onie_sim(client, "--verify", "--save", str(tmp_path / "saved"))
    sw = doc["switches"][0]
    assert rc == 0, sw
    verify = sw["installer"]["verify"]
    assert verify["ok"] and verify["checksum_ok"] and verify["platform"] == KVM and verify["nos"] == "tnos"
    assert sw["installer"]["url"] == url
    assert Path(sw["installer"]["saved"]).read_bytes() == built.read_bytes()


def test_verify_rejects_other_platform_and_corruption(link, tmp_path, built):
    server, client = link
    data = bytearray(built.read_bytes())
    data[-700] ^= 0xFF  # one flipped bit in the payload's tar
    url = serve_one(server, tmp_path, built, "nos.bin", bytes(data))
    rc, doc, _ = onie_sim(client, "--verify")
    sw = doc["switches"][0]
    assert rc == 1 and sw["installer"] is None
    first = sw["attempts"][0]
    assert first["url"] == url and first["outcome"] == "rejected" and "sha256" in first["detail"]
    # the intact file, but this switch is another platform: the installer would refuse it
    (tmp_path / "www" / "nos.bin").write_bytes(built.read_bytes())
    rc, doc, _ = onie_sim(client, "--verify", "--platform", ACCTON)
    first = doc["switches"][0]["attempts"][0]
    assert rc == 1 and first["outcome"] == "rejected" and f"built for {KVM}" in first["detail"]


def test_updater_is_refused_in_install_mode(link, tmp_path):
    server, client = link
    url = serve_one(
        server, tmp_path, Path("/dev/null"), "upd.bin", b"#!/bin/sh\n# ONIE-UPDATER-COOKIE\nexit 0\n"
    )
    rc, doc, _ = onie_sim(client)
    first = doc["switches"][0]["attempts"][0]
    assert rc == 1 and first["url"] == url and first["outcome"] == "rejected" and "updater" in first["detail"]


def test_a_failed_installer_is_run_again_under_every_name_and_cycle(link, tmp_path):
    """A plain file server with one installer under every default name, in options 125.1 and
    114 too: after each failure ONIE goes on (exec_installer), so one cycle runs it 2 (exact) +
    12 (inexact names) = 14 times, and the next cycle as often again. That is the re-run storm a
    server must not cause; `installer_runs` shows it."""
    server, client = link
    root = tmp_path / "www"
    root.mkdir()
    ident = discovery.complete(discovery.OnieIdentity(platform=KVM, switch_asic="qemu"))
    names = [w.name for w in discovery.default_names(ident)]
    assert len(names) == 12
    for name in names:
        fake_installer(root, name)
    url = f"http://{SERVER_IP}/{names[0]}.bin"
    start_dnsmasq(
        server,
        tmp_path,
        "--dhcp-vendorclass=set:onie,onie_vendor:",
        f"--dhcp-option=tag:onie,vi-encap:42623,1,{url}",
        f"--dhcp-option=tag:onie,114,{url}",
    )
    (tmp_path / "tftp").mkdir()
    server.popen(
        [
            require_tool("in.tftpd"),
            "--foreground",
            "--address",
            f"{SERVER_IP}:69",
            "--secure",
            str(tmp_path / "tftp"),
        ]
    )
    http = start_http(server, root)
    wait_port(server, 80)
    rc, doc, _ = onie_sim(client, "--switch-asic", "qemu", "--fail-at", "payload", "--cycles", "2")
    sw = doc["switches"][0]
    assert rc == 1 and sw["outcome"] == "failed" and sw["installer"] is None
    assert sw["cycles"] == 2 and sw["installer_runs_per_cycle"] == [14, 14]
    assert sw["installer_runs"] == 28 and doc["installer_runs"] == 28
    runs = [a for a in sw["attempts"] if a["run"]]
    assert {a["outcome"] for a in runs} == {"install-failed"}
    assert [a["url"] for a in runs[:3]] == [url, url, f"http://{SERVER_IP}/{names[0]}"]
    for a in runs:
        reports = [(r["stage"], r["status"]) for r in a["run"]["reports"]]
        assert reports[-1] == ("payload", "failed") and reports[0] == ("started", "progress")
    server.stop(http)
    log = http.stdout.read().decode()
    assert log.count('" 200') >= 28  # the file server handed it out 28 times (plus nothing else 200)
