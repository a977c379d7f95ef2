from __future__ import annotations

from pathlib import Path

import pytest

from provision.config import ConfigError
from provision.config.profiles import (
    KNOWN_ASIC_VENDORS,
    ProfileNotFound,
    ProfileRegistry,
    load_profile,
)
from provision.resources import profiles_dir

GOOD = (
    "id: {id}\nkind: switch\nvendor: V\nmachine: v_m\nrevision: 0\n"
    "onie_platform: x86_64-v_m-r0\narch: x86_64\nfirmware: uefi\nswitch_asic: bcm\n"
    "console: {{device: ttyS0, speed: 115200}}\n"
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_every_shipped_profile_validates():
    profiles = ProfileRegistry(use_env=False).all()
    assert len(profiles) >= 10
    for p in profiles:
        assert p.source and p.source.stem == p.id
        if p.kind == "switch":
            assert p.onie_platform == f"{p.onie_arch}-{p.machine}-r{p.revision}"
            assert p.switch_asic in KNOWN_ASIC_VENDORS and p.vendor_id is not None
            # Every switch file cites the ONIE source it was read from.
            assert "opencomputeproject/onie machine/" in p.source.read_text().splitlines()[1]


def test_shipped_set_covers_the_brief():
    by_id = {p.id: p for p in ProfileRegistry(use_env=False).all()}
    switches = [p for p in by_id.values() if p.kind == "switch"]
    assert len([p for p in switches if p.arch == "x86_64"]) >= 3
    assert [p for p in switches if p.arch == "arm64"]
    assert {
        "generic-x86_64-uefi",
        "generic-arm64-uefi",
        "qemu-x86-bios",
        "qemu-x86-uefi",
        "qemu-arm64-uefi",
    } <= set(by_id)


def test_kvm_profile_has_onie_platform():
    assert ProfileRegistry().get("kvm_x86_64").onie_platform == "x86_64-kvm_x86_64-r0"


def test_facts_read_from_onie_machine_files():
    reg = ProfileRegistry(use_env=False)
    as7712 = reg.get("accton_as7712_32x")
    assert (as7712.console.device, as7712.console.speed, as7712.firmware) == ("ttyS1", 115200, "bios")
    assert as7712.vendor_id == 259 and as7712.switch_asic == "bcm"
    sn2700 = reg.get("mlnx_msn2700")
    assert sn2700.firmware == "uefi" and "acpi=noirq" in sn2700.kernel_args()
    assert "module_blacklist=i2c_ismt,i2c_isch" in sn2700.kernel_args()
    z9100 = reg.get("dell_z9100_c2538")
    # the console last (the last console= is /dev/console), as in the installer's grub.cfg
    assert z9100.kernel_args() == ("i2c-ismt.bus_speed=100", "console=ttyS1,115200n8")
    g3748 = reg.get("supermicro_sse_g3748")
    assert (g3748.onie_platform, g3748.firmware, g3748.partition_type) == (
        "arm64-supermicro_sse_g3748-r0",
        "uboot",
        "msdos",
    )
    assert reg.find_by_platform("x86_64-mlnx_msn2700-r0") is sn2700
    assert reg.find_by_platform("x86_64-nope-r0") is None


def test_unknown_profile_suggests_close_ids():
    with pytest.raises(ProfileNotFound, match="kvm_x86_64"):
        ProfileRegistry().get("kvm_x86")


def test_profile_with_wrong_revision_suffix_is_refused(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(
        "id: bad\nkind: switch\nvendor: V\nmachine: m\nrevision: 1\n"
        "onie_platform: x86_64-v_m-r0\narch: x86_64\nfirmware: uefi\nconsole: {device: ttyS0}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert exc.value.mark.line == 6 and "-r1" in str(exc.value)


@pytest.mark.parametrize(
    ("replace", "line", "needle"),
    [
        (("machine: v_m", "machine: m"), 6, "<arch>-<machine>-r<rev>"),
        (("firmware: uefi", "firmware: uboot"), 8, "not U-Boot"),
        (("speed: 115200", "speed: 12345"), 10, "not a standard rate"),
        (("switch_asic: bcm", "switch_asic: bcmm"), 9, "did you mean 'bcm'"),
        (("switch_asic: bcm\n", ""), 1, "has no switch_asic"),
        (("kind: switch", "kind: swtich"), 2, "did you mean 'switch'"),
        (("arch: x86_64", "arch: aarch64"), 7, "one of x86_64, arm64"),
        (("vendor: V", "vendr: V"), 3, "did you mean 'vendor'"),
    ],
)
def test_bad_profiles_name_the_line(tmp_path, replace, line, needle):
    path = write(tmp_path, "p.yml", GOOD.format(id="p").replace(*replace))
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert needle in str(exc.value)
    assert exc.value.mark.line == line and str(exc.value).startswith(f"{path}:{line}:")


def test_arm64_bios_and_module_conflicts_are_refused(tmp_path):
    text = GOOD.format(id="p").replace("x86_64-v_m", "arm64-v_m").replace("x86_64", "arm64")
    with pytest.raises(ConfigError, match="BIOS firmware exists only on x86_64"):
        load_profile(write(tmp_path, "p.yml", text.replace("uefi", "bios")))
    text = GOOD.format(id="p") + "modules:\n  load: [igb]\n  blacklist: [igb]\n"
    with pytest.raises(ConfigError, match="both loaded and blacklisted: igb") as exc:
        load_profile(write(tmp_path, "p.yml", text))
    assert exc.value.mark.line == 13


def test_user_folder_overrides_and_extends(tmp_path, monkeypatch):
    write(tmp_path, "lab-leaf.yml", GOOD.format(id="lab-leaf"))
    override = GOOD.format(id="kvm_x86_64").replace("v_m", "kvm_x86_64").replace("vendor: V", "vendor: Mine")
    write(tmp_path, "kvm_x86_64.yml", override)
    reg = ProfileRegistry([tmp_path], use_env=False)
    assert reg.get("lab-leaf").source == tmp_path / "lab-leaf.yml"
    assert reg.get("kvm_x86_64").vendor == "Mine"
    assert reg.get("accton_as7712_32x").source.parent == profiles_dir()
    monkeypatch.setenv("PROVISION_PROFILES_DIR", str(tmp_path))
    assert ProfileRegistry().get("lab-leaf").id == "lab-leaf"


def test_missing_user_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ProfileRegistry([tmp_path / "nope"])


def test_json_shape_is_stable():
    data = ProfileRegistry().get("kvm_x86_64").as_dict()
    assert data["console"] == {"device": "ttyS0", "speed": 115200}
    assert data["kernel_args"] == ["console=ttyS0,115200n8"]
    assert data["modules"]["load"][0] == "virtio_pci"
