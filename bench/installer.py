#!/usr/bin/env python3
"""Benchmark: build an installer from a 1 GiB payload; compare with `tar -c FILES | sha256sum`.

The floor does the same essential work (read every byte, frame it as tar, SHA-256 it) without
writing an output file. Both run as child processes in this one invocation, on the same files
with a warm page cache; wall time and peak RSS (wait4's rusage of that child) are printed, and
the ratio. Targets: within 1.3x of the floor, under 100 MB RSS.

    python bench/installer.py [--size-mib 1024] [--runs 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SPEC = """\
nos: {{name: bench, version: "1.0"}}
platforms: [kvm_x86_64]
payload:
  kernel: vmlinuz
  initrd: initrd.img
  rootfs: rootfs.squashfs
partitions:
  - {{label: B-BOOT, size: 512M, role: boot}}
  - {{label: B-ROOT, size: {root_mib}M, role: rootfs}}
"""


# Made in a child process: Linux keeps a process's peak RSS across fork+exec, so a big parent
# would inflate every child's figure. The parent stays a bare interpreter (its peak is printed).
_MAKE = """
import os, sys
block = os.urandom(16 << 20)  # incompressible, like real kernel/initrd/squashfs
for name, mib in (("vmlinuz", 10), ("initrd.img", 54), ("rootfs.squashfs", max(1, int(sys.argv[1]) - 64))):
    with open(name, "wb") as f:
        for i in range(mib):
            f.write(block[(i % 16) << 20 : ((i % 16) + 1) << 20])
"""


def make_payload(folder: Path, size_mib: int) -> list[Path]:
    subprocess.run([sys.executable, "-c", _MAKE, str(size_mib)], cwd=folder, check=True)
    return [folder / n for n in ("vmlinuz", "initrd.img", "rootfs.squashfs")]


def run_child(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS in KiB of one child (and the children it waited for)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench: {argv[:4]} failed with {proc.returncode}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="provision-bench-", dir=args.workdir))
    try:
        files = make_payload(work, args.size_mib)
        (work / "switch.yml").write_text(SPEC.format(root_mib=args.size_mib))
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)  # warm cache
        names = " ".join(f.name for f in files)
        floor_cmd = ["sh", "-c", f"tar -cf - {names} | sha256sum"]
        out = work / "out"
        build_cmd = [sys.executable, "-m", "provision", "onie-installer", "switch.yml", "-o", str(out)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": "0"}
        floor, ours = [], []
        for _ in range(args.runs):
            floor.append(run_child(floor_cmd, work))
            shutil.rmtree(out, ignore_errors=True)
            ours.append(run_child(build_cmd, work, env))
        built = next(out.glob("*.bin"))
        payload = sum(f.stat().st_size for f in files)
        best_floor = min(t for t, _ in floor)
        best_ours = min(t for t, _ in ours)
        print(
            f"payload: {payload / 2**20:.0f} MiB in {len(files)} files; installer {built.stat().st_size / 2**20:.1f} MiB"
        )
        for i, ((ft, fr), (ot, orss)) in enumerate(zip(floor, ours, strict=True), 1):
            print(
                f"run {i}: floor tar|sha256sum {ft:6.2f} s {fr / 1024:6.1f} MiB RSS | "
                f"provision onie-installer {ot:6.2f} s {orss / 1024:6.1f} MiB RSS"
            )
        ratio = best_ours / best_floor
        peak = max(r for _, r in ours) / 1024
        print(
            f"best: floor {best_floor:.2f} s ({payload / best_floor / 2**20:.0f} MiB/s), "
            f"ours {best_ours:.2f} s ({payload / best_ours / 2**20:.0f} MiB/s)"
        )
        floor_median = sorted(t for t, _ in floor)[len(floor) // 2]
        ours_median = sorted(t for t, _ in ours)[len(ours) // 2]
        print(
            f"median: floor {floor_median:.2f} s, ours {ours_median:.2f} s, ratio {ours_median / floor_median:.2f}x"
        )
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"(RSS figures include the launching interpreter's own peak, {base:.1f} MiB, kept across exec)")
        print(f"ratio ours/floor: {ratio:.2f}x (target <= 1.3x); peak RSS {peak:.1f} MiB (target < 100)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
