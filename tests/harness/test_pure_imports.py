"""Pure tests import no emulator dependencies: a checkout without sushy-tools (bcrypt) can still
collect and run the Redfish quirk tests against the in-process fixture BMC (docs/testing.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.cli import REPO

PURE = [
    "tests.provision.bmc.test_redfish_quirks",
    "tests.provision.bmc.test_cli",
    "tests.provision.bmc.test_unit",
    "tests.provision.bmc.test_hostile",
    "tests.provision.bmc.test_targets",
]


@pytest.mark.parametrize("module", PURE)
def test_imports_without_emulator_dependencies(module):
    code = f"import sys; sys.modules['bcrypt'] = sys.modules['sushy_tools'] = None; import {module}"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
