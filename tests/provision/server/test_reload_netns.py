"""SIGHUP reload of `provision serve` under a DHCP load, in namespaces (198.18.20.0/22).

A load generator in the client namespace runs one DORA after another, each from a new MAC, with
broadcast replies (one socket stands for many clients). While it runs the lab file is changed and
SIGHUP sent: the change applies without a restart (a reserved address moves, a new device is
served) and no transaction of the load goes unanswered. Then a broken lab file: the running
configuration stays, the log says why, and DHCP still answers.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dhcp4.codec import DecodeError, Packet, decode, encode
from dhcp4.options import BOOTREQUEST, OPT_MESSAGE_TYPE, OPT_REQUESTED_IP, OPT_SERVER_ID, MessageType
from tests.support.dhcp_netns import socket_in

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.21.1"
BOX_MAC = "52:54:00:21:00:01"

LAB = """\
interfaces: [sv0]
subnets:
  - network: 198.18.20.0/22
    interface: sv0
    pool: [198.18.22.0-198.18.23.254]
boot:
  unknown: discover
  discover: live
  entries:
    live:
      x86_64: {{kernel: {kernel}}}
paths:
  state_dir: {state}
devices:
  - {{name: box-01, mac: "{mac}", ip: {ip}}}
"""


@dataclass
class Load:
    """Sequential DORAs from fresh MACs until `stop` is set; counts what went unanswered."""

    sock: socket.socket
    stop: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    unanswered: list[str] = field(default_factory=list)

    def _ask(self, pkt: Packet, want: MessageType) -> Packet | None:
        # 2 s per answer, 3 tries, as a PXE ROM would retransmit; answers are broadcast, so skip
        # the ones meant for another transaction.
        for _ in range(3):
            self.sock.sendto(encode(pkt), ("255.255.255.255", 67))
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data, _ = self.sock.recvfrom(4096)
                    reply = decode(data)
                except (TimeoutError, DecodeError):
                    continue
                if reply.xid == pkt.xid and reply.options.get(OPT_MESSAGE_TYPE) == bytes([want]):
                    return reply
        return None

    def run(self) -> None:
        while not self.stop.is_set():
            mac = "02:" + ":".join(f"{random.randrange(256):02x}" for _ in range(5))
            xid = random.getrandbits(32)
            chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
            discover = Packet(op=BOOTREQUEST, xid=xid, flags=0x8000, chaddr=chaddr,
                              options={OPT_MESSAGE_TYPE: bytes([MessageType.DISCOVER])})  # fmt: skip
            offer = self._ask(discover, MessageType.OFFER)
            if offer is None:
                self.unanswered.append(f"{mac} DISCOVER")
                continue
            request = Packet(op=BOOTREQUEST, xid=xid, flags=0x8000, chaddr=chaddr, options={
                OPT_MESSAGE_TYPE: bytes([MessageType.REQUEST]),
                OPT_REQUESTED_IP: socket.inet_aton(offer.yiaddr),
                OPT_SERVER_ID: offer.options[OPT_SERVER_ID],
            })  # fmt: skip
            if self._ask(request, MessageType.ACK) is None:
                self.unanswered.append(f"{mac} REQUEST")
                continue
            self.done += 1
            time.sleep(0.01)  # a steady load, not a flood: the pool must outlast the test


def _lab(path: Path, tmp_path: Path, ip: str, extra: str = "") -> None:
    kernel = tmp_path / "vmlinuz"
    if not kernel.exists():  # enough of a bzImage for `provision check`: the "HdrS" magic at 0x202
        kernel.write_bytes(bytes(0x202) + b"HdrS" + bytes(4096))
    path.write_text(LAB.format(state=tmp_path / "state", mac=BOX_MAC, ip=ip, kernel=kernel) + extra)


def _wait_for(sp, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in sp.output:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the log:\n{sp.output[-3000:]}")


def test_sighup_reloads_under_load_and_a_broken_file_keeps_the_old(serve_netns, tmp_path):
    link = serve_netns(server_if="sv0", client_if="cl0", server_addr=f"{SERVER_IP}/22", prefix="rl")
    lab = tmp_path / "lab.yml"
    _lab(lab, tmp_path, "198.18.21.11")
    sp = link.serve(str(lab))
    # the start-up summary names what is served
    assert "subnet 198.18.20.0/22 on sv0: 511 pool addresses" in sp.output
    assert "devices: 1 (" in sp.output

    load = Load(socket_in(link.client, "cl0"))
    worker = threading.Thread(target=load.run, daemon=True)
    worker.start()
    try:
        time.sleep(1.0)
        # 1. A valid change: box-01 moves to .12 and a second device appears.
        _lab(
            lab, tmp_path, "198.18.21.12", '  - {name: box-02, mac: "52:54:00:21:00:02", ip: 198.18.21.13}\n'
        )
        os.kill(sp.proc.pid, signal.SIGHUP)
        _wait_for(sp, "reloaded: devices: 2 (")
        time.sleep(1.0)
        # 2. A broken file: refused, the running configuration stays.
        lab.write_text("interfaces: [sv0\nsubnets: {")
        os.kill(sp.proc.pid, signal.SIGHUP)
        _wait_for(sp, "refused, the running configuration stays")
        time.sleep(1.0)
    finally:
        load.stop.set()
        worker.join(15)
        load.sock.close()
    assert load.done >= 20, sp.output[-3000:]
    assert load.unanswered == [], (
        f"{len(load.unanswered)} unanswered: {load.unanswered[:5]}\n{sp.output[-8000:]}"
    )
    assert sp.proc.poll() is None, "serve died"
    assert "Traceback" not in sp.output

    # box-01's reservation is the reloaded one (.12), still after the broken file was refused
    probe = socket_in(link.client, "cl0")
    try:
        chaddr = bytes.fromhex(BOX_MAC.replace(":", "")) + bytes(10)
        discover = Packet(op=BOOTREQUEST, xid=0x1234, flags=0x8000, chaddr=chaddr,
                          options={OPT_MESSAGE_TYPE: bytes([MessageType.DISCOVER])})  # fmt: skip
        offer = Load(probe)._ask(discover, MessageType.OFFER)
    finally:
        probe.close()
    assert offer is not None and offer.yiaddr == "198.18.21.12"
