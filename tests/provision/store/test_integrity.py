"""The state database checked at start (provision.store.integrity): a damaged page stops
`provision serve` with exit 3, the message and where the copy is (never a traceback); a bit flip
in the WAL, which SQLite drops without a word, is reported with how much was lost; a read-only
state file says so, with the fix for that."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provision.store.integrity import inspect_wal, open_checked
from provision.store.sqlite import Store, StoreError
from tests.support.tools import require_root

ROOT = Path(__file__).resolve().parents[3]

# A writer that commits 300 leases (one transaction each, as the DHCP server does) and dies
# without closing: the WAL is left as a crash leaves it (closing would checkpoint it away).
WRITER = """
import os, sys, time
sys.path.insert(0, {root!r})
from provision.store.sqlite import Store
from pxe.dhcp.leases import Lease, LeaseState
st = Store(sys.argv[1])
st.db.execute("PRAGMA wal_autocheckpoint=0")
for i in range(300):
    st.save_lease(Lease(ip=f"198.18.{{34 + i // 250}}.{{i % 250}}", mac=f"52:54:00:34:{{i // 256:02x}}:{{i % 256:02x}}",
                        state=LeaseState.BOUND, expires=time.time() + 3600, subnet="198.18.34.0/23"))
os._exit(0)
"""


def crashed_writer(db: Path) -> None:
    subprocess.run([sys.executable, "-c", WRITER.format(root=str(ROOT)), str(db)], check=True, timeout=120)


def flip_wal_bit(db: Path, frame: int = 1, offset: int = 100) -> None:
    wal = Path(f"{db}-wal")
    data = bytearray(wal.read_bytes())
    page_size = int.from_bytes(data[8:12], "big")
    data[32 + (frame - 1) * (24 + page_size) + 24 + offset] ^= 0x04
    wal.write_bytes(bytes(data))


def test_wal_checked_before_open_and_loss_reported(tmp_path, caplog):
    db = tmp_path / "provision.db"
    crashed_writer(db)
    clean = inspect_wal(db)
    assert clean is not None and clean.frames == clean.applied > 300 and clean.lost == 0
    flip_wal_bit(db, frame=clean.frames // 2)
    damaged = inspect_wal(db)
    assert damaged is not None and damaged.bad_frame == clean.frames // 2 and damaged.lost > 0
    with caplog.at_level(logging.ERROR, logger="provision.store"):
        store = open_checked(db)
    try:
        kept = len(store.leases())
    finally:
        store.close()
    # what SQLite kept: the transactions before the bad frame; the rest is gone, and said so
    assert 0 < kept < 300
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert f"{damaged.lost} of {damaged.frames} frames" in msg and "LOST" in msg
    copies = list(tmp_path.glob("provision.db-wal.damaged-*"))
    assert len(copies) == 1 and str(copies[0]) in msg


def test_wal_flip_in_the_first_frame_loses_everything_loudly(tmp_path, caplog):
    db = tmp_path / "provision.db"
    crashed_writer(db)
    flip_wal_bit(db, frame=1)
    with caplog.at_level(logging.ERROR, logger="provision.store"):
        store = open_checked(db)
    try:
        assert store.leases() == []  # 300 of 300 leases lost, as seen in the attack...
        assert store.counters["wal_frames_lost"] > 300
    finally:
        store.close()
    assert any("LOST" in r.getMessage() for r in caplog.records)  # ...but no longer silently


def test_damaged_page_copied_aside_and_explained(tmp_path):
    db = tmp_path / "provision.db"
    crashed_writer(db)
    with Store(db) as store:  # a clean close: everything checkpointed into the file
        assert len(store.leases()) == 300
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[3 * page + 8 : 3 * page + 200] = os.urandom(192)  # a leaf page of the leases table
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        open_checked(db)
    exc = err.value
    assert exc.exit_code == 3 and "damaged" in exc.message and ".recover" in (exc.fix or "")
    copies = list(tmp_path.glob("provision.db.damaged-*"))
    assert len(copies) == 1 and str(copies[0]) in exc.message
    assert copies[0].read_bytes() == bytes(data)


def test_not_a_database_is_damaged_too(tmp_path):
    db = tmp_path / "provision.db"
    db.write_bytes(b"this is not SQLite" * 500)
    with pytest.raises(StoreError, match="damaged") as err:
        open_checked(db)
    assert err.value.exit_code == 3


@pytest.mark.root
def test_read_only_state_says_how_to_fix_it(tmp_path):
    require_root()
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        with Store(mnt / "provision.db") as store:
            assert store.leases() == []
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(StoreError) as err:
            open_checked(mnt / "provision.db")
        fix = err.value.fix or ""
        assert "writable" in fix and "not a provision state file" not in fix, (err.value.message, fix)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


SERVE_LAB = """\
interfaces: [st0]
subnets:
  - network: 198.18.35.0/24
    interface: st0
    pool: [198.18.35.100-198.18.35.150]
paths:
  state_dir: {state}
"""


@pytest.mark.netns
def test_serve_exits_3_on_a_damaged_database_and_warns_on_a_damaged_wal(serve_netns, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = state / "provision.db"
    crashed_writer(db)
    flip_wal_bit(db, frame=1)
    lab = tmp_path / "lab.yml"
    lab.write_text(SERVE_LAB.format(state=state))
    link = serve_netns(server_if="st0", client_if="sc0", server_addr="198.18.35.1/24", prefix="st")
    sp = link.serve(str(lab))  # a damaged WAL: it starts, and says what was lost
    sp.stop()
    assert "frames of committed transactions were not applied" in sp.output and "LOST" in sp.output
    # now a damaged page in the file itself
    with Store(db) as store:
        for _ in range(200):
            store.db.execute(
                "INSERT INTO events (ts, kind, detail) VALUES (?, 'x', ?)", (time.time(), "y" * 500)
            )
        root = store.db.execute("SELECT rootpage FROM sqlite_master WHERE name='events'").fetchone()[0]
    data = bytearray(db.read_bytes())
    start = (root - 1) * 4096  # the events table's root page: an interior page of 200 rows
    data[start + 12 : start + 300] = os.urandom(288)
    db.write_bytes(bytes(data))
    sp = link.start(str(lab))
    rc = sp.wait_exit(60)
    assert rc == 3, sp.output
    assert "damaged" in sp.output and "a copy is kept at" in sp.output and "Traceback" not in sp.output
    assert list(state.glob("provision.db.damaged-*"))
