"""Real installs onto loop-device disks laid out like ONIE's UEFI and BIOS layouts (root).

The installer runs under busybox sh with a fake machine.conf/onie-sysinfo (PROVISION_ONIE_ROOT,
test-only) and is pinned to the test's loop disk (PROVISION_TARGET_DISK, test-only). ONIE-BOOT is
mounted read-only, as ONIE keeps it mounted, so sgdisk's re-read fails as on a switch.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from onie.installer import build
from onie.layout import GUID_BIOS_BOOT, GUID_ESP, GUID_LINUX_FS, GUID_ONIE_BOOT
from provision.config.switchspec import SwitchSpec, load_switch_spec
from tests.support.disk import LoopDisk, fake_onie_root, onie_disk, run
from tests.support.installer import KVM, report_recorder, tamper, templates, write_spec
from tests.support.tools import require_root, require_tool

pytestmark = pytest.mark.root

NOS_LABELS = ["TNOS-BOOT", "TNOS-ROOT-A", "TNOS-ROOT-B", "TNOS-DATA"]


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_root()
    for tool in (
        "busybox",
        "sgdisk",
        "partx",
        "losetup",
        "mkfs.vfat",
        "mke2fs",
        "mcopy",
        "grub-install",
        "grub-mkimage",
        "grub-editenv",
        "debugfs",
    ):
        require_tool(tool)


def build_installer(tmp_path: Path, replace: tuple[str, str] | None = None) -> tuple[SwitchSpec, Path]:
    """The test spec (with `replace` = (old, new) applied to its YAML text) and its installer."""
    spec_path = write_spec(tmp_path / "spec")
    if replace is not None:
        text = spec_path.read_text()
        assert replace[0] in text, f"the test spec no longer contains {replace[0]!r}"
        spec_path.write_text(text.replace(*replace))
    spec = load_switch_spec(spec_path).spec
    out = tmp_path / "out"
    out.mkdir()
    return spec, build(spec, KVM, out / KVM.installer_name, templates(), source_date_epoch=0).path


def make_installer(tmp_path: Path) -> Path:
    return build_installer(tmp_path)[1]


def install(path: Path, disk: LoopDisk, root: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROVISION_ONIE_ROOT": str(root), "PROVISION_TARGET_DISK": disk.device, **extra}
    return subprocess.run(["busybox", "sh", str(path)], env=env, capture_output=True, text=True, timeout=300)


def ext4_cat(device: str, path: str) -> str:
    return run("debugfs", "-R", f"cat {path}", device).stdout


def ext4_size(device: str, path: str) -> int:
    out = run("debugfs", "-R", f"stat {path}", device).stdout
    for line in out.splitlines():
        if "Size:" in line:
            return int(line.split("Size:")[1].split()[0])
    raise AssertionError(f"{path} not on {device}: {out}")


def shape(disk: LoopDisk) -> list[tuple[int, str, str, int, int]]:
    return [(e.number, e.name, e.type_guid, e.first, e.last) for e in disk.entries()]


def check_installed(disk: LoopDisk, firmware: str, tmp_path: Path) -> None:
    entries = {e.name: e for e in disk.entries()}
    for label in NOS_LABELS:
        assert entries[label].type_guid == GUID_LINUX_FS, entries[label]
    assert entries["ONIE-BOOT"].type_guid == GUID_ONIE_BOOT
    assert entries["ONIE-BOOT"].attributes == "1000000000000001"
    disk.ensure_nodes()
    boot = disk.part(entries["TNOS-BOOT"].number)
    labels = run("blkid", "-c", "/dev/null", "-o", "value", "-s", "LABEL", boot).stdout.strip()
    assert labels == "TNOS-BOOT"
    data = disk.part(entries["TNOS-DATA"].number)
    assert run("blkid", "-c", "/dev/null", "-o", "value", "-s", "LABEL", data).stdout.strip() == "TNOS-DATA"
    # The rootfs image went raw into slot A.
    root_a = disk.part(entries["TNOS-ROOT-A"].number)
    image = (tmp_path / "spec" / "nos" / "rootfs.squashfs").read_bytes()
    with open(root_a, "rb") as f:
        assert f.read(len(image)) == image
    grub = ext4_cat(boot, "/grub/grub.cfg")
    assert "menuentry 'Test NOS 2.1.0' --id nos" in grub
    assert "search --no-floppy --label --set=root TNOS-BOOT" in grub
    assert "linux /boot/vmlinuz quiet nos.flag=1" in grub and "console=ttyS0,115200n8" in grub
    assert "menuentry 'ONIE' --id ONIE" in grub and "load_env" in grub and "save_env next_entry" in grub
    assert "terminal_input serial" in grub
    if firmware == "uefi":
        assert "chainloader /EFI/onie/grubx64.efi" in grub
    else:
        assert "chainloader +1" in grub and "search --no-floppy --label --set=root ONIE-BOOT" in grub
    assert ext4_size(boot, "/grub/grubenv") == 1024
    assert ext4_size(boot, "/boot/vmlinuz") == (tmp_path / "spec" / "nos" / "vmlinuz").stat().st_size
    assert ext4_cat(boot, "/etc/extra.conf") == "extra=1\n"
    assert ext4_cat(boot, "/boot/hook-ran").startswith("hook ran on loop")


def esp_listing(disk: LoopDisk, path: str) -> str:
    return run("mdir", "-b", "-i", disk.part(1), path, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout


def esp_file(disk: LoopDisk, path: str) -> str:
    return run("mtype", "-i", disk.part(1), path, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout


def gpt_rows(disk: LoopDisk) -> list[tuple]:
    return [(e.number, e.name, e.type_guid, e.attributes, e.first, e.last) for e in disk.entries()]


@pytest.mark.parametrize("firmware", ["uefi", "bios"])
def test_install_keeps_onie_and_is_idempotent(tmp_path: Path, firmware: str) -> None:
    path = make_installer(tmp_path)
    with onie_disk(tmp_path, firmware) as disk:
        onie_before = disk.hash_part(2)
        entries_before = gpt_rows(disk)
        if firmware == "uefi":
            onie_loader_before = esp_file(disk, "::/EFI/onie/grubx64.efi")
        root = fake_onie_root(tmp_path, "x86_64-kvm_x86_64-r0", firmware)
        (root / "bin" / "wget").symlink_to(require_tool("busybox"))  # ONIE's wget is busybox's

        with report_recorder() as (port, seen):
            first = install(path, disk, root, onie_exec_url=f"http://127.0.0.1:{port}/onie-installer")
        assert first.returncode == 0, first.stdout + first.stderr
        assert [(r["stage"], r["status"]) for r in seen] == [
            ("started", "progress"),
            ("verified", "progress"),
            ("partitioned", "progress"),
            ("payload", "progress"),
            ("bootloader", "progress"),
            ("complete", "ok"),
        ]
        assert seen[-1]["message"] == f"installed on {disk.device}"
        assert "[6/6] tnos 2.1.0 installed" in first.stdout
        disk.ensure_nodes()
        assert disk.hash_part(2) == onie_before  # ONIE-BOOT: byte for byte
        kept = gpt_rows(disk)[:2]
        assert kept == entries_before  # ONIE's GPT entries unchanged
        check_installed(disk, firmware, tmp_path)
        layout_once = shape(disk)
        assert [row[1] for row in layout_once] == [entries_before[0][1], "ONIE-BOOT", *NOS_LABELS]
        if firmware == "uefi":
            assert entries_before[0][2] == GUID_ESP
            listing = esp_listing(disk, "::/EFI/tnos")
            assert "grubx64.efi" in listing.lower()
            assert "bootx64.efi" in esp_listing(disk, "::/EFI/BOOT").lower()  # fallback was absent
            assert esp_file(disk, "::/EFI/onie/grubx64.efi") == onie_loader_before
        else:
            assert entries_before[0][2] == GUID_BIOS_BOOT
            with open(disk.device, "rb") as f:
                mbr = f.read(512)
            assert mbr[510:512] == b"\x55\xaa" and b"GRUB" in mbr  # GRUB's boot.img in the MBR

        second = install(path, disk, root)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "removing partition 3 of the previous tnos install" in second.stdout
        assert shape(disk) == layout_once  # same table, same places
        disk.ensure_nodes()
        assert disk.hash_part(2) == onie_before
        check_installed(disk, firmware, tmp_path)


@pytest.mark.parametrize("case", ["tampered", "wrong-platform"])
def test_refusals_happen_before_the_disk_is_touched(tmp_path: Path, case: str) -> None:
    path = make_installer(tmp_path)
    with onie_disk(tmp_path, "uefi") as disk:
        before = disk.hash_disk()
        platform = "x86_64-kvm_x86_64-r0"
        if case == "tampered":
            tamper(path, at_end=3000)
        else:
            platform = "x86_64-acme_s9-r0"
        root = fake_onie_root(tmp_path, platform, "uefi")
        result = install(path, disk, root)
        assert result.returncode == 1
        assert ("SHA-256 mismatch" if case == "tampered" else "this installer is for") in result.stderr
        assert disk.hash_disk() == before


def test_failing_hook_exits_non_zero_and_keeps_onie(tmp_path: Path) -> None:
    _, path = build_installer(
        tmp_path,
        (
            "  post-install: |\n",
            "  post-partition: |\n    echo failing on purpose; false\n  post-install: |\n",
        ),
    )
    with onie_disk(tmp_path, "bios") as disk:
        onie_before = disk.hash_part(2)
        with open(disk.device, "rb") as f:
            mbr_before = f.read(512)
        result = install(path, disk, fake_onie_root(tmp_path, "x86_64-kvm_x86_64-r0", "bios"))
        assert result.returncode == 1
        assert "ERROR during partitioned: hook post-partition exited non-zero" in result.stderr
        disk.ensure_nodes()
        assert disk.hash_part(2) == onie_before
        with open(disk.device, "rb") as f:
            assert f.read(512) == mbr_before  # the bootloader stage never ran


def test_rootfs_without_its_own_partition_goes_into_the_boot_partition_as_a_file(tmp_path: Path) -> None:
    spec, path = build_installer(
        tmp_path, ("  - label: TNOS-ROOT\n    size: 8M\n    role: rootfs\n    ab: true\n", "")
    )
    assert spec.layout.rootfs is None and spec.rootfs is not None
    with onie_disk(tmp_path, "bios") as disk:
        result = install(path, disk, fake_onie_root(tmp_path, "x86_64-kvm_x86_64-r0", "bios"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert [e.name for e in disk.entries()][2:] == ["TNOS-BOOT", "TNOS-DATA"]
        disk.ensure_nodes()
        boot = disk.part(disk.by_name("TNOS-BOOT").number)
        image = tmp_path / "spec" / "nos" / "rootfs.squashfs"
        assert ext4_size(boot, "/boot/rootfs.squashfs") == image.stat().st_size
        dumped = tmp_path / "dumped.squashfs"
        run("debugfs", "-R", f"dump /boot/rootfs.squashfs {dumped}", boot)
        assert dumped.read_bytes() == image.read_bytes()
