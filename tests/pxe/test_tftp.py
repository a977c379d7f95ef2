"""pxe.tftp against real clients (tftp-hpa, atftp, curl, tftpy) and a raw-socket client for the
protocol corners no packaged client exercises (EDK2's tsize probe, duplicate ACKs, garbage).

The server runs on 127.0.0.1 at a free high port in a loop thread of this process, so the events
it emits can be checked directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pxe.policy import Client, Event, RenderedFile, Service
from pxe.tftp import Limits, TftpConfig, start_tftp
from pxe.tftp import packets as P
from tests.support.loop import LoopThread
from tests.support.tools import require_tool

LCM = 187904  # lcm(512, 1468): a size that is an exact multiple of both block sizes


class Tree:
    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.root.mkdir()
        self.files: dict[str, bytes] = {
            "small.bin": os.urandom(100_000),
            "multiple.bin": os.urandom(2 * LCM),
            "empty.bin": b"",
            "one.bin": b"x",
            "sub/dir/grub.cfg": b"set timeout=1\n",
        }
        for name, data in self.files.items():
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            (self.root / name).write_bytes(data)
        (base / "secret").write_bytes(b"outside the root\n")
        os.symlink(base / "secret", self.root / "leak")


class TestPolicy:
    """Answers like the application's policy would, for a few paths; records what it was asked."""

    __test__ = False

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.asked: list[Client] = []

    def decide(self, client):  # pragma: no cover - TFTP never asks
        return None

    def render(self, client: Client, path: str) -> RenderedFile | None:
        self.asked.append(client)
        if path == "rendered.ipxe":
            return RenderedFile(content=f"#!ipxe\necho hello {client.ip}\n".encode())
        if path == "chosen.bin":
            return RenderedFile(path=self.tree.root / "small.bin")
        if path == "hidden.bin":
            return RenderedFile.not_found()
        if path == "boom":
            raise RuntimeError("policy bug")
        return None


@pytest.fixture
def server(tmp_path):
    tree = Tree(tmp_path)
    loop = LoopThread()
    events: list[Event] = []
    policy = TestPolicy(tree)
    # Every client here is 127.0.0.1: the per-client cap is raised for the 30 concurrent ones.
    config = TftpConfig(
        root=tree.root,
        bind_addr="127.0.0.1",
        port=0,
        limits=Limits(timeout=0.5, retries=4),
        max_per_client=64,
    )
    srv = loop.run(start_tftp(config, policy, events.append))
    srv.tree, srv.seen, srv.policy, srv.out = tree, events, policy, tmp_path / "out"
    srv.loop_thread = loop
    srv.out.mkdir()
    yield srv
    loop.call(srv.close)
    loop.stop()


def kinds(events: list[Event], kind: str) -> list[Event]:
    return [e for e in list(events) if e.kind == kind]


def settle(events: list[Event], kind: str, count: int = 1, wait: float = 10) -> list[Event]:
    """The events of `kind` once there are `count` of them: a client exits as soon as it has the
    last block, a moment before the server reads its final ACK and reports the transfer."""
    deadline = time.monotonic() + wait
    while len(kinds(events, kind)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return kinds(events, kind)


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


# -- the four real clients --------------------------------------------------------------------
def fetch_tftp_hpa(port: int, name: str, out: Path) -> None:
    tftp = require_tool("tftp")
    r = run([tftp, "127.0.0.1", str(port), "-m", "binary", "-c", "get", name, str(out)])
    assert r.returncode == 0 and "Error" not in r.stdout + r.stderr, r.stdout + r.stderr


def fetch_atftp(port: int, name: str, out: Path, blksize: int = 1468, window: int = 16) -> None:
    atftp = require_tool("atftp")
    argv = [atftp, "--option", f"blksize {blksize}", "--option", f"windowsize {window}"]
    r = run([*argv, "-g", "-r", name, "-l", str(out), "127.0.0.1", str(port)])
    assert r.returncode == 0, r.stdout + r.stderr


def fetch_curl(port: int, name: str, out: Path, blksize: int = 1468) -> None:
    curl = require_tool("curl")
    r = run([curl, "-sS", "--tftp-blksize", str(blksize), "-o", str(out), f"tftp://127.0.0.1:{port}/{name}"])
    assert r.returncode == 0, r.stderr
    if not out.exists():  # curl writes no file for a zero-byte download
        out.write_bytes(b"")


def fetch_tftpy(port: int, name: str, out: Path, blksize: int = 1468) -> None:
    import tftpy

    tftpy.TftpClient("127.0.0.1", port, options={"blksize": blksize}).download(name, str(out), timeout=5)


CLIENTS = {"tftp-hpa": fetch_tftp_hpa, "atftp": fetch_atftp, "curl": fetch_curl, "tftpy": fetch_tftpy}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("name", ["small.bin", "multiple.bin", "empty.bin", "one.bin", "sub/dir/grub.cfg"])
def test_real_clients_fetch_byte_identical(server, client, name):
    out = server.out / "got"
    CLIENTS[client](server.port, name, out)
    assert out.read_bytes() == server.tree.files[name]
    sent = settle(server.seen, "tftp.sent")
    assert (
        sent and sent[-1].detail["path"] == name and sent[-1].detail["bytes"] == len(server.tree.files[name])
    )
    assert sent[-1].ip == "127.0.0.1"


def test_atftp_windowsize_is_negotiated(server):
    fetch_atftp(server.port, "multiple.bin", server.out / "w", blksize=1024, window=8)
    assert (server.out / "w").read_bytes() == server.tree.files["multiple.bin"]
    request = kinds(server.seen, "tftp.request")[-1]
    assert request.detail["options"] == {"blksize": "1024", "windowsize": "8"}
    sent = settle(server.seen, "tftp.sent")[-1]
    assert (sent.detail["blksize"], sent.detail["windowsize"]) == (1024, 8)


def test_block_number_rollover_at_blksize_512(server):
    # 33 MiB at 512 bytes a block is 67,585 blocks: past 65,535, so the block number wraps to 0.
    big = server.tree.root / "big.bin"
    with open(big, "wb") as f:
        for _ in range(33):
            f.write(os.urandom(1 << 20))
    out = server.out / "big"
    fetch_curl(server.port, "big.bin", out, blksize=512)
    assert out.stat().st_size == big.stat().st_size
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_many_concurrent_transfers(server):
    atftp = require_tool("atftp")
    procs = [
        subprocess.Popen(
            [atftp, "--option", "blksize 1468", "--option", "windowsize 4", "-g", "-r", "multiple.bin"]
            + ["-l", str(server.out / f"c{i}"), "127.0.0.1", str(server.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(30)
    ]
    assert [p.wait(120) for p in procs] == [0] * 30
    for i in range(30):
        assert (server.out / f"c{i}").read_bytes() == server.tree.files["multiple.bin"]
    assert len(settle(server.seen, "tftp.sent", 30)) == 30


# -- raw-socket client ------------------------------------------------------------------------
class Raw:
    def __init__(self, port: int) -> None:
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)

    def send(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        self.sock.sendto(data, to or self.server)

    def rrq(self, name: str, **options) -> None:
        self.send(P.build_request(P.OP_RRQ, name, "octet", options))

    def recv(self, timeout: float = 3) -> tuple[P.Packet, tuple[str, int], bytes]:
        self.sock.settimeout(timeout)
        data, peer = self.sock.recvfrom(70000)
        if data[:2] == P.OP_OACK.to_bytes(2, "big"):
            items = data[2:-1].split(b"\0")
            return (
                dict(zip([i.decode() for i in items[::2]], [i.decode() for i in items[1::2]], strict=True)),
                peer,
                data,
            )
        return P.parse(data), peer, data

    def quiet(self, timeout: float) -> bool:
        """True when nothing arrives within `timeout` (for "must not answer" checks)."""
        try:
            self.recv(timeout)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(server):
    r = Raw(server.port)
    yield r
    r.close()


def error_for(raw: Raw, name: str) -> P.Error:
    raw.rrq(name)
    packet, _, _ = raw.recv()
    assert isinstance(packet, P.Error), packet
    return packet


def test_traversal_and_escapes_refused(server, raw):
    assert error_for(raw, "../etc/passwd").code == P.ErrorCode.ACCESS_VIOLATION
    assert error_for(raw, "sub/../../secret").code == P.ErrorCode.ACCESS_VIOLATION
    assert error_for(raw, "..\\..\\secret").code == P.ErrorCode.ACCESS_VIOLATION
    assert error_for(raw, "leak").code == P.ErrorCode.ACCESS_VIOLATION  # symlink out of the root
    # Absolute paths are looked up under the root: the host's /etc/passwd is never reached.
    assert error_for(raw, "/etc/passwd").code == P.ErrorCode.FILE_NOT_FOUND
    assert error_for(raw, "missing.bin").code == P.ErrorCode.FILE_NOT_FOUND
    assert error_for(raw, "sub").code == P.ErrorCode.FILE_NOT_FOUND  # a directory
    # A NUL inside the name ends the string early, so "name\0evil" reads as an unknown mode.
    raw.send(b"\x00\x01leak\x00../x\x00octet\x00")
    packet, _, _ = raw.recv()
    assert isinstance(packet, P.Error)
    errors = kinds(server.seen, "tftp.error")
    assert {e.detail["path"] for e in errors} >= {"../etc/passwd", "leak", "/etc/passwd"}


def test_traversal_with_real_clients(server):
    curl = require_tool("curl")
    r = run(
        [
            curl,
            "-sS",
            "--path-as-is",
            "-o",
            str(server.out / "x"),
            f"tftp://127.0.0.1:{server.port}/../secret",
        ]
    )
    assert r.returncode != 0 and not (server.out / "x").exists()
    tftp = require_tool("tftp")
    r = run([tftp, "127.0.0.1", str(server.port), "-m", "binary", "-c", "get", "leak", str(server.out / "y")])
    assert "Error code 2" in r.stdout + r.stderr
    assert not (server.out / "y").exists() or (server.out / "y").read_bytes() == b""


def test_write_requests_refused(server, raw):
    raw.send(P.build_request(P.OP_WRQ, "upload.bin"))
    packet, _, _ = raw.recv()
    assert isinstance(packet, P.Error) and packet.code == P.ErrorCode.ACCESS_VIOLATION
    tftp = require_tool("tftp")
    src = server.out / "up.bin"
    src.write_bytes(b"data")
    r = run([tftp, "127.0.0.1", str(server.port), "-m", "binary", "-c", "put", str(src), "upload.bin"])
    assert "Error code 2" in r.stdout + r.stderr
    assert not (server.tree.root / "upload.bin").exists()


def test_edk2_tsize_probe_then_fresh_request(server, raw):
    """AAVMF/OVMF: RRQ with tsize -> OACK -> ERROR 8 -> a fresh RRQ that must be served clean.
    The fresh RRQ comes from the same port here, the harder case for the server (see the next
    test); a client that takes a new port (a new TID, RFC 1350 §4) never meets the old transfer."""
    data = server.tree.files["multiple.bin"]
    raw.rrq("multiple.bin", tsize=0, blksize=1468)
    oack, tid, _ = raw.recv()
    assert oack == {"tsize": str(len(data)), "blksize": "1468"}
    raw.send(P.build_error(P.ErrorCode.OPTION_REFUSED, "User aborted the transfer"), tid)
    raw.rrq("multiple.bin", blksize=1468, windowsize=4)
    oack, tid2, _ = raw.recv()
    assert oack == {"blksize": "1468", "windowsize": "4"} and tid2 != tid
    raw.send(P.build_ack(0), tid2)
    got, block = b"", 0
    while True:
        for _ in range(4):
            packet, peer, _ = raw.recv()
            assert isinstance(packet, P.Data) and peer == tid2
            assert packet.block == block + 1
            block, got = packet.block, got + packet.payload
            if len(packet.payload) < 1468:
                break
        raw.send(P.build_ack(block), tid2)
        if len(packet.payload) < 1468:
            break
    assert got == data
    probe = [e for e in kinds(server.seen, "tftp.error") if e.detail.get("size_probe")]
    assert len(probe) == 1 and probe[0].detail["code"] == 8 and probe[0].detail["by"] == "client"
    assert settle(server.seen, "tftp.sent")[-1].detail["bytes"] == len(data)


def test_error_then_same_request_when_port_69_is_read_first(server, raw):
    """The client sends ERROR 8 to the transfer's port, then the same RRQ again to port 69. The
    loop gives no order between the two sockets; under load it read port 69 first and took the
    RRQ for a repeat, resending the dead transfer's OACK (the flake in the EDK2 test above).
    Here that order is forced: both datagrams are queued, then port 69's reader runs first."""
    raw.rrq("multiple.bin", tsize=0, blksize=1468)
    _, tid, _ = raw.recv()

    def error_then_rrq_then_read_port_69() -> None:
        raw.send(P.build_error(P.ErrorCode.OPTION_REFUSED, "User aborted the transfer"), tid)
        raw.rrq("multiple.bin", tsize=0, blksize=1468)
        server._on_readable()

    server.loop_thread.call(error_then_rrq_then_read_port_69)
    oack, tid2, _ = raw.recv()
    assert oack == {"tsize": str(2 * LCM), "blksize": "1468"} and tid2 != tid
    probe = settle(server.seen, "tftp.error")
    assert probe[0].detail["code"] == 8 and probe[0].detail["size_probe"]


def test_drain_ends_a_transfer_whose_client_is_gone(server, raw):
    """drain() peeks the transfer's port; a pending ICMP port unreachable is consumed by that peek
    (Linux reports a socket error once), so drain itself must end the transfer as peer-gone."""
    raw.rrq("multiple.bin", tsize=0, blksize=1468)
    raw.recv()  # the OACK: the transfer is waiting for ACK 0
    client_port = raw.sock.getsockname()[1]
    raw.close()  # the client is gone: its port now answers ICMP port unreachable
    transfer = server.transfers[("127.0.0.1", client_port)]

    def resend_then_drain() -> bool:
        transfer.resend_first()  # -> ICMP port unreachable queued on the transfer's socket
        time.sleep(0.1)  # on the loop thread: its reader cannot run before drain() does
        transfer.drain()
        return transfer.done  # ended by drain itself, not later by a timer's resend

    assert server.loop_thread.call(resend_then_drain)
    ended = settle(server.seen, "tftp.error")
    assert ended and ended[0].detail["outcome"] == "peer-gone"
    assert ("127.0.0.1", client_port) not in server.transfers


def test_other_request_from_same_port_is_not_a_repeat(server, raw):
    """Only the same RRQ is a repeat [RFC 1350 §2: the side that times out resends its last
    packet, for a client its request]. Another request from that port gets its own answer,
    never the old transfer's OACK."""
    raw.rrq("multiple.bin", tsize=0, blksize=1468)
    _, tid, _ = raw.recv()
    raw.rrq("multiple.bin", blksize=1468, windowsize=4)
    oack, tid2, _ = raw.recv()
    assert oack == {"blksize": "1468", "windowsize": "4"} and tid2 != tid


def test_duplicate_ack_is_not_answered(server, raw):
    """Sorcerer's Apprentice: answering every duplicate ACK doubles the traffic for good."""
    raw.rrq("small.bin")
    first, tid, _ = raw.recv()
    assert isinstance(first, P.Data) and first.block == 1
    raw.send(P.build_ack(1), tid)
    raw.send(P.build_ack(1), tid)
    second, _, _ = raw.recv()
    assert isinstance(second, P.Data) and second.block == 2
    # The timer (0.5 s here) is the only thing allowed to resend; nothing comes before it.
    assert raw.quiet(0.3)


def test_unanswered_oack_is_resent_only_after_4s_of_silence(server, raw):
    """A client whose ACK 0 was lost repeats it itself (tftpy: every timeout, 3 tries); an OACK
    resent meanwhile makes tftpy and atftp abort. With this server's 0.5 s timeout the quiet
    expiries alone ended at 2 s, inside tftpy's patience (the loss test's flake): the OACK is
    resent only after 4 s without a word from the client, whatever the timeout."""
    raw.rrq("small.bin", blksize=1468)
    oack, tid, first = raw.recv()
    assert oack == {"blksize": "1468"}
    assert raw.quiet(3.7)  # expiries at 0.5, 1 and 2 s passed: nothing sent
    _, tid_again, again = raw.recv(2)  # the last resort, at 4 s
    assert again == first and tid_again == tid


def test_lost_ack_is_retransmitted_then_abandoned(server, raw):
    raw.rrq("small.bin")
    first, tid, _ = raw.recv()
    again, tid_again, _ = raw.recv(3)  # we never ACK: the server resends block 1
    assert again == first and tid_again == tid
    for _ in range(20):  # Limits(retries=4): it gives up and says so
        if any(e.detail.get("outcome") == "timeout" for e in kinds(server.seen, "tftp.error")):
            break
        with contextlib.suppress(TimeoutError):
            raw.recv(2)
    assert any(e.detail.get("outcome") == "timeout" for e in kinds(server.seen, "tftp.error"))


def test_absurd_options_are_clamped_or_declined(server, raw):
    raw.rrq("small.bin", blksize=10**12, windowsize=100000, timeout=0, tsize=0, bogus=1)
    oack, _, _ = raw.recv()
    # 10**12 has more digits than any size: declined; windowsize clamped to 64; timeout 0 invalid.
    assert oack == {"tsize": "100000", "windowsize": "64"}
    raw2 = Raw(server.port)
    try:
        raw2.rrq("small.bin", blksize=100000, windowsize=0, timeout=300)
        oack, _, _ = raw2.recv()
        assert oack == {"blksize": "65464"}
        raw2.rrq("one.bin", blksize=4)  # below RFC 2348's minimum of 8: no OACK, plain 512
        data, _, _ = raw2.recv()
        assert data == P.Data(1, b"x")
    finally:
        raw2.close()


def test_garbage_never_stops_the_server(server, raw):
    junk = [
        b"",
        b"\x00",
        b"\xff\xff\xff\xff",
        b"\x00\x07abc\x00",  # unknown opcode
        b"\x00\x01small.bin",  # unterminated
        b"\x00\x01small.bin\x00",  # no mode
        b"\x00\x01small.bin\x00mail\x00",
        b"\x00\x01small.bin\x00octet\x00blksize\x00" + b"9" * 5000 + b"\x00",
        b"\x00\x01" + b"a" * 3000 + b"\x00octet\x00",
        b"\x00\x04\x00\x01",  # an ACK to port 69
        b"\x00\x05\x00\x01oops\x00",  # an ERROR to port 69: never answered (no error loops)
        os.urandom(600),
    ]
    for item in junk:
        raw.send(item)
    # Garbage to a live transfer's port as well.
    raw.rrq("small.bin")
    _, tid, _ = raw.recv()
    for item in junk:
        raw.send(item, tid)
    out = server.out / "after"
    fetch_curl(server.port, "small.bin", out)
    assert out.read_bytes() == server.tree.files["small.bin"]


def test_policy_rendering(server):
    out = server.out / "r"
    fetch_tftpy(server.port, "rendered.ipxe", out)
    assert out.read_bytes() == b"#!ipxe\necho hello 127.0.0.1\n"
    asked = next(c for c in server.policy.asked if c.path == "rendered.ipxe")
    assert asked.service is Service.TFTP and asked.ip == "127.0.0.1" and asked.mac == ""
    fetch_curl(server.port, "chosen.bin", out)
    assert out.read_bytes() == server.tree.files["small.bin"]
    r = Raw(server.port)
    try:
        assert error_for(r, "hidden.bin").code == P.ErrorCode.FILE_NOT_FOUND
        assert error_for(r, "boom").code == P.ErrorCode.NOT_DEFINED  # a policy bug: error, not a crash
    finally:
        r.close()
    fetch_curl(server.port, "small.bin", out)  # and the server still serves
    assert out.read_bytes() == server.tree.files["small.bin"]


def test_netascii_mode(server):
    (server.tree.root / "text.txt").write_bytes(b"a\nb\r\nc")
    tftp = require_tool("tftp")
    out = server.out / "t"
    r = run([tftp, "127.0.0.1", str(server.port), "-m", "ascii", "-c", "get", "text.txt", str(out)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_bytes() == b"a\nb\r\nc"  # the client converts back to local newlines


def test_bound_address_only(tmp_path):
    loop = LoopThread()
    root = tmp_path / "r"
    root.mkdir()
    (root / "f").write_bytes(b"hi")
    srv = loop.run(start_tftp(TftpConfig(root=root, bind_addr="127.0.0.1", port=0)))
    try:
        other = Raw(srv.port)
        other.server = ("127.0.0.2", srv.port)
        other.rrq("f")
        with pytest.raises((TimeoutError, ConnectionRefusedError)):
            other.recv(0.5)
        other.close()
    finally:
        loop.call(srv.close)
        loop.stop()


def test_fuzzed_packets_to_a_live_server(server, caplog):
    """Hypothesis-made datagrams (random, and request-shaped with random options) to port 69;
    the server answers or ignores each and still serves afterwards."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    names = st.sampled_from(["small.bin", "../x", "leak", "sub", "", "nope"]) | st.text(max_size=30)
    option = st.tuples(
        st.sampled_from(["blksize", "tsize", "windowsize", "timeout", "BLKSIZE", "x"]), st.text(max_size=12)
    )
    requests = st.builds(
        lambda op, name, mode, opts: (
            op
            + b"\0".join(s.encode("utf-8", "replace") for s in [name, mode, *[v for kv in opts for v in kv]])
            + b"\0"
        ),
        st.sampled_from([b"\x00\x01", b"\x00\x02"]),
        names,
        st.sampled_from(["octet", "netascii", "mail", "bogus"]),
        st.lists(option, max_size=6),
    )

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=700) | requests)
    def send(data):
        sock.sendto(data, ("127.0.0.1", server.port))

    try:
        send()
    finally:
        sock.close()
    out = server.out / "after-fuzz"
    fetch_atftp(server.port, "small.bin", out)
    assert out.read_bytes() == server.tree.files["small.bin"]
    # Every datagram was handled on purpose: none reached the last-resort exception handler.
    assert not [r for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("pxe.tftp")]


def test_final_ack_lost_is_reported_unconfirmed(server):
    """A client that ACKed the OACK, got the last block and left (its final ACK lost): the server
    reports the file sent but unconfirmed. One that never ACKed anything: a timeout error."""
    r = Raw(server.port)
    r.rrq("one.bin", blksize=512)
    _, tid, _ = r.recv()
    r.send(P.build_ack(0), tid)
    data, _, _ = r.recv()
    assert data == P.Data(1, b"x")
    r.close()  # gone without the final ACK: the retransmission meets a closed port
    sent = settle(server.seen, "tftp.sent")
    assert sent and sent[-1].detail["confirmed"] is False and sent[-1].detail["path"] == "one.bin"
    r = Raw(server.port)
    r.rrq("sub/dir/grub.cfg")
    assert isinstance(r.recv()[0], P.Data)
    r.close()
    errors = settle(server.seen, "tftp.error")
    assert errors and errors[-1].detail["path"] == "sub/dir/grub.cfg"
    assert errors[-1].detail["outcome"] in ("timeout", "peer-gone")
    assert len(kinds(server.seen, "tftp.sent")) == 1


def test_repeated_rrq_gets_the_first_packet_again_from_the_same_transfer(server, raw):
    """A client whose OACK was lost repeats its RRQ: the same transfer answers it again (a new
    transfer from a new port would draw an ERROR 5), and the server's own timer does not resend
    the OACK at its first expiry (atftp and tftpy abort on an OACK after their ACK 0)."""
    raw.rrq("small.bin", blksize=1468)
    first, tid, _ = raw.recv()
    raw.rrq("small.bin", blksize=1468)
    again, tid2, _ = raw.recv()
    assert first == again == {"blksize": "1468"} and tid2 == tid
    assert raw.quiet(0.7)  # fixture timeout 0.5 s: the first expiry passes silently
    raw.send(P.build_ack(0), tid)
    data, _, _ = raw.recv()
    assert isinstance(data, P.Data) and data.block == 1 and len(data.payload) == 1468


def test_a_replaced_file_is_served_new_and_entries_are_released(server):
    path = server.tree.root / "small.bin"
    for round_ in range(3):
        data = os.urandom(50_000 + round_)
        path.write_bytes(data)
        out = server.out / f"got{round_}"
        fetch_curl(server.port, "small.bin", out)
        assert out.read_bytes() == data
        settle(server.seen, "tftp.sent", round_ + 1)
    cache = server.blocks
    assert len(cache) == 3  # one entry per version of the file, none in use
    assert all(entry.users == 0 for entry in cache._entries.values())


def test_after_repeats_the_next_lost_block_is_repeated_at_the_first_timeout(server, raw):
    """A block ACKed only after three repeats backs the timer off to 4 x 0.5 s; the client's
    ACK must bring it back, or the next lost block waits that long for its first repeat."""
    raw.rrq("small.bin")  # no options: DATA 1 at once, blksize 512, Limits(timeout=0.5)
    first, tid, _ = raw.recv()
    assert isinstance(first, P.Data) and first.block == 1
    for _ in range(3):  # not ACKed: repeats at +0.5, +1 and +2 s
        again, _, _ = raw.recv(3)
        assert again == first
    raw.send(P.build_ack(1), tid)
    second, _, _ = raw.recv()
    assert isinstance(second, P.Data) and second.block == 2
    start = time.monotonic()  # "lose" DATA 2: its repeat is due at +0.5 s
    again, _, _ = raw.recv(3)
    assert again == second
    assert time.monotonic() - start < 1.0
