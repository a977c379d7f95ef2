#!/usr/bin/env bash
# The demo, start to finish on a fresh Debian 12 machine (as root):
#   set up, build the demo NOS, build its ONIE installer, inspect it, show the disk plan,
#   then serve it: `provision serve examples/onie-lab.yml` in a private network namespace answers
#   a simulated ONIE switch (`provision onie-sim`) in a second one. leaf-01 is in the lab file, so
#   it installs only once armed (docs/lifecycle.md): first it asks unarmed and is refused (a lease,
#   no installer); then `provision devices arm leaf-01` (the running server sees it, no restart),
#   and it finds, downloads, verifies and runs the installer for its platform, which reports back;
#   `provision status` shows it installed, and a third try shows install once; /metrics and the
#   web page at / show the same.
# Output lands in out/. Re-running is safe (everything is rebuilt, byte for byte the same).
# Network safety: all traffic stays on a veth between two namespaces this script makes, with
# addresses from 198.18.0.0/15; both are removed on exit, also on failure.
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

echo "== serve it: provision serve (namespace pvdemo-srv) <-> a simulated ONIE switch (pvdemo-sw)"
SRV=pvdemo-srv-$$; SW=pvdemo-sw-$$; SERVE_PID=
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$SW" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$SRV"; ip netns add "$SW"
ip -n "$SRV" link set lo up; ip -n "$SW" link set lo up
ip link add pvdemo$$ netns "$SRV" type veth peer name eth0 netns "$SW"
ip -n "$SRV" link set pvdemo$$ name demo0
ip -n "$SRV" addr add 198.18.60.1/24 dev demo0
ip -n "$SRV" link set demo0 up; ip -n "$SW" link set eth0 up
rm -rf out/demo-state
ip netns exec "$SRV" .venv/bin/provision serve examples/onie-lab.yml > out/demo-serve.log 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 50); do
  grep -q "provision serve: ready" out/demo-serve.log 2>/dev/null && break
  kill -0 "$SERVE_PID" 2>/dev/null || { cat out/demo-serve.log; exit 1; }
  sleep 0.2
done
LAB=examples/onie-lab.yml
# One MAC for every run: the reserved address stays with the lease of the MAC that took it.
sim() { ip netns exec "$SW" .venv/bin/provision onie-sim -i eth0 --serial DEMO-LEAF-01 --mac 02:00:c6:12:3c:0b --verify "$@"; }
echo "== leaf-01 asks before anyone armed it: a lease, no installer (the lab lists it: install once armed)"
if sim; then echo "demo: an unarmed leaf-01 was handed an installer" >&2; exit 1; fi
sleep 1  # events reach the store in batches (every 0.25 s)
.venv/bin/provision status --lab "$LAB"
echo "== arm it: the running server sees the arming at its next request"
.venv/bin/provision devices arm leaf-01 --lab "$LAB"
sim
sleep 1
echo "== provision status"
.venv/bin/provision status --lab "$LAB"
.venv/bin/provision status --lab "$LAB" --json > out/demo-status.json
python3 - out/demo-status.json <<'PY'
import json, sys
row = next(r for r in json.load(open(sys.argv[1]))["devices"] if r["name"] == "leaf-01")
assert row["state"] == "installed", row
PY
echo "== install once: the arming ended with the installer's report, so it is refused again"
if sim; then echo "demo: leaf-01 installed twice from one arming" >&2; exit 1; fi
echo "== see it: Prometheus metrics at /metrics and the web status page at / (a browser on the boot LAN)"
ip netns exec "$SRV" curl -fsS http://198.18.60.1/metrics > out/demo-metrics.txt
grep -E '^provision_(devices|install_duration_seconds_count|dhcp_packets_total)' out/demo-metrics.txt
ip netns exec "$SRV" curl -fsS http://198.18.60.1/ > out/demo-page.html
grep -q 'leaf-01' out/demo-page.html || { echo "demo: the web page does not list leaf-01" >&2; exit 1; }
echo "== done: installers in out/, server log in out/demo-serve.log, status in out/demo-status.json, page in out/demo-page.html"
