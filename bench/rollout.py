#!/usr/bin/env python3
"""`provision rollout` over a simulated fleet: 500 switches from v1 to v2 through one `provision serve`.

    sudo python bench/rollout.py [--count 500] [--canaries 2] [--wave 50] [--fail-rate 0.02]
                                 [--max-failure-percent 10] [--kill-wave 3] [--installer-mib 2]

Two namespaces joined by a veth: `provision serve` and the rollout CLI in one (198.18.0.1/16),
`provision lab fleet` in the other (switches at 198.18.8.1 and up, one sshd for all of them,
docs/rollout.md "Rehearsal"). The fleet starts at NOS 1.0; serve has a real 2.0 installer built by
`provision onie-installer` (--installer-mib of filler payload). The rollout arms each switch with
the ssh driver (keys checked against the fleet's known_hosts); each reboots into ONIE discovery,
downloads, verifies, reports, and comes back at 2.0. --fail-rate of the switches fail their
install (payload stage). During wave --kill-wave the rollout CLI gets SIGKILL, then
`provision rollout resume ID` finishes it.

Prints: wall time, serve's CPU per device (utime+stime from /proc over the run / devices) and peak
RSS (VmHWM), the fleet's and its sshd's RSS, the rollout CLI's CPU and peak RSS (wait4), what
the gate did (failures per wave against the configured limit, the exit codes), and the checks:
no switch installed twice (the fleet's own count of installers that ran to the end, and the
store's device.installed events per arming), none skipped (every switch selected is at 2.0 or
failed by injection). Figures, not a timed test; nothing leaves the namespaces.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_IP = "198.18.0.1"
FIRST_SWITCH = "198.18.8.1"
TICK = os.sysconf("SC_CLK_TCK")

LAB = """\
interfaces: [sv0]
subnets:
  - network: 198.18.0.0/16
    interface: sv0
    pool: [198.18.200.1-198.18.203.250]
paths:
  state_dir: {state}
onie:
  installers: {installers}
"""

PLAN = """\
name: bench
devices: ['leaf-*']
target: "2.0"
canaries: {canaries}
wave_size: {wave}
gates: {{max_failure_percent: {pct}}}
timeouts: {{arm: {arm}, install: {install}, boot: 120}}
driver:
  name: ssh
  options: {{host_keys: known_hosts, known_hosts: {known_hosts}, identity_file: {key}}}
"""

SPEC = """\
nos: {name: benchnos, version: "2.0"}
platforms: [kvm_x86_64]
payload:
  kernel: vmlinuz
  initrd: initrd.img
partitions:
  - {label: B-BOOT, size: 64M, role: boot}
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "provision", *args]


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def tree_rss_mib(pid: int) -> float:
    """RSS of a process and its descendants (sshd forks per session)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            total += status_kib(p, "VmRSS")
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
    return total / 1024


def wait_child(proc: subprocess.Popen, block: bool = True) -> tuple[int, float, float] | None:
    """Exit code, CPU seconds and peak RSS MiB of a child (wait4's rusage); None while it runs
    (block=False). Never mixed with Popen.poll(), which would reap it without the rusage."""
    pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--canaries", type=int, default=2)
    ap.add_argument("--wave", type=int, default=50)
    ap.add_argument("--fail-rate", type=float, default=0.02)
    ap.add_argument("--max-failure-percent", type=int, default=10)
    ap.add_argument(
        "--kill-wave", type=int, default=3, help="SIGKILL the rollout CLI during this wave (0: no)"
    )
    ap.add_argument("--installer-mib", type=int, default=2)
    ap.add_argument("--install-timeout", type=int, default=120, help="the plan's install timeout (s)")
    ap.add_argument("--arm-timeout", type=int, default=120, help="the plan's arm timeout (s)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up on SIGTERM too
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    tag = os.getpid()
    server_ns, fleet_ns = f"pvrs{tag}", f"pvrf{tag}"
    procs: list[subprocess.Popen] = []
    work = Path(tempfile.mkdtemp(prefix="pv-rollout-"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        # -- the installer -----------------------------------------------------------------------
        build = work / "build"
        build.mkdir()
        half = max(1, args.installer_mib) << 19
        (build / "vmlinuz").write_bytes(os.urandom(half))
        (build / "initrd.img").write_bytes(os.urandom(half))
        (build / "switch.yml").write_text(SPEC)
        installers = work / "installers"
        subprocess.run(
            cli("onie-installer", "switch.yml", "-o", str(installers)),
            cwd=build,
            env=env,
            check=True,
            capture_output=True,
        )
        size = sum(f.stat().st_size for f in installers.iterdir())

        # -- namespaces ---------------------------------------------------------------------------
        ip("netns", "add", server_ns)
        ip("netns", "add", fleet_ns)
        ip(
            "link",
            "add",
            f"pvr{tag % 10000}",
            "netns",
            server_ns,
            "type",
            "veth",
            "peer",
            "name",
            "fl0",
            "netns",
            fleet_ns,
        )
        ip("-n", server_ns, "link", "set", f"pvr{tag % 10000}", "name", "sv0")
        ip("-n", server_ns, "addr", "add", f"{SERVER_IP}/16", "dev", "sv0")
        for ns, dev in ((server_ns, "sv0"), (fleet_ns, "fl0"), (server_ns, "lo"), (fleet_ns, "lo")):
            ip("-n", ns, "link", "set", dev, "up")
        # One ARP entry per switch in the server's namespace: the neighbour table is the kernel's
        # (gc_thresh3 counts every namespace); 500 fit under Linux's default of 1024.

        # -- the fleet -----------------------------------------------------------------------------
        key = work / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        fleet_dir = work / "fleet"
        events = work / "fleet-events.jsonl"
        fleet_argv = cli(
            "lab", "fleet", "-i", "fl0", "-n", str(args.count), "--first-ip", FIRST_SWITCH, "--prefix", "16",
            "--authorized-keys", f"{key}.pub", "--fail-rate", str(args.fail_rate), "--seed", str(args.seed),
            "--dir", str(fleet_dir), "--json",
        )  # fmt: skip
        t_fleet = time.monotonic()
        fleet = subprocess.Popen(in_ns(fleet_ns, fleet_argv), env=env, cwd=REPO, stdout=events.open("w"),
                                 stderr=(work / "fleet.log").open("w"), start_new_session=True)  # fmt: skip
        procs.append(fleet)
        while not (fleet_dir / "ready").exists():
            if fleet.poll() is not None:
                sys.exit("fleet did not start:\n" + (work / "fleet.log").read_text()[-3000:])
            time.sleep(0.2)
        fleet_status = json.loads((fleet_dir / "status.json").read_text())
        faulty = {s["name"] for s in fleet_status["switches"] if s["fault"]}
        sshd_pid = fleet_status["sshd_pid"]
        print(f"fleet: {args.count} switches up in {time.monotonic() - t_fleet:.1f} s; "
              f"fleet process RSS {status_kib(fleet.pid, 'VmRSS') / 1024:.1f} MiB, "
              f"sshd (all processes) {tree_rss_mib(sshd_pid):.1f} MiB; {len(faulty)} will fail their install")  # fmt: skip

        # -- serve ---------------------------------------------------------------------------------
        state = work / "state"
        lab = work / "lab.yml"
        lab.write_text(
            LAB.format(state=state, installers=installers) + (fleet_dir / "inventory.yml").read_text()
        )
        log = work / "serve.log"
        serve = subprocess.Popen(in_ns(server_ns, cli("serve", str(lab))), env=env, cwd=REPO,
                                 stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        procs.append(serve)
        deadline = time.monotonic() + 60
        while "provision serve: ready" not in log.read_text():
            if serve.poll() is not None or time.monotonic() > deadline:
                sys.exit("provision serve did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        time.sleep(2)
        cpu0 = proc_cpu(serve.pid)
        print(
            f"provision serve: RSS {status_kib(serve.pid, 'VmRSS') / 1024:.1f} MiB idle; installer {size / 2**20:.1f} MiB"
        )

        # -- the rollout ---------------------------------------------------------------------------
        plan = work / "plan.yml"
        plan.write_text(
            PLAN.format(
                canaries=args.canaries,
                wave=args.wave,
                pct=args.max_failure_percent,
                install=args.install_timeout,
                arm=args.arm_timeout,
                known_hosts=fleet_dir / "known_hosts",
                key=key,
            )
        )
        start = cli("rollout", "start", str(plan), "--lab", str(lab), "--json")
        t0 = time.monotonic()
        out1 = work / "rollout-1.json"
        r1 = subprocess.Popen(in_ns(server_ns, start), env=env, cwd=REPO, stdout=out1.open("w"),
                              stderr=(work / "rollout-1.log").open("w"), start_new_session=True)  # fmt: skip
        procs.append(r1)
        killed_at = None
        kill_after = args.canaries + args.wave * max(0, args.kill_wave - 1) + args.wave // 3
        done1 = None
        while done1 is None:
            done1 = wait_child(r1, block=False)
            if done1 is None and args.kill_wave and killed_at is None:
                rebooted = sum(1 for line in events.read_text().splitlines() if '"into": "onie"' in line)
                if rebooted >= kill_after:
                    os.kill(r1.pid, signal.SIGKILL)
                    killed_at = time.monotonic() - t0
                    print(
                        f"rollout CLI killed (SIGKILL) at {killed_at:.1f} s, {rebooted} switches armed so far"
                    )
                    done1 = wait_child(r1)
            time.sleep(0.2)
        assert done1 is not None
        code1, cpu1, rss1 = done1
        rid = None
        listed = subprocess.run(in_ns(server_ns, cli("rollout", "list", "--lab", str(lab), "--json")), env=env,
                                cwd=REPO, capture_output=True, text=True)  # fmt: skip
        with contextlib.suppress(ValueError, KeyError, IndexError):
            doc = json.loads(listed.stdout)
            rows = doc["rollouts"] if isinstance(doc, dict) else doc
            rid = rows[0]["id"]
        code2, cpu2, rss2 = code1, 0.0, 0.0
        if killed_at is not None:
            if rid is None:
                sys.exit(
                    f"no rollout id from `rollout list`: {listed.stdout[-2000:]} {listed.stderr[-2000:]}"
                )
            out2 = work / "rollout-2.json"
            r2 = subprocess.Popen(in_ns(server_ns, cli("rollout", "resume", rid, "--lab", str(lab), "--json")), env=env,
                                  cwd=REPO, stdout=out2.open("w"), stderr=(work / "rollout-2.log").open("w"),
                                  start_new_session=True)  # fmt: skip
            procs.append(r2)
            done2 = wait_child(r2)
            assert done2 is not None
            code2, cpu2, rss2 = done2
        wall = time.monotonic() - t0
        time.sleep(1)
        serve_cpu = proc_cpu(serve.pid) - cpu0
        serve_hwm = status_kib(serve.pid, "VmHWM") / 1024
        fleet_rss = status_kib(fleet.pid, "VmHWM") / 1024

        # -- checks --------------------------------------------------------------------------------
        fleet_status = json.loads((fleet_dir / "status.json").read_text())["switches"]
        installs = collections.Counter(
            json.loads(line)["name"]
            for line in (fleet_dir / "installs.jsonl").read_text().splitlines()
            if line
        )
        twice = sorted(n for n, c in installs.items() if c > 1)
        at_v2 = {s["name"] for s in fleet_status if s["version"] == "2.0"}
        names = {s["name"] for s in fleet_status}
        attempted: set[str] = set()
        status = subprocess.run(in_ns(server_ns, cli("rollout", "status", *([rid] if rid else []), "--lab", str(lab), "--json")),
                                env=env, cwd=REPO, capture_output=True, text=True)  # fmt: skip
        per_wave: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        errors: collections.Counter[str] = collections.Counter()
        with contextlib.suppress(ValueError, KeyError):
            for d in json.loads(status.stdout)["devices"]:
                per_wave[d["wave"]][d["stage"]] += 1
                if d.get("attempts") or d["stage"] not in ("pending", "skipped"):
                    attempted.add(d["name"])
                if d["stage"] == "failed":
                    kind = "injected" if d["name"] in faulty else "NOT injected"
                    errors[
                        f"{kind}: {(d.get('error') or '').splitlines()[-1][:110] if d.get('error') else ''}"
                    ] += 1
        onie_runs = sum(s["installer_runs"] for s in fleet_status)
        lost = {s["name"]: s.get("reports_lost", 0) for s in fleet_status if s.get("reports_lost")}
        # Skipped: selected, never attempted by the rollout, and not at 2.0 either.
        skipped = sorted(names - at_v2 - attempted)

        print(f"\n{args.count} switches, {args.canaries} canaries then waves of {args.wave}, "
              f"gate: more than {args.max_failure_percent}% failed in a wave stops the rollout")  # fmt: skip
        print(f"  wall time {wall:.1f} s (start to the end of resume), {args.count / wall:.1f} switches/s")
        print(
            f"  provision serve: CPU {serve_cpu:.1f} s = {1000 * serve_cpu / args.count:.1f} ms per device; peak RSS {serve_hwm:.1f} MiB"
        )
        print(f"  fleet process peak RSS {fleet_rss:.1f} MiB; sshd now {tree_rss_mib(sshd_pid):.1f} MiB")
        print(
            f"  rollout start: exit {code1}{' (killed)' if killed_at else ''}, CPU {cpu1:.1f} s, peak RSS {rss1:.1f} MiB"
        )
        if killed_at is not None:
            print(f"  rollout resume {rid}: exit {code2}, CPU {cpu2:.1f} s, peak RSS {rss2:.1f} MiB")
        for wave in sorted(per_wave):
            c = per_wave[wave]
            print(f"    wave {wave}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
        for text, n in errors.most_common():
            print(f"    failed x{n}: {text}")
        if lost:
            print(f"    installer reports lost on the way (no 200 within wget's 3 s): {lost}")
        print(
            f"  at 2.0: {len(at_v2)}; injected failures: {len(faulty)}; installers run by the fleet: {onie_runs}"
        )
        print(
            f"  installed twice: {twice or 'none'}; skipped (never attempted, not at 2.0): {skipped or 'none'}"
        )
        ok = not twice and not skipped
        print("  CHECKS " + ("PASSED" if ok else "FAILED"))
        if not ok:
            sys.exit(1)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(20)
                if p.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
        for ns in (fleet_ns, server_ns):
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in out.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
