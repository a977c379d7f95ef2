"""pxe.tftp under attack, on 127.0.0.0/8: idle RRQs from raw sockets (the attacker, 127.0.0.2..)
against the per-client and total caps, a timeout option of 255 s, a client ACKing just often
enough to stay alive, control characters in a file name. Each test asserts the attack is refused
or bounded AND that a real client (atftp, tftpy, tftp-hpa from 127.0.0.1) is served during it
(where the bound leaves room) and after it. No timing is asserted: waits are generous bounds.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest

from pxe.tftp import Limits, TftpConfig, start_tftp
from pxe.tftp import packets as P
from pxe.tftp.transfer import State
from tests.support.loop import LoopThread
from tests.support.tools import require_tool

SIZE = 200_000


@pytest.fixture
def make_server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.bin").write_bytes(os.urandom(SIZE))
    loop = LoopThread()
    made = []

    def make(**config):
        limits = config.pop("limits", Limits(timeout=0.5, retries=3))
        srv = loop.run(
            start_tftp(TftpConfig(root=root, bind_addr="127.0.0.1", port=0, limits=limits, **config))
        )
        srv.root, srv.loop_thread, srv.out = root, loop, tmp_path
        made.append(srv)
        return srv

    yield make
    for srv in made:
        loop.call(srv.close)
    loop.stop()


class Attacker:
    """Raw UDP sockets from one source address, each sending one RRQ and never ACKing."""

    def __init__(self, port: int, source: str = "127.0.0.2") -> None:
        self.port, self.source = port, source
        self.socks: list[socket.socket] = []

    def rrq(self, count: int, name: str = "boot.bin", **options: object) -> None:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.source, 0))
            s.sendto(
                P.build_request(P.OP_RRQ, name, "octet", {k: str(v) for k, v in options.items()}),
                ("127.0.0.1", self.port),
            )
            self.socks.append(s)

    def answers(self, wait: float = 3) -> list[P.Packet | dict]:
        """The first packet each socket got (an OACK as its option dict), None when nothing came."""
        got: list[P.Packet | dict] = []
        for s in self.socks:
            s.settimeout(wait)
            try:
                data = s.recv(70000)
            except TimeoutError:
                got.append(None)
                continue
            if data[:2] == P.OP_OACK.to_bytes(2, "big"):
                items = data[2:-1].split(b"\0")
                got.append(
                    dict(
                        zip([i.decode() for i in items[::2]], [i.decode() for i in items[1::2]], strict=True)
                    )
                )
            else:
                got.append(P.parse(data))
        return got

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []


def busy(packets) -> int:
    return sum(1 for p in packets if isinstance(p, P.Error) and p.message == "server busy")


def fetch_atftp(port: int, name: str, out: Path) -> bytes:
    import subprocess

    atftp = require_tool("atftp")
    r = subprocess.run(
        [atftp, "--option", "blksize 1468", "-g", "-r", name, "-l", str(out), "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return out.read_bytes()


def fetch_tftpy(port: int, name: str, out: Path) -> bytes:
    import tftpy

    tftpy.TftpClient("127.0.0.1", port, options={"blksize": 1468}).download(name, str(out), timeout=5)
    return out.read_bytes()


def live(srv) -> int:
    return srv.loop_thread.call(lambda: len(srv.transfers))


def wait_until(predicate, wait: float = 60) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_per_client_cap_refuses_one_source_and_serves_the_others(make_server, caplog):
    srv = make_server(max_per_client=8, max_transfers=100)
    want = (srv.root / "boot.bin").read_bytes()
    attacker = Attacker(srv.port)
    with caplog.at_level(logging.WARNING, logger="pxe.tftp"):
        attacker.rrq(30)
        answers = attacker.answers()
        # During: 8 transfers for the attacker, 22 refusals, and a real client is served.
        assert busy(answers) == 22
        assert sum(1 for a in answers if isinstance(a, P.Data)) == 8
        assert fetch_atftp(srv.port, "boot.bin", srv.out / "during") == want
    assert srv.stats["tftp.busy_per_client"] == 22
    lines = [r for r in caplog.records if "per-client cap" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.2" in lines[0].getMessage()  # one line, counted, not 22
    # After: the attacker's idle transfers time out and free their slots; it is served again.
    assert wait_until(lambda: live(srv) == 0)
    again = Attacker(srv.port)
    again.rrq(1)
    assert isinstance(again.answers()[0], P.Data)
    again.close()
    attacker.close()


def test_total_cap_refuses_gracefully_and_a_new_client_is_still_served(make_server, caplog):
    srv = make_server(max_per_client=8, max_transfers=20)
    want = (srv.root / "boot.bin").read_bytes()
    attackers = [Attacker(srv.port, f"127.0.0.{i}") for i in (2, 3, 4)]
    with caplog.at_level(logging.WARNING, logger="pxe.tftp"):
        for a in attackers:
            a.rrq(8)
        answers = [p for a in attackers for p in a.answers()]
        # Beyond the cap, sources already holding transfers get ERROR "server busy".
        assert busy(answers) == 4 and live(srv) == 20
        assert srv.stats["tftp.busy_total"] == 4
        assert len([r for r in caplog.records if "(the cap)" in r.getMessage()]) == 1
        # During: a new client takes the slot of the oldest idle (never ACKed) transfer.
        assert fetch_tftpy(srv.port, "boot.bin", srv.out / "during") == want
        assert fetch_atftp(srv.port, "boot.bin", srv.out / "during2") == want
        assert srv.stats["tftp.evicted_idle"] >= 1  # atftp may find the slot tftpy freed
    # After: the idle transfers end by themselves and real clients are served.
    assert wait_until(lambda: live(srv) == 0)
    assert fetch_tftpy(srv.port, "boot.bin", srv.out / "after") == want
    for a in attackers:
        a.close()


def test_timeout_option_above_the_maximum_is_declined(make_server):
    srv = make_server(limits=Limits(timeout=0.5, retries=3, max_timeout=10))
    a = Attacker(srv.port)
    a.rrq(1, timeout=255, blksize=1468)
    a.rrq(1, timeout=5, blksize=1468)
    oack_255, oack_5 = a.answers()
    # RFC 2349: a server accepts the client's value as is or leaves the option out.
    assert oack_255 == {"blksize": "1468"}
    assert oack_5 == {"blksize": "1468", "timeout": "5"}
    assert srv.stats["tftp.timeout_declined"] == 1
    # The declined one runs on our 0.5 s timeout: it is gone long before 255 s (or even 5 s x 4).
    transfers = srv.loop_thread.call(lambda: list(srv.transfers.values()))
    assert sorted(t.opts.timeout for t in transfers) == [0.5, 5.0]
    assert wait_until(lambda: live(srv) <= 1, wait=30)
    a.close()


def test_lifetime_ends_a_transfer_kept_alive_by_slow_acks(make_server, caplog):
    srv = make_server(limits=Limits(timeout=1, retries=3, lifetime=1.5, min_rate=10**9))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.settimeout(3)
    s.sendto(P.build_request(P.OP_RRQ, "boot.bin", "octet", {}), ("127.0.0.1", srv.port))
    ended = None
    block_seen = 0
    deadline = time.monotonic() + 20
    with caplog.at_level(logging.WARNING, logger="pxe.tftp"):
        while time.monotonic() < deadline:
            data, tid = s.recvfrom(70000)
            packet = P.parse(data)
            if isinstance(packet, P.Error):
                ended = packet
                break
            assert isinstance(packet, P.Data)
            block_seen = packet.block
            time.sleep(0.4)  # one ACK per 0.4 s: always inside the 1 s timeout, never done
            s.sendto(P.build_ack(packet.block), tid)
        assert ended is not None and ended.message == "transfer took too long"
        assert 1 < block_seen < SIZE // 512  # it made progress, and was still ended
        assert srv.stats["tftp.lifetime"] == 1
        assert any("past its lifetime" in r.getMessage() for r in caplog.records)
    s.close()
    assert wait_until(lambda: live(srv) == 0, wait=5)
    assert fetch_tftpy(srv.port, "boot.bin", srv.out / "after") == (srv.root / "boot.bin").read_bytes()


def test_idle_transfers_hold_no_read_ahead(make_server):
    """An idle RRQ used to read 256 KiB ahead for its first block: 1,000 of them cost 253 MiB.
    Now the first read is one block; a silent client's read-ahead is dropped at its first
    timeout. Measured on the transfers' buffers (RSS is printed by bench/limits.py)."""
    srv = make_server(max_per_client=300, max_transfers=1000, limits=Limits(timeout=0.5, retries=20))
    a = Attacker(srv.port)
    a.rrq(200)
    a.rrq(50, blksize=1468)  # OACK first: nothing read until ACK 0
    assert sum(1 for p in a.answers() if p is not None) == 250

    def buffered() -> list[int]:
        return [len(t.source._buf) for t in srv.transfers.values()]

    held = srv.loop_thread.call(buffered)
    assert len(held) == 250 and max(held) <= 512 and sum(held) <= 200 * 512
    time.sleep(1.5)  # past the first timeout: the silent clients' read-ahead is dropped
    assert srv.loop_thread.call(lambda: sum(buffered())) == 0
    states = srv.loop_thread.call(lambda: [t.state for t in srv.transfers.values()])
    assert states.count(State.WAIT_OACK_ACK) == 50
    # A real client is served meanwhile (and a moving transfer's read-ahead grows as before).
    assert fetch_tftpy(srv.port, "boot.bin", srv.out / "during") == (srv.root / "boot.bin").read_bytes()
    a.close()


def test_control_characters_in_a_file_name_stay_on_one_log_line(make_server, caplog):
    srv = make_server()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.settimeout(3)
    forged = "x\nWARNING pxe.tftp forged line\x1b[2J\r"
    with caplog.at_level(logging.INFO, logger="pxe.tftp"):
        # A malformed request (no mode field) carrying the name: logged by pxe itself.
        s.sendto(b"\x00\x01" + forged.encode() + b"\x00", ("127.0.0.1", srv.port))
        assert isinstance(P.parse(s.recvfrom(1000)[0]), P.Error)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("pxe.tftp")]
    assert messages, "the malformed request was not logged"
    for m in messages:
        assert "\n" not in m and "\r" not in m and "\x1b" not in m
    s.close()
    assert fetch_tftpy(srv.port, "boot.bin", srv.out / "after") == (srv.root / "boot.bin").read_bytes()
