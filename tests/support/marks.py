"""The markers of the test being set up or run, so that a helper needing root or namespaces can
fail a test that does not carry the marker saying so (`-m "not netns and not root"` must select
only tests that run unprivileged; see docs/testing.md). Set by tests/conftest.py; None outside a
pytest run, where nothing is checked."""

from __future__ import annotations

import pytest

current: frozenset[str] | None = None


def require(what: str, *marks: str) -> None:
    """Fail the test unless it carries one of `marks` (`what`: the helper that needs it)."""
    if current is not None and not current.intersection(marks):
        names = " or ".join(f"@pytest.mark.{m}" for m in marks)
        pytest.fail(f"{what} needs a test marked {names} (docs/testing.md)", pytrace=False)
