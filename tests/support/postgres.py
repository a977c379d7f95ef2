"""A throwaway PostgreSQL cluster for tests: Debian's binaries, a temp folder, a private socket.

`Cluster.start()` runs initdb in a fresh temp folder as the unprivileged `postgres` user (Debian's
postgresql package creates it; initdb refuses to run as root), listens on a unix socket in that
private folder only (listen_addresses='': no TCP at all, so nothing on the host can reach it and
no port can clash) and a private port number that only names the socket file. fsync is off:
tests need no durability across a power cut, and it makes each commit cheap (`durable=True`
keeps PostgreSQL's defaults, for a benchmark against servers that do sync). `stop()` kills the
postmaster by its PID (from postmaster.pid) and removes the folder.

Not found (no postgresql package): `find_bin()` returns None and the `postgres` tests skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.support.tools import IN_CI

PG_ROOT = Path("/usr/lib/postgresql")


def find_bin() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    if not PG_ROOT.is_dir():
        return None
    versions = sorted(
        (p for p in PG_ROOT.iterdir() if (p / "bin" / "initdb").exists() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    return versions[-1] / "bin" if versions else None


@dataclass
class Cluster:
    bin: Path
    user: str = "postgres"
    port: int = 5433
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="provision-pg-")))
    pid: int | None = None
    durable: bool = False  # fsync and synchronous commits on: for benchmarks, never needed by tests
    _n: int = 0

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sock(self) -> Path:
        return self.base / "sock"

    def url(self, db: str = "postgres") -> str:
        # libpq: a host that is a folder is a unix socket folder
        return f"postgresql:///{db}?host={self.sock}&port={self.port}&user={self.user}"

    def _as_user(self) -> tuple[int, int]:
        pw = pwd.getpwnam(self.user)
        return pw.pw_uid, pw.pw_gid

    def _run(self, *argv: str) -> None:
        uid, gid = self._as_user() if os.geteuid() == 0 else (os.getuid(), os.getgid())
        subprocess.run(
            argv,
            check=True,
            capture_output=True,
            user=uid if os.geteuid() == 0 else None,
            group=gid if os.geteuid() == 0 else None,
            extra_groups=[] if os.geteuid() == 0 else None,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            cwd="/",
        )

    def start(self) -> Cluster:
        if os.geteuid() != 0:
            self.user = pwd.getpwuid(os.getuid()).pw_name
        self.sock.mkdir(parents=True)
        if os.geteuid() == 0:
            uid, gid = self._as_user()
            os.chmod(self.base, 0o755)  # the tests (root) reach the socket; nobody else writes
            os.chown(self.sock, uid, gid)
            os.chown(self.base, uid, gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user,
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        return self.resume()

    def resume(self) -> Cluster:
        """Start the postmaster on the cluster's data folder (again, after halt())."""
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-l", str(self.base / "log"),
            "-o", f"-c listen_addresses='' -c unix_socket_directories={self.sock} -p {self.port} "
            "-c max_connections=60"
            + ("" if self.durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"),
            "start",
        )  # fmt: skip
        pidfile = self.data / "postmaster.pid"
        self.pid = int(pidfile.read_text().split()[0])
        return self

    def create_db(self) -> str:
        """A fresh database per test: tests never see each other's rows. Returns its URL."""
        self._n += 1
        name = f"t{os.getpid()}_{self._n}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.base, ignore_errors=True)

    def halt(self) -> None:
        """Stop the postmaster at once, keeping the data: resume() starts it again."""
        if self.pid is not None:
            # SIGQUIT: immediate shutdown of the postmaster and its children (fsync is off anyway)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway cluster per test session (tests marked `postgres`), stopped by its PID."""
    bin_dir = find_bin()
    if bin_dir is None:
        why = "no PostgreSQL server (Debian package postgresql; scripts/setup.sh installs it)"
        if IN_CI:  # a skipped test is never a pass in CI (docs/testing.md)
            pytest.fail(why)
        pytest.skip(why)
    cluster = Cluster(bin_dir)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, empty database in the session's cluster."""
    return pg_cluster.create_db()
