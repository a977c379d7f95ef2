"""Run one operation against many BMCs at once, bounded, and collect one result per target.

BMC calls block for seconds (power changes, slow firmware), so targets run in a thread pool;
every failure becomes a result, never an exception that stops the other targets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from provision.bmc.base import BmcError, Driver
from provision.bmc.target import BmcTarget, open_driver

log = logging.getLogger(__name__)

# What an operation returns for one target: a short human summary and JSON-able details.
Operation = Callable[[Driver, BmcTarget], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class TargetResult:
    name: str
    address: str
    ok: bool
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None
    message_id: str | None = None
    bmc_message: str | None = None
    fix: str | None = None
    seconds: float = 0.0
    exit_code: int = 0  # of the error, for a failed target (2: bad input, 1: it failed)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "bmc": self.address,
            "ok": self.ok,
            "result": self.summary,
            "seconds": round(self.seconds, 3),
            **self.data,
        }
        if not self.ok:
            out["error"] = {
                "kind": self.error_kind,
                "message": self.error,
                "message_id": self.message_id,
                "bmc_message": self.bmc_message,
                "fix": self.fix,
            }
        return out


def run_one(target: BmcTarget, op: Operation, *, power_timeout: float = 300.0) -> TargetResult:
    start = time.monotonic()
    try:
        with open_driver(target, power_timeout=power_timeout) as driver:
            summary, data = op(driver, target)
        return TargetResult(
            target.name, target.address, True, summary, data, seconds=time.monotonic() - start
        )
    except BmcError as exc:
        log.debug("%s: %s", target.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return TargetResult(
            target.name,
            target.address,
            False,
            "failed",
            error=exc.message,
            error_kind=type(exc).__name__,
            message_id=exc.message_id,
            bmc_message=exc.bmc_message,
            fix=exc.fix,
            seconds=time.monotonic() - start,
            exit_code=exc.exit_code,
        )
    except Exception as exc:  # a driver bug must not take down the other targets
        log.exception("%s: unexpected error", target.name)
        return TargetResult(
            target.name,
            target.address,
            False,
            "failed",
            error=f"internal error: {type(exc).__name__}: {exc}",
            error_kind="InternalError",
            seconds=time.monotonic() - start,
            exit_code=1,
        )


def run_all(
    targets: list[BmcTarget],
    op: Operation,
    *,
    parallel: int = 8,
    power_timeout: float = 300.0,
    on_start: Callable[[BmcTarget], None] | None = None,
    on_done: Callable[[TargetResult], None] | None = None,
) -> list[TargetResult]:
    """Results in the order of `targets`, whatever order they finished in (by position: two
    targets may share a name, one BMC over http and https)."""
    results: dict[int, TargetResult] = {}

    def job(target: BmcTarget) -> TargetResult:
        if on_start:
            on_start(target)
        return run_one(target, op, power_timeout=power_timeout)

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="bmc") as pool:
        futures = {pool.submit(job, t): i for i, t in enumerate(targets)}
        for fut in as_completed(futures):
            result = fut.result()
            results[futures[fut]] = result
            if on_done:
                on_done(result)
    return [results[i] for i in range(len(targets))]
