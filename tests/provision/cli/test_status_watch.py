"""`provision status --watch` without a reachable event stream polls as before; where it looks for
the server. (With a live stream: tests/provision/server/test_stream_netns.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess

from provision.cli.watch import server_url, stream_query
from provision.devices.status import Filters
from provision.store.sqlite import Store
from pxe.policy import Event
from tests.support.cli import cli_argv, cli_env


def test_unreachable_stream_falls_back_to_polling(tmp_path):
    db = tmp_path / "provision.db"
    with Store(db) as store:
        store.add_event(Event("dhcp.ack", mac="52:54:00:71:00:01", ip="198.18.0.9"))
    # port 1 on loopback: connection refused, at once
    proc = subprocess.Popen(
        cli_argv("status", "--db", str(db), "--watch", "0.2", "--json", "--server", "http://127.0.0.1:1"),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        docs = [json.loads(proc.stdout.readline()) for _ in range(3)]  # every 0.2 s, changed or not
        assert all(d["devices"][0]["mac"] == "52:54:00:71:00:01" for d in docs)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_server_url_and_query():
    assert server_url("http://10.0.0.1:8080/", None) == "http://10.0.0.1:8080"
    assert server_url(None, None) is None  # no --server, no lab: polling
    assert stream_query(Filters(names=("leaf-*",), macs=("52:54:00:71:00:01",))) == (
        "name=leaf-%2A&mac=52%3A54%3A00%3A71%3A00%3A01"
    )
    assert stream_query(Filters(macs=("52:54:00:*",), states=("installed",))) == ""  # redraw filters


def test_watch_help_names_the_stream():
    out = subprocess.run(
        cli_argv("status", "--help"), env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert "--server URL" in out.stdout and "event stream" in out.stdout
