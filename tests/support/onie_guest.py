"""An ONIE-like QEMU guest for end-to-end tests: it discovers a server, runs a NOS installer the
way ONIE does, reboots, and boots what the installer left on the disk.

No prebuilt ONIE image is reachable here (docs/lab.md), so the guest plays ONIE's part with Debian
pieces (docs/lab.md "An ONIE-like guest"), built and cached by onie_guest_image.py: the
host's Debian kernel, an initramfs with busybox and the installer's tools, the scripts in
onie_guest/ (init, onie-discover + lib/onie/functions, onie-sysinfo, machine.conf for
kvm_x86_64), and a disk with ONIE's partitions. This module runs it (QEMU q35, TCG, virtio disk
and NIC on a tap in a test namespace; OVMF or SeaBIOS), reads its console, fingerprints what a
NOS must never touch, and edits a NOS's grubenv as `grub-reboot` would.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.netns import NetNS
from tests.support.onie_guest_image import (
    GPT_ENTRIES_LBA,
    GPT_ENTRY_SIZE,
    OVMF_CODE,
    OVMF_VARS,
    SECTOR,
    Firmware,
    MiB,
    Partition,
    _run,
    base_vars,
    build_base_disk,
    build_initramfs,
    fresh_disk,
    gpt_partitions,
    kernel_version,
)


@dataclass(frozen=True)
class OnieFingerprint:
    """What a NOS installer must never change: ONIE-BOOT's bytes and ONIE's GPT entries."""

    onie_boot_sha256: str
    gpt_entries: dict[int, str]  # partition number -> hex of its raw 128-byte GPT entry
    onie_loader_sha256: str  # UEFI: /EFI/onie/grubx64.efi in the ESP; BIOS: ""


def onie_fingerprint(disk: Path, firmware: Firmware) -> OnieFingerprint:
    parts = {p.number: p for p in gpt_partitions(disk)}
    onie_boot = next(p for p in parts.values() if p.name == "ONIE-BOOT")
    h = hashlib.sha256()
    with disk.open("rb") as f:
        f.seek(onie_boot.start)
        left = onie_boot.size
        while left:
            chunk = f.read(min(left, 4 * MiB))
            h.update(chunk)
            left -= len(chunk)
        entries = {}
        for num in (1, 2):  # ONIE's own partitions on both layouts
            f.seek(GPT_ENTRIES_LBA * SECTOR + (num - 1) * GPT_ENTRY_SIZE)
            entries[num] = f.read(GPT_ENTRY_SIZE).hex()
    loader = ""
    if firmware is Firmware.UEFI:
        data = subprocess.run(
            ["mtype", "-i", f"{disk}@@{parts[1].start}", "::/EFI/onie/grubx64.efi"],
            capture_output=True,
            check=True,
        ).stdout
        loader = hashlib.sha256(data).hexdigest()
    return OnieFingerprint(h.hexdigest(), entries, loader)


def esp_listing(disk: Path, folder: str) -> list[str]:
    """File names in `folder` of the ESP (partition 1 on the UEFI layout), read with mtools."""
    esp = next(p for p in gpt_partitions(disk) if p.number == 1)
    out = subprocess.run(
        ["mdir", "-b", "-i", f"{disk}@@{esp.start}", f"::{folder}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout
    return [line.rstrip("/").rsplit("/", 1)[-1] for line in out.split()]  # folders end in /


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


# --- running it --------------------------------------------------------------------------------


@dataclass
class BootLog:
    """Console lines with the seconds since QEMU started when each arrived."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    returncode: int | None = None
    elapsed: float = 0.0
    timed_out: bool = False
    stopped_on: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, pattern: str) -> tuple[float, str] | None:
        rx = re.compile(pattern)
        return next(((t, line) for t, line in self.lines if rx.search(line)), None)

    def phases(self) -> dict[str, float]:
        """Host-side arrival time of each ONIE-GUEST-PHASE line (first occurrence)."""
        seen: dict[str, float] = {}
        for t, line in self.lines:
            m = re.search(r"ONIE-GUEST-PHASE (\S+)", line)
            if m and m[1] not in seen:
                seen[m[1]] = round(t, 1)
        return seen

    def tail(self, n: int = 60) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


@dataclass
class OnieGuest:
    """One ONIE-like machine: its disk, its NVRAM (UEFI vars), its NIC on a tap in `ns`."""

    workdir: Path
    firmware: Firmware
    ns: NetNS
    tap: str
    mac: str = "52:54:00:4f:4e:01"
    serial: str = "PVTEST0001"
    disk: Path = field(init=False)
    vars: Path = field(init=False)
    boots: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.disk = fresh_disk(self.firmware, self.workdir / f"disk-{self.firmware.value}.raw")
        self.vars = self.workdir / "OVMF_VARS.fd"
        if self.firmware is Firmware.UEFI:
            # One vars file for the machine's life: efibootmgr's BootOrder persists in it (docs/lab.md).
            # It starts with ONIE's own boot entry, as on a switch fresh from the factory.
            shutil.copy2(base_vars(build_base_disk(self.firmware)), self.vars)

    def reset_nvram(self) -> None:
        """Fresh OVMF vars, as after an NVRAM reset: only the ESP's fallback loader can boot."""
        if self.firmware is Firmware.UEFI:
            shutil.copy2(OVMF_VARS, self.vars)

    def qemu_argv(self, onie: bool, extra_append: str = "") -> list[str]:
        argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2",
                "-m", "1024", "-display", "none", "-serial", "stdio", "-monitor", "none",
                "-no-reboot",
                "-drive", f"file={self.disk},format=raw,if=virtio,cache=unsafe",
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                # No option ROM: the firmware must boot the disk, not try PXE first.
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile="]  # fmt: skip
        if self.firmware is Firmware.UEFI:
            argv += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,file={self.vars}"]  # fmt: skip
        if onie:
            kver = kernel_version()
            append = (
                f"console=ttyS0,115200 quiet serial_num={self.serial} eth_addr={self.mac} "
                f"testing disco_attempts=3 {extra_append}"
            ).strip()
            argv += ["-kernel", f"/boot/vmlinuz-{kver}", "-initrd", str(build_initramfs(kver)),
                     "-append", append]  # fmt: skip
        return argv

    def boot_onie(self, timeout: float = 600, extra_append: str = "") -> BootLog:
        """Boot the ONIE-like environment (install mode) until it reboots or powers off."""
        log = run_console(self.ns, self.qemu_argv(True, extra_append), timeout=timeout)
        return self._keep(log, "onie")

    def boot_disk(self, marker: str = "PROVISION-NOS-BOOTED", timeout: float = 300) -> BootLog:
        """Boot from the disk (UEFI NVRAM entry or fallback; BIOS MBR) until `marker` appears."""
        log = run_console(self.ns, self.qemu_argv(False), timeout=timeout, until=lambda s: marker in s)
        return self._keep(log, "disk")

    def _keep(self, log: BootLog, kind: str) -> BootLog:
        """Each console log is kept in the workdir (boot-N-kind.log) for a post-mortem."""
        self.boots += 1
        (self.workdir / f"boot-{self.boots}-{kind}.log").write_text(log.text)
        return log


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def run_console(
    ns: NetNS, argv: list[str], timeout: float, until: Callable[[str], bool] | None = None
) -> BootLog:
    """Run QEMU in `ns`, collecting serial lines; stop at `until(line)`, exit, or timeout."""
    log = BootLog()
    t0 = time.monotonic()
    proc = ns.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
            log.lines.append((time.monotonic() - t0, line))
            if until is not None and until(line):
                log.stopped_on = line
                done.set()
                return
        done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    if not done.wait(timeout):
        log.timed_out = True
    elif log.stopped_on is None:
        # The console closed: QEMU is exiting by itself (guest poweroff or -no-reboot). Let it,
        # so that its exit status is its own and not our SIGTERM's.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    ns.stop(proc)
    thread.join(5)
    log.returncode = proc.returncode
    log.elapsed = round(time.monotonic() - t0, 1)
    return log


# --- editing what the NOS left, as the NOS itself would -----------------------------------------


def _ext4_file_span(disk: Path, part: Partition, path: str) -> tuple[int, int]:
    """(absolute byte offset, size) of a small file's first block inside an ext4 partition."""
    image = f"{disk}?offset={part.start}"
    block = int(_run(["debugfs", "-R", f"bmap {path} 0", image]).stdout.split()[-1])
    stats = _run(["dumpe2fs", "-h", image]).stdout
    block_size = int(re.search(r"Block size:\s+(\d+)", stats)[1])
    size = int(re.search(r"Size:\s+(\d+)", _run(["debugfs", "-R", f"stat {path}", image]).stdout)[1])
    return part.start + block * block_size, size


def set_grubenv(disk: Path, partition_name: str, path: str, **values: str) -> None:
    """Rewrite a grubenv in place (as `grub-reboot` and GRUB's save_env do: same 1024 bytes)."""
    part = next(p for p in gpt_partitions(disk) if p.name == partition_name)
    offset, size = _ext4_file_span(disk, part, path)
    if size != 1024:
        raise RuntimeError(f"{path} in {partition_name} is {size} bytes; a grubenv is exactly 1024")
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / "grubenv"
        with disk.open("rb") as f:
            f.seek(offset)
            env.write_bytes(f.read(size))
        _run(["grub-editenv", str(env), "set", *(f"{k}={v}" for k, v in values.items())])
        data = env.read_bytes()
    if len(data) != 1024:
        raise RuntimeError("grub-editenv changed the size of grubenv")
    with disk.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def read_grubenv(disk: Path, partition_name: str, path: str) -> str:
    part = next(p for p in gpt_partitions(disk) if p.name == partition_name)
    offset, size = _ext4_file_span(disk, part, path)
    with disk.open("rb") as f:
        f.seek(offset)
        return f.read(size).decode("ascii", "replace")
