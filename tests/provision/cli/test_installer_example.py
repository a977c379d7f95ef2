"""examples/switch.yml with the demo NOS from examples/nos/build.sh: the demo's own path works.

Root: Debian's /boot/vmlinuz-* is readable by root only. Built in a temporary copy so the test
never writes into the source tree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.tools import require_root, require_tool

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[3]


def build_nos(out: Path) -> dict[str, str]:
    subprocess.run(
        ["bash", str(REPO / "examples" / "nos" / "build.sh"), str(out)],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SOURCE_DATE_EPOCH": "1700000000"},
    )
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def test_example_spec_builds_inspects_and_lays_out(tmp_path: Path) -> None:
    require_root()
    require_tool("mksquashfs")
    require_tool("busybox")
    first = build_nos(tmp_path / "nos" / "build")
    assert sorted(first) == ["demo-cmdline", "demo-initrd.img", "demo-kernel", "demo-rootfs.squashfs"]
    assert build_nos(tmp_path / "again") == first  # the recipe is reproducible too
    shutil.copy(REPO / "examples" / "switch.yml", tmp_path / "switch.yml")

    built = run_cli("onie-installer", str(tmp_path / "switch.yml"), "-o", str(tmp_path / "out"), "--json")
    assert built.returncode == 0, built.stderr
    [entry] = json.loads(built.stdout)
    assert Path(entry["path"]).name == "onie-installer-x86_64-kvm_x86_64-r0.bin"

    inspected = run_cli("inspect", "--json", entry["path"])
    assert inspected.returncode == 0
    info = json.loads(inspected.stdout)
    assert (info["nos"], info["version"], info["platform"]) == ("demo", "1.0.0", "x86_64-kvm_x86_64-r0")
    assert {m["name"] for m in info["members"]} >= {"nos/kernel", "nos/initrd", "nos/rootfs.squashfs"}

    # The initramfs carries /dev/console (docs/lab.md: Debian's kernel does not mount devtmpfs) and
    # an /init that prints the marker.
    initrd = subprocess.run(
        ["sh", "-c", f"zcat {tmp_path}/nos/build/demo-initrd.img | cpio -itv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert any(line.startswith("crw") and line.endswith("dev/console") for line in initrd.splitlines())
    init = subprocess.run(
        ["sh", "-c", f"zcat {tmp_path}/nos/build/demo-initrd.img | cpio -i --to-stdout init"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "PROVISION-NOS-BOOTED demo 1.0.0" in init

    layout = run_cli("layout", str(tmp_path / "switch.yml"))
    assert layout.returncode == 0
    for label in ("EFI System", "ONIE-BOOT", "DEMO-BOOT", "DEMO-ROOT-A", "DEMO-ROOT-B", "DEMO-DATA"):
        assert label in layout.stdout
