from __future__ import annotations

import pytest

from tests.support.netns import namespaces
from tests.support.tools import require_root


@pytest.fixture
def netns_pair():
    """Two fresh namespaces (server, client); torn down after the test, also on failure."""
    require_root()
    with namespaces(2) as (server, client):
        yield server, client
