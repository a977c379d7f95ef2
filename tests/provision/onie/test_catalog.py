"""Catalog.for_identity: ONIE's generic installer names served to the switches they fit, most
specific first in the waterfall's order; headers beat names; real files in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onie import discovery
from provision.onie.catalog import Catalog

KVM = "x86_64-kvm_x86_64-r0"
MLNX = "x86_64-mlnx_msn2700-r0"
ARM = "arm64-acme_s1-r1"

# ONIE's default names for MLNX with ASIC vendor mlnx, most specific first (docs/onie.md), without
# the platform name itself (that one is for_platform's).
GENERIC_ORDER = [
    "onie-installer-x86_64-mlnx_msn2700",
    "onie-installer-x86_64-mlnx_msn2700.bin",
    "onie-installer-mlnx_msn2700",
    "onie-installer-mlnx_msn2700.bin",
    "onie-installer-x86_64-mlnx",
    "onie-installer-x86_64-mlnx.bin",
    "onie-installer-x86_64",
    "onie-installer-x86_64.bin",
    "onie-installer",
    "onie-installer.bin",
]


def write(folder: Path, name: str, platform: str | None = None, version: str = "1.0") -> Path:
    """A small installer; with `platform`, a header that names it (as provision's installers do)."""
    head = "#!/bin/sh\n" + (f"target_platform='{platform}'\n" if platform else "")
    path = folder / name
    path.write_bytes(f"{head}nos_name='demo'\nnos_version='{version}'\nexit 0\n".encode())
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "installers"
    d.mkdir()
    return d


def test_generic_names_are_served_most_specific_first_in_onies_order(folder):
    assert [w.name for w in discovery.default_names(discovery.complete(
        discovery.OnieIdentity(platform=MLNX, switch_asic="mlnx")))][2:] == GENERIC_ORDER  # fmt: skip
    for name in GENERIC_ORDER:
        write(folder, name)
    cat = Catalog(folder)
    # each round removes the best file: the next one in ONIE's order is chosen
    for name in GENERIC_ORDER:
        entry = cat.for_identity(MLNX, "x86_64", "mlnx")
        assert entry is not None and entry.name == name
        (folder / name).unlink()
    assert cat.for_identity(MLNX, "x86_64", "mlnx") is None


def test_asic_name_needs_the_asic(folder):
    write(folder, "onie-installer-x86_64-mlnx.bin")
    write(folder, "onie-installer.bin")
    cat = Catalog(folder)
    assert cat.for_identity(MLNX, None, "mlnx").name == "onie-installer-x86_64-mlnx.bin"
    # ASIC unknown (no hardware profile): ONIE's <arch>-<asic> name cannot be formed, skip it
    assert cat.for_identity(MLNX, None, None).name == "onie-installer.bin"
    # another ASIC vendor's file is not this switch's
    assert cat.for_identity(MLNX, None, "bcm").name == "onie-installer.bin"


def test_names_of_other_arches_and_machines_do_not_fit(folder):
    write(folder, "onie-installer-arm64.bin")
    write(folder, "onie-installer-x86_64-kvm_x86_64.bin")
    write(folder, "onie-installer-kvm_x86_64")
    cat = Catalog(folder)
    assert cat.for_identity(ARM).name == "onie-installer-arm64.bin"
    assert cat.for_identity(KVM).name == "onie-installer-x86_64-kvm_x86_64.bin"
    assert cat.for_identity(MLNX, asic="mlnx") is None


def test_a_header_platform_beats_any_generic_name(folder):
    write(folder, "onie-installer-x86_64-mlnx_msn2700.bin")
    write(folder, "nos-2.0.bin", MLNX, "2.0")  # named freely, header says MLNX
    cat = Catalog(folder)
    entry = cat.for_identity(MLNX, asic="mlnx")
    assert entry.name == "nos-2.0.bin" and entry.nos_version == "2.0"
    # and the full platform name (for_platform's rule) keeps working as before
    write(folder, discovery.installer_file_name(MLNX), MLNX)
    assert cat.for_identity(MLNX).name == discovery.installer_file_name(MLNX)
    assert cat.for_platform(MLNX).name == discovery.installer_file_name(MLNX)


def test_a_file_whose_header_names_another_platform_is_never_served_by_a_generic_name(folder):
    write(folder, "onie-installer-x86_64.bin", KVM)  # generic name, but built for KVM
    write(folder, "onie-installer", KVM)
    cat = Catalog(folder)
    assert cat.for_identity(MLNX, asic="mlnx") is None
    assert cat.for_identity(KVM).name in ("onie-installer-x86_64.bin", "onie-installer")  # its own


def test_a_generic_file_rewritten_in_place_with_another_platforms_header_is_refused(folder):
    path = write(folder, "onie-installer-x86_64.bin")
    write(folder, "onie-installer.bin")
    cat = Catalog(folder)
    now = [0.0]
    cat.clock = lambda: now[0]
    assert cat.for_identity(MLNX).name == "onie-installer-x86_64.bin"
    st = path.stat()
    write(folder, path.name, KVM, version="9.9-longer")  # copied over in place, folder mtime kept
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    # the listing is still cached (same second), but the chosen file is re-read: not for MLNX now
    assert cat.for_identity(MLNX).name == "onie-installer.bin"


def test_bare_names_are_listed_other_files_without_suffix_are_not(folder):
    write(folder, "onie-installer")
    write(folder, "README")
    (folder / "onie-installer-x86_64.sha256").write_text("0" * 64)
    write(folder, ".onie-installer-x86_64.partial-1")
    names = [e.name for e in Catalog(folder).entries()]
    assert names == ["onie-installer"]


def test_no_folder_or_empty_folder(folder, tmp_path):
    assert Catalog(None).for_identity(KVM) is None
    assert Catalog(folder).for_identity(KVM) is None
    assert Catalog(tmp_path / "missing").for_identity(KVM) is None
