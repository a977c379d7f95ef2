"""Event retention (periodic prune), the bounded re-queue of failing commits, and a full disk:
renewals of leases already on disk are still answered, new leases wait (docs/security.md). The
full disk is a real one: a 1 MiB tmpfs (root)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.config.security import EventRetention
from provision.store import buffered, sqlite
from provision.store.retention import prune_once
from provision.store.sqlite import Store
from pxe.dhcp.leases import Lease, LeaseState
from pxe.policy import Event
from tests.support.tools import require_root, require_tool

MACS = [f"52:54:00:33:00:{i:02x}" for i in range(3)]


def _lease(ip: str, mac: str, expires_in: float) -> Lease:
    now = time.time()
    return Lease(ip=ip, mac=mac, state=LeaseState.BOUND, expires=now + expires_in, subnet="198.18.33.0/24",
                 updated=now)  # fmt: skip


def test_prune_keeps_the_newest_per_device_and_drops_the_old(tmp_path):
    now = time.time()
    with Store(tmp_path / "p.db", synchronous="OFF") as store:  # no fsync per event: setup speed
        for mac in MACS:
            for i in range(50):
                store.add_event(Event("dhcp.discover", mac=mac, ts=now - 50 + i, detail={"i": i}))
        for i in range(30):
            store.add_event(Event("serve.started", ts=now - 30 + i))  # no MAC: one group
        for i in range(5):
            store.add_event(Event("dhcp.ack", mac="52:54:00:33:01:00", ts=now - 40 * 86400 + i))
        store.flush()
        deleted = prune_once(store, EventRetention(keep_per_device=10, keep_days=30))
        counts = dict(store.db.execute("SELECT coalesce(mac, '-'), count(*) FROM events GROUP BY mac"))
        kept = [e.detail["i"] for e in store.events(mac=MACS[0])]
    assert {m: counts[m] for m in MACS} == dict.fromkeys(MACS, 10) and counts["-"] == 10
    # 40 days old: gone, but for the last event of its kind, which status shows (events_last)
    assert counts["52:54:00:33:01:00"] == 1
    assert kept == list(range(40, 50))  # the newest ten
    assert deleted == 3 * 40 + 20 + 4 and store.counters["pruned"] == deleted


def test_prune_in_chunks_leaves_the_loop_free(tmp_path):
    with Store(tmp_path / "p.db", synchronous="OFF") as store:  # no fsync per event: setup speed
        for i in range(2500):
            store.add_event(Event("dhcp.discover", mac=MACS[0], ts=time.time() - 2500 + i))
        store.flush()
        first, more = store.prune_events(100, 30, chunk=1000)
        assert (first, more) == (1000, True)
        rest = prune_once(store, EventRetention(keep_per_device=100, keep_days=30))
        assert rest == 1400 and len(store.events(mac=MACS[0])) == 100


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 1 MiB tmpfs: writes fail with ENOSPC (SQLITE_FULL) once it is full."""
    require_root()
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> None:
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.root
def test_full_disk_renewals_answered_new_leases_wait_events_bounded(small_disk, monkeypatch):
    monkeypatch.setattr(buffered, "EVENTS_BUFFER_MAX", 300)
    store = Store(small_disk / "p.db")
    try:
        store.save_lease(_lease("198.18.33.10", MACS[0], 3600))
        store.commit()
        _fill(small_disk)
        # A burst of events the disk cannot take: kept up to the bound, the oldest dropped, counted.
        for i in range(1200):
            store.add_event(Event("dhcp.discover", mac=MACS[1], detail={"pad": "x" * 200, "i": i}))
        assert len(store._events) <= 300 and store.counters["events_dropped"] >= 900
        assert store.counters["commit_failures"] >= 1
        # The renewal of a lease the file holds: commit() does not raise, so DHCP sends the ACK.
        store.save_lease(_lease("198.18.33.10", MACS[0], 3600))
        store.commit()
        assert store.counters["acks_on_durable"] >= 1
        # A new binding cannot be made durable: the commit raises, DHCP withholds that ACK (no
        # loop runs here, so save_lease commits at once).
        with pytest.raises(sqlite.sqlite3.OperationalError, match="full"):
            store.save_lease(_lease("198.18.33.11", MACS[2], 3600))
        assert "198.18.33.11" in store._leases  # never dropped
        # Space again: everything pending is written.
        (small_disk / "filler").unlink()
        store.flush()
        ips = {le.ip for le in store.leases()}
        assert ips == {"198.18.33.10", "198.18.33.11"}
        assert len(store.events(mac=MACS[1])) == 300
        assert store.events(mac=MACS[1])[-1].detail["i"] == 1199  # the newest were kept
    finally:
        store.close()


FULL_DISK_LAB = """\
interfaces: [fd0]
subnets:
  - network: 198.18.36.0/24
    interface: fd0
    pool: [198.18.36.100-198.18.36.150]
    lease_time: 3600
paths:
  state_dir: {state}
  db: {db}
devices:
  - {{name: old-01, mac: "52:54:00:36:00:01"}}
  - {{name: new-01, mac: "52:54:00:36:00:02"}}
"""
UDHCPC_SCRIPT = '#!/bin/sh\n[ "$1" = bound ] || exit 0\necho "$ip" > "$OUT"\n'


@pytest.mark.netns
def test_full_disk_dhcp_still_answers_a_committed_lease(serve_netns, small_disk, tmp_path):
    """`provision serve` with its database on a disk that fills up: udhcpc renewing the lease it
    already holds is answered; a new client waits (its lease could not be made durable)."""
    busybox = require_tool("busybox")
    link = serve_netns(server_if="fd0", client_if="fc0", server_addr="198.18.36.1/24",
                       client_mac="52:54:00:36:00:01", prefix="fd")  # fmt: skip
    lab = tmp_path / "lab.yml"
    lab.write_text(FULL_DISK_LAB.format(state=tmp_path / "state", db=small_disk / "provision.db"))
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)

    def udhcpc(name: str, *extra: str) -> str | None:
        out = tmp_path / f"{name}.ip"
        link.client.run(
            [
                busybox,
                "udhcpc",
                "-i",
                "fc0",
                "-n",
                "-q",
                "-f",
                "-t",
                "3",
                "-T",
                "1",
                "-s",
                str(script),
                *extra,
            ],
            env={"OUT": str(out), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            check=False,
        )
        return out.read_text().strip() if out.exists() else None

    sp = link.serve(str(lab))
    first = udhcpc("first")
    assert first is not None and first.startswith("198.18.36."), sp.output
    time.sleep(0.5)  # its events written too
    _fill(small_disk)
    got = udhcpc("renew", "-r", first)
    assert got == first, sp.output[-4000:]  # the committed lease: still answered
    link.client.run(["ip", "link", "set", "fc0", "address", "52:54:00:36:00:02"])
    assert udhcpc("newcomer") is None  # a new binding cannot be made durable: no ACK
    (small_disk / "filler").unlink()
    assert udhcpc("newcomer-again") is not None  # space again: served
    sp.stop()
    assert "answering renewals of leases already on disk" in sp.output
    assert sp.output.count("Traceback") == 0 or "lease store commit failed" in sp.output
