"""Fixtures shared by the whole suite; the helpers behind them live in tests/support (see
docs/testing.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from tests.support import marks
from tests.support.netns import namespaces
from tests.support.serving import ServeLink, serve_link
from tests.support.tools import require_root


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture of this test runs: helpers that need root or namespaces check the marks.
    marks.current = frozenset(m.name for m in item.iter_markers())


@pytest.fixture
def netns_pair():
    """Two fresh namespaces (server, client); torn down after the test, also on failure."""
    require_root()
    with namespaces(2) as (server, client):
        yield server, client


@pytest.fixture
def serve_netns() -> Iterator[Callable[..., ServeLink]]:
    """`provision serve` in a namespace pair. `link = serve_netns(server_if="sv0", client_if="cl0",
    server_addr="198.18.20.1/24", client_mac=None, prefix="sv")` makes a server and a client
    namespace joined by a veth (198.18.0.0/15 addresses only); `link.serve("lab.yml")` starts
    `provision -v serve lab.yml` in the server namespace and returns once it is ready, and
    `link.start(...)` returns at once (to watch it fail). After the test every serve process is
    stopped by PID and the namespaces are removed, also when the test failed."""
    require_root()
    with contextlib.ExitStack() as stack:
        yield lambda **kw: stack.enter_context(serve_link(**kw))
