"""Building the ONIE-like test guest (see tests/support/onie_guest.py): its initramfs and a disk
pre-laid with ONIE's partitions, cached under $PROVISION_TEST_CACHE (default
/var/tmp/provision-test-cache) keyed on every input, so a rerun only copies the base disk.

Initramfs: the host's Debian kernel's modules, static busybox, the tools a NOS installer calls
(sgdisk, mke2fs, mkfs.vfat, blkid, partx, efibootmgr, grub-install with its module folders) with
their libraries, and the scripts in onie_guest/. Disk: GPT with ONIE's types and attributes
(UEFI: ESP + ONIE-BOOT; BIOS: GRUB-BOOT + ONIE-BOOT) built without loop devices, then one
offline guest boot that does what needs the machine (UEFI: ONIE's NVRAM entry, kept in a vars
file beside the disk; BIOS: ONIE's GRUB in the MBR and in ONIE-BOOT's boot sector).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.vm import OVMF_CODE, OVMF_VARS

HERE = Path(__file__).resolve().parent
GUEST_FILES = HERE / "onie_guest"
# Bump when the build recipe changes in a way the input hashes do not see.
RECIPE = "4"

MiB = 1024 * 1024
SECTOR = 512
DISK_SIZE = 2048 * MiB

# GPT type GUIDs and attributes ONIE uses on x86 (docs/onie.md; installer/grub-arch/install-arch).
GUID_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GUID_ONIE_BOOT = "7412F7D5-A156-4B13-81DC-867174929325"
GUID_GRUB_BOOT = "21686148-6449-6E6F-744E-656564454649"
ONIE_ATTR_BITS = (0, 60)  # 0x1000000000000001: required partition + ONIE's "do not touch" bit
GPT_ENTRY_SIZE = 128
GPT_ENTRIES_LBA = 2

GUEST_MODULES = [
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "e1000",
    "ahci",
    "sd_mod",
    "ext4",
    "crc32c_generic",
    "vfat",
    "fat",
    "nls_ascii",
    "nls_cp437",
    "nls_utf8",
    "nls_iso8859-1",
    "efivarfs",
]

# Tools a NOS installer calls in ONIE (docs/onie.md "The installer contract": busybox, sgdisk, mkfs,
# blkid, grub, efibootmgr).
GUEST_TOOLS = (
    "/usr/sbin/sgdisk",
    "/usr/sbin/mke2fs",
    "/usr/sbin/e2fsck",
    "/usr/sbin/tune2fs",
    "/usr/sbin/mkfs.fat",
    "/usr/sbin/blkid",
    "/usr/bin/partx",
    "/usr/bin/efibootmgr",
    "/usr/sbin/grub-install",
    "/usr/bin/grub-editenv",
    "/usr/sbin/grub-reboot",
    "/usr/sbin/grub-set-default",
)
TOOL_LINKS = {
    "/usr/sbin/mkfs.ext4": "mke2fs",
    "/usr/sbin/mkfs.ext2": "mke2fs",
    "/usr/sbin/mkfs.vfat": "mkfs.fat",
    "/usr/sbin/fsck.ext4": "e2fsck",
}
GRUB_DIRS = ("/usr/lib/grub/x86_64-efi", "/usr/lib/grub/i386-pc")


class Firmware(enum.Enum):
    UEFI = "uefi"
    BIOS = "bios"


def cache_root() -> Path:
    root = Path(os.environ.get("PROVISION_TEST_CACHE", "/var/tmp/provision-test-cache")) / "onie-guest"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(argv)} failed ({exc.returncode}): {exc.stderr.strip()}") from exc


def kernel_version() -> str:
    """The newest /boot/vmlinuz-* whose modules are installed (linux-image-amd64)."""
    found = sorted(
        p.name.removeprefix("vmlinuz-")
        for p in Path("/boot").glob("vmlinuz-*")
        if Path("/lib/modules", p.name.removeprefix("vmlinuz-")).is_dir()
    )
    if not found:
        raise RuntimeError("no /boot/vmlinuz-* with /lib/modules: apt-get install linux-image-amd64")
    return found[-1]


def _fingerprint(paths: Iterable[Path], extra: str = "") -> str:
    h = hashlib.sha256(RECIPE.encode() + extra.encode())
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{int(st.st_mtime)}\n".encode())
        if p.is_relative_to(HERE):
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


STALE_AFTER_S = 3600  # another checkout may still be using an older artefact for a while


@contextlib.contextmanager
def _cached(name: str) -> Iterator[tuple[Path, bool]]:
    """Yields (final path, exists). Build into a temporary sibling and rename: never half-built.
    After a new build, artefacts of the same kind from other inputs (older than an hour) go."""
    path = cache_root() / name
    if path.exists():
        yield path, True
        return
    yield path, False
    kind = name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(kind + "*"):
        if old.name.startswith(path.name.split(".")[0]) or "-" in old.name[len(kind) :].split(".")[0]:
            continue
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > STALE_AFTER_S:
                old.unlink()


# --- initramfs ---------------------------------------------------------------------------------


def _libs_of(binary: str) -> set[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = set()
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.add(m.group(1))
    return libs


def _copy_into(root: Path, src: str) -> None:
    dest = root / src.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copy2(os.path.realpath(src), dest)


def _module_files(kver: str) -> list[str]:
    files: list[str] = []
    for mod in GUEST_MODULES:
        out = _run(["modprobe", "-S", kver, "--show-depends", mod]).stdout
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod" and parts[1] not in files:
                files.append(parts[1])
    return files


def initramfs_inputs(kver: str) -> list[Path]:
    inputs = [Path("/bin/busybox"), Path(f"/boot/vmlinuz-{kver}")]
    inputs += [Path(os.path.realpath(t)) for t in GUEST_TOOLS if Path(t).exists()]
    inputs += [p for p in GUEST_FILES.iterdir() if p.is_file()]
    return inputs


def build_initramfs(kver: str | None = None) -> Path:
    """The ONIE-like environment as a gzip'd newc cpio (about 10 MB); cached."""
    kver = kver or kernel_version()
    key = _fingerprint(initramfs_inputs(kver), kver)
    with _cached(f"initramfs-{key}.cpio.gz") as (path, exists):
        if exists:
            return path
        with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
            root = Path(tmp) / "root"
            _populate_initramfs(root, kver)
            staged = Path(tmp) / "initramfs.cpio.gz"
            files = subprocess.run(
                ["find", ".", "-mindepth", "1"], cwd=root, check=True, capture_output=True
            ).stdout
            with staged.open("wb") as out:
                cpio = subprocess.Popen(
                    ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
                    cwd=root,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                gz = subprocess.Popen(["gzip", "-6", "-n"], stdin=cpio.stdout, stdout=out)
                assert cpio.stdin is not None and cpio.stdout is not None
                cpio.stdout.close()
                cpio.stdin.write(files)
                cpio.stdin.close()
                if cpio.wait() != 0 or gz.wait() != 0:
                    raise RuntimeError("cpio/gzip of the guest initramfs failed")
            staged.rename(path)
        return path


def _populate_initramfs(root: Path, kver: str) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "var/tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "lib/onie").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    applets = _run(["/bin/busybox", "--list-full"]).stdout.split()
    for applet in applets:
        link = root / applet
        if link.name == "busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    # Real tools replace busybox's applets of the same name (busybox mke2fs lacks -d, -L ...).
    libs: set[str] = set()
    for tool in GUEST_TOOLS:
        if not Path(tool).exists():
            raise RuntimeError(f"{tool} missing: run scripts/setup.sh (PKGS_ONIEVM)")
        _copy_into(root, tool)
        libs |= _libs_of(tool)
    for link, target in TOOL_LINKS.items():
        dest = root / link.lstrip("/")
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        dest.symlink_to(target)
    for lib in sorted(libs):
        _copy_into(root, lib)
        # Keep the name the loader asks for when the file is reached through a symlink.
        real = os.path.realpath(lib)
        if real != lib:
            (root / real.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            if not (root / real.lstrip("/")).exists():
                shutil.copy2(real, root / real.lstrip("/"))
    for grub_dir in GRUB_DIRS:
        shutil.copytree(grub_dir, root / grub_dir.lstrip("/"), ignore=shutil.ignore_patterns("monolithic"))
    if Path("/usr/share/grub/grub-mkconfig_lib").exists():
        _copy_into(root, "/usr/share/grub/grub-mkconfig_lib")
    # grub-install refuses to run without /usr/share/locale (docs/lab.md "An ONIE-like guest").
    (root / "usr/share/locale").mkdir(parents=True)
    if Path("/etc/mke2fs.conf").exists():
        _copy_into(root, "/etc/mke2fs.conf")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    # Kernel modules: exactly those modprobe says the drivers need, indexed by depmod -b.
    mod_root = root / "lib/modules" / kver
    mod_root.mkdir(parents=True)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        src = Path("/lib/modules", kver, name)
        if src.exists():
            shutil.copy2(src, mod_root / name)
    for ko in _module_files(kver):
        _copy_into(root, ko)
    _run(["depmod", "-b", str(root), kver])
    # Debian's kernel does not create /dev/console in an initramfs (docs/lab.md).
    _run(["mknod", "-m", "600", str(root / "dev/console"), "c", "5", "1"])
    _run(["mknod", "-m", "666", str(root / "dev/null"), "c", "1", "3"])
    shutil.copy2(GUEST_FILES / "init", root / "init")
    shutil.copy2(GUEST_FILES / "onie-discover", root / "bin/onie-discover")
    shutil.copy2(GUEST_FILES / "onie-sysinfo", root / "bin/onie-sysinfo")
    shutil.copy2(GUEST_FILES / "udhcp4-event", root / "lib/onie/udhcp4-event")
    shutil.copy2(GUEST_FILES / "functions", root / "lib/onie/functions")
    shutil.copy2(GUEST_FILES / "onie-prepare-disk", root / "bin/onie-prepare-disk")
    shutil.copy2(GUEST_FILES / "machine.conf.in", root / "etc/machine.conf.in")
    for f in (
        "init",
        "bin/onie-discover",
        "bin/onie-prepare-disk",
        "bin/onie-sysinfo",
        "lib/onie/udhcp4-event",
    ):
        (root / f).chmod(0o755)


# --- the disk ONIE leaves ----------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    number: int
    name: str
    start: int  # bytes
    size: int  # bytes
    type_guid: str


def gpt_partitions(disk: Path) -> list[Partition]:
    """Partitions as sgdisk reads them (sgdisk -p shows ONIE-BOOT's type only as code 3000)."""
    out = _run(["sgdisk", "-p", str(disk)]).stdout
    parts = []
    for line in out.splitlines():
        m = re.match(r"\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+\S+\s+(.*)$", line)
        if not m:
            continue
        num, first, last, name = int(m[1]), int(m[2]), int(m[3]), m[4].strip()
        info = _run(["sgdisk", "-i", str(num), str(disk)]).stdout
        guid = re.search(r"Partition GUID code: (\S+)", info)
        parts.append(
            Partition(num, name, first * SECTOR, (last - first + 1) * SECTOR, guid[1] if guid else "")
        )
    return parts


def onie_boot_grub_cfg() -> str:
    return (
        "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n"
        "set timeout=0\n"
        'menuentry "ONIE: Install OS" {\n'
        "  search --no-floppy --label --set=root ONIE-BOOT\n"
        "  echo ONIE-GUEST-GRUB\n"
        "  linux /onie/vmlinuz console=ttyS0,115200 serial_num=FROMDISK boot_reason=install\n"
        "  initrd /onie/initrd.gz\n}\n"
    )


def build_base_disk(firmware: Firmware, kver: str | None = None) -> Path:
    """A 2 GiB sparse raw disk with the partitions ONIE lays out (docs/onie.md table), cached."""
    kver = kver or kernel_version()
    initrd = build_initramfs(kver)
    kernel = Path(f"/boot/vmlinuz-{kver}")
    key = _fingerprint([initrd, kernel, Path("/usr/lib/grub/x86_64-efi/kernel.img")], firmware.value)
    with _cached(f"disk-{firmware.value}-{key}.raw") as (path, exists):
        if exists:
            return path
        with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
            staged = Path(tmp) / "disk.raw"
            _lay_out_disk(Path(tmp), staged, firmware, kernel, initrd)
            if firmware is Firmware.UEFI:
                staged.with_name("vars.fd").rename(base_vars(path))
            staged.rename(path)
        return path


def _lay_out_disk(tmp: Path, disk: Path, firmware: Firmware, kernel: Path, initrd: Path) -> None:
    with disk.open("wb") as f:
        f.truncate(DISK_SIZE)
    attrs = [a for bit in ONIE_ATTR_BITS for a in ("-A", f"{{n}}:set:{bit}")]
    if firmware is Firmware.UEFI:
        first = ["-n", "1:2048:+256M", "-t", f"1:{GUID_ESP}", "-c", "1:EFI System", "-A", "1:set:0"]
    else:
        first = ["-n", "1:2048:+2M", "-t", f"1:{GUID_GRUB_BOOT}", "-c", "1:GRUB-BOOT"]
        first += [a.format(n=1) for a in attrs]
    second = ["-n", "2:0:+128M", "-t", f"2:{GUID_ONIE_BOOT}", "-c", "2:ONIE-BOOT"]
    second += [a.format(n=2) for a in attrs]
    _run(["sgdisk", "-o", *first, *second, str(disk)])
    parts = {p.number: p for p in gpt_partitions(disk)}

    # ONIE-BOOT (ext4): ONIE's kernel and initramfs, its grub.cfg and a marker.
    tree = tmp / "onie-boot"
    (tree / "onie/grub").mkdir(parents=True)
    shutil.copy2(kernel, tree / "onie/vmlinuz")
    shutil.copy2(initrd, tree / "onie/initrd.gz")
    (tree / "onie/grub/grub.cfg").write_text(onie_boot_grub_cfg())
    (tree / "onie/ONIE-LIKE-TEST-GUEST").write_text(f"firmware={firmware.value}\n")
    onie_img = tmp / "onie-boot.img"
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "ONIE-BOOT", "-d", str(tree), str(onie_img),
          f"{parts[2].size // 1024}k"])  # fmt: skip
    _write_at(disk, onie_img, parts[2].start)

    if firmware is Firmware.UEFI:
        # ESP (vfat) with ONIE's GRUB at /EFI/onie/grubx64.efi: it boots ONIE-BOOT's grub.cfg.
        esp_img = tmp / "esp.img"
        _run(["mkfs.vfat", "-C", "-n", "EFI-SYSTEM", str(esp_img), str(parts[1].size // 1024)])
        efi = tmp / "grubx64.efi"
        early = tmp / "early.cfg"
        early.write_text(
            "search --no-floppy --label --set=root ONIE-BOOT\nconfigfile ($root)/onie/grub/grub.cfg\n"
        )
        _run(["grub-mkimage", "-O", "x86_64-efi", "-o", str(efi), "-c", str(early), "-p", "/onie/grub",
              "part_gpt", "fat", "ext2", "search", "search_label", "configfile", "normal", "linux",
              "echo", "serial", "terminal", "efi_gop", "chain"])  # fmt: skip
        _run(["mmd", "-i", str(esp_img), "::/EFI", "::/EFI/onie"])
        _run(["mcopy", "-i", str(esp_img), str(efi), "::/EFI/onie/grubx64.efi"])
        _write_at(disk, esp_img, parts[1].start)
    _prepare_in_guest(disk, firmware, kernel, initrd)


def base_vars(disk: Path) -> Path:
    """The OVMF vars file that goes with a cached UEFI base disk (ONIE's NVRAM entry in it)."""
    return disk.with_name(disk.name.removesuffix(".raw") + ".vars.fd")


def _prepare_in_guest(disk: Path, firmware: Firmware, kernel: Path, initrd: Path) -> None:
    """What ONIE's installer does that needs the machine (onie-prepare-disk): UEFI, ONIE's NVRAM
    entry; BIOS, ONIE's GRUB in the MBR and ONIE-BOOT's boot sector. One offline guest boot."""
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2",
            "-m", "1024", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-nic", "none", "-drive", f"file={disk},format=raw,if=virtio,cache=unsafe",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0,115200 quiet onie_prepare"]  # fmt: skip
    if firmware is Firmware.UEFI:
        vars_file = disk.with_name("vars.fd")
        shutil.copy2(OVMF_VARS, vars_file)
        argv += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,file={vars_file}"]  # fmt: skip
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    console = out.stdout.decode("utf-8", "replace")
    if f"ONIE-GUEST-PREPARED {firmware.value}" not in console:
        raise RuntimeError(f"preparing the {firmware.value} disk in the guest failed:\n" + console[-3000:])


def _write_at(disk: Path, image: Path, offset: int) -> None:
    _run(["dd", f"if={image}", f"of={disk}", "bs=1M", f"seek={offset}", "oflag=seek_bytes",
          "conv=notrunc,sparse", "status=none"])  # fmt: skip


def fresh_disk(firmware: Firmware, dest: Path) -> Path:
    """A private copy of the cached base disk (sparse copy: fast)."""
    _run(["cp", "--sparse=always", str(build_base_disk(firmware)), str(dest)])
    return dest


# --- a reference NOS and installer (to prove the guest without provision's pieces) ------------

REFERENCE_INSTALLER = GUEST_FILES / "reference-installer.sh"
REFERENCE_MARKER = "PROVISION-NOS-BOOTED refnos 0"


def build_reference_nos(dest: Path) -> None:
    """dest/nos/{vmlinuz,initrd.gz}: a busybox initramfs that prints REFERENCE_MARKER."""
    nos = dest / "nos"
    nos.mkdir(parents=True, exist_ok=True)
    shutil.copy2(f"/boot/vmlinuz-{kernel_version()}", nos / "vmlinuz")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        (root / "dev").mkdir()
        (root / "proc").mkdir()
        shutil.copy2("/bin/busybox", root / "bin/busybox")
        (root / "bin/sh").symlink_to("busybox")
        _run(["mknod", "-m", "600", str(root / "dev/console"), "c", "5", "1"])
        init = root / "init"
        init.write_text(
            "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n"
            f"echo '{REFERENCE_MARKER}'\n/bin/busybox sleep 2\n/bin/busybox poweroff -f\n"
        )
        init.chmod(0o755)
        files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files, capture_output=True, check=True
        ).stdout
        (nos / "initrd.gz").write_bytes(
            subprocess.run(["gzip", "-n"], input=cpio, capture_output=True).stdout
        )
