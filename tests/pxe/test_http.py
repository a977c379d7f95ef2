"""pxe.http against curl: static files, HEAD, Range, rendered per-device files, confinement, and
routes the caller adds. The server runs on 127.0.0.1 at a free port. (provision's /api/v1 routes
are tested in tests/provision/server/test_api.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

from pxe.http import HttpConfig, start_http
from pxe.policy import Client, Event, RenderedFile, Service
from tests.support.loop import LoopThread
from tests.support.tools import require_tool


class TestPolicy:
    __test__ = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.asked: list[Client] = []

    def decide(self, client):  # pragma: no cover - HTTP never asks
        return None

    def render(self, client: Client, path: str) -> RenderedFile | None:
        self.asked.append(client)
        if path == "/boot.ipxe":
            return RenderedFile(content=f"#!ipxe\necho {client.ip}\n".encode(), content_type="text/plain")
        if path == "/onie-installer":
            if client.headers.get("ONIE-PLATFORM") == "x86_64-kvm_x86_64-r0":
                return RenderedFile(path=self.root / "nos.bin")
            return RenderedFile.not_found()
        if path == "/boom":
            raise RuntimeError("policy bug")
        return None


async def hello(request: web.Request) -> web.Response:
    """A caller-owned route, as an application adds its API."""
    return web.json_response({"hello": request.query.get("name", "")})


def mac_from_header(ip: str, headers) -> str | None:
    """The caller's MAC resolver (provision's also asks its lease book): here, one header."""
    return headers.get("X-Test-Mac")


@pytest.fixture
def http(tmp_path):
    root = tmp_path / "root"
    (root / "efi").mkdir(parents=True)
    files = {
        "big.bin": os.urandom(3_000_000),
        "efi/ipxe.efi": b"MZ" + os.urandom(5000),
        "nos.bin": os.urandom(70_000),
        "empty": b"",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (tmp_path / "secret").write_text("TOPSECRET\n")
    os.symlink(tmp_path / "secret", root / "leak")
    loop = LoopThread()
    events: list[Event] = []
    policy = TestPolicy(root)
    cfg = HttpConfig(root=root, bind_addr="127.0.0.1", port=0)
    routes = [web.get("/api/hello", hello)]
    srv = loop.run(start_http(cfg, policy, events.append, routes, mac_from_header))
    srv.files, srv.seen, srv.test_policy, srv.tmp = files, events, policy, tmp_path
    yield srv
    loop.run(srv.close())
    loop.stop()


def curl(*args: str, out: Path | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) from the curl binary."""
    binary = require_tool("curl")
    body_file = out or Path(f"/tmp/pv-http-{os.getpid()}-{threading.get_ident()}")
    argv = [binary, "-sS", "-D", "-", "-o", str(body_file), *args]
    r = subprocess.run(argv, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    blocks = [b for b in r.stdout.decode("latin-1").split("\r\n\r\n") if b.strip()]
    lines = blocks[-1].split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
    }
    body = body_file.read_bytes() if body_file.exists() else b""
    if out is None and body_file.exists():
        body_file.unlink()
    return status, headers, body


def last_sent(http, wait: float = 5) -> dict:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        sent = [e for e in list(http.seen) if e.kind == "http.sent"]
        if sent:
            return dict(sent[-1].detail)
        time.sleep(0.01)
    raise AssertionError("no http.sent event")


def test_get_is_byte_identical_and_reported(http):
    status, headers, body = curl(f"{http.url}/big.bin")
    assert status == 200 and body == http.files["big.bin"]
    assert headers["content-length"] == str(len(body))
    sent = last_sent(http)
    assert sent["path"] == "/big.bin" and sent["bytes"] == len(body) and sent["status"] == 200
    assert sent["range"] is None and sent["seconds"] >= 0


def test_head_has_content_length_and_efi_type(http):
    # UEFI HTTP boot: HEAD first, and it needs Content-Length; application/efi is honoured.
    status, headers, _ = curl("-I", f"{http.url}/efi/ipxe.efi")
    assert status == 200
    assert headers["content-length"] == str(len(http.files["efi/ipxe.efi"]))
    assert headers["content-type"] == "application/efi"
    assert last_sent(http)["method"] == "HEAD"


def test_ranges(http):
    data = http.files["big.bin"]
    status, headers, body = curl("-r", "0-99", f"{http.url}/big.bin")
    assert status == 206 and body == data[:100] and headers["content-range"] == f"bytes 0-99/{len(data)}"
    assert last_sent(http)["range"] == "bytes=0-99" and last_sent(http)["bytes"] == 100
    status, _, body = curl("-r", "-100", f"{http.url}/big.bin")
    assert status == 206 and body == data[-100:]
    status, _, body = curl("-r", "1000-", f"{http.url}/big.bin")
    assert status == 206 and body == data[1000:]
    status, headers, _ = curl("-r", f"{len(data)}-{len(data) + 10}", f"{http.url}/big.bin")
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
    assert last_sent(http)["status"] == 416


def test_resume_with_continue_at(http):
    out = http.tmp / "partial"
    out.write_bytes(http.files["big.bin"][:123_456])
    status, _, body = curl("-C", "-", f"{http.url}/big.bin", out=out)
    assert status == 206 and body == http.files["big.bin"]


def test_missing_directory_empty(http):
    assert curl(f"{http.url}/nope")[0] == 404
    assert curl(f"{http.url}/efi")[0] == 404
    assert curl(f"{http.url}/")[0] == 404
    status, headers, body = curl(f"{http.url}/empty")
    assert status == 200 and body == b"" and headers["content-length"] == "0"


def test_traversal_refused(http):
    for path in ("/../secret", "/efi/../../secret", "/%2e%2e/secret", "/..%5csecret", "/leak", "/x%00y"):
        status, _, body = curl("--path-as-is", f"{http.url}{path}")
        assert status in (400, 403, 404), path
        assert b"TOPSECRET" not in body, path
    assert curl("--path-as-is", f"{http.url}/../secret")[0] == 403
    assert curl(f"{http.url}/leak")[0] == 403
    # An absolute-looking path is under the root, never the host's /etc.
    assert curl("--path-as-is", f"{http.url}//etc/passwd")[0] == 404


def test_rendered_content_and_files(http):
    status, headers, body = curl(f"{http.url}/boot.ipxe")
    assert (
        status == 200
        and body == b"#!ipxe\necho 127.0.0.1\n"
        and headers["content-type"].startswith("text/plain")
    )
    assert last_sent(http)["rendered"] is True and last_sent(http)["bytes"] == len(body)
    status, headers, _ = curl("-I", f"{http.url}/boot.ipxe")  # HEAD of a rendered file: its length
    assert status == 200 and headers["content-length"] == str(len(body))
    asked = [c for c in http.test_policy.asked if c.path == "/boot.ipxe"][-1]
    assert asked.service is Service.HTTP and asked.ip == "127.0.0.1" and asked.server_ip == "127.0.0.1"
    assert asked.mac == ""  # the resolver knew nobody
    # Request headers reach the policy; its answer picks a file or says "not here" (404).
    onie = ["-H", "ONIE-PLATFORM: x86_64-kvm_x86_64-r0", "-H", "X-Test-Mac: 52:54:00:12:34:56"]
    status, headers, body = curl(*onie, f"{http.url}/onie-installer")
    assert status == 200 and body == http.files["nos.bin"]
    asked = [c for c in http.test_policy.asked if c.path == "/onie-installer"][-1]
    assert asked.headers["ONIE-PLATFORM"] == "x86_64-kvm_x86_64-r0" and asked.mac == "52:54:00:12:34:56"
    status, _, body = curl("-r", "0-9", *onie, f"{http.url}/onie-installer")
    assert status == 206 and body == http.files["nos.bin"][:10]
    assert curl(f"{http.url}/onie-installer")[0] == 404
    assert curl(f"{http.url}/boom")[0] == 500
    assert curl(f"{http.url}/big.bin")[0] == 200  # the server carries on after a policy bug


def test_caller_routes_come_before_the_file_tree(http):
    status, _, body = curl(f"{http.url}/api/hello?name=sw1")
    assert status == 200 and json.loads(body) == {"hello": "sw1"}
    assert "/api/hello" not in [c.path for c in http.test_policy.asked]
    assert curl(f"{http.url}/api/v1/status")[0] == 404  # pxe has no API of its own


def test_concurrent_downloads(http):
    binary = require_tool("curl")
    procs = [
        subprocess.Popen([binary, "-sS", "-o", str(http.tmp / f"d{i}"), f"{http.url}/big.bin"])
        for i in range(16)
    ]
    assert [p.wait(60) for p in procs] == [0] * 16
    for i in range(16):
        assert (http.tmp / f"d{i}").read_bytes() == http.files["big.bin"]


# -- limits: Range edge cases, caps, timeouts, malformed requests (docs/netboot.md "Limits") ----
def test_range_edge_cases_follow_rfc_9110(http):
    data = http.files["nos.bin"]
    url = f"{http.url}/nos.bin"
    # bytes=-0: a suffix of length 0 is unsatisfiable (aiohttp answered 206 with the whole file).
    status, headers, body = curl("-H", "Range: bytes=-0", url)
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}" and body != data
    assert http.stats["http.range_unsatisfiable"] == 1
    # First byte at or past the end: 416 with the length.
    assert curl("-H", f"Range: bytes={len(data)}-", url)[0] == 416
    # Several ranges: ignored (no multipart/byteranges), 200 with the whole file.
    status, _, body = curl("-H", "Range: bytes=0-1,5-6", url)
    assert status == 200 and body == data
    # A unit we do not know: ignored (RFC 9110 §14.2), 200.
    status, _, body = curl("-H", "Range: items=0-1", url)
    assert status == 200 and body == data
    # HEAD: Range is defined for GET only, so the whole length is announced.
    status, headers, _ = curl("-I", "-H", "Range: bytes=0-9", url)
    assert status == 200 and headers["content-length"] == str(len(data))
    # Ordinary ones still work; an empty file has nothing to select.
    status, headers, body = curl("-H", "Range: bytes=-5", url)
    assert (
        status == 206
        and body == data[-5:]
        and headers["content-range"] == f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}"
    )
    assert curl("-H", "Range: bytes=0-0", url)[2] == data[:1]
    assert curl("-H", "Range: bytes=-5", f"{http.url}/empty")[0] == 416


@pytest.fixture
def limited(tmp_path):
    """A server with small limits, so a test reaches them quickly: `limited(**HttpLimits fields)`."""
    from pxe.http import HttpLimits

    root = tmp_path / "lim"
    root.mkdir()
    (root / "f.bin").write_bytes(os.urandom(100_000))
    (root / "big.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    loop = LoopThread()
    made = []

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    def make(**limits):
        cfg = HttpConfig(root=root, bind_addr="127.0.0.1", port=0, limits=HttpLimits(**limits))
        srv = loop.run(start_http(cfg, None, None, [web.post("/echo", echo)]))
        srv.root, srv.loop_thread = root, loop
        made.append(srv)
        return srv

    yield make
    for srv in made:
        loop.run(srv.close())
    loop.stop()


def idle_connections(port: int, count: int, source: str = "127.0.0.2") -> list:
    import socket

    conns = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        conns.append(s)
    return conns


def closed_by_server(s, wait: float = 30) -> bytes | None:
    """What the server sent before closing (b"" for nothing), None if it kept it open."""
    s.settimeout(wait)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


def wait_until(predicate, wait: float = 30) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def test_idle_connections_are_capped_per_client_and_closed(limited, caplog):
    import logging

    srv = limited(max_per_client=8, header_timeout=1.0, idle_timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="pxe.http"):
        conns = idle_connections(srv.port, 20)
        # Beyond the per-client cap: 503 and closed at once, before any request is read.
        refused = [closed_by_server(s, 0.5) for s in conns[8:]]
        assert all(r is not None and r.startswith(b"HTTP/1.1 503") for r in refused)
        assert wait_until(lambda: srv.stats.get("http.busy_per_client") == 12)
        # During: a real client from another address is served.
        status, _, body = curl(f"{srv.url}/f.bin")
        assert status == 200 and body == (srv.root / "f.bin").read_bytes()
        # The 8 admitted ones sent nothing: closed at the header timeout.
        assert all(closed_by_server(s) == b"" for s in conns[:8])
    assert wait_until(lambda: srv.connections == 0)
    assert srv.stats["http.header_timeout"] == 8
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "per-client cap" in m]) == 1  # one line, 12 counted
    # After: the same attacker address is served again.
    s = idle_connections(srv.port, 1)[0]
    s.sendall(b"GET /f.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (closed_by_server(s) or b"").startswith(b"HTTP/1.1 200")
    for s in conns:
        s.close()


def test_total_connection_cap_answers_503_and_a_new_client_is_still_served(limited):
    srv = limited(max_connections=10, max_per_client=32, header_timeout=3.0)
    conns = idle_connections(srv.port, 10)
    assert wait_until(lambda: srv.connections == 10)
    # At the cap, a source that holds connections is refused: 503 and closed, not hung.
    extra = idle_connections(srv.port, 1)[0]
    got = closed_by_server(extra, 5)
    assert got is not None and got.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in got
    assert srv.stats["http.busy_total"] == 1
    # A new client takes the slot of the oldest connection that never sent a request.
    status, _, body = curl(f"{srv.url}/f.bin")
    assert status == 200 and body == (srv.root / "f.bin").read_bytes()
    assert srv.stats["http.evicted_idle"] == 1
    assert closed_by_server(conns[0], 5) is not None  # the oldest idle one
    assert wait_until(lambda: srv.connections == 0)  # the rest time out
    assert curl(f"{srv.url}/f.bin")[0] == 200
    for s in [*conns, extra]:
        s.close()


def test_slow_headers_and_idle_keep_alive_are_closed(limited):
    srv = limited(header_timeout=1.0, idle_timeout=1.0)
    # One header byte every 0.2 s: never completes, closed at the header timeout.
    drip = idle_connections(srv.port, 1)[0]
    started = time.monotonic()
    for byte in b"GET /f.bin HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
        try:
            drip.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.2)
        if time.monotonic() - started > 20:
            break
    assert closed_by_server(drip, 5) is not None
    assert srv.stats["http.header_timeout"] == 1
    # A kept-alive connection that goes quiet after a response: closed at the idle timeout.
    keep = idle_connections(srv.port, 1)[0]
    keep.sendall(b"GET /f.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    got = closed_by_server(keep, 10)
    assert got is not None and got.startswith(b"HTTP/1.1 200") and len(got) > 100_000
    assert wait_until(lambda: srv.connections == 0)
    assert curl(f"{srv.url}/f.bin")[0] == 200


def test_slow_body_gets_408(limited):
    srv = limited(body_timeout=1.0, header_timeout=5.0)
    s = idle_connections(srv.port, 1)[0]
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    got = closed_by_server(s, 10)
    assert got is not None and got.startswith(b"HTTP/1.1 408")
    assert srv.stats["http.body_timeout"] == 1
    status, _, body = curl("--data-binary", "hello", f"{srv.url}/echo")
    assert status == 200 and body == b"hello"


def test_a_client_that_stops_reading_is_dropped(limited):
    """TCP_USER_TIMEOUT: a download whose reader stopped (zero window) ends; the slot frees."""
    import socket

    srv = limited(send_stall_timeout=2.0, header_timeout=5.0)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", srv.port))
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_until(lambda: srv.connections == 1, 5)
    # Never read: the server's send stalls, and after 2 s unacknowledged the kernel drops it.
    assert wait_until(lambda: srv.connections == 0, 90)
    s.close()
    assert curl(f"{srv.url}/f.bin")[0] == 200


def test_malformed_requests_are_one_escaped_line_each(limited, caplog):
    import logging

    srv = limited()
    with caplog.at_level(logging.DEBUG, logger="pxe.http"):
        for raw in (
            b"GET /f.bin HTTP/1.1\r\nHost: x\r\nBad Header\x01: \x1b[31mred\r\n\r\n",
            b"G\x1bT /\nforged line HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00garbage tls\r\n\r\n",
        ):
            s = idle_connections(srv.port, 1)[0]
            s.sendall(raw)
            got = closed_by_server(s, 10)
            assert got is not None and got.startswith(b"HTTP/1.") and b" 400 " in got[:20]
            s.close()
    assert wait_until(lambda: srv.stats.get("http.malformed") == 3, 5)
    records = [r for r in caplog.records if r.name == "pxe.http"]
    assert len([r for r in records if "malformed request" in r.getMessage()]) == 3
    for r in records:
        assert r.exc_info is None  # no traceback
        assert "\n" not in r.getMessage() and "\x1b" not in r.getMessage()
    assert curl(f"{srv.url}/f.bin")[0] == 200
