"""Authenticated callbacks against `provision serve` in namespaces (docs/security.md).

The legitimate clients are real: busybox udhcpc as a server's iPXE, curl fetching its script from
its leased address and reporting with the token the script carries; and `provision onie-sim`
playing an armed ONIE switch (DHCP, the exact URL with its token, the installer's reports). The
forger is curl on the same LAN from another address (`--interface`). Each attack is refused AND
the legitimate client is served during and after it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import onie_sim, run_cli
from tests.support.tools import require_tool

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.22.1"
BOX_MAC = "52:54:00:22:00:01"
BOX_IP = "198.18.22.11"
FORGER_IP = "198.18.22.66"
SWITCH_MAC = "52:54:00:22:00:21"
SWITCH_IP = "198.18.22.21"
KVM = "x86_64-kvm_x86_64-r0"

LAB = """\
interfaces: [cb0]
subnets:
  - network: 198.18.22.0/24
    interface: cb0
    pool: [198.18.22.100-198.18.22.150]
boot:
  default: live
  entries:
    live:
      x86_64: {{kernel: files/vmlinuz, initrd: files/initrd.gz, cmdline: console=ttyS0}}
paths:
  state_dir: {state}
api: {{report_rate: 1, report_burst: 10}}  # an install sends 6 reports in a burst
onie:
  installers: {installers}
devices:
  - {{name: box-01, mac: "{box_mac}", ip: {box_ip}}}
  - {{name: leaf-01, serial: LEAF-1, platform: {kvm}, ip: {switch_ip}}}
"""

UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] || exit 0
{ echo "ip=$ip"; echo "boot_file=$boot_file"; } > "$OUT"
"""


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    files = tmp_path / "files"
    files.mkdir()
    kernel = bytearray(b"K" * 4096)
    kernel[0x202:0x206] = b"HdrS"  # what serve's file check wants of an x86 bzImage
    (files / "vmlinuz").write_bytes(bytes(kernel))
    (files / "initrd.gz").write_bytes(b"\x1f\x8b" + b"I" * 4096)
    installers = tmp_path / "installers"
    installers.mkdir()
    (installers / f"onie-installer-{KVM}.bin").write_text(
        f"#!/bin/sh\ntarget_platform='{KVM}'\nnos_name='demo'\nnos_version='1.0'\nexit 0\n"
    )
    path = tmp_path / "lab.yml"
    path.write_text(
        LAB.format(
            state=tmp_path / "state",
            installers=installers,
            box_mac=BOX_MAC,
            box_ip=BOX_IP,
            kvm=KVM,
            switch_ip=SWITCH_IP,
        )
    )
    return path


@pytest.fixture
def link(serve_netns):
    return serve_netns(
        server_if="cb0", client_if="cc0", server_addr=f"{SERVER_IP}/24", client_mac=BOX_MAC, prefix="cb"
    )


def http(ns, url: str, source: str) -> tuple[str, str]:
    """(status code, body) of a GET from `source` (an address of the client namespace)."""
    out = ns.run(["curl", "-s", "--interface", source, "-w", "\n%{http_code}", url], check=False)
    body, _, code = out.stdout.rpartition("\n")
    return code, body


def device(lab: Path, name: str) -> dict:
    out = run_cli("devices", "show", name, "--lab", str(lab), "--json")
    assert out.returncode == 0, out.stderr
    status: dict = json.loads(out.stdout)["status"]
    return status


def add_forger(ns) -> None:
    """The forger: a host of its own on the same LAN (a macvlan beside the client's NIC, with its
    own MAC and address), untouched by what onie-sim does to cc0."""
    ns.run(["ip", "link", "add", "fg0", "link", "cc0", "type", "macvlan", "mode", "bridge"])
    ns.run(["ip", "addr", "add", f"{FORGER_IP}/32", "dev", "fg0"])
    ns.run(["ip", "link", "set", "fg0", "up"])
    # only what is sent from the forger's address goes out through fg0 (policy routing)
    ns.run(["ip", "route", "add", "198.18.22.0/24", "dev", "fg0", "src", FORGER_IP, "table", "66"])
    ns.run(["ip", "rule", "add", "from", FORGER_IP, "table", "66"])


def flood(ns, url: str, source: str, count: int, out: Path) -> subprocess.Popen:
    """`count` reports as fast as curl goes, from `source`, in the background; codes into `out`."""
    script = (
        f'for i in $(seq {count}); do curl -s -o /dev/null --interface {source} -w "%{{http_code}}\\n" '
        f'"{url}"; done > {out}'
    )
    return ns.popen(["sh", "-c", script])


def test_server_install_callbacks_refuse_forgers(link, lab, tmp_path):
    require_tool("curl")
    busybox = require_tool("busybox")
    client = link.client
    sp = link.serve(str(lab))
    armed = run_cli("devices", "arm", "box-01", "--lab", str(lab))
    assert armed.returncode == 0, armed.stderr
    # The legitimate machine: iPXE's DHCP (option 77 iPXE), its reserved address on its NIC.
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    env_out = tmp_path / "lease.env"
    client.run(
        [busybox, "udhcpc", "-i", "cc0", "-n", "-q", "-f", "-t", "4", "-T", "2", "-s", str(script),
         "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-x", "0x4d:69505845"],
        env={"OUT": str(env_out), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    lease = dict(line.split("=", 1) for line in env_out.read_text().splitlines())
    assert lease["ip"] == BOX_IP
    client.run(["ip", "addr", "add", f"{BOX_IP}/24", "dev", "cc0"])
    add_forger(client)
    script_url = lease["boot_file"]
    # The device's own script, with the install's token on the kernel line; a neighbour gets 404.
    code, ipxe = http(client, script_url, BOX_IP)
    assert code == "200", sp.output
    report_url = re.search(r"provision\.report=(\S+)", ipxe).group(1)  # type: ignore[union-attr]
    assert "?token=" in report_url and "&" not in report_url
    token = report_url.split("?token=", 1)[1]
    assert http(client, script_url, FORGER_IP)[0] == "404"
    before = device(lab, "box-01")
    assert before["state"] == "installing"
    base = f"http://{SERVER_IP}/api/v1/report"
    # Forgeries: no token, a wrong one, the right one from the wrong address.
    forged = f"{base}?stage=complete&status=failed&mac={BOX_MAC}&message=pwned"
    assert http(client, forged, FORGER_IP)[0] == "401"
    wrong = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert http(client, f"{forged}&token={wrong}", FORGER_IP)[0] == "401"
    assert http(client, f"{report_url}&stage=complete&status=failed", FORGER_IP)[0] == "403"
    after = device(lab, "box-01")  # nothing of that changed anything
    assert (after["state"], after["since"], after["error"]) == (before["state"], before["since"], None)
    # A flood from the forger's address: 429 beyond the burst, while the device's report lands.
    codes = tmp_path / "flood.codes"
    proc = flood(client, forged, FORGER_IP, 60, codes)
    try:
        time.sleep(0.3)
        assert http(client, f"{report_url}&stage=started&status=progress", BOX_IP)[0] == "200"
    finally:
        proc.wait(timeout=120)
    got = codes.read_text().split()
    assert len(got) == 60 and got.count("429") >= 40 and set(got) <= {"401", "429"}, got
    # The device finishes: the arming ends (install once) and its token with it.
    assert http(client, f"{report_url}&stage=complete&status=ok", BOX_IP)[0] == "200"
    deadline = time.monotonic() + 10
    while device(lab, "box-01")["state"] != "installed" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert device(lab, "box-01")["state"] == "installed"
    assert http(client, f"{report_url}&stage=complete&status=failed", BOX_IP)[0] == "401"
    # Its next script boots the local disk, to the device itself; status/events stay closed to
    # the boot LAN (api.read: local).
    code, ipxe = http(client, script_url, BOX_IP)
    assert code == "200" and "provision.report" not in ipxe
    for path in ("/api/v1/status", "/api/v1/events"):
        assert http(client, f"http://{SERVER_IP}{path}", FORGER_IP)[0] == "403"
    out = sp.output
    sp.stop()
    # Refusals are counted and logged once a minute per kind, not once per request.
    assert out.count("report refused (401)") == 1 and out.count("report rate limit") == 1, out
    assert not any("installer.report" in line and "pwned" in line for line in out.splitlines())


def test_onie_switch_installs_while_forged(link, lab, tmp_path):
    """onie-sim as the armed switch (exact URL with token, every report) while a forger floods
    the report endpoint for it; afterwards its token is refused from anywhere."""
    require_tool("curl")
    client = link.client
    sp = link.serve(str(lab))
    assert run_cli("devices", "arm", "leaf-01", "--lab", str(lab)).returncode == 0
    add_forger(client)
    base = f"http://{SERVER_IP}/api/v1/report"
    forged = f"{base}?stage=complete&status=failed&serial=LEAF-1&mac={SWITCH_MAC}&message=forged"
    codes = tmp_path / "flood.codes"
    proc = flood(client, forged, FORGER_IP, 40, codes)
    try:
        rc, doc, _ = onie_sim(
            client, "--serial", "LEAF-1", "--platform", KVM, "--mac", SWITCH_MAC, ifname="cc0"
        )
    finally:
        proc.wait(timeout=120)
    sw = doc["switches"][0]
    assert rc == 0, sp.output
    url = sw["lease"]["onie_url"]
    assert "?token=" in url and sw["lease"]["ip"] == SWITCH_IP
    assert set(codes.read_text().split()) <= {"401", "429"}
    leaf = device(lab, "leaf-01")
    assert leaf["state"] == "installed", leaf  # the real reports landed; the forged failure did not
    token = url.split("?token=", 1)[1]
    replay = f"{base}?stage=complete&status=failed&token={token}"
    # Refused: 401/403 by the token check, or 429 first when the flood has drained the forger's
    # bucket (the rate limit runs before the token check, by design: it is the cheaper refusal).
    # The 403 for a good token from a wrong address is asserted in the server flow above.
    assert http(client, replay, FORGER_IP)[0] in ("401", "403", "429")
    client.run(["ip", "addr", "add", f"{SWITCH_IP}/24", "dev", "cc0"])
    assert http(client, replay, SWITCH_IP)[0] == "401"  # the install ended: so did its token
    assert device(lab, "leaf-01")["state"] == "installed"
    sp.stop()
    assert "forged" not in "".join(line for line in sp.output.splitlines() if "installer.report" in line)


def test_inexact_mode_reports_without_token_only_from_the_lease(link, lab, tmp_path):
    """ONIE's inexact mode: the installer is fetched by a name ONIE builds (no URL of ours, no
    token), so a token-less report is believed from the address holding the switch's lease, for
    that MAC only; the forger's is refused."""
    require_tool("curl")
    client = link.client
    lab.write_text(lab.read_text().replace("  installers:", "  discovery: inexact\n  installers:"))
    sp = link.serve(str(lab))
    assert run_cli("devices", "arm", "leaf-01", "--lab", str(lab)).returncode == 0
    add_forger(client)
    base = f"http://{SERVER_IP}/api/v1/report"
    forged = f"{base}?stage=complete&status=failed&serial=LEAF-1&mac={SWITCH_MAC}"
    assert http(client, forged, FORGER_IP)[0] == "401"  # no lease at the forger's address
    rc, doc, _ = onie_sim(client, "--serial", "LEAF-1", "--platform", KVM, "--mac", SWITCH_MAC, ifname="cc0")
    sw = doc["switches"][0]
    assert rc == 0 and sw["lease"]["onie_url"] is None, sp.output
    assert device(lab, "leaf-01")["state"] == "installed"  # its token-less reports were believed
    client.run(["ip", "addr", "add", f"{SWITCH_IP}/24", "dev", "cc0"])
    other = f"{base}?stage=complete&status=failed&mac=52:54:00:22:00:01"
    assert http(client, other, SWITCH_IP)[0] == "403"  # the lease holder speaks for itself only
    assert http(client, forged, FORGER_IP)[0] == "401"
