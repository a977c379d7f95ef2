"""`provision serve` under a boot-LAN flood, in namespaces joined by a veth (198.18.21.0/24):
the soft RLIMIT_NOFILE raised and the caps fitted to it, 640 idle TFTP RRQs and 640 idle HTTP
connections from 80 source addresses refused at the caps (never "Too many open files", never a
traceback) while a real client of the other protocol is served; and HTTP on the interface's
IPv6 link-local address (ONIE's fallback), fetched with curl over fe80::%zone.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import time

import pytest

from tests.support.cli import cli_argv, cli_env
from tests.support.serving import ServeProc
from tests.support.tools import require_tool

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.21.1"
SOURCES = [f"198.18.21.{i}" for i in range(100, 180)]  # 80 attacker addresses

LAB = """\
interfaces: [sv0]
subnets:
  - network: 198.18.21.0/24
    interface: sv0
    pool: [198.18.21.200-198.18.21.250]
boot:
  default: live
  unknown: ignore
  entries:
    live:
      x86_64: {{kernel: files/vmlinuz, initrd: files/initrd.gz}}
paths:
  state_dir: {state}
"""

# Runs in the client namespace: PER idle requests (TFTP RRQs or TCP connections) from each
# source address, held for HOLD seconds; prints how many got "server busy" / 503.
ATTACK = """
import socket, sys, time
kind, server, per, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
sources = sys.argv[5:]
socks, busy = [], 0
for src in sources:
    for _ in range(per):
        if kind == "tftp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0))
            s.sendto(b"\\x00\\x01boot.bin\\x00octet\\x00timeout\\x00255\\x00", (server, 69))
        else:
            s = socket.socket()
            s.bind((src, 0))
            s.connect((server, 80))
        socks.append(s)
        time.sleep(0.002)  # paced: a burst would overflow the server's receive buffer (drops)
time.sleep(2)
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(200)
    except BlockingIOError:
        continue
    except OSError:
        continue
    if b"server busy" in data or data.startswith(b"HTTP/1.1 503"):
        busy += 1
print(len(socks), busy, flush=True)
time.sleep(hold)
"""


@pytest.fixture
def lab(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    kernel = bytearray(300_000)
    kernel[0x202:0x206] = b"HdrS"  # what `provision check` looks for in a bzImage
    (files / "vmlinuz").write_bytes(bytes(kernel))
    (files / "initrd.gz").write_bytes(gzip.compress(b"070701" + b"0" * 1000))
    state = tmp_path / "state"
    for d in ("tftp", "http"):
        (state / d).mkdir(parents=True)
    (state / "tftp" / "boot.bin").write_bytes(b"B" * 200_000)
    (state / "http" / "hello.txt").write_bytes(b"hello over http\n")
    path = tmp_path / "lab.yml"
    path.write_text(LAB.format(state=state))
    return path


@pytest.fixture
def link(serve_netns):
    link = serve_netns(server_if="sv0", client_if="cl0", server_addr=f"{SERVER_IP}/24", prefix="sl")
    link.client.run(["ip", "addr", "add", "198.18.21.2/24", "dev", "cl0"])
    for src in SOURCES:
        link.client.run(["ip", "addr", "add", f"{src}/24", "dev", "cl0"])
    return link


def serve_with_nofile(link, lab, nofile: int) -> ServeProc:
    """`provision -v serve` under `prlimit --nofile=N:N`: the default limit of many systems."""
    argv = ["prlimit", f"--nofile={nofile}:{nofile}", *cli_argv("-v", "serve", str(lab))]
    proc = link.server.popen(argv, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sp = ServeProc(link.server, proc)
    link.started.append(sp)
    sp.wait_ready()
    return sp


def attack(link, kind: str, per: int, hold: float) -> subprocess.Popen:
    return link.client.popen(
        [sys.executable, "-c", ATTACK, kind, SERVER_IP, str(per), str(hold), *SOURCES],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def assert_no_descriptor_trouble(output: str) -> None:
    assert "Too many open files" not in output
    assert "Traceback" not in output


def test_tftp_flood_is_refused_at_the_cap_and_http_keeps_serving(link, lab, tmp_path):
    curl = require_tool("curl")
    sp = serve_with_nofile(link, lab, 1024)
    assert "open files: soft limit kept at 1024 (hard 1024" in sp.output
    assert "at most 128 TFTP transfers and 128 HTTP connections" in sp.output  # fitted to 1024
    flood = attack(link, "tftp", 8, 6)
    assert flood.stdout is not None
    sent, busy = map(int, flood.stdout.readline().split())
    # Refused with ERROR "server busy", not dropped: all but the 128 admitted, less one per new
    # source once at the cap (its first request takes an idle transfer's slot).
    assert sent == 640 and 640 - 128 - 80 <= busy <= 640 - 128
    # During the flood: HTTP serves (at ~510 RRQs it used to be down with EMFILE).
    got = link.client.run([curl, "-sSf", "-m", "10", f"http://{SERVER_IP}/hello.txt"])
    assert got.stdout == "hello over http\n"
    flood.wait(30)
    assert_no_descriptor_trouble(sp.output)
    assert sp.output.count("(the cap): refusing new requests") == 1  # one line, 512 counted


def test_http_flood_is_refused_at_the_cap_and_tftp_keeps_serving(link, lab, tmp_path):
    tftp = require_tool("tftp")
    curl = require_tool("curl")
    sp = serve_with_nofile(link, lab, 1024)
    flood = attack(link, "http", 8, 4)
    assert flood.stdout is not None
    sent, busy = map(int, flood.stdout.readline().split())
    assert sent == 640 and 640 - 128 - 80 <= busy <= 640 - 128  # as for TFTP above
    # During: a client that holds no connection is served (it takes an idle one's slot).
    got = link.client.run([curl, "-sSf", "-m", "10", f"http://{SERVER_IP}/hello.txt"])
    assert got.stdout == "hello over http\n"
    out = tmp_path / "boot.bin"
    link.client.run([tftp, SERVER_IP, "-m", "binary", "-c", "get", "boot.bin", str(out)])
    assert out.read_bytes() == b"B" * 200_000
    flood.wait(30)
    # After: the idle connections are closed at the header timeout; HTTP serves again.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = link.client.run([curl, "-sf", "-m", "5", f"http://{SERVER_IP}/hello.txt"], check=False)
        if got.stdout == "hello over http\n":
            break
        time.sleep(0.5)
    assert got.stdout == "hello over http\n"
    assert_no_descriptor_trouble(sp.output)
    assert sp.output.count("(the cap): refusing new ones") == 1


def test_http_on_the_ipv6_link_local_address(link, lab):
    curl = require_tool("curl")
    sp = link.serve(str(lab))
    shown = link.server.run(["ip", "-6", "-o", "addr", "show", "dev", "sv0", "scope", "link"]).stdout
    link_local = shown.split("inet6 ", 1)[1].split("/", 1)[0]
    assert link_local.startswith("fe80:")
    url = f"http://[{link_local}%25cl0]:80/hello.txt"
    deadline = time.monotonic() + 20  # both ends' duplicate address detection (about 1-2 s)
    while True:
        got = link.client.run([curl, "-g", "-sS", "-m", "5", url], check=False)
        if got.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "hello over http\n"
    assert "no IPv6 link-local" not in sp.output
