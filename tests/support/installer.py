"""Shared builders for the installer tests: a small spec on disk, and building it."""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from onie.installer import PlatformInfo
from provision import resources

SPEC_TEMPLATE = """\
nos:
  name: {name}
  version: 2.1.0
platforms: [{platforms}]
payload:
  kernel: nos/vmlinuz
  initrd: nos/initrd.img
  rootfs: nos/rootfs.squashfs
  files:
    - source: nos/extra.conf
      dest: etc/extra.conf
cmdline: "quiet nos.flag=1"
modules:
  load: [i2c_dev]
  blacklist: [pcspkr, floppy]
partitions:
  - label: TNOS-BOOT
    size: 64M
    role: boot
  - label: TNOS-ROOT
    size: 8M
    role: rootfs
    ab: true
  - label: TNOS-DATA
    size: 16M
    role: data
grub:
  title: Test NOS 2.1.0
hooks:
  post-install: |
    echo "hook ran on $NOS_DISK" > "$NOS_BOOT_DIR/boot/hook-ran"
{extra}
"""

KVM = PlatformInfo(onie_platform="x86_64-kvm_x86_64-r0", arch="x86_64")


def tamper(path: Path, at_end: int = 5000) -> None:
    """Flip the bits of one byte `at_end` bytes before the end of an installer (in its payload,
    past the header), so that its SHA-256 no longer matches."""
    data = bytearray(path.read_bytes())
    data[-at_end] ^= 0xFF
    path.write_bytes(bytes(data))


def write_payload(folder: Path, kernel_size: int = 300_000) -> None:
    nos = folder / "nos"
    nos.mkdir(parents=True, exist_ok=True)
    # Deterministic filler: these are not real images; the installer only copies them.
    (nos / "vmlinuz").write_bytes(bytes(range(256)) * (kernel_size // 256))
    (nos / "initrd.img").write_bytes(b"initrd-bytes\n" * 20_000)
    (nos / "rootfs.squashfs").write_bytes(b"hsqs" + b"\0" * 65_532)
    (nos / "extra.conf").write_text("extra=1\n")


def write_spec(folder: Path, name: str = "tnos", platforms: str = "kvm_x86_64", extra: str = "") -> Path:
    write_payload(folder)
    spec = folder / "switch.yml"
    spec.write_text(SPEC_TEMPLATE.format(name=name, platforms=platforms, extra=extra))
    return spec


def acme_profile_folder(tmp_path: Path) -> Path:
    """An extra profiles folder (`--profiles`) holding one BIOS switch, acme_s1."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "acme_s1.yml").write_text(
        "id: acme_s1\nkind: switch\nvendor: acme\nmachine: acme_s1\nswitch_asic: bcm\nonie_platform: x86_64-acme_s1-r0\n"
        "arch: x86_64\nfirmware: bios\nconsole: {device: ttyS0}\n"
    )
    return folder


def templates() -> Path:
    return resources.templates_dir()


class _Recorder(http.server.BaseHTTPRequestHandler):
    """The server side of the report contract: GET /api/v1/report?stage=&status=&..."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/v1/report":
            self.seen.append({k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def report_recorder() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """An HTTP server on 127.0.0.1 (random port) that records report requests: (port, seen)."""
    handler = type("Recorder", (_Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.seen
    finally:
        server.shutdown()
        server.server_close()
