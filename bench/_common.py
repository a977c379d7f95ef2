"""What bench/http.py and bench/tftp.py share: the child process that runs our server, the test
file they download, and stopping the servers they started.

Imported as `_common` (the bench scripts run as `python bench/<name>.py`, so bench/ is first on
sys.path).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


def serve_counting(start: Callable[[Callable[[Any], None]], Awaitable[object]]) -> None:
    """Child mode: `start(sink)` our server with an event sink that only counts (as the app's
    would only queue), print "ready" for the parent, then serve until killed."""
    counts: dict[str, int] = {}

    def sink(event) -> None:
        counts[event.kind] = counts.get(event.kind, 0) + 1

    async def main() -> None:
        await start(sink)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def random_file(path: Path, mib: int) -> int:
    """Write `mib` MiB of random bytes (incompressible, so no layer can cheat); returns the size."""
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    return path.stat().st_size


def stop_groups(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each server's process group (they were started with start_new_session=True)."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
