"""`provision profiles ...` run as a user runs it: a separate process from the source tree."""

from __future__ import annotations

import json

from provision.resources import profiles_dir
from tests.support.cli import run_cli

SHIPPED = len(list(profiles_dir().glob("*.yml")))  # the count changes as profiles are added

GOOD = (
    "id: {id}\nkind: switch\nvendor: V\nmachine: v_m\n"
    "onie_platform: x86_64-v_m-r0\narch: x86_64\nfirmware: uefi\nswitch_asic: bcm\n"
    "console: {{device: ttyS0}}\n"
)


def test_list_shows_table_with_platforms():
    res = run_cli("profiles", "list")
    assert res.returncode == 0, res.stderr
    for needle in (
        "x86_64-accton_as7712_32x-r0",
        "arm64-supermicro_sse_g3748-r0",
        "qemu-arm64-uefi",
        "ttyS1 115200",
    ):
        assert needle in res.stdout


def test_list_json_is_machine_readable():
    res = run_cli("profiles", "list", "--json")
    assert res.returncode == 0, res.stderr
    data = {p["id"]: p for p in json.loads(res.stdout)}
    assert data["mlnx_msn2700"]["onie_platform"] == "x86_64-mlnx_msn2700-r0"
    assert data["generic-arm64-uefi"]["console"]["device"] == "ttyAMA0"


def test_show_and_show_json():
    res = run_cli("profiles", "show", "dell_z9100_c2538")
    assert res.returncode == 0, res.stderr
    assert "i2c-ismt.bus_speed=100" in res.stdout and "Dell (IANA 674)" in res.stdout
    res = run_cli("profiles", "show", "accton_as7712_32x", "--json")
    data = json.loads(res.stdout)
    assert data["console"] == {"device": "ttyS1", "speed": 115200}
    assert data["kernel_args"][-1] == "console=ttyS1,115200n8"


def test_show_unknown_id_exits_2_with_suggestion():
    res = run_cli("profiles", "show", "accton_as7712")
    assert res.returncode == 2
    assert "did you mean accton_as7712_32x" in res.stderr


def test_validate_shipped_profiles():
    res = run_cli("profiles", "validate")
    assert res.returncode == 0, res.stderr
    assert f"{SHIPPED} of {SHIPPED} profile(s) valid" in res.stdout


def test_validate_reports_every_bad_file_with_line_numbers(tmp_path):
    (tmp_path / "ok.yml").write_text(GOOD.format(id="ok"))
    (tmp_path / "typo.yml").write_text(GOOD.format(id="typo").replace("firmware: uefi", "firmwre: uefi"))
    (tmp_path / "plat.yml").write_text(GOOD.format(id="plat").replace("-v_m-r0", "-v_m-r1"))
    res = run_cli("profiles", "validate", str(tmp_path))
    assert res.returncode == 2
    assert f"{tmp_path / 'typo.yml'}:7:1: unknown key 'firmwre'" in res.stderr
    assert "did you mean 'firmware'" in res.stderr
    assert f"{tmp_path / 'plat.yml'}:5:16:" in res.stderr
    assert "1 of 3 profile(s) valid" in res.stderr
    res = run_cli("profiles", "validate", "--json", str(tmp_path / "typo.yml"), str(tmp_path / "ok.yml"))
    data = json.loads(res.stdout)
    assert res.returncode == 2 and data["valid"] == 1 and data["invalid"] == 1
    assert (data["errors"][0]["line"], data["errors"][0]["column"]) == (7, 1)


def test_user_profiles_dir_by_option_and_env(tmp_path):
    (tmp_path / "lab-leaf.yml").write_text(GOOD.format(id="lab-leaf"))
    res = run_cli("profiles", "show", "lab-leaf", "--json", "--profiles-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["source"] == str(tmp_path / "lab-leaf.yml")
    res = run_cli("profiles", "list", env={"PROVISION_PROFILES_DIR": str(tmp_path)})
    assert "lab-leaf" in res.stdout and f"{SHIPPED + 1} hardware profiles" in res.stdout


def test_bad_user_profile_breaks_list_with_file_line(tmp_path):
    (tmp_path / "bad.yml").write_text(GOOD.format(id="bad").replace("arch: x86_64", "arch: [x86_64"))
    res = run_cli("profiles", "list", "--profiles-dir", str(tmp_path))
    assert res.returncode == 2
    assert f"{tmp_path / 'bad.yml'}:" in res.stderr and "YAML syntax error" in res.stderr
