"""A non-editable install must carry templates/ and hardware-profiles/ (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.support.cli import REPO


def test_wheel_carries_templates_and_profiles(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("provision-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "provision/_data/hardware-profiles/kvm_x86_64.yml" in names
    assert any(n.startswith("provision/_data/templates/") for n in names)
    # the web page's templates and its static files (docs/web.md): nothing fetched at run time
    assert {
        "provision/_data/templates/web/index.html.j2",
        "provision/_data/templates/web/static/status.js",
    } <= set(names)
    assert "onie/__init__.py" in names and "pxe/__init__.py" in names
    # The installed layout resolves them without the source tree.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    out = subprocess.run(
        [sys.executable, "-c", "from provision import resources; print(resources.profiles_dir())"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(target / "provision" / "_data" / "hardware-profiles")
