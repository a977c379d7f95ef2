"""`provision serve` on PostgreSQL when the database goes away under load and comes back
(docs/scale-out.md "When the database is unreachable"): the server keeps running, drops the
packets it cannot answer durably, says so in ONE log line a minute (not one traceback per packet),
counts them, and serves again once the database is back, without a restart.

    [s1] e0 198.18.40.1 ── a1 198.18.40.2 (+ relay address 198.19.40.1) [load]

The cluster is this test's own (tests/support/postgres.py), stopped with SIGQUIT and started
again on the same data folder: the session's cluster serves other tests meanwhile."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.provision.store.test_scale_out_netns import GIADDR, RELAY, SERVERS, ip, lab
from tests.support.cli import REPO, cli_env
from tests.support.netns import namespaces, veth
from tests.support.postgres import Cluster, find_bin
from tests.support.serving import start_serve

pytestmark = [pytest.mark.netns, pytest.mark.postgres]

DOWN_MESSAGE = "lease store unavailable"


def dora(load, tmp: Path, name: str, clients: int, seed: int, cap: float) -> dict:
    out = tmp / f"{name}.json"
    run = load.run(
        [sys.executable, "-m", "tests.support.relay_load", "dora", "--servers", SERVERS[0],
         "--giaddr", GIADDR, "--clients", str(clients), "--seed", str(seed), "--cap", str(cap),
         "--out", str(out)],
        cwd=REPO, env=cli_env(), timeout=cap + 60,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return dict(json.loads(out.read_text()))


def test_database_stopped_under_load_one_log_line_then_recovers(tmp_path):
    bin_dir = find_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server (Debian package postgresql; scripts/setup.sh installs it)")
    cluster = Cluster(bin_dir, port=5440)
    try:
        cluster.start()
        url = cluster.create_db()
        with namespaces(2, "sd") as (s1, load):
            veth(s1, "e0", load, "a1", f"{SERVERS[0]}/24", f"{RELAY}/24")
            ip("-n", s1.name, "route", "add", "198.19.40.0/24", "via", RELAY)
            ip("-n", load.name, "addr", "add", f"{GIADDR}/24", "dev", "a1")
            serve = start_serve(s1, str(lab(tmp_path, "s1", url)))
            try:
                serve.wait_ready()
                before = dora(load, tmp_path, "before", 20, seed=1, cap=20)
                assert before["lost"] == 0 and len(before["acked"]) == 20, before

                cluster.halt()  # immediate shutdown, as a crashed or unreachable database
                down = dora(load, tmp_path, "down", 60, seed=2, cap=6)
                assert down["acked"] == {}  # nothing can be made durable: no ACK leaves
                assert serve.proc.poll() is None  # still running
                said = serve.output
                assert said.count(DOWN_MESSAGE) == 1, said[-4000:]
                assert said.count("Traceback") <= 2, said[-4000:]  # the first line of each rule, at most
                assert "failed on packet" not in said and "policy failed" not in said

                cluster.resume()
                deadline = time.monotonic() + 30
                after: dict = {}
                while time.monotonic() < deadline:  # the server reconnects by itself
                    after = dora(load, tmp_path, "after", 20, seed=3, cap=15)
                    if after["lost"] == 0:
                        break
                assert after["lost"] == 0 and len(after["acked"]) == 20, (after, serve.output[-4000:])
                assert set(after["acked"].values()).isdisjoint(before["acked"].values())
                assert serve.proc.poll() is None
                assert serve.output.count(DOWN_MESSAGE) == 1
            finally:
                serve.stop()
            back = [ln for ln in serve.output.splitlines() if "lease store answers again" in ln]
            assert len(back) == 1, serve.output[-3000:]
            print("\n".join(ln for ln in serve.output.splitlines() if "lease store" in ln))
    finally:
        cluster.stop()
