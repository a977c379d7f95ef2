"""onie.layout: plans are checked against ONIE's partitions and rendered to sgdisk commands."""

from __future__ import annotations

import pytest

from onie.layout import (
    GUID_BIOS_BOOT,
    GUID_ESP,
    GUID_LINUX_FS,
    GUID_ONIE_BOOT,
    MIB,
    Filesystem,
    Firmware,
    LayoutError,
    NosPartition,
    Role,
    check_layout,
    default_layout,
    expand_ab,
    human_size,
    onie_partitions,
)
from tests.support.installer import acme_profile_folder, templates, write_spec


def boot(label: str = "N-BOOT", size: int = 128 * MIB) -> NosPartition:
    return NosPartition(label, size, Role.BOOT)


def test_onie_partitions_match_onies_table() -> None:
    uefi = onie_partitions(Firmware.UEFI)
    assert [(p.name, p.size, p.type_guid, p.attributes) for p in uefi] == [
        ("EFI System", 256 * MIB, GUID_ESP, 0x1),
        ("ONIE-BOOT", 128 * MIB, GUID_ONIE_BOOT, 0x1000000000000001),
    ]
    bios = onie_partitions(Firmware.BIOS)
    assert [(p.name, p.size, p.type_guid) for p in bios] == [
        ("GRUB-BOOT", 2 * MIB, GUID_BIOS_BOOT),
        ("ONIE-BOOT", 128 * MIB, GUID_ONIE_BOOT),
    ]


@pytest.mark.parametrize(
    ("parts", "needle"),
    [
        ([boot("ONIE-BOOT")], "ONIE's own partition name"),
        ([boot(), NosPartition("grub-boot", 8 * MIB, Role.DATA)], "ONIE's own partition name"),
        ([boot(), NosPartition("VENDOR-DIAG", 8 * MIB, Role.DATA)], "DIAG"),
        ([boot(), NosPartition("N-BOOT", 8 * MIB, Role.DATA)], "used twice"),
        ([boot(), NosPartition("X", 8 * MIB, Role.DATA, type_guid=GUID_ESP)], "reserved"),
        ([boot(), NosPartition("A", 0, Role.DATA), NosPartition("B", 8 * MIB, Role.DATA)], "only the last"),
        ([boot(size=1000)], "between 1 MiB and 16 TiB"),
        ([boot(size=3 * MIB + 5)], "whole number of MiB"),
        ([boot(), NosPartition("R", 8 * MIB, Role.ROOTFS, Filesystem.EXT4)], "raw"),
        ([NosPartition("D", 8 * MIB, Role.DATA)], "exactly one boot partition"),
        ([boot("this-label-is-far-too-long")], "1-16 letters"),
    ],
)
def test_bad_plans_are_refused_with_a_reason(parts: list[NosPartition], needle: str) -> None:
    with pytest.raises(LayoutError) as exc:
        check_layout(parts)
    assert any(needle in p for p in exc.value.problems), exc.value.problems


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(LayoutError) as exc:
        check_layout([boot("ONIE-BOOT", size=1000), NosPartition("ONIE-BOOT", 8 * MIB, Role.DATA)])
    assert len(exc.value.problems) >= 3


def test_ab_slots_and_the_rest_of_the_disk() -> None:
    parts = expand_ab(
        [
            boot(),
            NosPartition("ROOT", 64 * MIB, Role.ROOTFS, Filesystem.RAW),
            NosPartition("DATA", 0, Role.DATA),
        ],
        {"ROOT"},
    )
    layout = check_layout(parts)
    assert layout.labels == ("N-BOOT", "ROOT-A", "ROOT-B", "DATA")
    assert layout.rootfs.label == "ROOT-A" and layout.rootfs.slot == "A"
    assert all(p.type_guid == GUID_LINUX_FS for p in layout.partitions)


def test_default_layout_sizes_the_rootfs_slot() -> None:
    layout = default_layout("my nos", with_rootfs_size=100 * MIB)
    assert layout.labels == ("MY-NOS-BOOT", "MY-NOS-ROOT")
    assert layout.rootfs.size >= 125 * MIB and layout.rootfs.size % MIB == 0


def test_human_size() -> None:
    assert human_size(0) == "rest of disk"
    assert human_size(256 * MIB) == "256 MiB"
    assert human_size(1536 * MIB) == "1.5 GiB"


def test_install_template_renders_the_plan_as_sgdisk_and_mkfs(tmp_path) -> None:
    from onie.installer.render import render_install
    from provision.config.switchspec import load_switch_spec

    spec = load_switch_spec(write_spec(tmp_path)).spec
    script = render_install(templates(), spec)
    assert f"--new=0:0:+{64 * 1024}K --typecode=0:{GUID_LINUX_FS} --change-name=0:TNOS-BOOT" in script
    assert "--change-name=0:TNOS-ROOT-A" in script and "--change-name=0:TNOS-ROOT-B" in script
    assert "mkfs.ext4 -q -F -L TNOS-BOOT" in script and "mkfs.ext4 -q -F -L TNOS-DATA" in script
    assert "mkfs.ext4 -q -F -L TNOS-ROOT" not in script  # raw slots get no filesystem
    assert "labels='TNOS-BOOT TNOS-ROOT-A TNOS-ROOT-B TNOS-DATA'" in script


def test_layout_cli_shows_onies_partitions_then_the_nos_plan(tmp_path) -> None:
    import json

    from tests.support.cli import run_cli

    folder = acme_profile_folder(tmp_path)
    spec = write_spec(tmp_path / "spec", platforms="kvm_x86_64, acme_s1")
    result = run_cli("layout", str(spec), "--json", "--profiles", str(folder))
    assert result.returncode == 0, result.stderr
    plans = {p["profile"]: p for p in json.loads(result.stdout)}
    uefi = [(r["label"], r["type_guid"], r["owner"]) for r in plans["kvm_x86_64"]["partitions"]]
    assert uefi[:2] == [("EFI System", GUID_ESP, "ONIE (kept)"), ("ONIE-BOOT", GUID_ONIE_BOOT, "ONIE (kept)")]
    assert [label for label, _, _ in uefi[2:]] == ["TNOS-BOOT", "TNOS-ROOT-A", "TNOS-ROOT-B", "TNOS-DATA"]
    bios = plans["acme_s1"]["partitions"]
    assert (bios[0]["label"], bios[0]["type_guid"], bios[0]["attributes"]) == (
        "GRUB-BOOT",
        GUID_BIOS_BOOT,
        "0x1000000000000001",
    )
    table = run_cli("layout", str(spec), "--platform", "acme_s1", "--profiles", str(folder))
    assert table.returncode == 0
    assert "GRUB-BOOT" in table.stdout and "TNOS-ROOT-B" in table.stdout and GUID_LINUX_FS in table.stdout
    assert "EFI System" not in table.stdout
