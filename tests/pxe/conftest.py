"""Fixtures of the pxe tests (the suite-wide ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dhcp_netns import DhcpNet
from tests.support.netns import linked_pair
from tests.support.tools import require_root


@pytest.fixture
def dhcp_net(tmp_path) -> Iterator[DhcpNet]:
    """A server namespace (s0 = 198.18.0.1/24) and a client namespace (c0, no address) joined by a
    veth; `dhcp_net.start(**config)` runs our DHCP server (tests/support/dhcp_server.py) in the
    server namespace with SUBNET and the store in tmp_path. Everything it started is stopped by
    PID and both namespaces removed after the test, also when it failed."""
    require_root()
    with linked_pair("s0", "c0", "198.18.0.1/24") as pair:
        yield DhcpNet(**vars(pair), workdir=tmp_path)
