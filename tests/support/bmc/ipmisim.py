"""Start OpenIPMI's ipmi_sim on 127.0.0.1 with a lan.conf, an .emu file and a chassis_control
script (written here) that keeps power and boot device in files; stop it by PID."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.netns import stop_process
from tests.support.ports import free_udp_port

CHASSIS_CONTROL = """#!/bin/sh
# ipmi_sim calls: <script> <mc> get <param>... | <script> <mc> set <param> <value>...
dir=$(dirname "$0")
echo "$@" >> "$dir/calls.log"
shift
op=$1; shift
if [ "$op" = get ]; then
  for p in "$@"; do
    case $p in
      power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)";;
      boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)";;
    esac
  done
elif [ "$op" = set ]; then
  while [ $# -ge 2 ]; do
    case $1 in
      power) echo "$2" > "$dir/power";;
      boot) echo "$2" > "$dir/boot";;
    esac
    shift 2
  done
fi
"""

EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
"""


@dataclass
class IpmiSim:
    host: str
    port: int
    username: str
    password: str
    workdir: Path
    pid: int

    @property
    def power(self) -> str:
        return (self.workdir / "power").read_text().strip() if (self.workdir / "power").exists() else "0"

    @property
    def calls(self) -> list[str]:
        log = self.workdir / "calls.log"
        return log.read_text().splitlines() if log.exists() else []


@contextmanager
def ipmi_sim(workdir: Path, exe: str, *, password: str, username: str = "admin"):
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "chassis_control"
    script.write_text(CHASSIS_CONTROL)
    script.chmod(0o755)
    port = free_udp_port()
    lan = workdir / "lan.conf"
    lan.write_text(
        f"""name "provision-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{script} 0x20"
  user 2 true "{username}" "{password}" admin 10 none md2 md5 straight
"""
    )
    emu = workdir / "sim.emu"
    emu.write_text(EMU)
    state = workdir / "state"
    state.mkdir(exist_ok=True)
    log = (workdir / "ipmi_sim.log").open("wb")
    proc = subprocess.Popen(
        [exe, "-c", str(lan), "-f", str(emu), "-s", str(state), "-n"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"ipmi_sim exited {proc.returncode}: {(workdir / 'ipmi_sim.log').read_text()}")
        yield IpmiSim("127.0.0.1", port, username, password, workdir, proc.pid)
    finally:
        stop_process(proc, timeout=5)
        log.close()
