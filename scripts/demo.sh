#!/usr/bin/env bash
# The installer demo, start to finish on a fresh Debian 12 machine (as root):
#   set up, build the demo NOS, build its ONIE installer, inspect it, show the disk plan.
# Output lands in out/. Re-running is safe (everything is rebuilt, byte for byte the same).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

echo "== demo NOS: host kernel + static busybox initramfs (examples/nos/build.sh)"
bash examples/nos/build.sh

echo "== ONIE installer for every platform in examples/switch.yml"
mkdir -p out
.venv/bin/provision onie-installer examples/switch.yml -o out/

echo "== what is inside"
for f in out/onie-installer-*.bin; do
  .venv/bin/provision inspect "$f"
done

echo "== where it goes on the switch's disk"
.venv/bin/provision layout examples/switch.yml
