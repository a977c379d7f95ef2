from __future__ import annotations

import pytest

from provision.config import ConfigError
from provision.profiles import ProfileNotFound, ProfileRegistry, load_profile


def test_every_shipped_profile_validates():
    profiles = ProfileRegistry().all()
    assert profiles, "no profiles shipped"
    for p in profiles:
        if p.kind == "switch":
            assert p.onie_platform and p.onie_platform.startswith(p.onie_arch + "-")


def test_kvm_profile_has_onie_platform():
    assert ProfileRegistry().get("kvm_x86_64").onie_platform == "x86_64-kvm_x86_64-r0"


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
