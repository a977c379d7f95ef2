"""`provision rollout` with the ssh driver over a simulated fleet (`provision lab fleet`), end to end.

Four simulated switches in one namespace, each a NOS stand-in behind Debian's sshd at its own
address, run v1.0; `provision serve` in the other namespace serves a real v2.1.0 installer built
by `provision onie-installer`. The rollout (one canary, then one wave) selects three of them:
each is armed over ssh (onie-boot-mode + grub-reboot ONIE + reboot), reboots into ONIE's
discovery, downloads and verifies the installer, reports with the install's token, and comes
back at 2.1.0, which the driver reads back. The fourth is never touched; the wave starts only
after the canary is back at 2.1.0.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from provision.lab import sshd
from tests.support.cli import cli_argv, cli_env, run_cli
from tests.support.installer import write_payload, write_spec

pytestmark = pytest.mark.netns

SERVER_IP = "198.18.44.1"

LAB = """\
interfaces: [rs0]
subnets:
  - network: 198.18.44.0/24
    interface: rs0
    pool: [198.18.44.100-198.18.44.199]
paths:
  state_dir: {state}
onie:
  installers: {installers}
"""


def _wait_file(path: Path, proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"fleet exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        assert time.monotonic() < deadline, f"{path} not written"
        time.sleep(0.1)


def test_rollout_over_ssh_to_a_simulated_fleet(serve_netns, tmp_path: Path):
    installers = tmp_path / "installers"
    write_payload(tmp_path)
    write_spec(tmp_path)
    built = run_cli("onie-installer", str(tmp_path / "switch.yml"), "-o", str(installers), "--json")
    assert built.returncode == 0, built.stderr

    link = serve_netns(server_if="rs0", client_if="rf0", server_addr=f"{SERVER_IP}/24", prefix="rf")
    key = sshd.client_key(tmp_path)
    fleet_dir = tmp_path / "fleet"
    events_file = tmp_path / "fleet-events.jsonl"
    fleet = link.client.popen(
        cli_argv(
            "lab", "fleet", "-i", "rf0", "-n", "4", "--first-ip", "198.18.44.11", "--prefix", "24",
            "--authorized-keys", str(key.with_suffix(".pub")), "--boot-delay", "0.2",
            "--dir", str(fleet_dir), "--json",
        ),
        env=cli_env(),
        stdout=events_file.open("w"),
        stderr=(tmp_path / "fleet.log").open("w"),
    )  # fmt: skip
    _wait_file(fleet_dir / "ready", fleet)

    lab = tmp_path / "lab.yml"
    lab.write_text(
        LAB.format(state=tmp_path / "state", installers=installers)
        + (fleet_dir / "inventory.yml").read_text()
    )
    sp = link.serve(str(lab))
    opts = ["-o", "host_keys=known_hosts", "-o", f"known_hosts={fleet_dir / 'known_hosts'}"]
    opts += ["-o", f"identity_file={key}"]
    r = link.server.run(
        cli_argv(
            "rollout", "start", "--devices", "leaf-00[1-3]", "--target", "2.1.0", "--driver", "ssh",
            *opts, "--canaries", "1", "--wave-size", "2", "--lab", str(lab), "--json", "--poll", "0.3",
        ),
        check=False,
        timeout=240,
        env=cli_env(),
    )  # fmt: skip
    fleet_log = (tmp_path / "fleet.log").read_text()
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:], fleet_log[-2000:], sp.output[-3000:])

    status = json.loads((fleet_dir / "status.json").read_text())["switches"]
    by_name = {s["name"]: s for s in status}
    for name in ("leaf-001", "leaf-002", "leaf-003"):
        sw = by_name[name]
        assert (sw["version"], sw["installs"], sw["boots_to_onie"], sw["state"]) == ("2.1.0", 1, 1, "nos"), sw
    untouched = by_name["leaf-004"]
    assert (untouched["version"], untouched["installs"], untouched["boots_to_onie"]) == ("1.0", 0, 0)
    calls = (fleet_dir / "nos/sw/198.18.44.11/var/log/provision-calls").read_text().splitlines()
    assert calls[-3:] == ["onie-boot-mode -o install", "grub-reboot ONIE", "reboot"]
    assert (fleet_dir / "nos/sw/198.18.44.14/var/log/provision-calls").read_text() == ""

    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    canary_up = next(e["time"] for e in events if e["switch"] == "leaf-001" and e["event"] == "nos-up")
    wave_armed = [
        e["time"] for e in events if e["switch"] in ("leaf-002", "leaf-003") and e["event"] == "reboot"
    ]
    assert len(wave_armed) == 2 and min(wave_armed) > canary_up
    onie = [e for e in events if e["event"] == "onie"]
    assert all(e["outcome"] == "installed" and e["installer_runs"] == 1 for e in onie), onie
    assert all("token=" in (e["url"] or "") for e in onie)  # the exact URL of the arming
    assert "Traceback" not in sp.output
