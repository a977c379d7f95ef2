"""`provision serve` end to end with real clients, in namespaces joined by a veth (198.18.20.0/24).

udhcpc (as a PXE BIOS client, then as iPXE) and dhclient get leases and boot options; curl fetches
the rendered iPXE script and the kernel over HTTP; tftp-hpa fetches undionly.kpxe; `provision
status --json` shows all of it. Plus the errors an operator meets first: port in use, no such
interface, interface without an address, a boot file missing from lab.yml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.cli import cli_argv, cli_env, run_cli
from tests.support.netns import namespaces, tap
from tests.support.tools import require_root, require_tool

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.20.1"
CLIENT_MAC = "52:54:00:20:00:01"
RESERVED_IP = "198.18.20.11"

LAB = """\
interfaces: [sv0]
subnets:
  - network: 198.18.20.0/24
    interface: sv0
    pool: [198.18.20.100-198.18.20.150]
    router: 198.18.20.1
boot:
  default: live
  unknown: ignore
  entries:
    live:
      x86_64: {{kernel: files/vmlinuz, initrd: files/initrd.gz, cmdline: console=ttyS0}}
paths:
  state_dir: {state}
devices:
  - {{name: box-01, mac: "{mac}", ip: {ip}, hostname: box-01, install: always}}
"""

# Not bootable, but each what it claims to be by its magic, as `serve` checks before binding
# (docs/lab.md "provision check"): a bzImage header, gzip data.
KERNEL = (b"K" * 0x202 + b"HdrS").ljust(300_000, b"K")
INITRD = b"\x1f\x8b" + b"I" * 99_998

UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] || exit 0
{ echo "ip=$ip"; echo "siaddr=$siaddr"; echo "boot_file=$boot_file"; echo "serverid=$serverid"; } > "$OUT"
"""


@pytest.fixture
def lab(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "vmlinuz").write_bytes(KERNEL)
    (files / "initrd.gz").write_bytes(INITRD)
    path = tmp_path / "lab.yml"
    path.write_text(LAB.format(state=tmp_path / "state", mac=CLIENT_MAC, ip=RESERVED_IP))
    return path


@pytest.fixture
def link(serve_netns):
    return serve_netns(server_if="sv0", client_if="cl0", server_addr=f"{SERVER_IP}/24", client_mac=CLIENT_MAC)


def udhcpc(client, tmp_path: Path, name: str, *extra: str) -> dict[str, str]:
    busybox = require_tool("busybox")
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    out = tmp_path / f"{name}.env"
    client.run(
        [busybox, "udhcpc", "-i", "cl0", "-n", "-q", "-f", "-t", "4", "-T", "2", "-s", str(script), *extra],
        env={"OUT": str(out), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        timeout=60,
    )
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def test_serve_end_to_end_with_real_clients(link, lab, tmp_path):
    client = link.client
    require_tool("curl")
    tftp = require_tool("tftp")
    sp = link.serve(str(lab))
    # 1. A BIOS PXE ROM's DISCOVER: option 60 PXEClient, option 93 = 0.
    got = udhcpc(client, tmp_path, "pxe", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
    assert got["ip"] == RESERVED_IP
    assert got["boot_file"] == "undionly.kpxe"
    assert got["siaddr"] == SERVER_IP
    # 2. The same machine once iPXE runs (option 77 "iPXE"): the per-device script URL.
    got = udhcpc(client, tmp_path, "ipxe", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000",
                 "-x", "0x4d:69505845")  # fmt: skip
    script_url = f"http://{SERVER_IP}/ipxe/52-54-00-20-00-01.ipxe"
    assert got["boot_file"] == script_url
    client.run(["ip", "addr", "add", f"{RESERVED_IP}/24", "dev", "cl0"])
    # 3. curl: the rendered script (initrd=NAME on the kernel line) and the kernel it names.
    script = client.run(["curl", "-sSf", script_url]).stdout
    assert script.startswith("#!ipxe")
    assert f"kernel http://{SERVER_IP}/boot/live/x86_64/vmlinuz initrd=initrd.gz console=ttyS0" in script
    kernel = client.run(
        ["curl", "-sSf", "-o", str(tmp_path / "k"), f"http://{SERVER_IP}/boot/live/x86_64/vmlinuz"]
    )
    assert kernel.returncode == 0 and (tmp_path / "k").read_bytes() == KERNEL
    # 4. tftp-hpa: the BIOS iPXE loader, byte for byte from Debian's ipxe package.
    dest = tmp_path / "undionly.kpxe"
    client.run([tftp, SERVER_IP, "-m", "binary", "-c", "get", "undionly.kpxe", str(dest)])
    assert dest.read_bytes() == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
    # 5. status while serving (WAL: readers do not block the server). The transfer's event is
    # written up to the store's event_flush_interval (0.25 s) after the last ACK, and `status`
    # reads the file: it shows the fetch within that, not necessarily at once.
    deadline = time.monotonic() + 10
    while True:
        st = run_cli("status", "--state-dir", str(tmp_path / "state"), "--json")
        assert st.returncode == 0, st.stderr
        row = next(r for r in json.loads(st.stdout)["devices"] if r["mac"] == CLIENT_MAC)
        if row["last_fetch"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row["ip"] == RESERVED_IP
    assert row["lease"]["state"] == "bound"
    assert row["last_fetch"]["path"].endswith("undionly.kpxe")
    assert row["last_fetch"]["protocol"] == "tftp"
    # the same view over the HTTP API, and the device's events: on the server itself (api.read:
    # local, the default); a host on the boot LAN is refused (docs/security.md)
    for path in ("/api/v1/status", f"/api/v1/events?mac={CLIENT_MAC}"):
        code = client.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER_IP}{path}"]
        )
        assert code.stdout == "403", path
    server = link.server
    api = json.loads(server.run(["curl", "-sSf", f"http://{SERVER_IP}/api/v1/status"]).stdout)
    assert any(r["mac"] == CLIENT_MAC and r["name"] == "box-01" for r in api["devices"])
    evs = json.loads(
        server.run(["curl", "-sSf", f"http://{SERVER_IP}/api/v1/events?mac={CLIENT_MAC}"]).stdout
    )
    kinds = [e["kind"] for e in (evs["events"] if isinstance(evs, dict) else evs)]
    assert "dhcp.ack" in kinds and "tftp.sent" in kinds
    human = run_cli("status", "--lab", str(lab))
    assert human.returncode == 0 and "box-01" in human.stdout
    # SIGTERM: a clean stop, with its event recorded.
    assert sp.stop() == 0, sp.output
    assert "mac=52:54:00:20:00:01" in sp.output  # logs are keyed on MAC
    events = json.loads(run_cli("status", "--state-dir", str(tmp_path / "state"), "--json").stdout)
    assert events["devices"]


def test_dhclient_gets_reserved_lease(link, lab, tmp_path):
    dhclient = require_tool("dhclient")
    link.serve(str(lab))
    leases = tmp_path / "dhclient.leases"
    link.client.run(
        [dhclient, "-4", "-1", "-v", "-lf", str(leases), "-pf", str(tmp_path / "dh.pid"),
         "-sf", "/bin/true", "cl0"],
        timeout=60,
    )  # fmt: skip
    text = leases.read_text()
    assert f"fixed-address {RESERVED_IP};" in text
    assert f"option dhcp-server-identifier {SERVER_IP};" in text


def test_unknown_mac_is_ignored_but_recorded(link, lab, tmp_path):
    client = link.client
    client.run(["ip", "link", "set", "cl0", "address", "52:54:00:20:99:99"])
    link.serve(str(lab))
    busybox = require_tool("busybox")
    r = client.run([busybox, "udhcpc", "-i", "cl0", "-n", "-q", "-f", "-t", "2", "-T", "1", "-s", "/bin/true"],
                   check=False)  # fmt: skip
    assert r.returncode != 0  # no lease: `unknown: ignore`
    snap = json.loads(run_cli("status", "--state-dir", str(tmp_path / "state"), "--json").stdout)
    row = next(r for r in snap["devices"] if r["mac"] == "52:54:00:20:99:99")
    assert row["last_event"]["kind"] == "dhcp.ignored"


def hold_port(ns, kind: str, addr: str, port: int) -> subprocess.Popen:
    """A python3 process in `ns` bound to (addr, port) (kind: SOCK_STREAM or SOCK_DGRAM), for a
    minute; returns once it holds the port. `provision serve` must then name it as the holder."""
    listen = "s.listen(); " if kind == "SOCK_STREAM" else ""
    code = (
        f"import socket,time; s=socket.socket(socket.AF_INET, socket.{kind}); s.bind(({addr!r},{port})); "
        f"{listen}print('held',flush=True); time.sleep(60)"
    )
    holder = ns.popen(["python3", "-c", code])
    assert holder.stdout.readline().strip() == b"held"
    return holder


def test_port_in_use_names_the_holder(link, lab):
    # Hold TCP 80 on the server's address from another process in the same namespace.
    holder = hold_port(link.server, "SOCK_STREAM", SERVER_IP, 80)
    sp = link.start(str(lab))
    rc = sp.wait_exit(60)
    assert rc == 3, sp.output
    assert "TCP port 198.18.20.1:80 is in use by python3" in sp.output
    assert f"pid {holder.pid}" in sp.output
    assert "fix:" in sp.output


def test_dhcp_port_in_use_names_the_holder(link, lab):
    holder = hold_port(link.server, "SOCK_DGRAM", "0.0.0.0", 67)
    sp = link.start(str(lab))
    rc = sp.wait_exit(60)
    assert rc == 3, sp.output
    assert "UDP port 67 is in use by python3" in sp.output and "DHCP on sv0" in sp.output, sp.output
    assert f"pid {holder.pid}" in sp.output


def test_missing_interface_and_no_address(lab, tmp_path):
    require_root()
    with namespaces(1, prefix="sv") as (ns,):
        proc = subprocess.run(
            ns.cmd(cli_argv("serve", str(lab))), env=cli_env(), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 3
        assert "interface 'sv0' not found" in proc.stderr and "fix:" in proc.stderr
        tap(ns, "sv0")  # up, but no IPv4 address
        proc = subprocess.run(
            ns.cmd(cli_argv("serve", str(lab))), env=cli_env(), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 3
        assert "'sv0' has no IPv4 address" in proc.stderr
        quick = subprocess.run(
            ns.cmd(cli_argv("serve", "-i", "nope0", "--kernel", str(lab))),
            env=cli_env(),
            capture_output=True,
            text=True,
        )
        assert quick.returncode == 3 and "'nope0' not found" in quick.stderr


def test_missing_boot_file_points_at_lab_line(lab, tmp_path):
    (tmp_path / "files" / "initrd.gz").unlink()
    proc = run_cli("serve", str(lab))
    assert proc.returncode == 2
    assert f"{lab}:12:" in proc.stderr and "initrd.gz" in proc.stderr


def test_quick_mode_serves_any_machine(serve_netns, tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"K" * 1000)
    link = serve_netns(server_if="sv0", client_if="cl0", server_addr=f"{SERVER_IP}/24")
    link.serve(
        "-i", "sv0", "--kernel", str(kernel), "--cmdline", "quiet", "--state-dir", str(tmp_path / "state")
    )
    client = link.client
    got = udhcpc(client, tmp_path, "q", "-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007")
    ip = got["ip"]
    assert ip.startswith("198.18.20.") and 128 <= int(ip.rsplit(".", 1)[1]) <= 254
    assert got["boot_file"] == "ipxe.efi"
    client.run(["ip", "addr", "add", f"{ip}/24", "dev", "cl0"])
    mac = client.run(["cat", "/sys/class/net/cl0/address"]).stdout.strip().replace(":", "-")
    script = client.run(["curl", "-sSf", f"http://{SERVER_IP}/ipxe/{mac}.ipxe"]).stdout
    assert "boot/quick/x86_64/vmlinuz quiet" in script


def test_not_root_is_a_clear_error(lab, tmp_path):
    require_root()
    require_tool("setpriv")
    # pytest's tmp_path is private to root: give nobody a readable copy of the lab.
    shared = Path(tempfile.mkdtemp(prefix="provision-lab-"))
    try:
        shutil.copytree(tmp_path / "files", shared / "files")
        (shared / "lab.yml").write_text(lab.read_text())
        for p in (shared, shared / "files", *shared.rglob("*")):
            p.chmod(0o755)
        proc = _as_nobody(shared / "lab.yml")
    finally:
        shutil.rmtree(shared)
    if "Permission denied" in proc.stderr and "provision" not in proc.stderr:
        pytest.skip("the test tree is not readable by nobody here")
    assert proc.returncode == 3, proc.stderr
    assert "needs root" in proc.stderr


def _as_nobody(lab: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cli_argv("serve", str(lab))],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_examples_lab_yml_serves(serve_netns, tmp_path):
    """examples/lab.yml as shipped (only the state folder moved): server-01 gets its reserved
    address and its iPXE script; the example's interface is a veth named like the example's tap0."""
    from tests.support import vm

    example = Path(__file__).resolve().parents[3] / "examples" / "lab.yml"
    lab = tmp_path / "lab.yml"
    shutil.copy(example, lab)
    made = vm.netboot_files(tmp_path / "netboot")
    if "arm64" not in made:  # the arm64 entry only needs files to exist here, not to boot
        for name in ("Image", "initrd.gz"):
            (tmp_path / "netboot" / "arm64").mkdir(parents=True, exist_ok=True)
            # an arm64 Image header (`ARM\x64` at 0x38) and gzip data: what serve's checks want
            fake = b"\0" * 0x38 + b"ARM\x64" if name == "Image" else b"\x1f\x8b placeholder"
            (tmp_path / "netboot" / "arm64" / name).write_bytes(fake)
    link = serve_netns(server_if="tap0", client_if="cl0", server_addr="198.18.10.1/24",
                       client_mac="52:54:00:10:00:01", prefix="ex")  # fmt: skip
    sp = link.start(str(lab), "--state-dir", str(tmp_path / "state"))
    try:
        sp.wait_ready(120)
    except AssertionError:
        if "GRUB arm64-efi modules not found" in sp.output and not vm.arm64_kernel():
            pytest.skip("arm64 pieces missing (scripts/setup.sh): the example's arm64 entry needs GRUB")
        raise
    client = link.client
    # server-01 installs only when armed (docs/lifecycle.md): armed from the CLI, seen at once
    armed = run_cli("devices", "arm", "server-01", "--lab", str(lab), "--state-dir", str(tmp_path / "state"))
    assert armed.returncode == 0, armed.stderr
    got = udhcpc(client, tmp_path, "ex", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000",
                 "-x", "0x4d:69505845")  # fmt: skip
    assert got["ip"] == "198.18.10.11"
    assert got["boot_file"] == "http://198.18.10.1/ipxe/52-54-00-10-00-01.ipxe"
    client.run(["ip", "addr", "add", "198.18.10.11/24", "dev", "cl0"])
    script = client.run(["curl", "-sSf", got["boot_file"]]).stdout
    # the entry names a console already, so server-01's profile (kvm_x86_64) adds none
    assert "initrd=initrd.gz console=ttyS0 panic=-1" in script
