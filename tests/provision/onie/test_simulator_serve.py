"""`provision onie-sim` against our own `provision serve` (pxe.dhcp + pxe.tftp + pxe.http with
OniePolicy from lab.yml's `onie:` section), in namespaces joined by a veth, 198.18.31.0/24.

Exact URL path, the header-chosen HTTP waterfall with 404 for other platforms, the TFTP waterfall,
and `--count 20` concurrent switches of three platforms each getting its own platform's installer.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from onie import discovery
from provision.onie.progress import KIND_REPORT
from provision.store.sqlite import Store
from tests.support.cli import cli_argv, cli_env, onie_sim
from tests.support.tools import require_tool

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.31.1"
KVM = "x86_64-kvm_x86_64-r0"
ACCTON = "x86_64-accton_as7712_32x-r0"
ARM = "arm64-acme_s1-r0"

LAB = """\
interfaces: [ov0]
subnets:
  - network: 198.18.31.0/24
    interface: ov0
    pool: [198.18.31.100-198.18.31.199]
paths:
  state_dir: {state}
http_port: {http_port}
onie:
  installers: {installers}
  discovery: {mode}
  unknown: install
devices:
  - {{name: leaf-pinned, serial: PINNED-1, installer: demo-2.0-kvm.bin, ip: 198.18.31.50, install: always}}
"""


def installer(folder: Path, name: str, platform: str, version: str = "1.0") -> str:
    data = (
        f"#!/bin/sh\ntarget_platform='{platform}'\nnos_name='demo'\nnos_version='{version}'\n"
        f"echo installing {name}\nexit 0\n"
    ).encode()
    (folder / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def installers(tmp_path) -> dict[str, str]:
    folder = tmp_path / "installers"
    folder.mkdir()
    sums = {p: installer(folder, discovery.installer_file_name(p), p) for p in (KVM, ACCTON, ARM)}
    sums["pinned"] = installer(folder, "demo-2.0-kvm.bin", KVM, "2.0")
    return sums


@pytest.fixture
def link(serve_netns):
    return serve_netns(server_if="ov0", client_if="oc0", server_addr=f"{SERVER_IP}/24", prefix="ov")


def lab(tmp_path: Path, mode: str = "exact", http_port: int = 8080) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text(
        LAB.format(
            state=tmp_path / "state", installers=tmp_path / "installers", mode=mode, http_port=http_port
        )
    )
    return path


def test_exact_url_and_pin(link, tmp_path, installers):
    client = link.client
    sp = link.serve(str(lab(tmp_path)))
    rc, doc, _ = onie_sim(client, "--serial", "S-1", "--platform", ACCTON)
    sw = doc["switches"][0]
    url = f"http://{SERVER_IP}:8080/onie-installer-{ACCTON}.bin"
    assert rc == 0, sp.output
    # the exact URL carries the install's callback token (docs/security.md)
    assert (
        sw["lease"]["onie_url"].startswith(url + "?token=")
        and sw["lease"]["default_url"] == sw["lease"]["onie_url"]
    )
    assert [a["url"] for a in sw["attempts"]] == [sw["lease"]["onie_url"]]
    assert sw["installer"]["sha256"] == installers[ACCTON]
    # the inventory pins serial PINNED-1 to demo 2.0: same URL, the pinned file
    rc, doc, _ = onie_sim(client, "--serial", "PINNED-1", "--platform", KVM)
    sw = doc["switches"][0]
    assert rc == 0 and sw["installer"]["url"].startswith(
        f"http://{SERVER_IP}:8080/onie-installer-{KVM}.bin?token="
    )
    assert sw["installer"]["sha256"] == installers["pinned"]
    assert sw["lease"]["ip"] == "198.18.31.50"  # the inventory's reservation, found by serial


def test_http_waterfall_by_headers_404_for_others(link, tmp_path, installers):
    """A switch walking the HTTP names gets its own platform's file under each; other platforms' names
    (and names that do not fit) are 404, so a real ONIE would move on instead of installing them."""
    client = link.client
    curl = require_tool("curl")
    link.serve(str(lab(tmp_path, mode="inexact", http_port=80)))
    rc, doc, _ = onie_sim(client, "--platform", ARM, "--serial", "ARM-1")
    sw = doc["switches"][0]
    assert rc == 0
    assert sw["lease"]["www_servers"] == [SERVER_IP] and sw["lease"]["onie_url"] is None
    first = sw["attempts"][0]
    assert first["step"] == "inexact HTTP" and first["url"] == f"http://{SERVER_IP}/onie-installer-{ARM}"
    assert sw["installer"]["sha256"] == installers[ARM]
    headers = discovery.request_headers(
        discovery.complete(discovery.OnieIdentity(platform=ARM, serial="ARM-1", mac="02:00:00:00:00:01"))
    )
    hargs = [x for k, v in headers.items() for x in ("-H", f"{k}: {v}")]
    client.run(["ip", "addr", "add", "198.18.31.2/24", "dev", "oc0"])  # onie-sim removed its lease

    def status(name: str) -> str:
        out = client.run(
            [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", *hargs, f"http://{SERVER_IP}/{name}"]
        )
        return out.stdout

    for entry in discovery.default_names(discovery.complete(discovery.OnieIdentity(platform=ARM))):
        assert status(entry.name) == "200", entry.name
    assert status(f"onie-installer-{KVM}.bin") == "404"
    assert status("onie-installer-x86_64") == "404"
    assert status("onie-updater-arm64") == "404"


def test_tftp_waterfall(link, tmp_path, installers):
    client = link.client
    link.serve(str(lab(tmp_path, mode="waterfall")))
    rc, doc, _ = onie_sim(client, "--platform", KVM, "--mac", "52:54:00:31:00:05", "--serial", "W-1")
    sw = doc["switches"][0]
    assert rc == 0, sw
    ok = sw["attempts"][-1]
    assert ok["step"] == "TFTP waterfall" and ok["outcome"] == "ok"
    # the MAC directory, upper-case as EEPROMs write it, is the first waterfall path
    assert ok["url"] == f"tftp://{SERVER_IP}/52-54-00-31-00-05/onie-installer-{KVM}"
    assert sw["installer"]["sha256"] == installers[KVM]


def test_tftp_bootfile(link, tmp_path, installers):
    client = link.client
    link.serve(str(lab(tmp_path, mode="tftp")))
    rc, doc, _ = onie_sim(client, "--platform", ACCTON)
    sw = doc["switches"][0]
    assert rc == 0
    assert sw["lease"]["bootfile"] == f"onie-installer-{ACCTON}.bin"
    assert sw["installer"]["url"] == f"tftp://{SERVER_IP}/onie-installer-{ACCTON}.bin"
    assert sw["installer"]["sha256"] == installers[ACCTON]


def test_count_20_mixed_platforms(link, tmp_path, installers):
    client = link.client
    sp = link.serve(str(lab(tmp_path)))
    rc, doc, _ = onie_sim(
        client,
        "--count",
        "20",
        "--mac",
        "52:54:00:31:10:00",
        "-p",
        KVM,
        "-p",
        ACCTON,
        "-p",
        ARM,
        timeout=600,
    )
    assert rc == 0, sp.output
    assert doc["found"] == 20
    switches = doc["switches"]
    assert len({s["mac"] for s in switches}) == 20 and len({s["lease"]["ip"] for s in switches}) == 20
    for s in switches:
        assert s["installer"]["url"].split("?token=")[0].endswith(f"/onie-installer-{s['platform']}.bin")
        assert s["installer"]["sha256"] == installers[s["platform"]], s["mac"]
    status = subprocess.run(
        cli_argv("status", "--json", "--state-dir", str(tmp_path / "state")),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    rows = {r["mac"]: r for r in json.loads(status.stdout)["devices"]}
    for s in switches:
        # onie-sim plays the installer too: its reports (started ... complete ok) reached the store
        assert rows[s["mac"]]["stage"] == "installed", rows[s["mac"]]


UDHCPC_SCRIPT = '#!/bin/sh\n[ "$1" = bound ] || exit 0\nenv | grep -E "^(ip|opt[0-9]+|serverid)=" > "$OUT"\n'


def test_busybox_udhcpc_with_onies_arguments(link, tmp_path, installers):
    """busybox udhcpc run with the arguments ONIE's `udhcpc_args` and `sd_dhcp4` build (lib/onie/
    functions, bin/discover): -V onie_vendor:<platform>, -x 77:<hex>, -x 125:<enterprise,len,3/4/5>,
    -O 7 43 54 66 67 72 114 125. The server must know it for ONIE and answer 114 and 125.1."""
    client = link.client
    busybox = require_tool("busybox")

    def str_opt(code: int, text: str) -> str:  # `make_str_opt`: code, length, hex string
        return f"{code:02X}{len(text):02X}{text.encode().hex()}"

    payload = str_opt(3, "accton_as7712_32x") + str_opt(4, "x86_64") + str_opt(5, "0")
    vivso = f"{42623:08X}{len(payload) // 2:02X}{payload}"
    assert bytes.fromhex(vivso) == discovery.encode_request_vivso(discovery.OnieIdentity(platform=ACCTON))
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    out = tmp_path / "env"
    argv = [busybox, "udhcpc", "-i", "oc0", "-n", "-q", "-f", "-t", "3", "-T", "2", "-s", str(script)]
    argv += ["-V", f"onie_vendor:{ACCTON}", "-x", f"77:{b'onie_dhcp_user_class'.hex()}", "-x", f"125:{vivso}"]
    for code in (7, 43, 54, 66, 67, 72, 114, 125):
        argv += ["-O", str(code)]
    sp = link.serve(str(lab(tmp_path)))
    client.run(argv, env={"OUT": str(out), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    sp.stop()
    env = dict(line.split("=", 1) for line in out.read_text().split())
    url = bytes.fromhex(env["opt114"]).decode()  # with the install's token (docs/security.md)
    assert url.startswith(f"http://{SERVER_IP}:8080/onie-installer-{ACCTON}.bin?token=")
    assert discovery.urls_from_vivso(bytes.fromhex(env["opt125"])) == {discovery.SubOption.INSTALLER_URL: url}
    assert "dhcp.ack" in sp.output and f"vendor_class=onie_vendor:{ACCTON}" in sp.output


def test_onie_report_false_switches_the_report_endpoint_off(link, tmp_path, installers):
    """lab.yml `onie.report` reaches pxe.http: true (the default) keeps the endpoint on (a report
    without the install's token is refused there: 401, docs/security.md); false answers 404 and
    records nothing (the installer's report() ignores failures)."""
    client = link.client
    curl = require_tool("curl")
    client.run(["ip", "addr", "add", "198.18.31.2/24", "dev", "oc0"])
    url = f"http://{SERVER_IP}:8080/api/v1/report?stage=install&status=ok&mac=52:54:00:31:00:09"

    def post_report() -> str:
        return client.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", url]).stdout

    path = lab(tmp_path)
    sp = link.serve(str(path))
    assert post_report() == "401"
    sp.stop()
    assert "report refused (401)" in sp.output and "installer.report" not in sp.output
    path.write_text(path.read_text().replace("  discovery: exact\n", "  discovery: exact\n  report: false\n"))
    assert "report: false" in path.read_text()
    sp = link.serve(str(path))
    assert post_report() == "404"
    sp.stop()
    assert "installer.report" not in sp.output


# -- the installer's reports (onie-sim plays provision's installer) ------------------------------
# Zero-touch labs (no `devices:`): every switch that asks gets its platform's installer, whatever
# the arming rules for known devices say.

ZERO_TOUCH_LAB = """\
interfaces: [ov0]
subnets:
  - network: 198.18.31.0/24
    interface: ov0
    pool: [198.18.31.100-198.18.31.199]
paths:
  state_dir: {state}
http_port: 8080
onie:
  installers: {installers}
  unknown: install
"""

INSTALL_STAGES = [
    ("started", "progress"),
    ("verified", "progress"),
    ("partitioned", "progress"),
    ("payload", "progress"),
    ("bootloader", "progress"),
    ("complete", "ok"),
]


def zero_touch_lab(tmp_path: Path) -> Path:
    path = tmp_path / "lab-zt.yml"
    path.write_text(ZERO_TOUCH_LAB.format(state=tmp_path / "state", installers=tmp_path / "installers"))
    return path


def stored_reports(tmp_path: Path, mac: str) -> list[tuple[str, str]]:
    """(stage, status) of the installer.report events the server stored for this MAC."""
    with Store(tmp_path / "state" / "provision.db") as store:
        return [(e.detail["stage"], e.detail["status"]) for e in store.events(mac=mac, kinds=[KIND_REPORT])]


def test_onie_sim_reports_reach_the_store(link, tmp_path, installers):
    """onie-sim installs and reports as provision's installer does (started ... complete ok) to
    the server it fetched from; provision serve answers 200 and stores each as installer.report."""
    mac = "52:54:00:31:20:01"
    sp = link.serve(str(zero_touch_lab(tmp_path)))
    rc, doc, _ = onie_sim(link.client, "--serial", "ZT-1", "--platform", ACCTON, "--mac", mac)
    sw = doc["switches"][0]
    assert rc == 0, sp.output
    assert sw["outcome"] == "installed" and sw["installer_runs"] == 1 and doc["installed"] == 1
    assert sw["installer"]["sha256"] == installers[ACCTON]
    reports = sw["installer"]["run"]["reports"]
    assert [(r["stage"], r["status"]) for r in reports] == INSTALL_STAGES
    assert [r["http_status"] for r in reports] == [200] * 6, reports
    # the report goes where the installer came from, with the token its URL carried (if any)
    token = "token=" in sw["installer"]["url"]
    for r in reports:
        assert r["url"].startswith(f"http://{SERVER_IP}:8080/api/v1/report?stage=")
        assert ("&token=" in r["url"]) == token
    sp.stop()
    assert stored_reports(tmp_path, mac) == INSTALL_STAGES


def test_onie_sim_fail_at_and_cycles(link, tmp_path, installers):
    """--fail-at payload: every run reports `payload failed` and exits 1; discovery goes on down
    ONIE's list, then a second cycle (--cycles 2). The counts add up, and every failure the server
    accepted (200) is in the store; how many runs a server allows is its policy, not asserted here."""
    mac = "52:54:00:31:20:02"
    sp = link.serve(str(zero_touch_lab(tmp_path)))
    rc, doc, _ = onie_sim(
        link.client, "--serial", "ZT-2", "-p", KVM, "--mac", mac, "--fail-at", "payload", "--cycles", "2"
    )
    sw = doc["switches"][0]
    assert rc == 1 and sw["outcome"] == "failed" and sw["installer"] is None, sw
    assert sw["cycles"] == 2 and len(sw["installer_runs_per_cycle"]) == 2
    assert sum(sw["installer_runs_per_cycle"]) == sw["installer_runs"] >= 1
    assert sw["installer_runs_per_cycle"][0] >= 1
    runs = [a for a in sw["attempts"] if a["run"]]
    assert len(runs) == sw["installer_runs"]
    accepted = 0
    for a in runs:
        assert a["outcome"] == "install-failed" and a["run"]["stage"] == "payload"
        assert a["run"]["exit_code"] == 1
        sent = a["run"]["reports"]
        if sent:  # an installer fetched over TFTP has no HTTP server to report to
            assert [(r["stage"], r["status"]) for r in sent] == INSTALL_STAGES[:4] + [("payload", "failed")]
            accepted += sum(1 for r in sent if r["http_status"] == 200 and r["status"] == "failed")
        else:
            assert a["url"].startswith("tftp://") and a["run"]["not_reported"]
    assert accepted >= 1
    sp.stop()
    stored = stored_reports(tmp_path, mac)
    assert stored.count(("payload", "failed")) == accepted
    assert ("complete", "ok") not in stored


def test_onie_sim_hang_wrong_platform_and_no_report(link, tmp_path, installers):
    """--hang: `started`, then nothing (discovery stops: ONIE waits for it); --wrong-platform: the
    header's check fails (`verified failed "wrong platform <this switch>"`); --no-report: installs
    without a word to the server."""
    sp = link.serve(str(zero_touch_lab(tmp_path)))
    rc, doc, _ = onie_sim(link.client, "-p", ARM, "--mac", "52:54:00:31:20:03", "--hang")
    sw = doc["switches"][0]
    assert rc == 1 and sw["outcome"] == "hung" and sw["installer_runs"] == 1
    assert [(r["stage"], r["status"]) for r in sw["installer"]["run"]["reports"]] == [("started", "progress")]
    rc, doc, _ = onie_sim(link.client, "-p", ARM, "--mac", "52:54:00:31:20:04", "--wrong-platform")
    sw = doc["switches"][0]
    assert rc == 1 and sw["outcome"] == "failed"
    first = next(a for a in sw["attempts"] if a["run"])
    assert first["outcome"] == "rejected"
    last = first["run"]["reports"][-1]
    assert (last["stage"], last["status"], last["message"]) == ("verified", "failed", f"wrong platform {ARM}")
    rc, doc, _ = onie_sim(link.client, "-p", ARM, "--mac", "52:54:00:31:20:05", "--no-report")
    sw = doc["switches"][0]
    assert rc == 0 and sw["outcome"] == "installed" and sw["reports"] == []
    assert sw["installer"]["run"]["not_reported"] == "reports switched off (--no-report)"
    sp.stop()
    assert stored_reports(tmp_path, "52:54:00:31:20:03") == [("started", "progress")]
    assert ("verified", "failed") in stored_reports(tmp_path, "52:54:00:31:20:04")
    assert stored_reports(tmp_path, "52:54:00:31:20:05") == []
