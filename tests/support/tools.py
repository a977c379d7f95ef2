"""Finding the real peers tests run against. In CI (CI=true) a missing tool fails the test
instead of skipping it: a skipped test must never be counted as a pass there."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import marks

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(*names: str) -> str:
    """Path of the first of `names` on PATH (or /usr/sbin, /sbin); skip locally, fail in CI."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
        if found:
            return found
    message = f"needs {' or '.join(names)} (see .ci/run for the Debian packages)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_root() -> None:
    """Skip unless root (fail in CI). The test must be marked root or netns: see `marks`."""
    marks.require("require_root()", "root", "netns")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs as root; this test needs root")
        pytest.skip("needs root")
