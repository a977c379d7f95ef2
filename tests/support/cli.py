"""Run the `provision` CLI as a user would: a separate process, from this source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "provision", *args]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_argv(*args), env=cli_env(env), capture_output=True, text=True, timeout=timeout, **kw
    )


def onie_sim(
    ns: Any, *args: str, ifname: str = "oc0", timeout: float = 300
) -> tuple[int, dict[str, Any], subprocess.CompletedProcess]:
    """`provision onie-sim -i IFNAME --json ARGS` in namespace `ns` (a tests.support.netns.NetNS):
    exit code, the JSON report, and the process (for its stderr)."""
    out = ns.run(
        cli_argv("onie-sim", "-i", ifname, "--json", *args), check=False, timeout=timeout, env=cli_env()
    )
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout), out
