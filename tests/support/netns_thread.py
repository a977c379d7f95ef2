"""Run asyncio code inside a network namespace from the test process: a thread that joined it.

A network namespace is per thread in Linux (setns(2) with CLONE_NEWNET changes the calling
thread only), so a fresh thread can enter a namespace the test made, run an event loop there
(every socket it opens lives in that namespace) and leave the rest of the test process alone.
Python 3.11 has no os.setns: libc's setns through ctypes.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tests.support import marks

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def run_in_netns(ns_name: str, make: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
    """`asyncio.run(make())` in a thread inside namespace `ns_name`; its result, or its exception."""
    marks.require("run_in_netns", "netns")
    out: dict[str, object] = {}

    def body() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{ns_name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {ns_name}: {os.strerror(err)}")
        finally:
            os.close(fd)
        try:
            out["value"] = asyncio.run(make())  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{ns_name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"code in namespace {ns_name} still running after {timeout} s")
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]  # type: ignore[return-value]
