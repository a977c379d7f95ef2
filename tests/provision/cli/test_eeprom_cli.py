"""`provision eeprom encode|decode` through the real CLI, and the YAML spec layer."""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from onie.eeprom import TlvCode, decode
from provision.config import ConfigError
from provision.config.eeprom_spec import load_eeprom_spec
from tests.support.cli import REPO, cli_argv, cli_env, run_cli

EXAMPLE = REPO / "examples" / "eeprom" / "kvm-leaf.yml"


def test_example_spec_encodes_in_file_order_with_platform_from_profile():
    info = load_eeprom_spec(EXAMPLE)
    names = [t.name for t in info.tlvs]
    assert names.index("platform_name") == names.index("device_version") + 1  # where `profile:` stands
    assert info.platform_name == "x86_64-kvm_x86_64-r0"
    assert info.base_mac == "52:54:00:c6:12:01" and info.mac_count == 3
    assert info.value(TlvCode.ONIE_VERSION) == "2023.05"  # YAML float-looking text stays text


def test_encode_then_decode(tmp_path):
    out = tmp_path / "leaf.eeprom"
    res = run_cli("eeprom", "encode", str(EXAMPLE), "-o", str(out), "--pad", "256")
    assert res.returncode == 0, res.stderr
    raw = out.read_bytes()
    assert len(raw) == 256 and raw.endswith(b"\xff" * 8)
    total = struct.unpack(">H", raw[9:11])[0]
    assert struct.unpack(">I", raw[11 + total - 4 : 11 + total])[0] == zlib.crc32(raw[: 11 + total - 4])
    assert f"CRC-32 0x{zlib.crc32(raw[: 11 + total - 4]):08X}" in res.stdout

    res = run_cli("eeprom", "decode", str(out))
    assert res.returncode == 0, res.stderr
    for needle in ("Base MAC Address", "52:54:00:c6:12:01", "x86_64-kvm_x86_64-r0", "ok"):
        assert needle in res.stdout

    res = run_cli("eeprom", "decode", str(out), "--json")
    data = json.loads(res.stdout)
    assert data["crc_valid"] is True and data["total_length"] == total
    by_name = {t["name"]: t for t in data["tlvs"]}
    assert by_name["mac_count"] == {
        "code": 0x2A,
        "name": "mac_count",
        "title": "MAC Addresses",
        "length": 2,
        "value": 3,
    }
    assert by_name["vendor_extension"]["value"]["iana"] == 42623


def test_decode_reads_stdin_and_encode_writes_stdout():
    enc = subprocess.run(
        cli_argv("eeprom", "encode", str(EXAMPLE), "-o", "-"), env=cli_env(), capture_output=True, timeout=120
    )
    assert enc.returncode == 0, enc.stderr
    assert decode(enc.stdout).serial_number == "LAB-LEAF-01"
    dec = subprocess.run(
        cli_argv("eeprom", "decode", "-", "--json"),
        input=enc.stdout,
        env=cli_env(),
        capture_output=True,
        timeout=120,
    )
    assert dec.returncode == 0 and json.loads(dec.stdout)["source"] == "<stdin>"


def test_bad_crc_exits_1_and_still_shows_the_records(tmp_path):
    raw = bytearray(load_eeprom_spec(EXAMPLE).encode())
    raw[14] ^= 0x01  # inside the product name
    path = tmp_path / "bad.eeprom"
    path.write_bytes(bytes(raw))
    res = run_cli("eeprom", "decode", str(path))
    assert res.returncode == 1
    assert "CRC-32 mismatch" in res.stderr and "Serial Number" in res.stdout
    res = run_cli("eeprom", "decode", str(path), "--json")
    assert res.returncode == 1 and json.loads(res.stdout)["crc_valid"] is False


def test_corrupt_length_exits_1_with_offset(tmp_path):
    raw = bytearray(load_eeprom_spec(EXAMPLE).encode())
    raw[12] = 0xF0  # product name claims 240 bytes
    path = tmp_path / "bad.eeprom"
    path.write_bytes(bytes(raw))
    res = run_cli("eeprom", "decode", str(path))
    assert res.returncode == 1
    assert "runs past the end" in res.stderr and "offset 11" in res.stderr


def test_missing_file_exits_2(tmp_path):
    res = run_cli("eeprom", "decode", str(tmp_path / "nope.bin"))
    assert res.returncode == 2


def test_bad_yaml_gives_file_line_and_writes_nothing(tmp_path):
    spec = tmp_path / "leaf.yml"
    spec.write_text("product_name: leaf\nbase_mac: 52:54:00:12:34\nmac_count: 2\n")
    out = tmp_path / "leaf.eeprom"
    res = run_cli("eeprom", "encode", str(spec), "-o", str(out))
    assert res.returncode == 2
    assert f"{spec}:2:11: '52:54:00:12:34' is not a MAC address" in res.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("product_name: x\nserial_numbr: 1\n", 2, "did you mean 'serial_number'"),
        ("manufacture_date: 2026-11-28\n", 1, "MM/DD/YYYY hh:mm:ss"),
        ("mac_count: 70000\n", 1, "out of range"),
        ("country_code: usa\n", 1, "2-letter"),
        ("base_mac: 01:00:5e:00:00:01\n", 1, "multicast"),
        ("vendor_extensions:\n  - iana: 1\n", 2, "exactly one of hex: or text:"),
        ("vendor_extensions:\n  - {iana: 1, hex: '012'}\n", 2, "odd number of hex digits"),
        ("profile: kvm_x86\n", 1, "did you mean kvm_x86_64"),
        ("profile: kvm_x86_64\nplatform_name: x86_64-other-r0\n", 2, "differs from profile"),
        ("profile: generic-x86_64-uefi\n", 1, "has no onie_platform"),
        ("product_name: " + "x" * 256 + "\n", 1, "at most 255"),
    ],
)
def test_spec_errors_name_the_line(tmp_path, text, line, needle):
    spec = tmp_path / "s.yml"
    spec.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_eeprom_spec(spec)
    assert needle in str(exc.value)
    assert exc.value.mark and exc.value.mark.line == line and Path(exc.value.mark.file) == spec


def test_spec_too_big_for_the_eeprom(tmp_path):
    ext = "".join(f"  - {{iana: 1, hex: '{'00' * 250}'}}\n" for _ in range(9))
    spec = tmp_path / "s.yml"
    spec.write_text("vendor_extensions:\n" + ext)
    with pytest.raises(ConfigError, match="at most 2048"):
        load_eeprom_spec(spec)


def test_set_overrides_per_device_values_in_place(tmp_path):
    out = tmp_path / "leaf2.eeprom"
    res = run_cli(
        "eeprom",
        "encode",
        str(EXAMPLE),
        "-o",
        str(out),
        "--set",
        "serial_number=LAB-LEAF-02",
        "--set",
        "base_mac=52:54:00:c6:12:02",
        "--set",
        "service_tag=T2",
    )
    assert res.returncode == 0, res.stderr
    info = decode(out.read_bytes())
    assert (info.serial_number, info.base_mac) == ("LAB-LEAF-02", "52:54:00:c6:12:02")
    names = [t.name for t in info.tlvs]
    assert names.index("serial_number") == 2 and names[-1] == "service_tag"


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("mac_count=70000", "--set 'mac_count=70000': 70000 is out of range"),
        ("serial=1", "did you mean serial_number"),
        ("base_mac=01:00:5e:00:00:01", "--set:1:1: base_mac 01:00:5e:00:00:01 is all-zero or multicast"),
    ],
)
def test_bad_set_is_an_input_error(tmp_path, item, needle):
    res = run_cli("eeprom", "encode", str(EXAMPLE), "-o", str(tmp_path / "x"), "--set", item)
    assert res.returncode == 2 and needle in res.stderr
    assert not (tmp_path / "x").exists()
