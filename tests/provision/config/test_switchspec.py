"""switch.yml: schema errors carry file and line, unknown keys are errors, paths resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from onie.installer import HookPoint, kernel_cmdline
from onie.layout import Filesystem, Role
from provision.config import ConfigError
from provision.config.profiles import ProfileRegistry
from provision.config.switchspec import load_switch_spec, platform_info, resolve_platforms
from tests.support.cli import run_cli
from tests.support.installer import write_payload, write_spec


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line containing `needle` (so tests survive template edits)."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_full_spec_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    spec = load_switch_spec(write_spec(tmp_path))
    s = spec.spec
    assert (s.nos_name, s.nos_version) == ("tnos", "2.1.0")
    assert s.kernel == tmp_path / "nos" / "vmlinuz"
    assert s.rootfs == tmp_path / "nos" / "rootfs.squashfs"
    assert [f.dest for f in s.files] == ["etc/extra.conf"]
    assert [p.label for p in s.layout.partitions] == ["TNOS-BOOT", "TNOS-ROOT-A", "TNOS-ROOT-B", "TNOS-DATA"]
    assert s.layout.rootfs.label == "TNOS-ROOT-A"
    assert s.layout.by_role(Role.ROOTFS)[1].slot == "B"
    assert s.layout.by_role(Role.DATA)[0].filesystem is Filesystem.EXT4
    assert s.hooks == (
        (HookPoint.POST_INSTALL, 'echo "hook ran on $NOS_DISK" > "$NOS_BOOT_DIR/boot/hook-ran"\n'),
    )
    assert s.title == "Test NOS 2.1.0"
    assert spec.platforms == ("kvm_x86_64",)


def test_unknown_key_is_an_error_with_line_and_suggestion(tmp_path: Path) -> None:
    path = write_spec(tmp_path, extra="kernal_args: x\n")
    with pytest.raises(ConfigError) as exc:
        load_switch_spec(path)
    err = exc.value
    assert err.mark.line == line_of(path, "kernal_args") and "unknown key 'kernal_args'" in err.message


def test_nested_typo_points_at_its_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    text = path.read_text().replace("    role: boot\n", "    rol: boot\n")
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_switch_spec(path)
    assert exc.value.mark.line == line_of(path, "rol: boot")
    assert "did you mean 'role'" in exc.value.fix


def test_missing_payload_file_names_the_line_and_the_folder(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    (tmp_path / "nos" / "initrd.img").unlink()
    with pytest.raises(ConfigError) as exc:
        load_switch_spec(path)
    assert exc.value.mark.line == line_of(path, "initrd: nos/initrd.img")
    assert "initrd.img" in exc.value.message and str(tmp_path) in exc.value.message


def test_partition_clashing_with_onie_is_refused_at_the_partitions_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace("label: TNOS-DATA", "label: ONIE-BOOT"))
    with pytest.raises(ConfigError) as exc:
        load_switch_spec(path)
    assert exc.value.mark.line == line_of(path, "partitions:") + 1  # the list starts here
    assert "ONIE's own partition name" in exc.value.message


def test_cmdline_with_grub_metacharacters_is_refused(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace('"quiet nos.flag=1"', '"quiet; reboot"'))
    with pytest.raises(ConfigError) as exc:
        load_switch_spec(path)
    assert exc.value.mark.line == line_of(path, "quiet; reboot")


def test_linuxkit_output_is_accepted_and_its_cmdline_merged(tmp_path: Path) -> None:
    write_payload(tmp_path)
    lk = tmp_path / "lk"
    lk.mkdir()
    (lk / "sw-kernel").write_bytes(b"k" * 100)
    (lk / "sw-initrd.img").write_bytes(b"i" * 100)
    (lk / "sw-cmdline").write_text("console=tty0 console=ttyS0\n")
    spec_path = tmp_path / "lk.yml"
    spec_path.write_text(
        "nos: {name: sw, version: '1'}\nplatforms: [kvm_x86_64]\npayload: {linuxkit: lk/sw}\ncmdline: debug\n"
    )
    spec = load_switch_spec(spec_path)
    assert spec.spec.kernel == lk / "sw-kernel" and spec.spec.initrd == lk / "sw-initrd.img"
    assert spec.spec.cmdline == "console=tty0 console=ttyS0 debug"
    assert [p.label for p in spec.spec.layout.partitions] == ["SW-BOOT"]
    profile = ProfileRegistry().get("kvm_x86_64")
    line = kernel_cmdline(spec.spec, platform_info(profile))
    # The profile's modules and serial console; the console comes last so /dev/console is serial.
    # (kvm_x86_64.yml's `modules.load`, in its order)
    assert line == (
        "console=tty0 console=ttyS0 debug"
        " modules_load=virtio_pci,virtio_blk,virtio_net,ext4,vfat,nls_ascii,efivarfs console=ttyS0,115200n8"
    )


def test_linuxkit_prefix_without_files_is_a_clear_error(tmp_path: Path) -> None:
    spec_path = tmp_path / "lk.yml"
    spec_path.write_text(
        "nos: {name: sw, version: '1'}\nplatforms: [kvm_x86_64]\npayload:\n  linuxkit: nope/sw\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_switch_spec(spec_path)
    assert exc.value.mark.line == 4 and "sw-kernel" in exc.value.message


def test_module_settings_merge_into_the_cmdline(tmp_path: Path) -> None:
    spec = load_switch_spec(write_spec(tmp_path))
    profile = ProfileRegistry().get("kvm_x86_64")
    line = kernel_cmdline(spec.spec, platform_info(profile))
    assert "module_blacklist=pcspkr,floppy" in line.split() and "modprobe.blacklist" not in line
    assert (
        "modules_load=virtio_pci,virtio_blk,virtio_net,ext4,vfat,nls_ascii,efivarfs,i2c_dev" in line.split()
    )
    assert line.split()[:2] == ["quiet", "nos.flag=1"] and line.endswith("console=ttyS0,115200n8")


def test_unknown_platform_is_an_error_at_the_platforms_line(tmp_path: Path) -> None:
    spec = load_switch_spec(write_spec(tmp_path, platforms="kvm_x86_64, nosuch_switch"))
    with pytest.raises(ConfigError) as exc:
        resolve_platforms(spec, ProfileRegistry())
    assert (
        exc.value.mark.line == line_of(Path(spec.path), "platforms:") and "nosuch_switch" in exc.value.message
    )


def test_profiles_from_an_extra_folder(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "acme_s1.yml").write_text(
        "id: acme_s1\nkind: switch\nvendor: acme\nmachine: acme_s1\nswitch_asic: bcm\nrevision: 2\n"
        "onie_platform: x86_64-acme_s1-r2\narch: x86_64\nfirmware: bios\n"
        "console: {device: ttyS1, speed: 9600}\n"
    )
    spec = load_switch_spec(write_spec(tmp_path, platforms="kvm_x86_64, acme_s1"))
    targets = resolve_platforms(spec, ProfileRegistry(folders=[folder]), only="acme_s1")
    (_profile, info) = targets[0]
    assert info.installer_name == "onie-installer-x86_64-acme_s1-r2.bin"
    assert info.serial_unit == 1 and kernel_cmdline(spec.spec, info).endswith("console=ttyS1,9600n8")


def test_cli_reports_config_errors_with_file_line_and_exit_2(tmp_path: Path) -> None:
    path = write_spec(tmp_path, extra="bogus: 1\n")
    result = run_cli("onie-installer", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{path}:{line_of(path, 'bogus')}:1: unknown key 'bogus'" in result.stderr
