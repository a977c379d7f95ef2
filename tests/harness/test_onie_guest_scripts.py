"""The ONIE-like guest's pieces without booting it: its discovery helpers run under the host's
busybox sh (the same static busybox the guest runs), its wget against a local HTTP server on
127.0.0.1, onie-sysinfo against a machine.conf, and (as root) the initramfs tools in a chroot and
the base disk's ONIE partitions as sgdisk and blkid read them. The VM tests in
tests/vm/test_onie_e2e.py then only have to prove the boots."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import onie_guest_image as og
from tests.support.onie_guest import onie_fingerprint
from tests.support.tools import require_root, require_tool

FUNCS = og.GUEST_FILES / "functions"
MACHINE_CONF = """\
onie_version=2024.05-provision-test
onie_vendor_id=42623
onie_machine=kvm_x86_64
onie_machine_rev=0
onie_arch=x86_64
onie_platform=x86_64-kvm_x86_64-r0
onie_switch_asic=qemu
onie_firmware=uefi
onie_partition_type=gpt
"""


def busybox_sh(script: str, env: dict[str, str] | None = None, tmp: Path | None = None) -> str:
    bb = require_tool("busybox")
    conf = ""
    if tmp is not None:
        (tmp / "machine.conf").write_text(MACHINE_CONF)
        conf = f". {tmp / 'machine.conf'}\n"
    out = subprocess.run(
        [bb, "sh", "-c", f"{conf}. {FUNCS}\n{script}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def hexs(data: bytes) -> str:
    return data.hex()


def test_vivso_picks_onie_installer_url_past_other_enterprises():
    """Option 125 (RFC 3925): skip a foreign enterprise and ONIE's updater URL (sub-option 2)."""
    url = b"http://198.18.0.1/onie-installer.bin"
    foreign = (9).to_bytes(4, "big") + bytes([3]) + b"\x01\x01x"
    onie_data = bytes([2, 4]) + b"updr" + bytes([1, len(url)]) + url
    onie = (42623).to_bytes(4, "big") + bytes([len(onie_data)]) + onie_data
    out = busybox_sh(f"vivso_installer_url {hexs(foreign + onie)}")
    assert out == url.decode()


def test_vivso_without_installer_url_fails():
    onie_data = bytes([2, 4]) + b"updr"
    onie = (42623).to_bytes(4, "big") + bytes([len(onie_data)]) + onie_data
    out = busybox_sh(f"vivso_installer_url {hexs(onie)} || echo none")
    assert out.strip() == "none"


def test_hex_helpers():
    assert busybox_sh("hex2ip c6123101c6120002").split() == ["198.18.49.1", "198.18.0.2"]
    assert busybox_sh("hex2str 687474703a2f2f78") == "http://x"
    assert busybox_sh("str2hex onie") == "6f6e6965"
    assert busybox_sh("str_opt 3 kvm_x86_64") == "030a" + b"kvm_x86_64".hex()


def test_default_names_in_onies_order(tmp_path):
    names = busybox_sh("default_filenames", tmp=tmp_path).split()
    assert names[:4] == [
        "onie-installer-x86_64-kvm_x86_64-r0",
        "onie-installer-x86_64-kvm_x86_64-r0.bin",
        "onie-installer-x86_64-kvm_x86_64",
        "onie-installer-x86_64-kvm_x86_64.bin",
    ]
    assert names[-2:] == ["onie-installer", "onie-installer.bin"]
    assert len(names) == 12


@contextlib.contextmanager
def header_server(body: bytes) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_sends_onies_headers_with_busybox_wget(tmp_path):
    """The guest's wget sends the ONIE-* headers and User-Agent ONIE sends (docs/onie.md)."""
    require_tool("timeout")
    with header_server(b"#!/bin/sh\nexit 0\n") as (base, seen):
        busybox_sh(
            f"fetch {base}/onie-installer-x86_64-kvm_x86_64-r0.bin",
            env={
                "onie_installer": str(tmp_path / "installer"),
                "onie_serial_num": "SN-42",
                "onie_eth_addr": "52:54:00:4f:4e:01",
                "onie_operation": "os-install",
            },
            tmp=tmp_path,
        )
    assert (tmp_path / "installer").read_bytes() == b"#!/bin/sh\nexit 0\n"
    (req,) = seen
    assert req["path"] == "/onie-installer-x86_64-kvm_x86_64-r0.bin"
    assert req["onie-serial-number"] == "SN-42"
    assert req["onie-eth-addr"] == "52:54:00:4f:4e:01"
    assert req["onie-vendor-id"] == "42623"
    assert req["onie-machine"] == "kvm_x86_64"
    assert req["onie-machine-rev"] == "0"
    assert req["onie-arch"] == "x86_64"
    assert req["onie-operation"] == "os-install"
    assert req["onie-version"] == "2024.05-provision-test"
    assert "onie-security-key" in req
    assert req["user-agent"].startswith("onie/1.0 (Linux-")


def test_onie_sysinfo_answers_from_machine_conf_and_cmdline(tmp_path):
    bb = require_tool("busybox")
    (tmp_path / "machine.conf").write_text(MACHINE_CONF)
    (tmp_path / "cmdline").write_text("console=ttyS0 serial_num=SN-7 eth_addr=52:54:00:00:00:07 quiet\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "ONIE_MACHINE_CONF": str(tmp_path / "machine.conf"),
        "ONIE_CMDLINE": str(tmp_path / "cmdline"),
    }

    def sysinfo(*flags: str) -> str:
        out = subprocess.run(
            [bb, "sh", str(og.GUEST_FILES / "onie-sysinfo"), *flags], capture_output=True, text=True, env=env
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert sysinfo() == "x86_64-kvm_x86_64-r0"  # no flag: the platform, as ONIE's
    assert sysinfo("-p") == "x86_64-kvm_x86_64-r0"
    assert sysinfo("-m") == "kvm_x86_64"
    assert sysinfo("-r") == "0"
    assert sysinfo("-c") == "x86_64"
    assert sysinfo("-s") == "SN-7"
    assert sysinfo("-e") == "52:54:00:00:00:07"
    assert sysinfo("-t") == "gpt"
    assert sysinfo("-f") == "uefi"
    bad = subprocess.run([bb, "sh", str(og.GUEST_FILES / "onie-sysinfo"), "-Z"], capture_output=True, env=env)
    assert bad.returncode == 1


@pytest.mark.root
def test_initramfs_tools_run_in_a_chroot(tmp_path):
    """Every tool an installer calls starts inside the initramfs: no shared library is missing."""
    require_root()
    for tool in ("cpio", "depmod", "sgdisk", "grub-install", "efibootmgr"):
        require_tool(tool)
    initrd = og.build_initramfs()
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(f"zcat {initrd} | cpio -id --quiet", shell=True, cwd=root, check=True)
    for argv in (
        ["sgdisk", "--version"],
        ["mke2fs", "-V"],
        ["mkfs.ext4", "-V"],
        ["mkfs.vfat", "--help"],
        ["blkid", "-V"],
        ["partx", "-V"],
        ["efibootmgr", "--version"],
        ["grub-install", "--version"],
        ["grub-editenv", "--version"],
        ["e2fsck", "-V"],
        ["udhcpc", "--help"],
    ):
        out = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True)
        assert "error while loading shared libraries" not in out.stderr, (argv, out.stderr)
        assert out.returncode in (0, 1), (argv, out.returncode, out.stderr)
    kver = og.kernel_version()
    deps = (root / f"lib/modules/{kver}/modules.dep").read_text()
    for mod in ("virtio_blk.ko", "virtio_net.ko", "ext4.ko", "vfat.ko", "nls_ascii.ko", "efivarfs.ko"):
        assert mod in deps
    assert (root / "usr/lib/grub/x86_64-efi/kernel.img").exists()
    assert not (root / "usr/lib/grub/x86_64-efi/monolithic").exists()
    assert (root / "usr/lib/grub/i386-pc/boot.img").exists()
    assert (root / "usr/share/locale").is_dir()
    assert (root / "dev/console").is_char_device()


@pytest.mark.root
@pytest.mark.vm  # an uncached base disk takes one QEMU boot to lay ONIE's bootloader on it
@pytest.mark.parametrize("firmware", list(og.Firmware), ids=lambda f: f.value)
def test_base_disk_has_onies_partitions(firmware):
    """docs/onie.md's x86 layout table: types, names, attributes; ONIE-BOOT is ext4 labelled ONIE-BOOT."""
    require_root()
    for tool in ("qemu-system-x86_64", "sgdisk", "mke2fs", "mkfs.vfat", "mcopy", "grub-mkimage", "blkid"):
        require_tool(tool)
    disk = og.build_base_disk(firmware)
    parts = {p.number: p for p in og.gpt_partitions(disk)}
    assert sorted(parts) == [1, 2]
    assert parts[2].name == "ONIE-BOOT" and parts[2].type_guid == og.GUID_ONIE_BOOT
    assert parts[2].size == 128 * og.MiB
    attrs = {
        n: subprocess.run(["sgdisk", "-i", str(n), str(disk)], capture_output=True, text=True).stdout
        for n in parts
    }
    assert "Attribute flags: 1000000000000001" in attrs[2]
    if firmware is og.Firmware.UEFI:
        assert parts[1].type_guid == og.GUID_ESP and parts[1].size == 256 * og.MiB
        assert "Attribute flags: 0000000000000001" in attrs[1]
        assert onie_fingerprint(disk, firmware).onie_loader_sha256
    else:
        assert parts[1].name == "GRUB-BOOT" and parts[1].type_guid == og.GUID_GRUB_BOOT
        assert parts[1].size == 2 * og.MiB
        assert "Attribute flags: 1000000000000001" in attrs[1]
        # ONIE's BIOS GRUB: boot code in the MBR and in ONIE-BOOT's boot sector (chainloader +1).
        with disk.open("rb") as f:
            mbr = f.read(512)
            f.seek(parts[2].start)
            pbr = f.read(512)
        assert b"GRUB" in mbr and b"GRUB" in pbr
    probe = subprocess.run(
        ["blkid", "-p", "-O", str(parts[2].start), "-o", "export", str(disk)], capture_output=True, text=True
    ).stdout
    assert "LABEL=ONIE-BOOT" in probe and "TYPE=ext4" in probe


UDHCPC_STUB = """#!/bin/sh
# stands in for busybox udhcpc: one lease whose answer the test wrote, as udhcp4-event saves it
echo "$*" >> "$STUB_LOG"
cp "$STUB_LEASE" "$ONIE_DHCP_ENV"
"""


def run_discover(tmp_path: Path, lease: dict[str, str], cmdline: str) -> subprocess.CompletedProcess:
    """The guest's onie-discover under the host's busybox, with udhcpc stubbed (a fixed lease)
    and reboot stubbed, busybox wget and the real helpers (functions). Busybox sh prefers its
    applets to PATH: the stubs are passed by path (ONIE_UDHCPC, ONIE_REBOOT; the script refuses
    to start on a host without them), so nothing here touches the host's network beyond
    127.0.0.1, nor reboots it. The leases name no server to probe on port 80."""
    bb = require_tool("busybox")
    require_tool("timeout")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "wget").symlink_to(bb)
    (bindir / "udhcpc").write_text(UDHCPC_STUB)
    (bindir / "reboot").write_text("#!/bin/sh\necho STUB-REBOOT\nexit 0\n")
    for stub in ("udhcpc", "reboot"):
        (bindir / stub).chmod(0o755)
    (tmp_path / "lease.env").write_text("".join(f"onie_disco_{k}='{v}'\n" for k, v in lease.items()))
    (tmp_path / "machine.conf").write_text(MACHINE_CONF)
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    return subprocess.run(
        [bb, "sh", str(og.GUEST_FILES / "onie-discover")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": f"{bindir}:/usr/bin:/bin",
            "ONIE_MACHINE_CONF": str(tmp_path / "machine.conf"),
            "ONIE_CMDLINE": str(tmp_path / "cmdline"),
            "ONIE_INSTALLER_PATH": str(tmp_path / "installer"),
            "ONIE_DHCP_ENV": str(tmp_path / "dhcp.env"),
            "ONIE_FUNCTIONS": str(FUNCS),
            "ONIE_UDHCPC": str(bindir / "udhcpc"),
            "ONIE_REBOOT": str(bindir / "reboot"),
            "STUB_LOG": str(tmp_path / "udhcpc.log"),
            "STUB_LEASE": str(tmp_path / "lease.env"),
        },
    )


def test_discover_goes_on_after_a_failed_installer_then_cycles_again(tmp_path):
    """As ONIE's discover/exec_installer: a failed installer is not the end; the next URL is
    tried, then a new cycle (DHCP again). Option 125.1 and 114 naming the same failing installer
    make it run twice per cycle: 3 cycles, 6 runs, and the guest says so and exits 2."""
    with header_server(b"#!/bin/sh\necho FAILING-INSTALLER\nexit 1\n") as (base, seen):
        url = f"{base}/onie-installer-x86_64-kvm_x86_64-r0.bin"
        data = bytes([1, len(url)]) + url.encode()
        vivso = (42623).to_bytes(4, "big") + bytes([len(data)]) + data
        lease = {
            "ip": "127.0.0.1",
            "opt114": hexs(url.encode()),
            "opt125": hexs(vivso),
        }
        out = run_discover(tmp_path, lease, "quiet testing disco_attempts=3 disco_wait=0 serial_num=SN-C")
    assert out.returncode == 2, out.stdout + out.stderr
    assert [r["path"] for r in seen] == ["/onie-installer-x86_64-kvm_x86_64-r0.bin"] * 6
    assert out.stdout.count("FAILING-INSTALLER") == 6
    assert out.stdout.count("ONIE-GUEST-PHASE install-failed") == 6
    assert len((tmp_path / "udhcpc.log").read_text().splitlines()) == 3  # DHCP once per cycle
    ends = [line.split()[-3:] for line in out.stdout.splitlines() if "ONIE-GUEST-PHASE cycle-end" in line]
    assert ends == [[f"n={n}", "runs=2", f"total_runs={2 * n}"] for n in (1, 2, 3)]
    assert "ONIE-GUEST-PHASE no-installer" in out.stdout and "runs=6" in out.stdout


def test_discover_without_any_url_gives_up_with_3(tmp_path):
    out = run_discover(tmp_path, {"ip": "127.0.0.1"}, "testing disco_attempts=2 disco_wait=0")
    assert out.returncode == 3, out.stdout + out.stderr
    assert out.stdout.count("ONIE-GUEST-PHASE cycle-end") == 2 and "install-failed" not in out.stdout
