"""pxe.tftp across a lossy link: 10% of packets are dropped each way on a veth between two
namespaces (198.18.0.0/15), and real clients must still get byte-identical files.

The loss comes from `tc netem` where the kernel has it, else from an nftables rule in each
namespace (`numgen random mod 10 0 drop`): some kernels (this lab's) are built without netem.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.netns import veth
from tests.support.tools import require_tool

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
SERVER_IP, CLIENT_IP = "198.18.42.1", "198.18.42.2"

SERVER = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from pxe.tftp import Limits, TftpConfig, start_tftp

async def main():
    config = TftpConfig(root=Path(sys.argv[2]), bind_addr=sys.argv[3], port=69, interface=sys.argv[4],
                        limits=Limits(timeout=0.5, retries=10))
    emit = lambda e: print(json.dumps({"kind": e.kind, "ip": e.ip, **e.detail}), flush=True)
    server = await start_tftp(config, None, emit)
    print(json.dumps({"kind": "ready", "port": server.port}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

# tftpy gives up after `retries` timeouts in a row (3 by default: 3 s of silence at timeout=1).
# Through 10% loss each way that silence comes by chance in about 1-2% of transfers, whatever
# the server does: a lost OACK is repaired only by the client repeating its RRQ (two tries in
# 3 s, each a round trip through the loss), and a lost block by our repeats at +0.5, +1 and
# +2 s, all of which can be lost too. A PXE ROM waits far longer (4-8 tries with back-off); the
# test gives tftpy 10 tries, so what it measures is the server's recovery, not tftpy's patience.
TFTPY = """
import sys, tftpy
tftpy.TftpClient(sys.argv[1], 69, options={"blksize": 1468}).download(
    sys.argv[2], sys.argv[3], timeout=1, retries=10
)
"""


class EventReader:
    """JSON event lines from the server process, read by a thread (select() on a buffered pipe
    misses lines already pulled into Python's buffer)."""

    def __init__(self, proc) -> None:
        self.queue: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            if line.startswith("{"):
                self.queue.put(json.loads(line))

    def wait_for(self, kind: str, wait: float = 120) -> list[dict]:
        """Events of `kind`, waiting until one of them (or a tftp.error) has come."""
        deadline = time.monotonic() + wait
        done = (kind, "tftp.error")
        while not any(e["kind"] in done for e in self.seen) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.queue.get(timeout=0.2))
        return [e for e in self.seen if e["kind"] == kind]


NFT_LOSS = """
table inet lossy {
  chain in { type filter hook input priority 0; iifname "%s" udp dport != 0 numgen random mod 10 0 drop; }
}
"""


def add_loss(ns, dev: str) -> None:
    """Drop 10% of UDP on `dev` in `ns`: netem on egress, or nftables on ingress (an output-hook
    drop would surface to the sender as EPERM, which is not what loss looks like)."""
    if (
        ns.run(["tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", "10%"], check=False).returncode
        == 0
    ):
        return
    nft = require_tool("nft")
    ns.run([nft, "-f", "-"], input=NFT_LOSS % dev)


@pytest.fixture(params=[True], ids=["loss"])
def lossy(request, netns_pair, tmp_path):
    server_ns, client_ns = netns_pair
    veth(server_ns, "srv0", client_ns, "cli0", f"{SERVER_IP}/24", f"{CLIENT_IP}/24")
    if request.param:
        for ns, dev in ((server_ns, "srv0"), (client_ns, "cli0")):
            add_loss(ns, dev)
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(400_000)
    (root / "boot.bin").write_bytes(data)
    (root / "small.bin").write_bytes(data[:100_000])
    proc = server_ns.popen(
        [sys.executable, "-u", "-c", SERVER, str(REPO), str(root), SERVER_IP, "srv0"], text=True, stderr=None
    )
    events = EventReader(proc)
    assert events.wait_for("ready", wait=30), "server did not start"
    return server_ns, client_ns, events, data, tmp_path


def test_atftp_windowed_through_loss(lossy):
    _, client_ns, events, data, tmp = lossy
    atftp = require_tool("atftp")
    out = tmp / "atftp.out"
    r = client_ns.run(
        [atftp, "--tftp-timeout", "1", "--option", "blksize 1468", "--option", "windowsize 8"]
        + ["-g", "-r", "boot.bin", "-l", str(out), SERVER_IP],
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_bytes() == data
    sent = events.wait_for("tftp.sent")
    assert sent, events.seen
    assert sent[0]["bytes"] == len(data) and sent[0]["windowsize"] == 8
    assert sent[0]["retransmits"] > 0  # the loss was real


def test_tftpy_through_loss(lossy):
    _, client_ns, events, data, tmp = lossy
    out = tmp / "tftpy.out"
    # tftpy is slow through loss (a 1 s client timeout, one select loop): a smaller file.
    r = client_ns.run(
        [sys.executable, "-c", TFTPY, SERVER_IP, "small.bin", str(out)], timeout=300, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_bytes() == data[:100_000]
    # tftpy does not dally after its final ACK: if that ACK is lost the server reports the
    # transfer as sent but unconfirmed once its retries run out.
    sent = events.wait_for("tftp.sent", wait=60)
    assert sent, events.seen
    assert sent[0]["bytes"] == 100_000 and sent[0]["ip"] == CLIENT_IP


@pytest.mark.parametrize("lossy", [False], ids=["clean"], indirect=True)
def test_blocks_larger_than_the_mtu(lossy):
    """blksize 4000 on a 1500-byte link: UDP GSO refuses segments above the MTU (EMSGSIZE), so the
    transfer falls back to one send per block and the kernel fragments them."""
    _, client_ns, events, data, tmp = lossy
    atftp = require_tool("atftp")
    out = tmp / "big-blocks.out"
    r = client_ns.run(
        [
            atftp,
            "--option",
            "blksize 4000",
            "--option",
            "windowsize 4",
            "-g",
            "-r",
            "boot.bin",
            "-l",
            str(out),
        ]
        + [SERVER_IP],
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_bytes() == data
    sent = events.wait_for("tftp.sent")
    assert sent and sent[0]["blksize"] == 4000 and sent[0]["windowsize"] == 4
