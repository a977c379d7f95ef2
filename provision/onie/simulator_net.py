"""The wire half of `provision onie-sim`: a DHCP client endpoint, ONIE's wget and busybox's tftp.

- DHCP: one UDP socket on port 68 bound to the interface (SO_BINDTODEVICE), broadcast flag set
  so replies come back broadcast (the simulated MACs are not the interface's), replies handed to
  each simulated switch by xid. Packets via pxe.dhcp's codec.
- HTTP: aiohttp, ONIE's headers and User-Agent, source address = the switch's lease, `wget -T 3`
  (3 s connect and idle read timeout), body streamed to a file with its SHA-256.
- TFTP: RFC 1350 RRQ/DATA/ACK, octet, optional blksize (RFC 2348; busybox tftp sends none unless
  told), a new socket per transfer, per-packet timeout and retries; a timeout is reported as such
  because ONIE stops a server's waterfall on it (exec_installer `tftp_wrap`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from dhcp4 import codec
from dhcp4.options import CLIENT_PORT, FLAG_BROADCAST, SERVER_PORT
from pxe.tftp import packets as tftp

HTTP_TIMEOUT_S = 3.0  # exec_installer wget_run: `wget -T 3`
PROBE_TIMEOUT_S = 10.0  # exec_installer http_download: `nc -w 10 $server 80`
TFTP_PORT = 69
TFTP_BLOCK = 512  # RFC 1350 default
TFTP_TIMEOUT_S = 2.0
TFTP_RETRIES = 3
CHUNK = 256 * 1024


class Outcome(enum.Enum):
    OK = "ok"
    NOT_FOUND = "not-found"  # HTTP 404 / TFTP error 1
    REFUSED = "refused"  # connection refused, other HTTP status, other TFTP error
    TIMEOUT = "timeout"
    ERROR = "error"
    SKIPPED = "skipped"  # e.g. an unsupported URL scheme
    REJECTED = "rejected"  # downloaded, but ONIE (or the installer's own checks) refused it
    INSTALL_FAILED = "install-failed"  # the installer ran and failed at a later stage
    HUNG = "hung"  # the installer never returned


@dataclass(frozen=True)
class Fetch:
    outcome: Outcome
    detail: str = ""
    size: int = 0
    sha256: str | None = None
    path: Path | None = None


# -- DHCP ---------------------------------------------------------------------------------------


class DhcpEndpoint(asyncio.DatagramProtocol):
    """Port 68 on one interface, shared by every simulated switch; replies routed by xid."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[int, asyncio.Queue[codec.Packet]] = {}
        self.bad_packets = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            pkt = codec.decode(data)
        except codec.DecodeError:
            self.bad_packets += 1
            return
        queue = self.waiting.get(pkt.xid)
        if queue is not None and pkt.op == 2:  # BOOTREPLY
            queue.put_nowait(pkt)

    def send(self, pkt: codec.Packet, server: str = "255.255.255.255") -> None:
        assert self.transport is not None
        self.transport.sendto(codec.encode(pkt), (server, SERVER_PORT))


def dhcp_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    sock.bind(("0.0.0.0", CLIENT_PORT))
    sock.setblocking(False)
    return sock


async def open_dhcp(interface: str) -> DhcpEndpoint:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(DhcpEndpoint, sock=dhcp_socket(interface))
    return proto


def request_packet(xid: int, mac: str, options: dict[int, bytes]) -> codec.Packet:
    return codec.Packet(
        op=1,
        xid=xid,
        flags=FLAG_BROADCAST,  # replies broadcast: the interface does not own the simulated MAC
        chaddr=codec.mac_to_chaddr(mac),
        options=options,
    )


async def exchange(
    endpoint: DhcpEndpoint,
    pkt: codec.Packet,
    want: set[int],
    timeout: float,
    tries: int,
) -> codec.Packet | None:
    """Send `pkt` up to `tries` times, `timeout` apart; the first reply whose type is in `want`."""
    queue: asyncio.Queue[codec.Packet] = asyncio.Queue()
    endpoint.waiting[pkt.xid] = queue
    try:
        for _ in range(tries):
            endpoint.send(pkt)
            deadline = asyncio.get_running_loop().time() + timeout
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    reply = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                if reply.chaddr[:6] == pkt.chaddr[:6] and reply.message_type in want:
                    return reply
        return None
    finally:
        endpoint.waiting.pop(pkt.xid, None)


# -- HTTP ---------------------------------------------------------------------------------------


async def probe_port(host: str, port: int, local_ip: str | None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """ONIE's `nc -w 10 $server 80 -e /bin/true`: is something listening there?"""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(local_ip, 0) if local_ip else None), timeout
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_get(session: aiohttp.ClientSession, url: str, headers: dict[str, str], dest: Path) -> Fetch:
    try:
        async with session.get(url, headers=headers, allow_redirects=True) as resp:
            if resp.status == 404:
                return Fetch(Outcome.NOT_FOUND, "HTTP 404")
            if resp.status != 200:
                return Fetch(Outcome.REFUSED, f"HTTP {resp.status}")
            digest = hashlib.sha256()
            size = 0
            with open(dest, "wb") as f:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    digest.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
            return Fetch(Outcome.OK, "HTTP 200", size, digest.hexdigest(), dest)
    except TimeoutError:
        return Fetch(Outcome.TIMEOUT, f"no answer within {HTTP_TIMEOUT_S:g} s")
    except aiohttp.ClientConnectorError as exc:
        return Fetch(Outcome.REFUSED, f"connect: {exc.os_error.strerror if exc.os_error else exc}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Fetch(Outcome.ERROR, f"{type(exc).__name__}: {exc}")


def http_session(local_ip: str | None) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=HTTP_TIMEOUT_S, sock_read=HTTP_TIMEOUT_S)
    connector = aiohttp.TCPConnector(local_addr=(local_ip, 0) if local_ip else None, force_close=True)
    # skip_auto_headers: send what ONIE's busybox wget sends, not aiohttp's Accept-Encoding
    return aiohttp.ClientSession(
        timeout=timeout, connector=connector, auto_decompress=False, skip_auto_headers=("Accept-Encoding",)
    )


# -- TFTP ---------------------------------------------------------------------------------------


class _TftpProto(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))


def _oack_options(data: bytes) -> dict[str, str]:
    items = data[2:].rstrip(b"\0").split(b"\0")
    return {
        k.decode("latin-1").lower(): v.decode("latin-1")
        for k, v in zip(items[::2], items[1::2], strict=False)
    }


async def tftp_get(
    server: str,
    filename: str,
    dest: Path,
    local_ip: str | None = None,
    port: int = TFTP_PORT,
    blksize: int | None = None,
    timeout: float = TFTP_TIMEOUT_S,
    retries: int = TFTP_RETRIES,
) -> Fetch:
    """Read one file: RRQ to server:port, then DATA from the server's new port (its TID)."""
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_datagram_endpoint(
            _TftpProto, local_addr=(local_ip or "0.0.0.0", 0)
        )
    except OSError as exc:
        return Fetch(Outcome.ERROR, f"socket: {exc.strerror}")
    options = {tftp.OPT_BLKSIZE: str(blksize)} if blksize else None
    block_size = TFTP_BLOCK
    digest = hashlib.sha256()
    size = 0
    expected = 1
    peer: tuple[str, int] | None = None
    last_sent = tftp.build_request(tftp.OP_RRQ, filename, "octet", options)
    dest_addr: tuple[str, int] = (server, port)
    try:
        with open(dest, "wb") as f:
            transport.sendto(last_sent, dest_addr)
            misses = 0
            while True:
                try:
                    data, addr = await asyncio.wait_for(proto.queue.get(), timeout)
                except TimeoutError:
                    misses += 1
                    if misses > retries:
                        return Fetch(Outcome.TIMEOUT, f"timeout after {retries + 1} tries")
                    transport.sendto(last_sent, dest_addr)
                    continue
                if peer is None:
                    peer = addr  # the server's transfer ID [RFC 1350 §4]
                    dest_addr = peer
                elif addr != peer:
                    transport.sendto(tftp.build_error(tftp.ErrorCode.UNKNOWN_TID, "unknown TID"), addr)
                    continue
                opcode = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
                if opcode == tftp.OP_OACK:
                    agreed = _oack_options(data)
                    block_size = int(agreed.get(tftp.OPT_BLKSIZE, TFTP_BLOCK))
                    last_sent = tftp.build_ack(0)
                    transport.sendto(last_sent, dest_addr)
                    misses = 0
                    continue
                try:
                    pkt = tftp.parse(data)
                except tftp.MalformedPacket as exc:
                    return Fetch(Outcome.ERROR, f"malformed reply: {exc}")
                if isinstance(pkt, tftp.Error):
                    outcome = (
                        Outcome.NOT_FOUND if pkt.code == tftp.ErrorCode.FILE_NOT_FOUND else Outcome.REFUSED
                    )
                    return Fetch(outcome, f"TFTP error {pkt.code}: {pkt.message}")
                if not isinstance(pkt, tftp.Data):
                    continue
                if pkt.block == expected & 0xFFFF:
                    f.write(pkt.payload)
                    digest.update(pkt.payload)
                    size += len(pkt.payload)
                    last_sent = tftp.build_ack(pkt.block)
                    transport.sendto(last_sent, dest_addr)
                    misses = 0
                    expected += 1
                    if len(pkt.payload) < block_size:
                        return Fetch(Outcome.OK, "TFTP complete", size, digest.hexdigest(), dest)
                else:  # a duplicate: re-ACK what we have [RFC 1350 §2; no Sorcerer's Apprentice: no resend]
                    transport.sendto(tftp.build_ack((expected - 1) & 0xFFFF), dest_addr)
    except OSError as exc:
        return Fetch(Outcome.ERROR, f"{exc.strerror or exc}")
    finally:
        transport.close()


def read_head_lines(path: Path, lines: int = 100, limit: int = 1 << 20) -> bytes:
    with open(path, "rb") as f:
        head = f.read(limit)
    return b"\n".join(head.split(b"\n")[:lines])


def ip_prefix(mask: bytes | None) -> int:
    if not mask or len(mask) != 4:
        return 24
    return bin(struct.unpack("!I", mask)[0]).count("1")
