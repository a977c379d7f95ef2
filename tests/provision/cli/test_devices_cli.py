"""`provision devices ...` as an operator runs it (a separate process) against a real state store
in tmp_path: every subcommand, its errors (exit code, file:line, the fix), and the events each
transition leaves (`by`: cli:<user>)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.devices.importer import CSV_COLUMNS
from provision.store.sqlite import Store
from pxe.policy import Event
from tests.support.cli import run_cli

LAB = """\
interfaces: [eth9]
subnets:
  - network: 198.18.60.0/24
    interface: eth9
    pool: [198.18.60.100-198.18.60.199]
paths:
  state_dir: state
boot:
  entries:
    rescue:
      x86_64:
        kernel: k
devices:
  - name: leaf-01
    serial: LAB-LEAF-01
    mac: 52:54:00:60:00:01
    ip: 198.18.60.11
    profile: kvm_x86_64
    role: switch
  - name: leaf-02
    serial: LAB-LEAF-02
    ip: 198.18.60.12
    install: never
"""

NETBOX_CSV = """\
"Name","Status","Site","Rack","Position","Device type","Platform","Serial number","Asset tag","Primary IPv4","MAC address"
"spine-01","Active","ams1","r07","41","kvm_x86_64","x86_64-kvm_x86_64-r0","SP-01","A-100","198.18.60.21/24","52:54:00:60:01:01"
"spine-02","Planned","ams1","r07","40","","","SP-02","","198.18.60.22/24","52-54-00-60-01-02"
"""


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text(LAB)
    return path


def cli(lab: Path, *args: str, ok: bool = True):
    r = run_cli("devices", *args, "--lab", str(lab))
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def events(lab: Path, kinds: tuple[str, ...]) -> list[Event]:
    with Store(lab.parent / "state" / "provision.db") as store:
        return store.events(kinds=list(kinds))


def listing(lab: Path) -> dict[str, dict]:
    return {d["name"]: d for d in json.loads(cli(lab, "list", "--json").stdout)["devices"]}


def test_list_before_anything_is_written(lab):
    r = cli(lab, "list")
    assert "leaf-01" in r.stdout and "enrolled" in r.stdout and "no state at" in r.stderr
    assert not (lab.parent / "state").exists()  # reading writes nothing
    rows = listing(lab)
    assert rows["leaf-01"]["source"] == "lab" and rows["leaf-01"]["state"] == "enrolled"


def test_arm_disarm_and_the_events_naming_who(lab):
    r = cli(lab, "arm", "leaf-01", "--with", "rescue")
    assert "armed leaf-01 with rescue" in r.stdout and "by cli:" in r.stdout
    row = listing(lab)["leaf-01"]
    assert row["state"] == "armed" and row["arming"]["target"] == "rescue"
    assert row["arming"]["armed_by"].startswith("cli:")
    armed = events(lab, ("device.armed",))
    assert armed[-1].detail["name"] == "leaf-01" and armed[-1].detail["by"].startswith("cli:")
    assert armed[-1].mac == "52:54:00:60:00:01"
    r = cli(lab, "disarm", "leaf-01", "--reason", "wrong rack")
    assert "disarmed leaf-01" in r.stdout
    assert listing(lab)["leaf-01"]["state"] == "disarmed"
    gone = events(lab, ("device.disarmed",))[-1]
    assert gone.detail["reason"] == "wrong rack" and gone.detail["by"].startswith("cli:")
    # disarming what is not armed says so and changes nothing
    again = cli(lab, "disarm", "leaf-01")
    assert "not armed" in again.stderr and len(events(lab, ("device.disarmed",))) == 1


def test_arm_errors(lab):
    r = cli(lab, "arm", "leaf-9", ok=False)
    assert r.returncode == 2 and "leaf-9" in r.stderr and "fix:" in r.stderr and "enroll" in r.stderr
    r = cli(lab, "arm", ok=False)
    assert r.returncode == 2 and "--all" in r.stderr
    r = cli(lab, "arm", "leaf-02", ok=False)  # install: never
    assert r.returncode == 2 and "install: never" in r.stderr
    r = cli(lab, "arm", "leaf-01", "--with", "nosuch", ok=False)
    assert r.returncode == 2 and "no boot entry 'nosuch'" in r.stderr and "rescue" in r.stderr
    r = cli(lab, "arm", "spine-*", ok=False)
    assert r.returncode == 2 and "no device matches" in r.stderr
    assert listing(lab)["leaf-01"]["state"] == "enrolled"  # nothing armed by a failed command


def test_arm_by_glob_and_all_skips_install_never(lab):
    r = cli(lab, "arm", "leaf-*")
    assert "armed leaf-01" in r.stdout and "skipped: leaf-02 has install: never" in r.stderr
    cli(lab, "enroll", "spine-01", "--mac", "52:54:00:60:01:01")
    cli(lab, "arm", "--all")
    rows = listing(lab)
    assert rows["spine-01"]["state"] == "armed" and rows["leaf-02"]["state"] == "enrolled"
    r = cli(lab, "disarm", "--all")
    assert r.stdout.count("disarmed") == 2


def test_enroll_show_forget(lab):
    r = cli(lab, "enroll", "spine-01", "--mac", "52:54:00:60:01:01", "--serial", "SP-01",
            "--platform", "x86_64-kvm_x86_64-r0", "--profile", "kvm_x86_64", "--ip", "198.18.60.21")  # fmt: skip
    assert "enrolled spine-01" in r.stdout
    row = listing(lab)["spine-01"]
    assert row["source"] == "store" and row["serial"] == "SP-01" and row["ip"] == "198.18.60.21"
    shown = json.loads(cli(lab, "show", "spine-01", "--json").stdout)
    assert shown["device"]["mac"] == "52:54:00:60:01:01" and shown["status"]["state"] == "enrolled"
    assert any(e["kind"] == "device.enrolled" for e in shown["events"])
    human = cli(lab, "show", "spine-01").stdout
    assert "serial:" in human and "SP-01" in human and "device.enrolled" in human
    r = cli(lab, "forget", "spine-01")
    assert "forgot spine-01" in r.stdout and "spine-01" not in listing(lab)
    assert events(lab, ("device.forgotten",))[-1].detail["name"] == "spine-01"


def test_enroll_and_forget_errors(lab):
    r = cli(lab, "enroll", "leaf-01", "--mac", "52:54:00:60:09:09", ok=False)
    assert r.returncode == 2 and "lab.yml enrolls it" in r.stderr
    r = cli(lab, "enroll", "x", "--mac", "zz", "--ip", "1.2.3", "--platform", "foo", ok=False)
    assert r.returncode == 2
    assert "--mac: 'zz' is not a MAC" in r.stderr and "--ip: '1.2.3'" in r.stderr and "--platform" in r.stderr
    r = cli(lab, "enroll", "dup", "--mac", "52:54:00:60:00:01", ok=False)  # leaf-01's MAC
    assert r.returncode == 2 and "belongs to 'leaf-01'" in r.stderr
    r = cli(lab, "enroll", "dup", "--serial", "lab-leaf-01", ok=False)  # serials compare caseless
    assert r.returncode == 2 and "belongs to 'leaf-01'" in r.stderr
    r = cli(lab, "enroll", "x", "--boot", "nope", ok=False)
    assert r.returncode == 2 and "no boot entry 'nope'" in r.stderr
    r = cli(lab, "forget", "leaf-01", ok=False)
    assert r.returncode == 2 and "remove its entry from lab.yml" in r.stderr
    r = cli(lab, "forget", "ghost", ok=False)
    assert r.returncode == 2 and "no enrolled device 'ghost'" in r.stderr
    r = cli(lab, "show", "ghost", ok=False)
    assert r.returncode == 2 and "ghost" in r.stderr


def test_enroll_from_seen_takes_what_onie_reported(lab):
    mac = "52:54:00:60:05:05"
    (lab.parent / "state").mkdir()
    with Store(lab.parent / "state" / "provision.db") as store:
        store.upsert_device(mac, serial="SEEN-5", platform="x86_64-kvm_x86_64-r0", identity={})
        # pxe records option 82.1 as hex; the ONIE policy reads it as text
        store.add_event(Event("dhcp.discover", mac=mac, detail={"circuit_id": b"Ethernet12\0".hex()}))
        store.add_event(Event("onie.discovered", mac=mac, detail={"serial": "SEEN-5"}))
    r = cli(lab, "enroll", "spine-05", "--from-seen", mac.upper(), "--ip", "198.18.60.25")
    assert "serial=SEEN-5" in r.stdout and "switch_port=Ethernet12" in r.stdout
    dev = json.loads(cli(lab, "show", "spine-05", "--json").stdout)["device"]
    assert dev == {
        "name": "spine-05",
        "mac": mac,
        "serial": "SEEN-5",
        "ip": "198.18.60.25",
        "platform": "x86_64-kvm_x86_64-r0",
        "switch_port": "Ethernet12",
        "source": "store",
    }
    r = cli(lab, "enroll", "spine-06", "--from-seen", "52:54:00:99:99:99", ok=False)
    assert r.returncode == 2 and "no device with MAC" in r.stderr and "provision status" in r.stderr


def test_import_netbox_csv_then_export_round_trips(lab, tmp_path):
    src = tmp_path / "netbox.csv"
    src.write_text(NETBOX_CSV)
    dry = cli(lab, "import", str(src), "--dry-run")
    assert "would enroll spine-01" in dry.stdout and "2 new" in dry.stdout
    assert "Status" in dry.stderr  # columns it does not use are named once
    assert "spine-01" not in listing(lab)
    cli(lab, "import", str(src))
    rows = listing(lab)
    one = rows["spine-01"]
    assert (one["ip"], one["mac"], one["serial"], one["asset_tag"]) == (
        "198.18.60.21",
        "52:54:00:60:01:01",
        "SP-01",
        "A-100",
    )
    assert (one["profile"], one["platform"], one["site"], one["rack"], one["position"]) == (
        "kvm_x86_64",
        "x86_64-kvm_x86_64-r0",
        "ams1",
        "r07",
        "41",
    )
    assert rows["spine-02"]["mac"] == "52:54:00:60:01:02"
    assert "unchanged" in cli(lab, "import", str(src)).stdout.split(":")[-1]
    before = {n: r for n, r in rows.items() if r["source"] == "store"}
    for fmt in ("--csv", None):
        out = tmp_path / ("export.csv" if fmt else "export.yml")
        cli(lab, "export", *([fmt] if fmt else []), "-o", str(out))
        if fmt:
            assert out.read_text().splitlines()[0].startswith("Name,Serial number,Asset tag,Device type")
        # a fresh state: import what was exported, get the same devices
        other = tmp_path / f"other-{out.suffix[1:]}"
        other.mkdir()
        lab2 = other / "lab.yml"
        lab2.write_text(LAB)
        cli(lab2, "import", str(out))
        after = {n: r for n, r in listing(lab2).items() if r["source"] == "store"}
        strip = {"since", "arming", "state"}
        assert {n: {k: v for k, v in r.items() if k not in strip} for n, r in after.items()} == {
            n: {k: v for k, v in r.items() if k not in strip} for n, r in before.items()
        }


def test_import_reports_every_bad_row_and_imports_nothing(lab, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "Name,Serial number,Primary IPv4,MAC address,Platform\n"
        "ok-1,S1,198.18.60.31/24,52:54:00:60:02:01,\n"
        "bad-ip,S2,198.18.60.300/24,52:54:00:60:02:02,\n"
        "bad-mac,S3,,52:54:00:60:02:0z,\n"
        "leaf-01,S4,,,\n"
        "dup,S1,,,\n"
        ",S5,,,\n"
        "bad-plat,S6,,,kvm\n"
    )
    r = cli(lab, "import", str(bad), ok=False)
    assert r.returncode == 2 and "nothing imported" in r.stderr
    for where in (
        "bad.csv:3:3:",
        "bad.csv:4:4:",
        "bad.csv:5:1:",
        "bad.csv:6:1:",
        "bad.csv:7:1:",
        "bad.csv:8:5:",
    ):
        assert where in r.stderr, (where, r.stderr)
    assert "lab.yml enrolls it" in r.stderr and "serial s1 is also on 'ok-1'" in r.stderr
    assert "missing required key 'name'" in r.stderr and "not an ONIE platform" in r.stderr
    assert r.stderr.count("fix:") >= 7
    assert "ok-1" not in listing(lab)
    yml = tmp_path / "bad.yml"
    yml.write_text("devices:\n  - name: a\n    mac: nope\n  - name: b\n    colour: red\n")
    r = cli(lab, "import", str(yml), ok=False)
    assert (
        r.returncode == 2 and "bad.yml:3:" in r.stderr and "bad.yml:5:" in r.stderr and "colour" in r.stderr
    )
    r = cli(lab, "import", str(tmp_path / "none.csv"), ok=False)
    assert r.returncode == 2


def test_import_yaml_like_lab_yml(lab, tmp_path):
    src = tmp_path / "more.yml"
    src.write_text(
        "devices:\n  - name: srv-1\n    mac: 52:54:00:60:03:01\n    boot: rescue\n    role: server\n"
    )
    cli(lab, "import", str(src))
    assert listing(lab)["srv-1"]["boot"] == "rescue"


def test_state_dir_without_lab(tmp_path):
    state = tmp_path / "st"
    r = run_cli("devices", "enroll", "box-1", "--mac", "52:54:00:60:04:01", "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    assert (state / "provision.db").is_file()
    r = run_cli("devices", "list", "--state-dir", str(state), "--json")
    assert [d["name"] for d in json.loads(r.stdout)["devices"]] == ["box-1"]


def test_csv_columns_are_documented():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "lifecycle.md").read_text()
    for col in CSV_COLUMNS:
        assert f"`{col.header}`" in doc, col.header
