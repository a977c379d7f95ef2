"""Start sushy-emulator (sushy-tools) on 127.0.0.1 with the fake driver, htpasswd (bcrypt) Basic
auth and optional TLS; stop it by PID."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import requests

from tests.support.netns import stop_process
from tests.support.ports import free_port

FAKE_SYSTEMS = [
    {
        "uuid": "27946b59-9e44-4fa7-8e91-f3527a1ef094",
        "name": "fake-node-1",
        "power_state": "Off",
        "external_notifier": False,
        "nics": [{"mac": "00:5c:52:31:3a:9c", "ip": "198.18.0.100"}],
    }
]


@dataclass
class Emulator:
    url: str
    username: str
    password: str
    pid: int
    log: Path


def _emulator_argv() -> list[str]:
    exe = shutil.which("sushy-emulator") or str(Path(sys.executable).with_name("sushy-emulator"))
    return [exe]


@contextmanager
def sushy_emulator(workdir: Path, *, password: str, username: str = "admin", tls=None, systems=None):
    """Yield a running emulator; `tls` is a tests.support.bmc.certs.TestPki or None (plain HTTP)."""
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    port = free_port()
    state = workdir / "state"
    state.mkdir(exist_ok=True)
    conf = workdir / "emulator.conf"
    lines = [
        "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
        f"SUSHY_EMULATOR_LISTEN_PORT = {port}",
        "SUSHY_EMULATOR_FAKE_DRIVER = True",
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {json.dumps(systems or FAKE_SYSTEMS)}".replace(
            "false", "False"
        ).replace("true", "True"),
        f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}",
        f"SUSHY_EMULATOR_STATE_DIR = {str(state)!r}",
    ]
    if tls:
        lines += [
            f"SUSHY_EMULATOR_SSL_CERT = {str(tls.cert)!r}",
            f"SUSHY_EMULATOR_SSL_KEY = {str(tls.key)!r}",
        ]
    conf.write_text("\n".join(lines) + "\n")
    log = workdir / "emulator.log"
    logf = log.open("wb")
    proc = subprocess.Popen(
        [*_emulator_argv(), "--config", str(conf)],
        stdout=logf,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sushy-emulator exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                requests.get(url + "/redfish/v1/", timeout=2, verify=str(tls.ca_cert) if tls else True)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"sushy-emulator did not answer on {url}:\n{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)
        yield Emulator(url=url, username=username, password=password, pid=proc.pid, log=log)
    finally:
        stop_process(proc, timeout=10)
        logf.close()
