"""A re-armable switch for the rollout VM proof (tests/vm/test_rollout_vm.py, docs/rollout.md
"VM proof"): the ONIE-like guest of onie_guest.py, left running across reboots, with a NOS that
can be taken back into ONIE install mode over SSH the way a real switch is.

The NOS ("demo", built here for a given version and packed by `provision onie-installer`) is the
host's Debian kernel plus a busybox initramfs that carries what a re-arm needs:
- its version: /etc/os-release (VERSION_ID), and the installer's /boot/boot/provision-release;
- a network: udhcpc on eth0 (the lease `provision serve` reserves for the device's `ip:`);
- OpenSSH's sshd (Debian's openssh-server binary and its libraries), root login by key only, with
  one host key kept across versions (a NOS that regenerated it at install would fail a pinned
  host-key check after its own reinstall);
- DEMO-BOOT mounted at /boot, so `grub-reboot ONIE` (Debian's script + grub-editenv) writes
  next_entry into the grubenv the installer left (templates/installer/grub.cfg.j2 reads it);
- `onie-boot-mode`, which mounts ONIE-BOOT on /mnt/onie-boot and runs ONIE's own
  onie/tools/bin/onie-boot-mode from it, as ONIE's documentation tells a NOS to;
- busybox init as PID 1, so a plain `reboot` syncs, unmounts and reboots.

The ONIE side (written into each guest's copy of the cached base disk with debugfs, so the shared
base disk of the other VM tests is unchanged): ONIE-BOOT gets onie/tools/bin/onie-boot-mode (it
sets `onie_mode` in ONIE's grubenv, onie/grub/grubenv) and a grub.cfg that loads that grubenv and
puts `boot_reason=$onie_mode` on ONIE's kernel line, plus this guest's own serial number (the
factory's EEPROM on a real switch; the base disk says FROMDISK for every guest).

A guest runs under one QEMU process for its whole life (no -no-reboot): NOS v1 → re-armed →
reboot → NOS GRUB's ONIE entry → ONIE discovery and install → reboot → NOS v2, with no test
action between. TCG unless PROVISION_TEST_ACCEL=kvm (see accel()).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.netns import NetNS
from tests.support.onie_guest import _ANSI
from tests.support.onie_guest_image import (
    Firmware,
    _copy_into,
    _libs_of,
    _run,
    fresh_disk,
    gpt_partitions,
    kernel_version,
)

NOS_NAME = "demo"
BOOT_LABEL = "DEMO-BOOT"
PLATFORM = "x86_64-kvm_x86_64-r0"
BOOTED = "PROVISION-NOS-BOOTED"  # + " demo VERSION ip=ADDR": the NOS is up and sshd listens

SSHD = "/usr/sbin/sshd"
# Only what the NOS needs (disk, NIC, its ext4 partitions): every module is unpacked and every
# byte read by GRUB through the BIOS under TCG, where the initrd's size is boot time.
NOS_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic")
# + sshd; grub-reboot is a shell script (below). util-linux's mount and mountpoint as on a Debian
# based NOS: the ssh driver's `mount LABEL=ONIE-BOOT` needs label lookup (libblkid), which
# Debian's busybox mount lacks.
NOS_TOOLS = ("/usr/bin/grub-editenv", "/usr/bin/mount", "/usr/bin/mountpoint")

SPEC = """\
nos:
  name: {name}
  version: {version}
platforms: [kvm_x86_64]
payload:
  kernel: {kernel}
  initrd: {initrd}
cmdline: "quiet"
partitions:
  - label: {boot_label}
    size: 64M
    role: boot
grub:
  timeout: 0
"""

# PID 1 is busybox init: `reboot` (SIGTERM to init) runs the shutdown lines, then reboots.
INITTAB = """\
::sysinit:/etc/rcS
::shutdown:/bin/umount -a -r
ttyS0::respawn:/bin/sh
"""

RCS = """\
#!/bin/sh
# The demo NOS's boot: drivers, DEMO-BOOT on /boot, DHCP, sshd, then the marker the test waits for.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /run/sshd /tmp /boot /mnt/onie-boot /var/log
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
echo "NOS-PHASE init $(cut -d' ' -f1 /proc/uptime)"
for m in {modules}; do modprobe "$m" 2>/dev/null; done
i=0
while ! findfs LABEL={boot_label} >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 "$(findfs LABEL={boot_label})" /boot || echo "NOS: cannot mount {boot_label}"
ln -sf /proc/mounts /etc/mtab
hostname {name}
ip link set lo up
ip link set eth0 up
echo "NOS-PHASE dhcp $(cut -d' ' -f1 /proc/uptime)"
# A switch keeps asking until its management address comes (serve may be busy or restarting).
until udhcpc -i eth0 -s /etc/udhcpc.script -t 20 -T 1 -A 1 -n -q -x hostname:{name} >/dev/null 2>&1; do
    echo "NOS: no DHCP lease yet, asking again"
done
echo "NOS-PHASE sshd $(cut -d' ' -f1 /proc/uptime)"
/usr/sbin/sshd -E /var/log/sshd.log || echo "NOS: sshd failed: $(cat /var/log/sshd.log)"
ip=$(ip -4 -o addr show dev eth0 | sed -n 's/.* inet \\([0-9.]*\\).*/\\1/p')
echo "{booted} {name} {version} ip=$ip release=$(cat /boot/boot/provision-release 2>/dev/null | tr ' ' -)"
"""

UDHCPC_SCRIPT = """\
#!/bin/sh
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        ;;
esac
exit 0
"""

# The NOS's `onie-boot-mode`: ONIE's tool lives on ONIE-BOOT; mount it and run that one.
NOS_ONIE_BOOT_MODE = """\
#!/bin/sh
mnt=/mnt/onie-boot
grep -q " $mnt " /proc/mounts || mount -t ext4 "$(findfs LABEL=ONIE-BOOT)" "$mnt" || exit 1
exec "$mnt/onie/tools/bin/onie-boot-mode" "$@"
"""

SSHD_CONFIG = """\
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile /root/.ssh/authorized_keys
PidFile /run/sshd.pid
"""

# ONIE's onie-boot-mode (the part a NOS calls): `-o MODE` sets onie_mode in ONIE's grubenv, which
# ONIE's grub.cfg turns into boot_reason= on ONIE's kernel line; `-l` prints the mode.
ONIE_BOOT_MODE = """\
#!/bin/sh
env="$(cd "$(dirname "$0")/../.." && pwd)/grub/grubenv"
case "$1" in
    -o) case "$2" in install|rescue|uninstall|update|embed|none) ;; *) echo "bad mode: $2" >&2; exit 1 ;; esac
        grub-editenv "$env" set onie_mode="$2" && echo "onie-boot-mode: next ONIE boot mode: $2" ;;
    -l) grub-editenv "$env" list | sed -n 's/^onie_mode=//p' ;;
    *) echo "usage: onie-boot-mode -o install|rescue|uninstall|update|embed|none | -l" >&2; exit 1 ;;
esac
"""

ONIE_GRUB_CFG = """\
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
set onie_mode=install
load_env
menuentry "ONIE: $onie_mode" {{
  search --no-floppy --label --set=root ONIE-BOOT
  echo ONIE-GUEST-GRUB onie_mode=$onie_mode
  linux /onie/vmlinuz console=ttyS0,115200 quiet serial_num={serial} boot_reason=$onie_mode
  initrd /onie/initrd.gz
}}
"""


# --- the NOS -----------------------------------------------------------------------------------


def _cpio_gz(root: Path, dest: Path) -> None:
    files = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root, check=True, capture_output=True).stdout
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=root, input=files, check=True,
        capture_output=True,
    ).stdout  # fmt: skip
    dest.write_bytes(subprocess.run(["gzip", "-6", "-n"], input=cpio, check=True, capture_output=True).stdout)


def _module_files(kver: str, modules: tuple[str, ...]) -> list[str]:
    """The .ko files `modules` need, dependencies first (modprobe --show-depends)."""
    files: list[str] = []
    for mod in modules:
        for line in _run(["modprobe", "-S", kver, "--show-depends", mod]).stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod" and parts[1] not in files:
                files.append(parts[1])
    return files


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def build_nos_initrd(dest: Path, version: str, host_key: Path, authorized_key: Path) -> Path:
    """The demo NOS's initramfs for `version` (see the module docstring for what it carries)."""
    kver = kernel_version()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/ssh", "proc", "sys", "dev", "run",
                  "tmp", "var/empty", "root/.ssh", "usr/share/grub"):  # fmt: skip
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2("/bin/busybox", root / "bin/busybox")
        for applet in _run(["/bin/busybox", "--list-full"]).stdout.split():
            link = root / applet
            if link.name != "busybox" and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to("/bin/busybox")
        (root / "init").symlink_to("/bin/busybox")  # busybox init (it reads /etc/inittab)
        libs: set[str] = set()
        for tool in (SSHD, *NOS_TOOLS):
            _copy_into(root, tool)
            libs |= _libs_of(tool)
        for lib in sorted(libs):
            _copy_into(root, lib)
        # grub-reboot: Debian's script as is (it sources grub-mkconfig_lib; grub-probe is absent,
        # which it tolerates: no abstraction found, so it just sets next_entry).
        for f in ("/usr/sbin/grub-reboot", "/usr/share/grub/grub-mkconfig_lib"):
            _copy_into(root, f)
        mod_root = root / "lib/modules" / kver
        mod_root.mkdir(parents=True)
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if Path("/lib/modules", kver, name).exists():
                shutil.copy2(Path("/lib/modules", kver, name), mod_root / name)
        for ko in _module_files(kver, NOS_MODULES):
            _copy_into(root, ko)
        _run(["depmod", "-b", str(root), kver])
        _write(root / "etc/inittab", INITTAB)
        _write(root / "etc/rcS", RCS.format(boot_label=BOOT_LABEL, name=NOS_NAME, version=version,
                                            booted=BOOTED, modules=" ".join(NOS_MODULES)), 0o755)  # fmt: skip
        _write(root / "etc/udhcpc.script", UDHCPC_SCRIPT, 0o755)
        _write(root / "usr/sbin/onie-boot-mode", NOS_ONIE_BOOT_MODE, 0o755)
        _write(root / "etc/os-release", f'NAME="{NOS_NAME}"\nID={NOS_NAME}\nVERSION="{version}"\n'
                                        f"VERSION_ID={version}\n")  # fmt: skip
        _write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n")
        _write(root / "etc/group", "root:x:0:\nnogroup:x:65534:\n")
        _write(root / "etc/shadow", "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n", 0o600)
        _write(root / "etc/ssh/sshd_config", SSHD_CONFIG)
        shutil.copy2(host_key, root / "etc/ssh/ssh_host_ed25519_key")
        (root / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
        shutil.copy2(authorized_key, root / "root/.ssh/authorized_keys")
        _run(["mknod", "-m", "600", str(root / "dev/console"), "c", "5", "1"])
        _run(["mknod", "-m", "666", str(root / "dev/null"), "c", "1", "3"])
        _cpio_gz(root, dest)
    return dest


@dataclass(frozen=True)
class NosBuild:
    """Installers for each version in one folder (`onie.installers`), and the keys the NOS uses."""

    installers: Path
    client_key: Path  # the operator's private key (its .pub is the NOS's authorized_keys)
    host_key_pub: Path  # the NOS's host key, the same in every version
    versions: tuple[str, ...]

    def installer(self, version: str) -> Path:
        return self.installers / f"{NOS_NAME}-{version}-onie-installer-{PLATFORM}.bin"

    def known_hosts_line(self, ip: str) -> str:
        return f"{ip} {self.host_key_pub.read_text().split()[0]} {self.host_key_pub.read_text().split()[1]}\n"


def build_nos(work: Path, versions: tuple[str, ...] = ("1.0.0", "2.0.0")) -> NosBuild:
    """`provision onie-installer` of the demo NOS at each version, into work/installers."""
    work.mkdir(parents=True, exist_ok=True)
    keys = work / "keys"
    keys.mkdir(exist_ok=True)
    for name in ("client", "host"):
        if not (keys / name).exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"rollout-test-{name}",
                  "-f", str(keys / name)])  # fmt: skip
    out = work / "installers"
    out.mkdir(exist_ok=True)
    kernel = f"/boot/vmlinuz-{kernel_version()}"
    for version in versions:
        vdir = work / f"nos-{version}"
        vdir.mkdir(exist_ok=True)
        initrd = build_nos_initrd(vdir / "initrd.img", version, keys / "host", keys / "client.pub")
        spec = vdir / "switch.yml"
        spec.write_text(SPEC.format(name=NOS_NAME, version=version, kernel=kernel, initrd=initrd,
                                    boot_label=BOOT_LABEL))  # fmt: skip
        res = run_cli("onie-installer", str(spec), "-o", str(vdir / "out"))
        if res.returncode != 0:
            raise RuntimeError(f"provision onie-installer {spec} failed:\n{res.stderr}")
        shutil.move(
            vdir / "out" / f"onie-installer-{PLATFORM}.bin",
            out / f"{NOS_NAME}-{version}-onie-installer-{PLATFORM}.bin",
        )
    return NosBuild(out, keys / "client", keys / "host.pub", versions)


# --- the ONIE side of each guest's disk ---------------------------------------------------------


def _debugfs(image: str, *requests: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as f:
        f.write("\n".join(requests) + "\n")
        f.flush()
        out = _run(["debugfs", "-w", "-f", f.name, image])
    if "rror" in out.stderr:  # debugfs exits 0 on failed requests
        raise RuntimeError(f"debugfs on {image}: {out.stderr}")


def rearmable_disk(dest: Path, serial: str) -> Path:
    """A private copy of the BIOS base disk whose ONIE-BOOT has onie-boot-mode, ONIE's grubenv and
    a grub.cfg that honours them, with this guest's serial number."""
    fresh_disk(Firmware.BIOS, dest)
    part = next(p for p in gpt_partitions(dest) if p.name == "ONIE-BOOT")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "grub.cfg").write_text(ONIE_GRUB_CFG.format(serial=serial))
        (t / "onie-boot-mode").write_text(ONIE_BOOT_MODE)
        _run(["grub-editenv", str(t / "grubenv"), "create"])
        _debugfs(
            f"{dest}?offset={part.start}",
            "rm /onie/grub/grub.cfg",
            f"write {t / 'grub.cfg'} /onie/grub/grub.cfg",
            f"write {t / 'grubenv'} /onie/grub/grubenv",
            "mkdir /onie/tools",
            "mkdir /onie/tools/bin",
            f"write {t / 'onie-boot-mode'} /onie/tools/bin/onie-boot-mode",
            "sif /onie/tools/bin/onie-boot-mode mode 0100755",
        )
    return dest


# --- running it --------------------------------------------------------------------------------


def accel() -> str:
    """TCG unless PROVISION_TEST_ACCEL=kvm: on this project's build machine /dev/kvm opens but a
    KVM guest never runs (`-cpu host`/`max` abort on MSR 0x10a, `qemu64` prints nothing), so
    KVM cannot be detected by opening /dev/kvm alone."""
    return "kvm" if os.environ.get("PROVISION_TEST_ACCEL") == "kvm" else "tcg"


@dataclass
class RolloutGuest:
    """One switch under one QEMU process for its whole life; its console is read all along."""

    workdir: Path
    ns: NetNS
    tap: str
    mac: str
    serial: str
    name: str = ""
    disk: Path = field(init=False)
    lines: list[tuple[float, str]] = field(init=False, default_factory=list)  # (time.time(), line)
    proc: subprocess.Popen | None = field(init=False, default=None)
    started: float = field(init=False, default=0.0)
    _cond: threading.Condition = field(init=False, default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.disk = rearmable_disk(self.workdir / "disk.raw", self.serial)

    def argv(self) -> list[str]:
        cpu = "host" if accel() == "kvm" else "max"
        return ["qemu-system-x86_64", "-machine", "q35", "-accel", accel(), "-cpu", cpu,
                "-smp", "1", "-m", "768", "-display", "none", "-serial", "stdio", "-monitor", "none",
                "-drive", f"file={self.disk},format=raw,if=virtio,cache=unsafe",
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile="]  # fmt: skip

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = self.ns.popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with (self.workdir / "console.log").open("w") as log:
            for raw in self.proc.stdout:
                line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
                log.write(f"{time.monotonic() - self.started:7.1f} {line}\n")  # seconds since QEMU started
                log.flush()
                with self._cond:
                    self.lines.append((time.time(), line))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        """A position in the console: wait_for(..., after=mark) sees only lines after it."""
        with self._cond:
            return len(self.lines)

    def when(self, pattern: str, after: int = 0) -> float | None:
        """Wall-clock time (the host's, as the store's event times) of the first matching line."""
        rx = re.compile(pattern)
        with self._cond:
            return next((t for t, line in self.lines[after:] if rx.search(line)), None)

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for _, line in self.lines[after:]:
                    if m := rx.search(line):
                        return m
                after = max(after, len(self.lines))
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None):
                    raise AssertionError(
                        f"{self.name or self.serial}: no /{pattern}/ in {timeout:.0f}s; console tail:\n"
                        + self.tail()
                    )
                self._cond.wait(min(left, 1.0))

    def wait_nos(self, version: str, timeout: float, after: int = 0) -> str:
        """Wait for the NOS at `version` to come up; returns its IP address."""
        m = self.wait_for(rf"{BOOTED} {NOS_NAME} (\S+) ip=(\S*)", timeout, after)
        assert m[1] == version, f"{self.name}: booted {m[0]!r}, expected version {version}"
        assert m[2], f"{self.name}: NOS has no address (DHCP failed): {m[0]!r}\n{self.tail()}"
        return m[2]

    def tail(self, n: int = 60) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ns.stop(self.proc)


def ssh_argv(build: NosBuild, known_hosts: Path, ip: str, command: str) -> list[str]:
    """The host's OpenSSH client into the NOS (run inside the namespace), host key checked."""
    return ["ssh", "-i", str(build.client_key), "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            f"root@{ip}", command]  # fmt: skip


def ssh(ns: NetNS, build: NosBuild, known_hosts: Path, ip: str, command: str, timeout: float = 60):
    with contextlib.suppress(FileExistsError):
        known_hosts.touch()
    if ip not in known_hosts.read_text():
        with known_hosts.open("a") as f:
            f.write(build.known_hosts_line(ip))
    return ns.run(ssh_argv(build, known_hosts, ip, command), check=False, timeout=timeout)
