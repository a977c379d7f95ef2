"""`provision --log-format json serve` in a namespace pair, its /api/v1/stream read by aiohttp's
client: busybox udhcpc's exchange and `provision devices arm` (another process writing the
store) arrive in order with their ids; a reconnect with Last-Event-ID loses nothing; the
subscriber cap; keepalives at lab.yml's interval; a SIGHUP reload leaves the streams running and
SIGTERM ends them cleanly. Every log line of that serve is a JSON object. `provision status
--watch --json` redraws on the stream's events and polls when it is gone."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time

import pytest

from tests.provision.test_logs import parse_logfmt
from tests.support.cli import cli_argv, cli_env, run_cli
from tests.support.serving import READY, ServeProc
from tests.support.sse import SseReader
from tests.support.tools import require_tool

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.24.1"
CLIENT_MAC = "52:54:00:24:00:01"
LAB = """\
interfaces: [st0]
subnets:
  - network: 198.18.24.0/24
    interface: st0
    pool: [198.18.24.100-198.18.24.150]
paths:
  state_dir: {state}
api:
  stream_keepalive: 1
  stream_subscribers: 3
devices:
  - {{name: leaf-01, mac: '{mac}'}}
"""
STREAM = f"http://{SERVER_IP}/api/v1/stream"


# A vendor class (option 60) is the client's to choose: it reaches the log as a field.
HOSTILE = 'udhcp "x"\nts=0 level=critical msg=forged \x1b[2J'


def udhcpc(link, busybox: str, vendor: str | None = None) -> None:
    argv = [busybox, "udhcpc", "-i", "ct0", "-n", "-q", "-f", "-t", "5", "-T", "2", "-s", "/bin/true"]
    r = link.client.run(argv + (["-V", vendor] if vendor else []), check=False)
    assert r.returncode == 0, r.stderr


def test_stream_follows_dhcp_and_the_cli_replays_and_survives_reload(serve_netns, tmp_path):
    busybox = require_tool("busybox")
    curl = require_tool("curl")
    link = serve_netns(
        server_if="st0", client_if="ct0", server_addr=f"{SERVER_IP}/24", client_mac=CLIENT_MAC, prefix="st"
    )
    lab = tmp_path / "lab.yml"
    lab.write_text(LAB.format(state=tmp_path / "state", mac=CLIENT_MAC))
    proc = link.server.popen(
        cli_argv("--log-format", "json", "-v", "serve", str(lab)),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sp = ServeProc(link.server, proc)
    link.started.append(sp)  # stopped by PID after the test, also on failure
    sp.wait_ready()

    live = SseReader(STREAM, ns=link.server)
    try:
        live.wait_connected()
        assert live.status == 200 and live.response_headers["Content-Type"] == "text/event-stream"
        udhcpc(link, busybox, vendor=HOSTILE)
        live.wait(lambda: any(e["event"] == "dhcp.ack" for e in live.events))
        armed = run_cli("devices", "arm", "leaf-01", "--lab", str(lab))
        assert armed.returncode == 0, armed.stderr
        live.wait(lambda: any(e["event"] == "device.armed" for e in live.events))
        kinds = [e["event"] for e in live.events]
        # a lease is stored as its ack: the offer it answered is not kept (OfferHold)
        assert kinds[0] == "dhcp.ack" and "dhcp.offer" not in kinds, kinds
        ids = [int(e["id"]) for e in live.events]
        assert ids == sorted(set(ids))
        ack = next(e for e in live.events if e["event"] == "dhcp.ack")
        assert ack["data"]["mac"] == CLIENT_MAC and ack["data"]["id"] == int(ack["id"])
        arm = next(e for e in live.events if e["event"] == "device.armed")
        assert arm["data"]["detail"]["name"] == "leaf-01"
        # keepalive comments at lab.yml's 1 s (15 s by default)
        live.wait(lambda: sum(1 for f in live.frames if f.get("comment") == "keepalive") >= 2, timeout=10)

        # Disconnect, let more happen, reconnect with Last-Event-ID: exactly what was missed.
        last = live.events[-1]["id"]
        live.close()
        udhcpc(link, busybox)
        run_cli("devices", "disarm", "leaf-01", "--lab", str(lab))
        missed = json.loads(
            link.server.run([curl, "-sf", f"http://{SERVER_IP}/api/v1/events?after={last}"]).stdout
        )["events"]
        assert missed and missed[0]["kind"] == "dhcp.ack"
        live = SseReader(STREAM, headers={"Last-Event-ID": last}, ns=link.server)
        live.wait(lambda: len(live.events) >= len(missed))
        assert [e["data"] for e in live.events[: len(missed)]] == missed

        # The cap (lab.yml: 3): two more fit, the fourth is told to come back later.
        more = [SseReader(STREAM, ns=link.server) for _ in range(2)]
        try:
            for r in more:
                r.wait_connected()
                assert r.status == 200
            over = SseReader(STREAM, ns=link.server)
            over.wait(lambda: over.ended)
            assert over.status == 503 and over.response_headers["Retry-After"] == "5", over.body
        finally:
            for r in more:
                r.close()

        # SIGHUP: a reload, and the stream goes on (the reload's own event comes through it).
        before = len(live.events)
        sp.proc.send_signal(signal.SIGHUP)
        live.wait(lambda: any(e["event"] == "serve.reloaded" for e in live.events[before:]))
        assert not live.ended

        # SIGTERM: serve stops promptly; the stream ends cleanly, serve.stopped its last event.
        started = time.monotonic()
        assert sp.stop() == 0, sp.output[-3000:]
        assert time.monotonic() - started < 5
        live.wait(lambda: live.ended)
        assert live.error is None and live.events[-1]["event"] == "serve.stopped"
    finally:
        live.close()

    # every line of that serve's log is one JSON object with the common keys
    lines = [ln for ln in sp.lines if ln.strip() and READY not in ln]
    assert lines
    docs = [json.loads(ln) for ln in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(d) for d in docs)
    acks = [d for d in docs if d.get("kind") == "dhcp.ack"]
    assert acks and acks[0]["mac"] == CLIENT_MAC and acks[0]["msg"] == "event"
    assert acks[0]["vendor_class"] == HOSTILE and all(d["level"] != "critical" for d in docs)
    assert not [d for d in docs if d.get("kind") == "dhcp.discover"]  # packet steps: debug only


def _lines(proc: subprocess.Popen) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _next_doc(q: queue.Queue, timeout: float) -> dict:
    line = q.get(timeout=timeout)
    assert line is not None, "provision status --watch ended"
    return json.loads(line)


def test_status_watch_json_follows_the_stream_and_falls_back_to_polling(serve_netns, tmp_path):
    """`provision status --lab lab.yml --watch 60 --json`: one document at once, then one per
    change, seconds after it (polling would take 60 s); when serve stops, it polls."""
    busybox = require_tool("busybox")
    link = serve_netns(
        server_if="st0", client_if="ct0", server_addr=f"{SERVER_IP}/24", client_mac=CLIENT_MAC, prefix="sw"
    )
    lab = tmp_path / "lab.yml"
    lab.write_text(LAB.format(state=tmp_path / "state", mac=CLIENT_MAC))
    sp = link.serve(str(lab))
    # in the server's namespace: lab.yml's interface address is where it finds the server
    watch = link.server.popen(
        cli_argv("status", "--lab", str(lab), "--watch", "60", "--json"),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        q = _lines(watch)
        first = _next_doc(q, 20)
        row = next(r for r in first["devices"] if r["name"] == "leaf-01")
        assert row["ip"] is None
        started = time.monotonic()
        udhcpc(link, busybox, vendor=HOSTILE)
        doc = _next_doc(q, 15)
        while not next(r for r in doc["devices"] if r["name"] == "leaf-01")["ip"]:
            doc = _next_doc(q, 15)
        assert time.monotonic() - started < 15  # the stream, not the 60 s poll
        run_cli("devices", "arm", "leaf-01", "--lab", str(lab))
        doc = _next_doc(q, 15)
        while next(r for r in doc["devices"] if r["name"] == "leaf-01")["state"] != "armed":
            doc = _next_doc(q, 15)
        assert q.empty()  # nothing printed without a change
        # serve stops: the stream ends, --watch polls (a document at once, then every 60 s)
        assert sp.stop() == 0
        after = _next_doc(q, 15)
        assert next(r for r in after["devices"] if r["name"] == "leaf-01")["state"] == "armed"
        watch.send_signal(signal.SIGINT)
        assert watch.wait(15) == 0, watch.stderr.read()
    finally:
        link.server.stop(watch)
    # that serve logged logfmt (the default): every line parses, the hostile value is one value
    lines = [parse_logfmt(ln) for ln in sp.lines if ln.strip() and READY not in ln]
    assert all(set(p) >= {"ts", "level", "logger", "msg"} for p in lines)
    acks = [p for p in lines if p.get("kind") == "dhcp.ack"]
    assert acks and acks[0]["vendor_class"] == HOSTILE and not [p for p in lines if p["level"] == "critical"]
