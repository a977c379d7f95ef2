"""arm64 ONIE-like QEMU guests (qemu-system-aarch64 -M virt, TCG) for tests/vm/test_onie_arm64_e2e.py:
the arm64 twins of tests/support/onie_guest.py, one per boot style ONIE has on arm64.

- UEFI (ONIE's `qemu_armv8a`, platform arm64-qemu_armv8a-r0): AAVMF code + a vars file per
  machine in the two pflash banks; a GPT disk with ONIE's ESP (ONIE's GRUB at
  /EFI/onie/grubaa64.efi and, as the factory's only way in without an NVRAM entry, at the
  removable-media path /EFI/BOOT/BOOTAA64.EFI) and ONIE-BOOT (ONIE's kernel, initramfs, grub.cfg).
- U-Boot (lab profile qemu-arm64-uboot): Debian's qemu_arm64 U-Boot (u-boot-qemu) with its
  environment in pflash bank 1, written here with mkenvimage. That environment plays ONIE's
  U-Boot (docs/onie.md "U-Boot platforms"): bootcmd imports the switch's writable environment from
  the virtio disk at 512 KiB (`env import -c`, where the guest's fw_setenv writes it: Debian's
  arm64 kernel has no pflash driver), then `run check_boot_reason; run nos_bootcmd; run
  onie_bootcmd`. ONIE itself is "in flash": QEMU's -kernel/-initrd, loaded by `qfw load`.

The guest's ONIE is the same environment as on x86 (tests/support/onie_guest/: onie-discover,
functions, udhcp4-event, onie-sysinfo) with its own init (onie_guest_arm64/init), an arm64 kernel
and static busybox (scripts/setup.sh arm64_pieces) and the installer's tools as arm64 binaries
(scripts/setup.sh arm64_onie_tools: Debian's arm64 .debs unpacked, never installed); each binary's
shared libraries are found by walking readelf's NEEDED entries in that root. Everything is cached
under $PROVISION_TEST_CACHE keyed on its inputs (onie_guest_image._cached).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.netns import NetNS
from tests.support.onie_guest import BootLog, run_console
from tests.support.onie_guest_image import (
    GUEST_FILES,
    GUID_ESP,
    GUID_ONIE_BOOT,
    ONIE_ATTR_BITS,
    MiB,
    _cached,
    _fingerprint,
    _run,
    _write_at,
    gpt_partitions,
)
from tests.support.vm import ARM64_ROOT, arm64_busybox, arm64_kernel

HERE = Path(__file__).resolve().parent
ARM64_FILES = HERE / "onie_guest_arm64"
TOOLS_ROOT = ARM64_ROOT.parent / "tools" / "root"
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
UBOOT_BIN = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
GRUB_ARM64 = ARM64_ROOT / "usr/lib/grub/arm64-efi"
RECIPE = "arm64-1"

DISK_SIZE = 1024 * MiB
PFLASH_SIZE = 64 * MiB  # QEMU virt's flash banks are 64 MiB each
# Debian's qemu_arm64 U-Boot (configs/qemu_arm64_defconfig): environment in flash at 0x4000000
# (bank 1, offset 0), CONFIG_ENV_SIZE 0x40000.
UBOOT_FLASH_ENV_SIZE = 0x40000
# The switch's writable environment on the disk: hardware-profiles/qemu-arm64-uboot.yml fw_env.
DISK_ENV_OFFSET = 0x80000
DISK_ENV_SIZE = 0x10000

MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic", "vfat", "fat",
           "nls_ascii", "nls_cp437", "nls_utf8", "nls_iso8859-1", "efivarfs"]  # fmt: skip
# name in the initramfs -> name in the tools root (Debian 12 .debs are not usr-merged)
TOOLS = {
    "/usr/sbin/sgdisk": "sbin/sgdisk",
    "/usr/sbin/mke2fs": "sbin/mke2fs",
    "/usr/sbin/e2fsck": "sbin/e2fsck",
    "/usr/sbin/tune2fs": "sbin/tune2fs",
    "/usr/sbin/mkfs.fat": "sbin/mkfs.fat",
    "/usr/sbin/blkid": "sbin/blkid",
    "/usr/bin/partx": "usr/bin/partx",
    "/usr/bin/efibootmgr": "bin/efibootmgr",
    "/usr/sbin/grub-install": "usr/sbin/grub-install",
    "/usr/bin/grub-editenv": "usr/bin/grub-editenv",
    "/usr/bin/fw_setenv": "usr/bin/fw_setenv",
    "/usr/bin/fw_printenv": "usr/bin/fw_printenv",
}
TOOL_LINKS = {
    "/usr/sbin/mkfs.ext4": "mke2fs",
    "/usr/sbin/mkfs.ext2": "mke2fs",
    "/usr/sbin/mkfs.vfat": "mkfs.fat",
    "/usr/sbin/fsck.ext4": "e2fsck",
}
LIB_DIRS = ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib")

MACHINE_CONF = """\
onie_version=2024.05-provision-test
onie_vendor_id=42623
onie_build_machine={machine}
onie_machine_rev=0
onie_arch=arm64
onie_build_platform={platform}
onie_config_version=1
onie_build_date="2026-01-01T00:00+00:00"
onie_partition_type=gpt
onie_kernel_version=@KERNEL@
onie_firmware=@FIRMWARE@
onie_switch_asic=qemu
onie_skip_ethmgmt_macs=yes
onie_machine={machine}
onie_platform={platform}
"""


@dataclass(frozen=True)
class Platform:
    """One ONIE machine the arm64 guest plays."""

    machine: str
    platform: str
    firmware: str  # "uefi" or "uboot"

    def machine_conf(self) -> str:
        text = MACHINE_CONF.format(machine=self.machine, platform=self.platform)
        if self.firmware == "uefi":
            # ONIE's arm64 UEFI names (build-config/arch/armv8a.make: EFI_ARCH aa64).
            text += (
                "onie_uefi_boot_loader=grubaa64.efi\nonie_grub_image_name=grubaa64.efi\nonie_uefi_arch=aa64\n"
            )
        return text


UEFI = Platform("qemu_armv8a", "arm64-qemu_armv8a-r0", "uefi")
UBOOT = Platform("qemu_arm64_uboot", "arm64-qemu_arm64_uboot-r0", "uboot")


def missing_pieces() -> str | None:
    """What scripts/setup.sh has not put in place yet (None when everything is there)."""
    need = [AAVMF_CODE, AAVMF_VARS, UBOOT_BIN, GRUB_ARM64, TOOLS_ROOT / "sbin/sgdisk"]
    for p in need:
        if not p.exists():
            return f"{p} missing: run scripts/setup.sh (arm64_pieces, arm64_onie_tools, qemu-efi-aarch64, u-boot-qemu)"
    if arm64_kernel() is None or arm64_busybox() is None:
        return f"no arm64 kernel/busybox under {ARM64_ROOT}: run scripts/setup.sh (arm64_pieces)"
    return None


def kernel() -> Path:
    k = arm64_kernel()
    if k is None:
        raise RuntimeError(f"no arm64 kernel under {ARM64_ROOT}: run scripts/setup.sh")
    return k


def kernel_version() -> str:
    return kernel().name.removeprefix("vmlinuz-")


# --- initramfs ---------------------------------------------------------------------------------


def _needed(binary: Path) -> list[str]:
    out = _run(["readelf", "-d", str(binary)]).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _find_lib(name: str) -> Path:
    for d in LIB_DIRS:
        p = TOOLS_ROOT / d / name
        if p.exists():
            return p
    raise RuntimeError(f"arm64 library {name} not in {TOOLS_ROOT}: add its package to ARM64_ONIE_PKGS")


def _libraries(binaries: list[Path]) -> set[Path]:
    """Every shared library the binaries need, transitively (paths inside TOOLS_ROOT)."""
    todo = list(binaries)
    seen: set[Path] = set()
    while todo:
        for name in _needed(todo.pop()):
            lib = _find_lib(name)
            if lib not in seen:
                seen.add(lib)
                todo.append(Path(os.path.realpath(lib)))
    return seen


def _module_paths(kver: str) -> list[Path]:
    """The .ko files for MODULES and what they depend on (modinfo's depends field)."""
    base = ARM64_ROOT / "lib/modules" / kver
    index = {p.name.removesuffix(".ko").replace("-", "_"): p for p in base.rglob("*.ko")}
    todo = [m.replace("-", "_") for m in MODULES]
    found: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in found or name not in index:
            continue  # built in (CONFIG_...=y) when absent
        found[name] = index[name]
        deps = _run(["modinfo", "-F", "depends", str(index[name])]).stdout.strip()
        todo += [d.replace("-", "_") for d in deps.split(",") if d]
    return sorted(found.values())


def _inputs() -> list[Path]:
    inputs = [kernel(), arm64_busybox() or ARM64_ROOT, TOOLS_ROOT.parent / ".stamp"]
    inputs += [p for p in ARM64_FILES.iterdir() if p.is_file()]
    inputs += [GUEST_FILES / n for n in ("onie-discover", "functions", "udhcp4-event", "onie-sysinfo")]
    return inputs


def build_base_initramfs() -> Path:
    """The arm64 ONIE-like environment without its machine.conf (a gzip'd newc cpio); cached."""
    kver = kernel_version()
    key = _fingerprint(_inputs(), RECIPE + kver)
    with _cached(f"arm64-initramfs-{key}.cpio.gz") as (path, exists):
        if exists:
            return path
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            root = Path(tmp) / "root"
            _populate(root, kver)
            staged = Path(tmp) / "initramfs.cpio.gz"
            staged.write_bytes(gzip.compress(_cpio(root), compresslevel=6, mtime=0))
            staged.rename(path)
        return path


def _cpio(root: Path) -> bytes:
    files = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root, check=True, capture_output=True).stdout
    return subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
        cwd=root,
        input=files,
        check=True,
        capture_output=True,
    ).stdout


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copy2(os.path.realpath(src), dest)


def _populate(root: Path, kver: str) -> None:
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "var/tmp",
        "lib/onie",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    busybox = arm64_busybox()
    assert busybox is not None
    shutil.copy2(busybox, root / "bin/busybox")
    # Debian's static busybox is the same version on both CPUs: the host's applet list is the
    # guest's (the arm64 binary cannot run here).
    for applet in _run(["/bin/busybox", "--list-full"]).stdout.split():
        link = root / applet
        if link.name != "busybox" and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    # Real tools replace busybox's applets of the same name.
    binaries = []
    for dest, src in TOOLS.items():
        if not (TOOLS_ROOT / src).exists():
            raise RuntimeError(f"{TOOLS_ROOT / src} missing: run scripts/setup.sh (arm64_onie_tools)")
        _copy(TOOLS_ROOT / src, root / dest.lstrip("/"))
        binaries.append(TOOLS_ROOT / src)
    for link, target in TOOL_LINKS.items():
        link_path = root / link.lstrip("/")
        if link_path.is_symlink() or link_path.exists():
            link_path.unlink()
        link_path.symlink_to(target)
    for lib in sorted(_libraries(binaries)):
        _copy(lib, root / "lib/aarch64-linux-gnu" / lib.name)
    # The ELF interpreter every binary names (PT_INTERP /lib/ld-linux-aarch64.so.1).
    _copy(TOOLS_ROOT / "lib/ld-linux-aarch64.so.1", root / "lib/ld-linux-aarch64.so.1")
    shutil.copytree(GRUB_ARM64, root / "usr/lib/grub/arm64-efi", ignore=shutil.ignore_patterns("monolithic"))
    (root / "usr/share/locale").mkdir(parents=True)  # grub-install refuses to run without it
    if (TOOLS_ROOT / "etc/mke2fs.conf").exists():
        _copy(TOOLS_ROOT / "etc/mke2fs.conf", root / "etc/mke2fs.conf")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    mod_src = ARM64_ROOT / "lib/modules" / kver
    mod_root = root / "lib/modules" / kver
    mod_root.mkdir(parents=True)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (mod_src / name).exists():
            shutil.copy2(mod_src / name, mod_root / name)
    for ko in _module_paths(kver):
        _copy(ko, mod_root / ko.relative_to(mod_src))
    _run(["depmod", "-b", str(root), kver])
    _run(["mknod", "-m", "600", str(root / "dev/console"), "c", "5", "1"])
    _run(["mknod", "-m", "666", str(root / "dev/null"), "c", "1", "3"])
    shutil.copy2(ARM64_FILES / "init", root / "init")
    shutil.copy2(GUEST_FILES / "onie-discover", root / "bin/onie-discover")
    shutil.copy2(GUEST_FILES / "onie-sysinfo", root / "bin/onie-sysinfo")
    shutil.copy2(GUEST_FILES / "udhcp4-event", root / "lib/onie/udhcp4-event")
    shutil.copy2(GUEST_FILES / "functions", root / "lib/onie/functions")
    for f in ("init", "bin/onie-discover", "bin/onie-sysinfo", "lib/onie/udhcp4-event"):
        (root / f).chmod(0o755)


def build_initramfs(platform: Platform) -> Path:
    """The base initramfs + a second cpio with this machine's machine.conf (and fw_env.config on
    U-Boot): the kernel unpacks concatenated archives in order."""
    base = build_base_initramfs()
    key = _fingerprint([base], RECIPE + platform.machine_conf())
    with _cached(f"arm64-initrd-{platform.machine}-{key}.gz") as (path, exists):
        if exists:
            return path
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            root = Path(tmp) / "root"
            (root / "etc").mkdir(parents=True)
            (root / "etc/machine.conf.in").write_text(platform.machine_conf())
            # ONIE's fw_env.config for this machine (rootconf/u-boot-arch init-arch writes it).
            (root / "etc/fw_env.config.in").write_text(f"/dev/vda {DISK_ENV_OFFSET:#x} {DISK_ENV_SIZE:#x}\n")
            staged = Path(tmp) / "initrd.gz"
            staged.write_bytes(base.read_bytes() + gzip.compress(_cpio(root), mtime=0))
            staged.rename(path)
        return path


# --- the disks ONIE leaves ---------------------------------------------------------------------


def onie_grub_cfg() -> str:
    # GRUB's `serial` is a PC UART driver; on arm64 the firmware console is the PL011 (docs/onie.md).
    return (
        "terminal_output console\nset timeout=0\n"
        'menuentry "ONIE: Install OS" {\n'
        "  search --no-floppy --label --set=root ONIE-BOOT\n"
        "  echo ONIE-GUEST-GRUB\n"
        "  linux /onie/vmlinuz console=ttyAMA0,115200 serial_num=FROMDISK boot_reason=install\n"
        "  initrd /onie/initrd.gz\n}\n"
    )


def build_uefi_disk() -> Path:
    """1 GiB sparse GPT: ESP (ONIE's GRUB, also as the fallback loader) + ONIE-BOOT; cached."""
    initrd = build_initramfs(UEFI)
    grub_kernel = GRUB_ARM64 / "kernel.img"
    key = _fingerprint([initrd, kernel(), grub_kernel], RECIPE + onie_grub_cfg())
    with _cached(f"arm64-disk-uefi-{key}.raw") as (path, exists):
        if exists:
            return path
        with tempfile.TemporaryDirectory(dir=path.parent) as tmpname:
            tmp = Path(tmpname)
            disk = tmp / "disk.raw"
            with disk.open("wb") as f:
                f.truncate(DISK_SIZE)
            attrs = [a for bit in ONIE_ATTR_BITS for a in ("-A", f"2:set:{bit}")]
            _run(["sgdisk", "-o", "-n", "1:2048:+256M", "-t", f"1:{GUID_ESP}", "-c", "1:EFI System",
                  "-A", "1:set:0", "-n", "2:0:+128M", "-t", f"2:{GUID_ONIE_BOOT}", "-c", "2:ONIE-BOOT",
                  *attrs, str(disk)])  # fmt: skip
            parts = {p.number: p for p in gpt_partitions(disk)}
            tree = tmp / "onie-boot"
            (tree / "onie/grub").mkdir(parents=True)
            shutil.copy2(kernel(), tree / "onie/vmlinuz")
            shutil.copy2(initrd, tree / "onie/initrd.gz")
            (tree / "onie/grub/grub.cfg").write_text(onie_grub_cfg())
            onie_img = tmp / "onie-boot.img"
            _run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "ONIE-BOOT", "-d", str(tree), str(onie_img),
                  f"{parts[2].size // 1024}k"])  # fmt: skip
            _write_at(disk, onie_img, parts[2].start)
            esp = tmp / "esp.img"
            _run(["mkfs.vfat", "-C", "-n", "EFI-SYSTEM", str(esp), str(parts[1].size // 1024)])
            early = tmp / "early.cfg"
            early.write_text(
                "search --no-floppy --label --set=root ONIE-BOOT\nconfigfile ($root)/onie/grub/grub.cfg\n"
            )
            efi = tmp / "grubaa64.efi"
            _run(["grub-mkimage", "-O", "arm64-efi", "-d", str(GRUB_ARM64), "-o", str(efi), "-c", str(early),
                  "-p", "/onie/grub", "part_gpt", "fat", "ext2", "search", "search_label", "configfile",
                  "normal", "linux", "echo", "terminal", "chain"])  # fmt: skip
            mt = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
            _run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/onie", "::/EFI/BOOT"], env=mt)
            _run(["mcopy", "-i", str(esp), str(efi), "::/EFI/onie/grubaa64.efi"], env=mt)
            # No NVRAM entry on a fresh AAVMF: the removable-media path is ONIE's way in.
            _run(["mcopy", "-i", str(esp), str(efi), "::/EFI/BOOT/BOOTAA64.EFI"], env=mt)
            _write_at(disk, esp, parts[1].start)
            disk.rename(path)
        return path


def env_image(variables: dict[str, str], size: int) -> bytes:
    """A U-Boot environment block (CRC32 + NUL-separated name=value) made by mkenvimage."""
    with tempfile.TemporaryDirectory() as tmp:
        txt = Path(tmp) / "env.txt"
        txt.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
        out = Path(tmp) / "env.bin"
        _run(["mkenvimage", "-s", hex(size), "-o", str(out), str(txt)])
        return out.read_bytes()


# ONIE's defaults for the switch's writable environment (patches/u-boot/common/
# platform-onie-common-env.patch): nos_bootcmd `echo` falls through to ONIE.
ONIE_DISK_ENV = {
    "nos_bootcmd": "echo",
    "onie_version": "2024.05-provision-test",
    "onie_platform": UBOOT.platform,
}


def build_uboot_disk() -> Path:
    """1 GiB sparse disk, empty GPT (the NOS's eMMC), ONIE's environment at 512 KiB; cached."""
    env = env_image(ONIE_DISK_ENV, DISK_ENV_SIZE)
    key = _fingerprint([], RECIPE + env.hex())
    with _cached(f"arm64-disk-uboot-{key}.raw") as (path, exists):
        if exists:
            return path
        with tempfile.TemporaryDirectory(dir=path.parent) as tmpname:
            disk = Path(tmpname) / "disk.raw"
            with disk.open("wb") as f:
                f.truncate(DISK_SIZE)
            _run(["sgdisk", "-o", str(disk)])
            with disk.open("r+b") as f:
                f.seek(DISK_ENV_OFFSET)
                f.write(env)
            disk.rename(path)
        return path


# --- running them ------------------------------------------------------------------------------


@dataclass
class Arm64Guest:
    """One arm64 ONIE-like machine: disk, firmware flash (AAVMF vars or U-Boot env), NIC on `tap`."""

    workdir: Path
    platform: Platform
    ns: NetNS
    tap: str
    mac: str = "52:54:00:4f:a6:01"
    serial: str = "PVARM0001"
    disco_attempts: int = 2
    disk: Path = field(init=False)
    flash: Path = field(init=False)
    boots: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        base = build_uefi_disk() if self.platform.firmware == "uefi" else build_uboot_disk()
        self.disk = self.workdir / "disk.raw"
        _run(["cp", "--sparse=always", str(base), str(self.disk)])
        self.flash = self.workdir / "flash1.fd"
        if self.platform.firmware == "uefi":
            shutil.copy2(AAVMF_VARS, self.flash)  # one vars file for the machine's life
        else:
            self.flash.write_bytes(env_image(self.uboot_env(), UBOOT_FLASH_ENV_SIZE))
            os.truncate(self.flash, PFLASH_SIZE)

    def onie_args(self) -> str:
        return (
            f"console=ttyAMA0,115200 earlycon=pl011,0x9000000 quiet serial_num={self.serial} "
            f"eth_addr={self.mac} testing disco_attempts={self.disco_attempts} disco_wait=3"
        )

    def uboot_env(self) -> dict[str, str]:
        """U-Boot's own environment (pflash bank 1): the ONIE U-Boot of this lab machine."""
        initrd_size = build_initramfs(UBOOT).stat().st_size
        blk, cnt = DISK_ENV_OFFSET // 512, DISK_ENV_SIZE // 512
        return {
            "bootdelay": "0",
            # Debian's qemu_arm64 defaults (include/configs/qemu-arm.h), which a whole new
            # environment must repeat.
            "kernel_addr_r": "0x40400000",
            "ramdisk_addr_r": "0x44000000",
            "fdt_addr_r": "0x40000000",
            "scriptaddr": "0x40200000",
            "onie_env_addr": "0x4f000000",
            # The switch's writable environment, where fw_setenv writes it (profile fw_env).
            "onie_import": f"virtio scan; virtio read ${{onie_env_addr}} {blk:#x} {cnt:#x} && "
            f"env import -c ${{onie_env_addr}} {DISK_ENV_SIZE:#x}",
            "check_boot_reason": 'if test -n "${onie_boot_reason}"; then '
            "setenv onie_bootargs boot_reason=${onie_boot_reason}; run onie_bootcmd; fi",
            "onie_bootcmd": "echo ONIE-UBOOT: booting ONIE; "
            f"setenv bootargs {self.onie_args()} ${{onie_bootargs}}; "
            "qfw load ${kernel_addr_r} ${ramdisk_addr_r} && "
            f"booti ${{kernel_addr_r}} ${{ramdisk_addr_r}}:{initrd_size:#x} ${{fdtcontroladdr}}",
            "bootcmd": "run onie_import; printenv nos_bootcmd; "
            "run check_boot_reason; run nos_bootcmd; run onie_bootcmd",
        }

    def qemu_argv(self, onie: bool) -> list[str]:
        argv = ["qemu-system-aarch64", "-M", "virt", "-accel", "tcg", "-cpu", "cortex-a57", "-smp", "1",
                "-m", "1024", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
                "-drive", f"file={self.disk},format=raw,if=none,id=d0,cache=unsafe",
                "-device", "virtio-blk-pci,drive=d0",
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile="]  # fmt: skip
        if self.platform.firmware == "uefi":
            argv += ["-drive", f"if=pflash,format=raw,readonly=on,file={AAVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,file={self.flash}",
                     # AAVMF waits ~5 s for a key without this (docs/lab.md).
                     "-boot", "menu=on,splash-time=0",
                     "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
                     "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]  # fmt: skip
            if onie:  # AAVMF boots a fw_cfg kernel before its boot options
                argv += ["-kernel", str(kernel()), "-initrd", str(build_initramfs(UEFI)),
                         "-append", self.onie_args()]  # fmt: skip
        else:
            # ONIE lives "in flash" here: always there for onie_bootcmd's `qfw load`.
            argv += ["-bios", str(UBOOT_BIN),
                     "-drive", f"if=pflash,unit=1,format=raw,file={self.flash}",
                     "-kernel", str(kernel()), "-initrd", str(build_initramfs(UBOOT))]  # fmt: skip
        return argv

    def boot_onie(self, timeout: float = 280) -> BootLog:
        """UEFI: ONIE's kernel through AAVMF; U-Boot: power on (the environment decides)."""
        return self._keep(run_console(self.ns, self.qemu_argv(True), timeout=timeout), "onie")

    def boot(self, marker: str, timeout: float = 240) -> BootLog:
        """Power on from the disk (UEFI) or as U-Boot decides, until `marker` appears."""
        log = run_console(self.ns, self.qemu_argv(False), timeout=timeout, until=lambda s: marker in s)
        return self._keep(log, "boot")

    def _keep(self, log: BootLog, kind: str) -> BootLog:
        self.boots += 1
        (self.workdir / f"boot-{self.boots}-{kind}.log").write_text(log.text)
        return log

    def disk_env(self) -> dict[str, str]:
        """The switch's writable U-Boot environment as it is on the disk now (CRC checked)."""
        return read_env(self.disk, DISK_ENV_OFFSET, DISK_ENV_SIZE)

    def set_disk_env(self, **values: str) -> None:
        """What `fw_setenv NAME VALUE` in the NOS does (e.g. onie_boot_reason=install), offline."""
        env = {**self.disk_env(), **values}
        with self.disk.open("r+b") as f:
            f.seek(DISK_ENV_OFFSET)
            f.write(env_image(env, DISK_ENV_SIZE))


def read_env(image: Path, offset: int, size: int) -> dict[str, str]:
    with image.open("rb") as f:
        f.seek(offset)
        block = f.read(size)
    crc, data = int.from_bytes(block[:4], "little"), block[4:]
    if zlib.crc32(data) != crc:
        raise RuntimeError(f"U-Boot environment at {offset:#x} of {image}: bad CRC")
    out = {}
    for item in data.split(b"\0"):
        if not item:
            break
        k, _, v = item.decode().partition("=")
        out[k] = v
    return out
