"""arm64 installers: UEFI (GRUB arm64-efi) and U-Boot (a FIT image + fw_setenv), and one switch.yml
listing x86_64 and arm64 platforms with a payload per CPU (docs/onie.md "arm64 UEFI", "U-Boot
platforms").

Real peers: busybox sh parses the scripts, Debian's mkimage builds and dumpimage reads the FIT,
libubootenv's fw_setenv/fw_printenv write and read the U-Boot environment on a loop device (root).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from onie.installer import build
from provision.config.profiles import ProfileRegistry
from provision.config.switchspec import load_switch_spec, resolve_platforms
from tests.support.cli import run_cli
from tests.support.disk import fake_onie_root, onie_disk, run
from tests.support.installer import templates, write_payload
from tests.support.tools import require_root, require_tool

SPEC = """\
nos:
  name: tnos
  version: 2.1.0
platforms: [{platforms}]
payload:
  kernel: nos/vmlinuz
  initrd: nos/initrd.img
  dtbs: dtbs
  arch:
    arm64:
      kernel: arm/Image
      initrd: arm/initrd.img
cmdline: "quiet"
partitions:
  - label: TNOS-BOOT
    size: 64M
    role: boot
"""


def write_multiarch_spec(folder: Path, platforms: str = "kvm_x86_64, qemu_armv8a") -> Path:
    write_payload(folder)
    (folder / "arm").mkdir(parents=True, exist_ok=True)
    (folder / "arm/Image").write_bytes(b"ARM64 Image stand-in\n" * 10_000)
    (folder / "arm/initrd.img").write_bytes(b"arm64 initrd\n" * 5_000)
    (folder / "dtbs/marvell").mkdir(parents=True, exist_ok=True)
    dts = folder / "board.dts"
    dts.write_text('/dts-v1/;\n/ { model = "test board"; compatible = "test,board"; };\n')
    run("dtc", "-I", "dts", "-O", "dtb", "-o", str(folder / "dtbs/marvell/ac5x_4G_db.dtb"), str(dts))
    spec = folder / "switch.yml"
    spec.write_text(SPEC.format(platforms=platforms))
    return spec


def members(path: Path) -> dict[str, bytes]:
    data = path.read_bytes()
    offset = int(data.split(b"\npayload_offset=", 1)[1].split(b"\n", 1)[0])
    tmp = path.with_suffix(".tar")
    tmp.write_bytes(data[offset:])
    with tarfile.open(tmp) as tar:
        out = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    tmp.unlink()
    return out


def test_one_spec_builds_x86_64_and_arm64_uefi_with_each_cpus_payload(tmp_path: Path) -> None:
    spec = write_multiarch_spec(tmp_path / "spec")
    res = run_cli("onie-installer", str(spec), "-o", str(tmp_path / "out"), "--json")
    assert res.returncode == 0, res.stderr
    built = {b["profile"]: Path(b["path"]) for b in json.loads(res.stdout)}
    assert built["qemu_armv8a"].name == "onie-installer-arm64-qemu_armv8a-r0.bin"
    arm, x86 = members(built["qemu_armv8a"]), members(built["kvm_x86_64"])
    assert arm["nos/kernel"] == (tmp_path / "spec/arm/Image").read_bytes()
    assert x86["nos/kernel"] == (tmp_path / "spec/nos/vmlinuz").read_bytes()
    install = arm["installer/install.sh"].decode()
    assert "grub_efi_target=arm64-efi" in install and "grub_efi_name=grubaa64.efi" in install
    assert "efi_fallback=BOOTAA64.EFI" in install and "bios_possible=0" in install
    assert "installer/grub-bios.cfg" not in arm and "installer/grub-bios.cfg" in x86
    grub = arm["installer/grub-uefi.cfg"].decode()
    # arm64: the firmware console is the serial line; GRUB's `serial` is a PC UART driver.
    assert "terminal_output console" in grub and "serial --unit" not in grub
    assert "console=ttyAMA0,115200n8" in grub and "earlycon=pl011,0x9000000" in grub
    x86_install = x86["installer/install.sh"].decode()
    assert "grub_efi_target=x86_64-efi" in x86_install and "efi_fallback=BOOTX64.EFI" in x86_install
    # Both scripts parse under busybox ash, as ONIE runs them.
    for text in (install, x86_install):
        script = tmp_path / "check.sh"
        script.write_text(text)
        assert subprocess.run([require_tool("busybox"), "sh", "-n", str(script)]).returncode == 0


def test_arm64_installer_refuses_a_machine_without_uefi(tmp_path: Path) -> None:
    """No /sys/firmware/efi and onie_firmware=bios: the arm64 UEFI installer stops before the disk."""
    spec = load_switch_spec(write_multiarch_spec(tmp_path / "spec", "qemu_armv8a"))
    ((_, info),) = resolve_platforms(spec, ProfileRegistry())
    out = build(
        spec.spec_for("arm64"), info, tmp_path / info.installer_name, templates(), source_date_epoch=0
    )
    text = members(out.path)["installer/install.sh"].decode()
    assert "this installer is for UEFI $grub_efi_target only" in text


def test_a_platform_whose_cpu_has_no_payload_is_an_error(tmp_path: Path) -> None:
    spec_path = write_multiarch_spec(tmp_path / "spec")
    text = spec_path.read_text().replace("  kernel: nos/vmlinuz\n  initrd: nos/initrd.img\n", "")
    spec_path.write_text(text)
    res = run_cli("onie-installer", str(spec_path), "-o", str(tmp_path / "out"))
    assert res.returncode == 2 and "has no x86_64 block" in res.stderr, res.stderr


def test_uboot_installer_carries_a_fit_image_mkimage_made(tmp_path: Path) -> None:
    """Supermicro SSE-G3748 (ONIE machine/supermicro/supermicro_sse_g3748): kernel, initrd and its
    device tree in one FIT; nos_bootcmd loads it from eMMC partition 2 as ONIE's demo does."""
    require_tool("mkimage")
    require_tool("dumpimage")
    spec = write_multiarch_spec(tmp_path / "spec", "supermicro_sse_g3748")
    outs = []
    for name in ("a", "b"):
        res = run_cli("onie-installer", str(spec), "-o", str(tmp_path / name), "--json",
                      env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})  # fmt: skip
        assert res.returncode == 0, res.stderr
        outs.append(Path(json.loads(res.stdout)[0]["path"]))
    assert outs[0].read_bytes() == outs[1].read_bytes(), "same inputs, different installer bytes"
    got = members(outs[0])
    assert "nos/kernel" not in got and "installer/grub-uefi.cfg" not in got
    fit = tmp_path / "nos.itb"
    fit.write_bytes(got["nos/nos.itb"])
    listing = run("dumpimage", "-l", str(fit)).stdout
    assert "Type:         Kernel Image (no loading done)" in listing
    assert "Type:         RAMDisk Image" in listing and "Type:         Flat Device Tree" in listing
    assert listing.count("sha256") >= 3 and "Default Configuration: 'conf-1'" in listing
    kernel = tmp_path / "kernel.out"
    run("dumpimage", "-T", "flat_dt", "-p", "0", "-o", str(kernel), str(fit))
    assert kernel.read_bytes() == (tmp_path / "spec/arm/Image").read_bytes()
    env = dict(line.split(" ", 1) for line in got["installer/uboot-env.txt"].decode().splitlines())
    assert env["nos_load"] == "mmc rescan; ext4load mmc 0:2 ${loadaddr} /boot/nos.itb"
    assert env["nos_bootcmd"].endswith("run nos_load && run nos_bootargs && bootm ${loadaddr}#conf-1")
    assert env["nos_bootargs"] == "setenv bootargs quiet console=ttyS0,115200n8"
    # Never ONIE's own variables: bootcmd runs check_boot_reason before nos_bootcmd.
    assert "bootcmd" not in env and "onie_boot_reason" not in env


def test_uboot_without_dtbs_in_the_spec_is_an_input_error(tmp_path: Path) -> None:
    spec = write_multiarch_spec(tmp_path / "spec", "supermicro_sse_g3748")
    spec.write_text(spec.read_text().replace("  dtbs: dtbs\n", ""))
    res = run_cli("onie-installer", str(spec), "-o", str(tmp_path / "out"))
    assert res.returncode == 2 and "marvell/ac5x_4G_db.dtb" in res.stderr and "dtbs" in res.stderr


def test_layout_shows_the_uboot_plan(tmp_path: Path) -> None:
    spec = write_multiarch_spec(tmp_path / "spec", "supermicro_sse_g3748, pegatron_dm6218_b")
    res = run_cli("layout", str(spec), "--json")
    assert res.returncode == 0, res.stderr
    plans = {p["profile"]: p for p in json.loads(res.stdout)}
    sm, pg = plans["supermicro_sse_g3748"], plans["pegatron_dm6218_b"]
    assert sm["medium"] == "partition" and "/dev/mmcblk0p2" in sm["region"]
    assert sm["fw_env_config"] == ["mtd:uboot-env\t0x0\t0x10000\t0x10000"]
    assert pg["medium"] == "disk" and [p["label"] for p in pg["partitions"]] == ["TNOS-BOOT"]
    assert "ext4load mmc 0:@BOOT_PART@" in pg["env"]["nos_load"]
    table = run_cli("layout", str(spec))
    assert "nos_bootcmd" in table.stdout and "fw_setenv" in table.stdout


ONIE_ENV = """\
bootcmd=run check_boot_reason; run nos_bootcmd; run onie_bootcmd
check_boot_reason=if test -n $onie_boot_reason; then setenv onie_bootargs boot_reason=$onie_boot_reason; run onie_bootcmd; fi;
nos_bootcmd=true
onie_bootcmd=echo Loading Open Network Install Environment ...
onie_platform=arm64-acme_u1-r0
"""


@pytest.mark.root
def test_uboot_disk_install_writes_partition_fit_and_environment(tmp_path: Path) -> None:
    """A U-Boot 'disk' install on a loop device: NOS partition after ONIE's, nos.itb in it, and
    fw_setenv (libubootenv, a real peer) rewrites the environment at the profile's offset:
    nos_bootcmd set, ONIE's bootcmd/check_boot_reason/onie_boot_reason untouched."""
    require_root()
    for tool in ("busybox", "sgdisk", "partx", "losetup", "mke2fs", "debugfs", "mkimage", "mkenvimage",
                 "fw_setenv", "fw_printenv"):  # fmt: skip
        require_tool(tool)
    spec_dir = tmp_path / "spec"
    write_multiarch_spec(spec_dir, "acme_u1")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    with onie_disk(tmp_path, "uefi") as disk:
        (profiles / "acme_u1.yml").write_text(
            "id: acme_u1\nkind: switch\nvendor: acme\nmachine: acme_u1\nswitch_asic: mvl\nvendor_id: 1\n"
            "onie_platform: arm64-acme_u1-r0\narch: arm64\nfirmware: uboot\nconsole: {device: ttyS0}\n"
            "uboot:\n  fw_env:\n"
            f"    - {{device: {disk.device}, offset: 0x80000, env_size: 0x10000}}\n"
            f"  medium: disk\n  device: {disk.device}\n  uboot_device: mmc 0\n"
            "  fdt: marvell/ac5x_4G_db.dtb\n"
        )
        envtxt = tmp_path / "onie-env.txt"
        envtxt.write_text(ONIE_ENV + "onie_boot_reason=rescue\n")
        envbin = tmp_path / "env.bin"
        run("mkenvimage", "-s", "0x10000", "-o", str(envbin), str(envtxt))
        run(
            "dd",
            f"if={envbin}",
            f"of={disk.device}",
            "bs=512",
            "seek=1024",
            "conv=notrunc,fsync",
            "status=none",
        )
        cfg = tmp_path / "fw_env.config"
        cfg.write_text(f"{disk.device} 0x80000 0x10000\n")
        res = run_cli("onie-installer", str(spec_dir / "switch.yml"), "-o", str(tmp_path / "out"),
                      "--profiles", str(profiles), "--json")  # fmt: skip
        assert res.returncode == 0, res.stderr
        installer = Path(json.loads(res.stdout)[0]["path"])
        root = fake_onie_root(tmp_path, "arm64-acme_u1-r0", "uboot")
        env = {**os.environ, "PROVISION_ONIE_ROOT": str(root), "PROVISION_TARGET_DISK": disk.device,
               "PROVISION_FW_ENV_CONFIG": "profile"}  # fmt: skip
        for attempt in (1, 2):  # idempotent: the second install replaces the first
            out = subprocess.run(["busybox", "sh", str(installer)], env=env, capture_output=True, text=True,
                                 timeout=300)  # fmt: skip
            assert out.returncode == 0, f"attempt {attempt}:\n{out.stdout}\n{out.stderr}"
        after = dict(
            line.split("=", 1)
            for line in run("fw_printenv", "-c", str(cfg)).stdout.splitlines()
            if "=" in line
        )
        boot = disk.by_name("TNOS-BOOT")
        assert after["nos_load"] == f"mmc rescan; ext4load mmc 0:{boot.number} ${{loadaddr}} /boot/nos.itb"
        assert (
            after["nos_bootcmd"].endswith("bootm ${loadaddr}#conf-1")
            and after["provision_nos"] == "tnos 2.1.0"
        )
        assert after["bootcmd"] == "run check_boot_reason; run nos_bootcmd; run onie_bootcmd"
        assert after["onie_boot_reason"] == "rescue", "the installer must leave onie_boot_reason to ONIE"
        assert [e.name for e in disk.entries()].count("TNOS-BOOT") == 1
        disk.ensure_nodes()
        listing = run("debugfs", "-R", "ls -l /boot", disk.part(boot.number)).stdout
        assert "nos.itb" in listing and "provision-release" in listing


@pytest.mark.root
def test_uboot_install_that_fails_leaves_the_environment_alone(tmp_path: Path) -> None:
    """No readable environment at the profile's offset: the installer stops before writing."""
    require_root()
    require_tool("fw_printenv")
    spec_dir = tmp_path / "spec"
    write_multiarch_spec(spec_dir, "acme_u1")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    with onie_disk(tmp_path, "uefi") as disk:
        (profiles / "acme_u1.yml").write_text(
            "id: acme_u1\nkind: switch\nvendor: acme\nmachine: acme_u1\nswitch_asic: mvl\nvendor_id: 1\n"
            "onie_platform: arm64-acme_u1-r0\narch: arm64\nfirmware: uboot\nconsole: {device: ttyS0}\n"
            "uboot:\n  fw_env:\n"
            "    - {device: /dev/nonexistent-env, offset: 0x80000, env_size: 0x10000}\n"
            f"  medium: disk\n  device: {disk.device}\n  uboot_device: mmc 0\n"
            "  fdt: marvell/ac5x_4G_db.dtb\n"
        )
        res = run_cli("onie-installer", str(spec_dir / "switch.yml"), "-o", str(tmp_path / "out"),
                      "--profiles", str(profiles), "--json")  # fmt: skip
        assert res.returncode == 0, res.stderr
        installer = Path(json.loads(res.stdout)[0]["path"])
        root = fake_onie_root(tmp_path, "arm64-acme_u1-r0", "uboot")
        before = disk.hash_disk()
        out = subprocess.run(["busybox", "sh", str(installer)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PROVISION_ONIE_ROOT": str(root),
                                  "PROVISION_TARGET_DISK": disk.device, "PROVISION_FW_ENV_CONFIG": "profile"})  # fmt: skip
        assert out.returncode == 1 and "cannot read the U-Boot environment" in out.stderr, out.stderr
        assert disk.hash_disk() == before


def test_arm64_identity_and_waterfall_names() -> None:
    """Option 60 from an arm64 ONIE (docs/onie.md "Discovery") and the names it then asks for: the
    arm64- prefix throughout, and our installer's file name maps back to its platform."""
    from onie import discovery, waterfall

    ident = discovery.parse_vendor_class("onie_vendor:arm64-qemu_armv8a-r0")
    assert (ident.arch, ident.vendor_machine, ident.revision) == ("arm64", "qemu_armv8a", "0")
    ident = discovery.complete(ident.__class__(**{**vars(ident), "switch_asic": "qemu"}))
    names = [e.name for e in waterfall.default_names(ident)]
    assert names[:2] == ["onie-installer-arm64-qemu_armv8a-r0", "onie-installer-arm64-qemu_armv8a-r0.bin"]
    assert "onie-installer-arm64-qemu" in names and "onie-installer-arm64" in names
    assert waterfall.platform_from_name("onie-installer-arm64-qemu_armv8a-r0.bin") == "arm64-qemu_armv8a-r0"
