"""Two `provision serve` instances on one link sharing one PostgreSQL (docs/scale-out.md): both
answer; one is killed with SIGKILL mid-load; the other goes on serving, honours the rebinding of
the dead one's clients, and no address is ever handed out twice (checked in the clients' view and
in the leases table). `provision status --db URL` then shows devices seen by both.

    [s1] e0 198.18.40.1 ─┐
                         ├─ br0 198.18.40.2 (+ relay address 198.19.40.1) [load]
    [s2] e0 198.18.40.3 ─┘

The load namespace runs tests/support/relay_load.py: a relay forwarding every client's packets to
both servers, as dhcrelay does with two servers configured."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import REPO, cli_env, run_cli
from tests.support.netns import namespaces, veth
from tests.support.serving import start_serve

pytestmark = [pytest.mark.netns, pytest.mark.postgres]

SERVERS = ("198.18.40.1", "198.18.40.3")
RELAY = "198.18.40.2"
GIADDR = "198.19.40.1"
CLIENTS = 160
_CAP = "20"
KILL_AFTER = 50  # ACKs before s1 is killed


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def lab(tmp: Path, name: str, url: str) -> Path:
    """Unknown PXE clients boot `discover` (never booted here, only offered: a bzImage header and
    an empty gzipped cpio pass the start-up checks), as bench/dhcp.py's lab."""
    path = tmp / f"{name}.yml"
    (tmp / "vmlinuz").write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 0x1FA)
    trailer = b"070701" + b"0" * 8 * 11 + b"0000000B" + b"0" * 8 + b"TRAILER!!!\0"
    (tmp / "initrd.gz").write_bytes(gzip.compress(trailer.ljust(512, b"\0")))
    doc = {
        "interfaces": ["e0"],
        "subnets": [
            {
                "network": "198.19.40.0/24",
                "pool": ["198.19.40.10-198.19.40.250"],
                "router": GIADDR,
                "lease_time": 600,
                "relays": [RELAY],
            }
        ],
        "state": url,
        "http_port": 8080,
        "boot": {
            "unknown": "discover",
            "discover": "live",
            "entries": {
                "live": {"x86_64": {"kernel": str(tmp / "vmlinuz"), "initrd": str(tmp / "initrd.gz")}}
            },
        },
        "paths": {"state_dir": str(tmp / name)},
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def test_two_servers_one_database_kill_one_mid_load(pg_url, tmp_path):
    with namespaces(3, "so") as (s1, s2, load):
        for ns, addr, peer in ((s1, SERVERS[0], "a1"), (s2, SERVERS[1], "a2")):
            veth(ns, "e0", load, peer, f"{addr}/24", None)
            ip("-n", ns.name, "route", "add", "198.19.40.0/24", "via", RELAY)
        ip("-n", load.name, "link", "add", "br0", "type", "bridge")
        for peer in ("a1", "a2"):
            ip("-n", load.name, "link", "set", peer, "master", "br0")
        ip("-n", load.name, "addr", "add", f"{RELAY}/24", "dev", "br0")
        ip("-n", load.name, "addr", "add", f"{GIADDR}/24", "dev", "br0")
        ip("-n", load.name, "link", "set", "br0", "up")

        one = start_serve(s1, str(lab(tmp_path, "s1", pg_url)))
        two = start_serve(s2, str(lab(tmp_path, "s2", pg_url)))
        try:
            one.wait_ready()
            two.wait_ready()
            out = tmp_path / "dora.json"
            gen = load.popen(
                [sys.executable, "-m", "tests.support.relay_load", "dora", "--servers", ",".join(SERVERS),
                 "--giaddr", GIADDR, "--clients", str(CLIENTS), "--cap", _CAP, "--out", str(out)],
                cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            assert gen.stdout is not None
            killed = False
            said: list[str] = []
            for raw in gen.stdout:
                line = raw.decode().strip()
                said.append(line)
                if not killed and line.startswith("acked ") and int(line.split()[1]) >= KILL_AFTER:
                    os.kill(one.proc.pid, signal.SIGKILL)  # mid-load, nothing flushed on the way out
                    killed = True
            assert gen.wait(90) == 0, said[-20:]
            assert killed, (said[-20:], one.output[-3000:], two.output[-3000:])
            dora = json.loads(out.read_text())
            acked: dict[str, str] = dora["acked"]
            # Every client served, by both before the kill, by the survivor after
            assert dora["lost"] == 0 and len(acked) == CLIENTS, dora
            assert set(dora["by"].values()) == set(SERVERS)
            # Never one address for two clients: in the clients' view...
            assert len(set(acked.values())) == CLIENTS
            # ... and in the table, which holds exactly what the clients were told
            with psycopg.connect(pg_url) as conn:
                rows = conn.execute("SELECT mac, ip FROM leases WHERE state = 'bound'").fetchall()
            assert dict(rows) == acked

            # The dead server's clients rebind (broadcast, relayed to both): the survivor answers
            # with the same address, from the shared table it had never seen those leases in.
            theirs = [m for m, s in dora["by"].items() if s == SERVERS[0]]
            assert theirs
            out2 = tmp_path / "rebind.json"
            rb = load.run(
                [sys.executable, "-m", "tests.support.relay_load", "rebind", "--servers", ",".join(SERVERS),
                 "--giaddr", GIADDR, "--leases", str(out), "--out", str(out2)],
                cwd=REPO, env=cli_env(), timeout=60,
            )  # fmt: skip
            assert rb.returncode == 0, rb.stdout + rb.stderr
            rebind = json.loads(out2.read_text())
            assert rebind["unanswered"] == []
            assert rebind["answers"] == {m: ["ACK", ip] for m, ip in acked.items()}
            assert two.proc.poll() is None  # still serving

            # One inventory: devices seen by both servers, through the shared store
            status = run_cli("status", "--db", pg_url, "--json")
            assert status.returncode == 0, status.stderr
            seen = {row["mac"] for row in json.loads(status.stdout)["devices"]}
            mine = [m for m, s in dora["by"].items() if s == SERVERS[1]]
            assert seen & set(theirs) and seen & set(mine)
        finally:
            one.stop()
            two.stop()
        print(f"scale-out: {CLIENTS} clients in {dora['seconds']:.1f} s, {dora['naks']} NAKs, "
              f"{dora['retransmits']} retransmits; {len(theirs)} leases of the killed server rebound")  # fmt: skip
