"""The installer run by an ONIE-like QEMU guest, then the NOS booted from the disk it wrote.

UEFI (OVMF) is the path the container cannot take: a kernel that mounts vfat and real efivars, so
the install script uses grub-install --target=x86_64-efi into the mounted ESP and efibootmgr
--create, and the NOS boots from that NVRAM entry. BIOS (SeaBIOS): firmware detected by the
absence of efivars, grub-install --target=i386-pc into the MBR. The guest is LAB.md's "ONIE-like"
machine: the Debian kernel plus an initramfs with static busybox (sh, mount, tail, sha256sum,
wget...) and the host's sgdisk, partx, mke2fs, blkid, grub-install, grub-editenv, efibootmgr with
their libraries and GRUB's module folders. Its /init writes a real /etc/machine.conf and
onie-sysinfo, mounts ONIE-BOOT as ONIE does (read-only here, so that its bytes stay comparable:
an ext4 rw mount stamps the superblock), runs the installer with no test-only overrides, prints
the exit code and powers off.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from onie.installer import build
from provision.switchspec import load_switch_spec
from tests.installer_fixtures import KVM, templates
from tests.support.disk import onie_disk
from tests.support.tools import require_root, require_tool
from tests.test_installer_vm import MARKER, OVMF_CODE, OVMF_VARS, SPEC, boot_disk

pytestmark = [pytest.mark.vm, pytest.mark.root]
REPO = Path(__file__).resolve().parents[1]
TOOLS = [
    "sgdisk",
    "partx",
    "mke2fs",
    "mkfs.ext4",
    "blkid",
    "grub-install",
    "grub-editenv",
    "grub-mkimage",
    "efibootmgr",
    "mcopy",
    "mmd",
    "mdir",
]
MODULES = [
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "vfat",
    "nls_ascii",
    "nls_cp437",
    "nls_iso8859-1",
    "nls_utf8",
    "efivarfs",
]

INIT = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /var/tmp /run
for m in $(cat /modules.list); do insmod "$m" 2>/dev/null; done
mount -t efivarfs efivarfs /sys/firmware/efi/efivars
sleep 2
mkdir -p /mnt/onie-boot
mount -t ext4 -o ro "$(blkid -L ONIE-BOOT)" /mnt/onie-boot
echo "ONIE-LIKE: efivars $(ls /sys/firmware/efi/efivars | wc -l), disk $(blkid -L ONIE-BOOT)"
cd /var/tmp && cp /installer.bin installer && chmod +x installer
./installer
echo "INSTALL-RC=$?"
efibootmgr
umount /mnt/onie-boot
sync
poweroff -f
"""


def _copy(path: str, stage: Path) -> None:
    src = Path(path)
    dst = stage / src.relative_to("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        target = os.readlink(src)
        if not os.path.lexists(dst):
            os.symlink(target, dst)
        _copy(str((src.parent / target).resolve()), stage)
    elif not os.path.lexists(dst):
        shutil.copy2(src, dst)


def onie_like_initramfs(workdir: Path, installer: Path, kernel_version: str) -> Path:
    stage = workdir / "onie-stage"
    for d in ("bin", "sbin", "dev", "proc", "sys", "etc", "tmp", "usr/share/locale", "usr/lib", "usr/lib64"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    # Debian 12 has merged /usr: libraries are named by /lib/... paths that live in /usr/lib.
    (stage / "lib").symlink_to("usr/lib")
    (stage / "lib64").symlink_to("usr/lib64")
    busybox = stage / "bin" / "busybox"
    shutil.copy2("/bin/busybox", busybox)
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = stage / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    for tool in TOOLS:
        path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert path, tool
        _copy(path, stage)
        ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        for lib in re.findall(r"(/\S+\.so[.\d]*)", ldd):
            _copy(lib, stage)
    for folder in ("/usr/lib/grub/x86_64-efi", "/usr/lib/grub/i386-pc"):
        shutil.copytree(folder, stage / folder.lstrip("/"), ignore=shutil.ignore_patterns("monolithic"))
    order: list[str] = []
    for module in MODULES:
        out = subprocess.run(
            ["modprobe", "--show-depends", "-S", kernel_version, module], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            if line.startswith("insmod "):
                ko = line.split()[1]
                if ko not in order:
                    order.append(ko)
                    _copy(ko, stage)
    (stage / "modules.list").write_text("\n".join(order) + "\n")
    (stage / "etc" / "machine.conf").write_text(
        "onie_version=2025.05\nonie_platform=x86_64-kvm_x86_64-r0\nonie_arch=x86_64\n"
        "onie_machine=kvm_x86_64\nonie_machine_rev=0\nonie_firmware=auto\nonie_partition_type=gpt\n"
        "onie_uefi_boot_loader=grubx64.efi\nonie_uefi_arch=x64\n"
    )
    sysinfo = stage / "bin" / "onie-sysinfo"
    sysinfo.write_text(
        '#!/bin/sh\ncase "$1" in -p) echo x86_64-kvm_x86_64-r0 ;; -s) echo QEMU-SN-1 ;; '
        "-e) echo 52:54:00:12:34:56 ;; -t) echo gpt ;; *) echo x86_64-kvm_x86_64-r0 ;; esac\n"
    )
    sysinfo.chmod(0o755)
    (stage / "init").write_text(INIT)
    (stage / "init").chmod(0o755)
    shutil.copy(installer, stage / "installer.bin")
    os.mknod(stage / "dev" / "console", 0o600 | 0o020000, os.makedev(5, 1))
    os.mknod(stage / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    out = workdir / "onie-like.cpio.gz"
    subprocess.run(
        f"cd {stage} && find . | cpio -o -H newc --quiet | gzip -1 > {out}", shell=True, check=True
    )
    return out


def region_sha256(image: Path, first: int, last: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(image, "rb") as f:
        f.seek(first * 512)
        left = (last - first + 1) * 512
        while left:
            chunk = f.read(min(left, 1 << 20))
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("firmware", ["uefi", "bios"])
def test_onie_like_guest_installs_and_the_nos_boots(tmp_path: Path, firmware: str) -> None:
    require_root()
    qemu = require_tool("qemu-system-x86_64")
    for tool in (*TOOLS, "cpio", "modprobe", "ldd"):
        require_tool(tool)
    if firmware == "uefi" and not OVMF_CODE.exists():
        pytest.fail(f"needs {OVMF_CODE} (Debian package ovmf)")
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    assert kernels, "needs linux-image-amd64"
    kernel = kernels[-1]
    version = kernel.name.removeprefix("vmlinuz-")

    nos = tmp_path / "spec" / "nos"
    subprocess.run(
        ["bash", str(REPO / "examples" / "nos" / "build.sh"), str(nos), "vmnos", "3.0"],
        check=True,
        capture_output=True,
    )
    (tmp_path / "spec" / "switch.yml").write_text(SPEC)
    spec = load_switch_spec(tmp_path / "spec" / "switch.yml").spec
    installer = build(spec, KVM, tmp_path / KVM.installer_name, templates()).path
    with onie_disk(tmp_path, firmware, size="512M", mount_onie_boot=False) as disk:
        image = disk.image
        onie_boot = disk.by_name("ONIE-BOOT")
        onie_before = disk.hash_part(onie_boot.number)
        esp = disk.by_name("EFI System") if firmware == "uefi" else None
    initrd = onie_like_initramfs(tmp_path, installer, version)

    log = tmp_path / "onie-like.log"
    argv = [
        qemu,
        "-accel",
        "tcg",
        "-machine",
        "q35",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "1024",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-nic",
        "none",
        "-drive",
        f"file={image},format=raw,if=virtio",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        "console=ttyS0,115200 quiet",
    ]
    if firmware == "uefi":
        vars_copy = tmp_path / "OVMF_VARS.fd"
        shutil.copy(OVMF_VARS, vars_copy)  # kept for the second boot: BootOrder lives here
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"]
        argv += ["-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    with open(log, "wb") as out:
        proc = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=900
        )
    text = log.read_bytes().decode("utf-8", "replace")
    assert proc.returncode == 0, text[-3000:]
    assert "INSTALL-RC=0" in text, text[-4000:]
    assert f"installing GRUB ({firmware})" in text and "grub-mkimage + mtools" not in text, text[-4000:]
    assert region_sha256(image, onie_boot.first, onie_boot.last) == onie_before
    if firmware == "bios":  # grub-install --target=i386-pc into the MBR; SeaBIOS boots it
        serial = boot_disk(image, "bios", tmp_path)
        assert MARKER in serial, serial[-3000:]
        return
    assert re.search(r"Boot[0-9A-F]{4}\* vmnos", text), text[-2000:]  # efibootmgr --create
    esp_at = f"{image}@@{esp.first * 512}"
    mtools_env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    onie_loader = subprocess.run(
        ["mtype", "-i", esp_at, "::/EFI/onie/grubx64.efi"], capture_output=True, env=mtools_env, check=True
    ).stdout
    assert onie_loader == (tmp_path / "onie-grubx64.efi").read_bytes()
    listing = subprocess.run(
        ["mdir", "-b", "-i", esp_at, "::/EFI/vmnos"],
        capture_output=True,
        text=True,
        env=mtools_env,
        check=True,
    ).stdout
    assert "grubx64.efi" in listing.lower()

    # Second power-on from the disk with the same NVRAM: BootOrder now starts with vmnos.
    serial = boot_disk(image, "uefi", tmp_path)
    assert MARKER in serial, serial[-3000:]
