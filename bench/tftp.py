"""TFTP throughput: `provision serve` (and the bare pxe.tftp library) against dnsmasq and tftpd-hpa,
same clients, same run.

    sudo python bench/tftp.py [--size-mb 64] [--concurrent 100] [--small-mb 4] [--repeat 3]
                              [--profile FILE]

Two network namespaces this script creates, joined by a veth (a link, as a boot LAN is): the
servers in one (198.18.99.1), the clients in the other (198.18.99.2, plus one address per
concurrent client). Servers:
  - provision serve: the product, from a lab file this script writes (policy, device-file guard,
    events into the SQLite store, default logging, DHCP running beside it), TFTP on port 3069;
  - pxe.tftp: the library alone (no policy, an event sink that only counts), port 2069;
  - dnsmasq (TFTP only, --tftp-max=1000) on port 69; tftpd-hpa on port 1069.
Scenarios (MiB/s, median of --repeat runs, interleaved; server CPU per MiB from /proc, then on a
second line its user/system split and the clients' CPU per MiB):
  1. one file (--size-mb) at blksize 1468, no windowsize asked (curl: what PXE ROMs do)
  2. the same at windowsize 16 (atftp; dnsmasq 2.90 and tftpd-hpa decline windowsize: window 1)
  3. --concurrent transfers of a --small-mb file, no windowsize asked, each client from its own
     address (curl --interface): a boot storm of that many machines
  4. the same at windowsize 16 (atftp, one source address: provision serve's per-client cap of 8
     refuses the rest, so its column is n/a there)
--profile FILE runs provision serve under cProfile (pstats written when the bench ends).
Targets: provision serve >= dnsmasq at windowsize 1 (single and storm), 3x at 16.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import random_file, serve_counting, stop_groups

REPO = Path(__file__).resolve().parents[1]
SNS, CNS = f"pvbts{os.getpid()}", f"pvbtc{os.getpid()}"
SERVER, CLIENT = "198.18.99.1", "198.18.99.2"
PORTS = {"provision": 3069, "pxe.tftp": 2069, "dnsmasq": 69, "tftpd-hpa": 1069}
TICK = os.sysconf("SC_CLK_TCK")

LAB = """\
interfaces: [sv0]
tftp_port: {port}
http_port: 8080
subnets:
  - network: 198.18.99.0/24
    interface: sv0
    pool: [198.18.99.200-198.18.99.250]
paths:
  state_dir: {state}
"""


def serve(root: str, port: int) -> None:
    """Child mode: run pxe.tftp with an event sink that only counts (as the app's would queue)."""
    sys.path.insert(0, str(REPO))
    from pxe.tftp import TftpConfig, start_tftp

    # Every client of this bench is one machine: the per-client cap is lifted for it.
    config = TftpConfig(root=Path(root), bind_addr=SERVER, port=port, max_per_client=100_000)
    serve_counting(lambda sink: start_tftp(config, None, sink))


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True)


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) time of the process and its reaped children (tftpd-hpa forks per transfer)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ut, st, cut, cst = (int(f) for f in fields[11:15])
    return (ut + cut) / TICK, (st + cst) / TICK


def clients_cpu() -> float:
    """CPU seconds of this script's reaped children: the TFTP clients (ip netns exec execs them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_servers(
    work: Path, root: Path, profile: str | None, procs: list[subprocess.Popen]
) -> dict[str, int]:
    """Start every server in the server namespace; returns each one's pid (for its CPU time)."""
    pids: dict[str, int] = {}
    lab = work / "lab.yml"
    lab.write_text(LAB.format(port=PORTS["provision"], state=work / "state"))
    log = work / "serve.log"
    argv = [sys.executable, "-m", "provision", "serve", str(lab)]
    if profile:
        argv = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "provision", "serve", str(lab)]
    out = open(log, "w")  # noqa: SIM115 - the child holds it; closed with the process
    provision = subprocess.Popen(
        in_ns(SNS, argv),
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append(provision)
    deadline = time.monotonic() + 60
    while "provision serve: ready" not in log.read_text():
        if provision.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("provision serve did not start:\n" + log.read_text())
        time.sleep(0.2)
    pids["provision"] = provision.pid
    ours = subprocess.Popen(
        in_ns(SNS, [sys.executable, __file__, "--serve", str(root), str(PORTS["pxe.tftp"])]),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    procs.append(ours)
    assert ours.stdout is not None and ours.stdout.readline().strip() == "ready"
    pids["pxe.tftp"] = ours.pid
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    dm = subprocess.Popen(
        in_ns(
            SNS,
            [dnsmasq, "-k", "--port=0", "--enable-tftp", f"--tftp-root={root}", f"--listen-address={SERVER}"]
            + ["--bind-interfaces", "--tftp-max=1000", "--conf-file=/dev/null", "--pid-file="]
            + ["--user=root", "--log-facility=/dev/null"],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    procs.append(dm)
    pids["dnsmasq"] = dm.pid
    tftpd = shutil.which("in.tftpd") or "/usr/sbin/in.tftpd"
    hpa = subprocess.Popen(
        in_ns(SNS, [tftpd, "-L", "-u", "root", "-s", str(root), "-a", f"{SERVER}:{PORTS['tftpd-hpa']}"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    procs.append(hpa)
    pids["tftpd-hpa"] = hpa.pid
    time.sleep(1)
    for p in procs:
        if p.poll() is not None:
            raise SystemExit(f"a server did not start: {p.args}")
    return pids


def curl_argv(port: int, name: str, source: str) -> list[str]:
    # No windowsize asked (curl has no such option), blksize 1468 and tsize as PXE ROMs ask.
    return in_ns(
        CNS,
        ["curl", "-sS", "--interface", source, "--tftp-blksize", "1468", "-o", "/dev/null"]
        + [f"tftp://{SERVER}:{port}/{name}"],
    )


def atftp_argv(port: int, name: str, window: int) -> list[str]:
    return in_ns(
        CNS,
        ["atftp", "--option", "blksize 1468", "--option", f"windowsize {window}", "-g", "-r", name]
        + ["-l", "/dev/null", SERVER, str(port)],
    )


def run_clients(argvs: list[list[str]], size: int) -> tuple[float, int]:
    """MiB/s of all of them together, and how many failed."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in argvs]
    failed = sum(p.wait(900) != 0 for p in procs)
    elapsed = time.monotonic() - t0
    return (len(argvs) - failed) * size / elapsed / 2**20, failed


def sources(n: int) -> list[str]:
    return [f"198.18.99.{10 + i}" for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--small-mb", type=int, default=4)
    ap.add_argument("--concurrent", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("single1", "single16", "storm1", "storm16"), action="append")
    ap.add_argument("--profile", metavar="FILE", help="run provision serve under cProfile, stats to FILE")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/tftp.py needs root (network namespaces, dnsmasq's port 69)")
    if not 1 <= args.concurrent <= 180:
        raise SystemExit("--concurrent: 1..180 (one client address each in 198.18.99.10-189)")
    for tool in ("atftp", "curl", "dnsmasq", "in.tftpd"):
        if not (shutil.which(tool) or Path("/usr/sbin", tool).exists()):
            raise SystemExit(f"needs {tool} (Debian packages atftp, curl, dnsmasq, tftpd-hpa)")
    work = Path(tempfile.mkdtemp(prefix="pvbench-tftp-"))
    work.chmod(0o755)
    root = work / "state" / "tftp"  # provision serve's tftp root; the others serve it too
    root.mkdir(parents=True)
    (work / "state" / "http").mkdir()
    procs: list[subprocess.Popen] = []
    profile = str(Path(args.profile).resolve()) if args.profile else None
    try:
        ip("netns", "add", SNS)
        ip("netns", "add", CNS)
        ip("link", "add", "pvbt0", "netns", SNS, "type", "veth", "peer", "name", "cl0", "netns", CNS)
        ip("-n", SNS, "link", "set", "pvbt0", "name", "sv0")
        ip("-n", SNS, "addr", "add", f"{SERVER}/24", "dev", "sv0")
        ip("-n", CNS, "addr", "add", f"{CLIENT}/24", "dev", "cl0")
        for src in sources(args.concurrent):
            ip("-n", CNS, "addr", "add", f"{src}/24", "dev", "cl0")
        for ns, dev in ((SNS, "sv0"), (CNS, "cl0"), (SNS, "lo"), (CNS, "lo")):
            ip("-n", ns, "link", "set", dev, "up")
        size, small = (
            random_file(root / "big.bin", args.size_mb),
            random_file(root / "small.bin", args.small_mb),
        )
        pids = start_servers(work, root, profile, procs)
        time.sleep(2)  # IPv4 is up at once; let the servers' own start-up settle
        n = args.concurrent
        scenarios = {
            "single1": (
                f"1 x {args.size_mb} MB, no windowsize (curl)",
                lambda p: [curl_argv(p, "big.bin", CLIENT)],
                size,
            ),
            "single16": (
                f"1 x {args.size_mb} MB, windowsize 16 (atftp)",
                lambda p: [atftp_argv(p, "big.bin", 16)],
                size,
            ),
            "storm1": (
                f"{n} x {args.small_mb} MB, no windowsize, {n} sources",
                lambda p: [curl_argv(p, "small.bin", s) for s in sources(n)],
                small,
            ),
            "storm16": (
                f"{n} x {args.small_mb} MB, windowsize 16, 1 source",
                lambda p: [atftp_argv(p, "small.bin", 16) for _ in range(n)],
                small,
            ),
        }
        print(
            f"TFTP, blksize 1468, over a veth between two namespaces, {os.cpu_count()} CPUs; "
            f"MiB/s median of {args.repeat} (server CPU ms per MiB)",
            flush=True,
        )
        print(f"{'scenario':42} " + " ".join(f"{name:>17}" for name in PORTS) + "  provision/dnsmasq")
        for key, (label, argvs, nbytes) in scenarios.items():
            if args.only and key not in args.only:
                continue
            servers = [s for s in PORTS if not (key == "storm16" and s == "provision")]
            runs: dict[str, list[float]] = {s: [] for s in servers}
            cpu: dict[str, list[float]] = {s: [0.0, 0.0, 0.0] for s in servers}  # user, sys, clients
            moved: dict[str, float] = dict.fromkeys(servers, 0.0)
            failures: dict[str, int] = dict.fromkeys(servers, 0)
            for _ in range(args.repeat):  # interleaved: background load on a shared machine hits all alike
                for s in servers:
                    (user, system), theirs = cpu_seconds(pids[s]), clients_cpu()
                    clients = argvs(PORTS[s])
                    rate, failed = run_clients(clients, nbytes)
                    (user2, system2), theirs2 = cpu_seconds(pids[s]), clients_cpu()
                    for i, spent in enumerate((user2 - user, system2 - system, theirs2 - theirs)):
                        cpu[s][i] += spent
                    moved[s] += (len(clients) - failed) * nbytes / 2**20
                    failures[s] += failed
                    runs[s].append(rate)
            cells = []
            for s in PORTS:
                if s not in servers:
                    cells.append(f"{'n/a':>17}")
                    continue
                # tftpd-hpa's per-transfer children are not reaped into its CPU time: not shown
                total = cpu[s][0] + cpu[s][1]
                per_mib = f"{1000 * total / moved[s]:5.2f}" if moved[s] and total else "    -"
                cells.append(f"{statistics.median(runs[s]):8.1f} ({per_mib})")
            ratio = (
                f"{statistics.median(runs['provision']) / statistics.median(runs['dnsmasq']):.2f}x"
                if "provision" in servers
                else "n/a"
            )
            print(f"{label:42} " + " ".join(cells) + f"  {ratio:>8}", flush=True)
            # The split, and what the clients spent: with clients on the same cores, a slower
            # answer costs them too (more sleeps and wake-ups per block).
            split = [
                f"{s} {1000 * u / moved[s]:.2f}/{1000 * k / moved[s]:.2f}/{1000 * c / moved[s]:.1f}"
                for s, (u, k, c) in cpu.items()
                if moved[s]
            ]
            print("    CPU ms/MiB user/sys/clients: " + "  ".join(split), flush=True)
            for s, f in failures.items():
                if f:
                    print(f"    {s}: {f} transfers failed", flush=True)
    finally:
        stop_groups(procs)
        for ns in (CNS, SNS):
            subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
