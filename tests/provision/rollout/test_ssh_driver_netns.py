"""The ssh arming driver against a real OpenSSH sshd (Debian's) in a namespace the test makes.

The sshd runs every session in the lab's NOS stand-in (provision/lab/standin.py): a chroot with
busybox and stub onie-boot-mode / grub-reboot / fw_setenv / reboot that record what ran. The
driver runs in a thread inside a second namespace (tests/support/netns_thread.py).
"""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision.config.inventory import Device
from provision.lab import sshd, standin
from provision.rollout.drivers import driver_for
from provision.rollout.drivers.base import ArmingError, ArmRequest
from tests.support.netns import NetNS, namespaces, veth
from tests.support.netns_thread import run_in_netns

pytestmark = pytest.mark.netns

SWITCH_IP = "198.18.41.2"
PASSWORD = "lab-s3cret"


@dataclass
class Lab:
    switch: NetNS
    client: NetNS
    layout: standin.Layout
    key: Path  # client private key
    host_key: Path
    base: Path


def _wait_listening(proc: subprocess.Popen, timeout: float = 10) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline().decode(errors="replace")
            seen.append(line)
            if "Server listening" in line:
                return
        if proc.poll() is not None:
            break
    pytest.fail(f"sshd did not start: {''.join(seen)}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("sshlab")
    with namespaces(2, "sd") as (switch, client):
        veth(client, "cl0", switch, "sw0", "198.18.41.1/24", f"{SWITCH_IP}/24")
        layout = standin.Layout(base / "fleet")
        layout.prepare()
        key = sshd.client_key(base)
        argv = sshd.write_config(
            base / "sshd",
            force_command=layout.session,
            authorized_keys=key.with_suffix(".pub"),
            password=PASSWORD,
        )
        proc = switch.popen(argv)
        _wait_listening(proc)
        yield Lab(switch, client, layout, key, base / "sshd" / "ssh_host_key", base)


def _fresh_root(lab: Lab, version: str = "1.0") -> Path:
    root = lab.layout.root(SWITCH_IP)
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return lab.layout.make_root(SWITCH_IP, version)


def _req(options: dict, profile: str | None = "accton_as7712_32x") -> ArmRequest:
    dev = Device(name="leaf-01", ip=SWITCH_IP, profile=profile)
    return ArmRequest(dev, "r1", "i1", "2.0", options)


def _arm(lab: Lab, options: dict, profile: str | None = "accton_as7712_32x") -> str:
    req = _req(options, profile)
    return run_in_netns(lab.client.name, lambda: driver_for("ssh", options).arm(req))


def _version(lab: Lab, options: dict) -> str | None:
    req = _req(options)
    return run_in_netns(lab.client.name, lambda: driver_for("ssh", options).current_version(req))


def _known_hosts(lab: Lab, tmp_path: Path, key: Path | None = None) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(f"{SWITCH_IP} {sshd.public_key_line(key or lab.host_key)}\n")
    return path


def test_grub_switch_armed_with_onie_commands_and_key_pinned_on_first_use(lab: Lab, tmp_path: Path):
    root = _fresh_root(lab)
    pin = tmp_path / "pinned"
    opts = {"host_keys": "pin", "pin_file": str(pin), "identity_file": str(lab.key)}
    note = _arm(lab, opts)
    assert standin.calls(root) == [
        "mountpoint -q /mnt/onie-boot",
        "mount LABEL=ONIE-BOOT /mnt/onie-boot",
        "onie-boot-mode -o install",
        "grub-reboot ONIE",
        "reboot",
    ]
    assert standin.read_env(root / standin.ONIE_GRUBENV) == {"onie_mode": "install"}
    assert standin.read_env(root / standin.NOS_GRUBENV) == {"next_entry": "ONIE"}
    assert (root / standin.REBOOT_FLAG).exists()
    assert note.startswith("grub:")
    # The key seen first is recorded, and is the sshd's.
    assert pin.read_text().split() == [SWITCH_IP, *sshd.public_key_line(lab.host_key).split()]
    # Pinned from now on: the same key passes (version read over the same pinning).
    assert _version(lab, opts) == "1.0"
    assert len(pin.read_text().splitlines()) == 1


def test_uboot_switch_armed_with_fw_setenv(lab: Lab, tmp_path: Path):
    root = _fresh_root(lab)
    opts = {"known_hosts": str(_known_hosts(lab, tmp_path)), "identity_file": str(lab.key)}
    _arm(lab, opts, profile="pegatron_dm6218_b")
    assert standin.calls(root) == ["fw_setenv onie_boot_reason install", "reboot"]
    assert standin.read_env(root / standin.UBOOT_ENV) == {"onie_boot_reason": "install"}


def test_commands_overridden_per_profile(lab: Lab, tmp_path: Path):
    root = _fresh_root(lab)
    opts = {
        "known_hosts": str(_known_hosts(lab, tmp_path)),
        "identity_file": str(lab.key),
        "commands": {"accton_as7712_32x": ["fw_setenv boot_once onie"], "uboot": ["false"]},
    }
    _arm(lab, opts)
    assert standin.calls(root) == ["fw_setenv boot_once onie", "reboot"]


def test_changed_host_key_is_refused(lab: Lab, tmp_path: Path):
    root = _fresh_root(lab)
    other = sshd.host_key(tmp_path, name="other_key")
    pin = tmp_path / "pinned"
    pin.write_text(f"{SWITCH_IP} {sshd.public_key_line(other)}\n")
    for opts in (
        {"host_keys": "pin", "pin_file": str(pin), "identity_file": str(lab.key)},
        {"known_hosts": str(_known_hosts(lab, tmp_path, other)), "identity_file": str(lab.key)},
    ):
        with pytest.raises(ArmingError, match=r"host key of 198\.18\.41\.2:22 does not match") as err:
            _arm(lab, opts)
        assert "remove its line" in (err.value.fix or "")
    assert standin.calls(root) == []  # nothing ran on a host we could not trust


def test_password_auth_from_file_and_wrong_password(lab: Lab, tmp_path: Path, monkeypatch):
    root = _fresh_root(lab, "3.1")
    good = tmp_path / "pw"
    good.write_text(PASSWORD + "\n")
    kh = str(_known_hosts(lab, tmp_path))
    assert _version(lab, {"known_hosts": kh, "password_file": str(good)}) == "3.1"
    monkeypatch.setenv("LAB_PW", "wrong")
    with pytest.raises(ArmingError, match="refused the credentials"):
        _arm(lab, {"known_hosts": kh, "password_env": "LAB_PW"})
    with pytest.raises(ArmingError, match="does not take a password from the plan"):
        driver_for("ssh", {"password": "x"})
    assert standin.calls(root) == []


def test_connection_refused_and_failing_command(lab: Lab, tmp_path: Path):
    root = _fresh_root(lab)
    kh = str(_known_hosts(lab, tmp_path))
    with pytest.raises(ArmingError, match=r"cannot ssh to 198\.18\.41\.2:2999: .*[Rr]efused"):
        _arm(lab, {"known_hosts": kh, "identity_file": str(lab.key), "port": 2999})
    (root / "etc/fail/grub-reboot").write_text("grub-reboot: error: cannot open grubenv\n")
    with pytest.raises(ArmingError, match=r"`grub-reboot ONIE` failed \(exit 1\): grub-reboot: error") as err:
        _arm(lab, {"known_hosts": kh, "identity_file": str(lab.key)})
    assert "not rebooted" in (err.value.fix or "")
    assert not (root / standin.REBOOT_FLAG).exists()
    assert standin.calls(root)[-1] == "grub-reboot ONIE"
