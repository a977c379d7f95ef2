"""Installer images: reproducible bytes, a header busybox runs, verification, inspect, reporting."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import urllib.parse
from pathlib import Path

import pytest

from onie.installer import UPDATER_COOKIE, InstallerFormat, build, inspect, report
from provision.config.switchspec import load_switch_spec
from tests.support.cli import run_cli
from tests.support.disk import fake_onie_root
from tests.support.installer import KVM, acme_profile_folder, report_recorder, tamper, templates, write_spec
from tests.support.tools import require_tool

MARKER = b"\n__PROVISION_PAYLOAD_BELOW__\n"


def busybox() -> str:
    return require_tool("busybox")


def built(tmp_path: Path, name: str = "a", epoch: int | None = 1_700_000_000) -> Path:
    spec = load_switch_spec(write_spec(tmp_path / "spec")).spec
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    return build(spec, KVM, out / KVM.installer_name, templates(), source_date_epoch=epoch).path


def header_of(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: data.index(MARKER) + len(MARKER)]


def run_sh(path: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [busybox(), "sh", str(path), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def test_two_builds_are_byte_identical_and_honour_source_date_epoch(tmp_path: Path) -> None:
    a = built(tmp_path, "a")
    b = built(tmp_path, "b")
    assert a.read_bytes() == b.read_bytes()
    c = built(tmp_path, "c", epoch=1_600_000_000)
    assert c.read_bytes() != a.read_bytes()
    info = inspect(a)
    with open(a, "rb") as f:
        f.seek(info.payload_offset)
        with tarfile.open(fileobj=f, mode="r:") as tar:
            members = tar.getmembers()
    assert {m.mtime for m in members} == {1_700_000_000}
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "root", "root")}
    dirs = [m.name for m in members if m.isdir()]
    files = [m.name for m in members if m.isfile()]
    # One fixed order: every folder (sorted), then every file (sorted).
    assert [m.name for m in members] == sorted(dirs) + sorted(files)
    assert "nos/kernel" in files and "installer/install.sh" in files


def test_header_never_carries_the_updater_cookie(tmp_path: Path) -> None:
    path = built(tmp_path)
    head = b"\n".join(path.read_bytes().split(b"\n")[:100])
    assert UPDATER_COOKIE.encode() not in head
    assert path.read_bytes().startswith(b"#!/bin/sh\n")
    assert os.access(path, os.X_OK)


def test_busybox_parses_header_install_script_and_hooks(tmp_path: Path) -> None:
    path = built(tmp_path)
    header = tmp_path / "header.sh"
    header.write_bytes(header_of(path))
    assert subprocess.run([busybox(), "sh", "-n", str(header)], capture_output=True).returncode == 0
    out = tmp_path / "x"
    assert run_sh(path, "--extract", str(out)).returncode == 0
    for script in [out / "installer" / "install.sh", *(out / "installer" / "hooks").glob("*.sh")]:
        result = subprocess.run([busybox(), "sh", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, (script, result.stderr)


def test_extract_mode_runs_under_busybox_and_unpacks_the_payload(tmp_path: Path) -> None:
    path = built(tmp_path)
    out = tmp_path / "x"
    result = run_sh(path, "--extract", str(out))
    assert result.returncode == 0, result.stderr
    assert "payload verified" in result.stdout
    src = tmp_path / "spec" / "nos"
    assert (out / "nos" / "kernel").read_bytes() == (src / "vmlinuz").read_bytes()
    assert (out / "nos" / "initrd").read_bytes() == (src / "initrd.img").read_bytes()
    assert (out / "nos" / "rootfs.squashfs").read_bytes() == (src / "rootfs.squashfs").read_bytes()
    assert (out / "nos" / "files" / "etc" / "extra.conf").read_text() == "extra=1\n"
    grub = (out / "installer" / "grub-uefi.cfg").read_text()
    assert "chainloader /EFI/onie/@ONIE_LOADER@" in grub and "load_env" in grub
    assert "serial --unit=0 --speed=115200" in grub and "terminal_output serial" in grub
    assert "module_blacklist=pcspkr,floppy" in grub and "modprobe.blacklist" not in grub
    assert "chainloader +1" in (out / "installer" / "grub-bios.cfg").read_text()


def test_tampered_image_is_refused_by_header_and_inspect(tmp_path: Path) -> None:
    path = built(tmp_path)
    tamper(path)
    out = tmp_path / "x"
    result = run_sh(path, "--extract", str(out))
    assert result.returncode == 1
    assert "SHA-256 mismatch" in result.stderr and not out.exists()
    cli = run_cli("inspect", str(path))
    assert cli.returncode == 1 and "MISMATCH" in cli.stdout
    assert not inspect(path).checksum_ok


def test_truncated_image_is_refused_before_hashing(tmp_path: Path) -> None:
    path = built(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-4096])
    result = run_sh(path, "--verify")
    assert result.returncode == 1 and "truncated" in result.stderr


def test_wrong_platform_is_refused_unless_forced(tmp_path: Path) -> None:
    path = built(tmp_path)
    root = fake_onie_root(tmp_path, "x86_64-acme_s9-r0", "uefi")
    env = {"PROVISION_ONIE_ROOT": str(root), "PROVISION_TARGET_DISK": "/dev/provision-no-such-disk"}
    result = run_sh(path, env=env)
    assert result.returncode == 1
    assert "this installer is for x86_64-kvm_x86_64-r0 but this machine is x86_64-acme_s9-r0" in result.stderr
    assert "[1/6]" not in result.stdout  # install.sh never started
    forced = run_sh(path, env={**env, "PROVISION_FORCE": "1"})
    # Forced past the platform check, it starts and then finds no ONIE disk (the test disk name
    # matches nothing): a clean failure, exit 1.
    assert "continuing (forced)" in forced.stdout and "[1/6]" in forced.stdout
    assert forced.returncode == 1 and "no partition labelled ONIE-BOOT" in forced.stderr


@pytest.fixture
def report_server():
    with report_recorder() as server:
        yield server


def test_reports_reach_the_server_onie_downloaded_from(tmp_path: Path, report_server) -> None:
    port, seen = report_server
    path = built(tmp_path)
    root = fake_onie_root(tmp_path, "x86_64-kvm_x86_64-r0", "uefi", serial="SN 42/x", mac="52:54:00:aa:bb:cc")
    (root / "bin" / "wget").symlink_to(busybox())  # ONIE's wget is busybox's
    env = {
        "PROVISION_ONIE_ROOT": str(root),
        "PROVISION_TARGET_DISK": "/dev/provision-no-such-disk",
        "onie_exec_url": f"http://127.0.0.1:{port}/images/onie-installer.bin",
    }
    result = run_sh(path, env=env)
    assert result.returncode == 1
    stages = [(r["stage"], r["status"]) for r in seen]
    assert stages == [
        ("started", "progress"),
        ("verified", "progress"),
        ("started", "failed"),
    ], seen
    last = seen[-1]
    assert last["nos"] == "tnos" and last["version"] == "2.1.0"
    assert last["platform"] == "x86_64-kvm_x86_64-r0"
    assert last["serial"] == "SN 42/x" and last["mac"] == "52:54:00:aa:bb:cc"
    assert "no partition labelled ONIE-BOOT" in last["message"]


def test_token_in_the_installer_url_goes_back_with_every_report(tmp_path: Path, report_server) -> None:
    """A per-install `token=` in the URL ONIE fetched from rides on every report, from the header
    and from install.sh; the simulator's URL builder (onie.installer.report) says the same."""
    port, seen = report_server
    path = built(tmp_path)
    root = fake_onie_root(tmp_path, "x86_64-kvm_x86_64-r0", "uefi", serial="SN-7", mac="52:54:00:aa:bb:07")
    (root / "bin" / "wget").symlink_to(busybox())
    url = f"http://127.0.0.1:{port}/onie-installer.bin?x=1&token=ab%2Bc+d&token=second#frag"
    env = {
        "PROVISION_ONIE_ROOT": str(root),
        "PROVISION_TARGET_DISK": "/dev/provision-no-such-disk",
        "onie_exec_url": url,
    }
    assert run_sh(path, env=env).returncode == 1
    assert [(r["stage"], r["status"]) for r in seen] == [
        ("started", "progress"),
        ("verified", "progress"),
        ("started", "failed"),  # from install.sh, which gets the token from the header
    ], seen
    assert report.token_of(url) == "ab+c d"  # as a server reads that query
    assert all(r["token"] == "ab+c d" for r in seen), seen
    last = seen[-1]
    same = report.report_url(
        report.report_base(url) or "",
        "started",
        "failed",
        nos="tnos",
        version="2.1.0",
        platform="x86_64-kvm_x86_64-r0",
        serial="SN-7",
        mac="52:54:00:aa:bb:07",
        message=last["message"],
        token=report.token_of(url),
    )
    query = urllib.parse.urlsplit(same).query
    assert {k: v[0] for k, v in urllib.parse.parse_qs(query).items()} == last
    assert same.startswith(f"http://127.0.0.1:{port}/api/v1/report?stage=started&status=failed&")
    # PROVISION_TOKEN wins over the URL's; no token at all sends none
    seen.clear()
    assert run_sh(path, env={**env, "PROVISION_TOKEN": "t 1/2"}).returncode == 1
    assert seen and all(r["token"] == "t 1/2" for r in seen), seen
    seen.clear()
    assert run_sh(path, env={**env, "onie_exec_url": f"http://127.0.0.1:{port}/x.bin"}).returncode == 1
    assert seen and all("token" not in r for r in seen), seen


def test_bad_checksum_reports_verified_failed(tmp_path: Path, report_server) -> None:
    port, seen = report_server
    path = built(tmp_path)
    tamper(path)
    root = fake_onie_root(tmp_path, "x86_64-kvm_x86_64-r0", "bios")
    (root / "bin" / "wget").symlink_to(busybox())
    env = {"PROVISION_ONIE_ROOT": str(root), "onie_exec_url": f"http://127.0.0.1:{port}/x.bin"}
    assert run_sh(path, env=env).returncode == 1
    assert [(r["stage"], r["status"]) for r in seen] == [("started", "progress"), ("verified", "failed")]


def test_unreachable_report_server_does_not_fail_anything(tmp_path: Path) -> None:
    path = built(tmp_path)
    root = fake_onie_root(tmp_path, "x86_64-kvm_x86_64-r0", "bios")
    (root / "bin" / "wget").symlink_to(busybox())
    # 127.0.0.1:9 (discard) refuses at once: the extract still succeeds.
    env = {"PROVISION_ONIE_ROOT": str(root), "onie_exec_url": "http://127.0.0.1:9/x.bin"}
    assert run_sh(path, "--extract", str(tmp_path / "x"), env=env).returncode == 0


def test_cli_builds_one_file_per_platform_and_inspect_reads_it(tmp_path: Path) -> None:
    folder = acme_profile_folder(tmp_path)
    spec = write_spec(tmp_path / "spec", platforms="kvm_x86_64, acme_s1")
    out = tmp_path / "out"
    result = run_cli("onie-installer", str(spec), "-o", str(out), "--json", "--profiles", str(folder))
    assert result.returncode == 0, result.stderr
    built_files = json.loads(result.stdout)
    assert sorted(Path(b["path"]).name for b in built_files) == [
        "onie-installer-x86_64-acme_s1-r0.bin",
        "onie-installer-x86_64-kvm_x86_64-r0.bin",
    ]
    info = run_cli("inspect", "--json", str(out / "onie-installer-x86_64-acme_s1-r0.bin"))
    assert info.returncode == 0
    data = json.loads(info.stdout)
    assert data["platform"] == "x86_64-acme_s1-r0" and data["nos"] == "tnos" and data["version"] == "2.1.0"
    assert data["checksum"]["ok"] and data["format"] == "provision"
    sizes = {m["name"]: m["size"] for m in data["members"]}
    assert sizes["nos/kernel"] == (tmp_path / "spec" / "nos" / "vmlinuz").stat().st_size
    only = run_cli("onie-installer", str(spec), "-o", str(tmp_path / "one"), "--platform", "kvm_x86_64")
    assert only.returncode == 0 and only.stdout.strip().endswith("onie-installer-x86_64-kvm_x86_64-r0.bin")


def test_boot_partition_too_small_is_an_input_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("size: 64M", "size: 8M", 1))
    result = run_cli("onie-installer", str(spec), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "too small" in result.stderr
    assert not list((tmp_path / "out").glob("*"))  # no partial file left behind


def make_sharch(folder: Path) -> Path:
    """An installer in ONIE's demo format, made as onie-mk-demo.sh does it."""
    (folder / "installer").mkdir(parents=True)
    (folder / "installer" / "install.sh").write_text("#!/bin/sh\necho demo install\n")
    subprocess.run(["tar", "-C", str(folder), "-cf", str(folder / "sharch.tar"), "installer"], check=True)
    sha1 = hashlib.sha1((folder / "sharch.tar").read_bytes()).hexdigest()
    body = (
        "#!/bin/sh\n# ONIE demo sharch body (abridged)\n"
        f"payload_sha1={sha1}\n"
        "sha1=$(sed -e '1,/^exit_marker$/d' \"$0\" | sha1sum | awk '{ print $1 }')\n"
        '[ "$sha1" = "$payload_sha1" ] || exit 1\n'
        "exit 0\nexit_marker\n"
    )
    out = folder / "onie-installer-demo.bin"
    out.write_bytes(body.encode() + (folder / "sharch.tar").read_bytes())
    return out


def test_inspect_reads_onies_demo_sharch_format(tmp_path: Path) -> None:
    path = make_sharch(tmp_path)
    # The real peer agrees the file is intact: its own header verifies the SHA-1.
    assert run_sh(path).returncode == 0
    info = inspect(path)
    assert info.format is InstallerFormat.SHARCH and info.checksum_kind == "sha1" and info.checksum_ok
    assert [m.name for m in info.members] == ["installer/install.sh"]
    cli = run_cli("inspect", str(path))
    assert cli.returncode == 0 and "ONIE demo (sharch)" in cli.stdout
    tamper(path, at_end=len(path.read_bytes()) - path.read_bytes().index(b"exit_marker\n") - 520)
    assert run_sh(path).returncode == 1
    assert run_cli("inspect", str(path)).returncode == 1


def test_inspect_refuses_a_file_that_is_not_an_installer(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x7fELF not a script")
    result = run_cli("inspect", str(junk))
    assert result.returncode == 2 and "does not start with #!" in result.stderr


def test_progress_callback_counts_every_payload_byte(tmp_path: Path) -> None:
    spec = load_switch_spec(write_spec(tmp_path / "spec")).spec
    seen = []
    result = build(spec, KVM, tmp_path / "x.bin", templates(), progress=seen.append)
    total = sum(
        (tmp_path / "spec" / "nos" / n).stat().st_size for n in ("vmlinuz", "initrd.img", "rootfs.squashfs")
    )
    total += (tmp_path / "spec" / "nos" / "extra.conf").stat().st_size
    assert seen[-1].done == seen[-1].total == total
    assert [s.done for s in seen] == sorted(s.done for s in seen)
    assert result.size == result.path.stat().st_size


def test_header_help_and_bad_arguments(tmp_path: Path) -> None:
    path = built(tmp_path)
    helped = run_sh(path, "--help")
    assert helped.returncode == 0 and "--extract DIR" in helped.stdout and "TESTS ONLY" in helped.stdout
    bad = run_sh(path, "--bogus")
    assert bad.returncode == 2 and "unknown argument: --bogus" in bad.stderr


def test_cli_reads_source_date_epoch(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec")
    outs = []
    for name, epoch in (("a", "1234567890"), ("b", "1234567890"), ("c", "1234567891")):
        result = run_cli(
            "onie-installer", str(spec), "-o", str(tmp_path / name), env={"SOURCE_DATE_EPOCH": epoch}
        )
        assert result.returncode == 0, result.stderr
        outs.append(Path(result.stdout.strip()).read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    bad = run_cli(
        "onie-installer", str(spec), "-o", str(tmp_path / "d"), env={"SOURCE_DATE_EPOCH": "yesterday"}
    )
    assert bad.returncode == 2 and "SOURCE_DATE_EPOCH" in bad.stderr


def test_spec_report_url_wins_over_onies_download_url(tmp_path: Path, report_server) -> None:
    port, seen = report_server
    spec_path = write_spec(tmp_path / "spec", extra=f"report_url: http://127.0.0.1:{port}/\n")
    spec = load_switch_spec(spec_path).spec
    path = build(spec, KVM, tmp_path / "x.bin", templates()).path
    tamper(path)
    root = fake_onie_root(tmp_path, "x86_64-kvm_x86_64-r0", "bios")
    (root / "bin" / "wget").symlink_to(busybox())
    env = {"PROVISION_ONIE_ROOT": str(root), "onie_exec_url": "http://127.0.0.1:9/elsewhere.bin"}
    assert run_sh(path, env=env).returncode == 1
    assert [(r["stage"], r["status"]) for r in seen] == [("started", "progress"), ("verified", "failed")]
