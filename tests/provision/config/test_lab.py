"""lab.yml: the example loads, and every mistake names file:line with a fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provision.config import ConfigError
from provision.config.lab import Arch, Mode, Unknown, X64Loader, device_entry, load_lab

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "lab.yml"

MINIMAL = """\
interfaces: [eth1]
subnets:
  - network: 198.18.10.0/24
    pool: [198.18.10.100-198.18.10.110]
boot:
  default: live
  entries:
    live:
      x86_64: {kernel: vmlinuz, initrd: initrd.gz, cmdline: console=ttyS0}
devices:
  - {name: a, mac: "52:54:00:00:00:01"}
  - {name: b, mac: "52:54:00:00:00:02", boot: other}
"""


def _write(tmp_path: Path, text: str, files: bool = True) -> Path:
    if files:
        (tmp_path / "vmlinuz").write_bytes(b"k")
        (tmp_path / "initrd.gz").write_bytes(b"i")
    p = tmp_path / "lab.yml"
    p.write_text(text)
    return p


def test_example_loads_typed():
    cfg = load_lab(EXAMPLE, check_files=False)
    assert cfg.interfaces == ("tap0",)
    assert cfg.mode is Mode.AUTHORITATIVE
    assert str(cfg.subnets[0].network) == "198.18.10.0/24"
    assert str(cfg.subnets[0].pools[0].first) == "198.18.10.100"
    assert cfg.boot.unknown is Unknown.DISCOVER
    assert cfg.boot.uefi_x64_loader is X64Loader.IPXE
    entry = cfg.boot.entries["debian-live"]
    assert entry.for_arch(Arch.X86_64).kernel == EXAMPLE.parent / "netboot/x86_64/vmlinuz"
    assert entry.for_arch(Arch.ARM64).cmdline.startswith("console=ttyAMA0")
    assert cfg.inventory.by_mac("52:54:00:10:00:01").name == "server-01"
    assert cfg.paths.db_path == Path("/var/lib/provision/provision.db")


def test_example_missing_boot_file_names_line():
    with pytest.raises(ConfigError) as exc:
        load_lab(EXAMPLE)
    assert "file not found" in exc.value.message
    assert exc.value.mark is not None and exc.value.mark.line > 1
    assert str(exc.value.mark.file).endswith("lab.yml")


def test_unknown_boot_entry_reference(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_lab(_write(tmp_path, MINIMAL))
    assert "no boot entry 'other'" in exc.value.message
    assert exc.value.mark.line == 12


def test_device_entry_choice(tmp_path):
    cfg = load_lab(_write(tmp_path, MINIMAL.replace("boot: other", "boot: live")))
    assert device_entry(cfg, cfg.inventory.by_mac("52:54:00:00:00:01")).name == "live"
    assert device_entry(cfg, None) is None  # unknown: ignore is the default


def test_typo_key_did_you_mean(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_lab(_write(tmp_path, MINIMAL.replace("interfaces:", "interfacs:")))
    assert "interfacs" in exc.value.message and "interfaces" in (exc.value.fix or "")
    assert exc.value.mark.line == 1


def test_pool_outside_network(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_lab(_write(tmp_path, MINIMAL.replace("198.18.10.110", "198.18.11.5")))
    assert "inside 198.18.10.0/24" in exc.value.message
    assert exc.value.mark.line == 4


def test_missing_kernel_file_points_at_its_line(tmp_path):
    p = _write(tmp_path, MINIMAL.replace("boot: other", "boot: live"))
    (tmp_path / "initrd.gz").unlink()
    with pytest.raises(ConfigError) as exc:
        load_lab(p)
    assert "initrd.gz" in exc.value.message
    assert exc.value.mark.line == 9


def test_authoritative_needs_subnet(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_lab(_write(tmp_path, "interfaces: [eth1]\n"))
    assert "authoritative mode needs" in exc.value.message
    cfg = load_lab(_write(tmp_path, "interfaces: [eth1]\nmode: proxy\n"))
    assert cfg.mode is Mode.PROXY


def test_discover_needs_entry(tmp_path):
    text = MINIMAL.replace("boot: other", "boot: live").replace("  default: live\n", "  unknown: discover\n")
    with pytest.raises(ConfigError) as exc:
        load_lab(_write(tmp_path, text))
    assert "discover" in exc.value.message


def test_onie_section_is_accepted(tmp_path):
    text = MINIMAL.replace("boot: other", "boot: live") + "onie:\n  installers: /srv/onie\n"
    cfg = load_lab(_write(tmp_path, text))
    assert cfg.onie is not None and cfg.onie.installers == Path("/srv/onie")  # provision.config.onie


def test_onie_section_errors_name_the_line(tmp_path):
    text = MINIMAL.replace("boot: other", "boot: live") + "onie:\n  instalers: /srv/onie\n"
    with pytest.raises(ConfigError) as exc:
        load_lab(_write(tmp_path, text))
    assert exc.value.mark.line == 14 and "installers" in (exc.value.fix or "")


def test_subnet_interface_must_be_served(tmp_path):
    text = MINIMAL.replace("    pool:", "    interface: eth9\n    pool:")
    with pytest.raises(ConfigError) as exc:
        load_lab(_write(tmp_path, text))
    assert "eth9" in exc.value.message


def test_example_is_a_copyable_template(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "lab.yml")
    for rel in ("x86_64/vmlinuz", "x86_64/initrd.gz", "arm64/Image", "arm64/initrd.gz"):
        f = tmp_path / "netboot" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    cfg = load_lab(tmp_path / "lab.yml")
    assert cfg.boot.entries["debian-live"].for_arch(Arch.ARM64).kernel.is_file()
