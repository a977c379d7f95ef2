"""The device lifecycle: the gate's answers, the transitions events cause, intent kept in the store
and seen by another connection (the CLI writes while `provision serve` reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.config.inventory import Device, Inventory
from provision.devices.lifecycle import (
    HANDOUTS_PER_ARMING,
    RETRY_AFTER_FAILURE_S,
    Lifecycle,
    State,
    device_doc,
    device_from_doc,
)
from provision.store.sqlite import Store
from pxe.policy import Event

MAC = "52:54:00:00:00:01"
LEAF = Device(name="leaf-01", mac=MAC, serial="SN1", platform="x86_64-kvm_x86_64-r0")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def report(status: str, stage: str = "complete", mac: str = MAC, **extra: str) -> Event:
    return Event(
        "installer.report", mac=mac, ip="198.18.0.9", detail={"status": status, "stage": stage, **extra}
    )


@pytest.fixture
def fleet() -> tuple[Lifecycle, list[Event]]:
    seen: list[Event] = []
    return Lifecycle(None, Inventory([LEAF]), seen.append, unknown_install=False), seen


def test_enrolled_not_armed_then_armed_then_installed_once(fleet):
    lc, seen = fleet
    gate = lc.gate(LEAF, "x86_64-kvm_x86_64-r0")
    assert not gate.allowed and gate.code == "not-armed" and "provision devices arm leaf-01" in gate.reason
    assert lc.state(LEAF)[0] is State.ENROLLED
    lc.arm("leaf-01", "2.0", by="cli:test")
    gate = lc.gate(LEAF, "x86_64-kvm_x86_64-r0")
    assert gate.allowed and gate.code == "armed" and gate.target == "2.0" and gate.install_id
    assert lc.state(LEAF)[0] is State.ARMED
    lc.handed_out(LEAF, gate, MAC)
    assert [e.kind for e in seen][-1] == "device.installing"
    lc.on_event(report("ok"))
    assert seen[-1].kind == "device.installed" and seen[-1].detail["by"].startswith("installer report")
    gate = lc.gate(LEAF, "x86_64-kvm_x86_64-r0")
    assert not gate.allowed and gate.code == "installed" and "arm it again" in gate.reason
    assert lc.state(LEAF)[0] is State.INSTALLED
    # re-armed: installs again
    lc.arm("leaf-01", None, by="cli:test")
    assert lc.gate(LEAF, "x86_64-kvm_x86_64-r0").allowed


def test_failed_install_is_not_served_again_until_rearmed(fleet):
    lc, seen = fleet
    lc.arm("leaf-01", None, by="cli:test")
    lc.on_event(report("failed", stage="verified", message="wrong platform"))
    gate = lc.gate(LEAF, "x86_64-kvm_x86_64-r0")
    assert not gate.allowed and gate.code == "failed" and "wrong platform" in gate.reason
    state, _, error = lc.state(LEAF)
    assert state is State.FAILED and error == "wrong platform"
    assert seen[-1].kind == "device.failed"


def test_progress_reports_do_not_end_the_arming(fleet):
    lc, _ = fleet
    lc.arm("leaf-01", None, by="cli:test")
    lc.on_event(report("progress", stage="partitions"))
    assert lc.gate(LEAF).allowed


def test_a_late_report_of_an_older_install_does_not_end_a_newer_arming(fleet):
    lc, _ = fleet
    old = lc.arm("leaf-01", None, by="cli:test").install_id
    lc.arm("leaf-01", None, by="cli:test")
    lc.on_event(report("ok", install_id=old or ""))
    assert lc.gate(LEAF).allowed  # still armed: that report was about the first arming


def test_platform_mismatch_is_refused(fleet):
    lc, _ = fleet
    lc.arm("leaf-01", None, by="cli:test")
    gate = lc.gate(LEAF, "x86_64-mlnx_msn2700-r0")
    assert not gate.allowed and gate.code == "platform-mismatch"
    assert "x86_64-mlnx_msn2700-r0" in gate.reason and "x86_64-kvm_x86_64-r0" in gate.reason


def test_handouts_without_a_report_are_bounded(fleet):
    lc, _ = fleet
    lc.arm("leaf-01", None, by="cli:test")
    for _ in range(HANDOUTS_PER_ARMING):
        gate = lc.gate(LEAF)
        assert gate.allowed
        lc.handed_out(LEAF, gate, MAC)
    gate = lc.gate(LEAF)
    assert not gate.allowed and gate.code == "handouts-spent"


def test_reports_off_end_the_arming_at_the_first_handout():
    lc = Lifecycle(None, Inventory([LEAF]), reports=False)
    lc.arm("leaf-01", None, by="cli:test")
    lc.handed_out(LEAF, lc.gate(LEAF), MAC)
    assert lc.gate(LEAF).code == "installed"


def test_unknown_devices_and_zero_touch_retry_after_a_failure():
    clock = Clock()
    ignore = Lifecycle(None, Inventory([LEAF]), unknown_install=False)
    assert ignore.gate(None).code == "unknown-ignored"
    zero = Lifecycle(None, Inventory([]), unknown_install=True, clock=clock)
    assert zero.gate(None, key="aa:bb:cc:dd:ee:ff").allowed
    zero.on_event(report("failed", mac="aa:bb:cc:dd:ee:ff", message="sha256 mismatch"))
    later = zero.gate(None, key="aa:bb:cc:dd:ee:ff")
    assert later.code == "retry-later" and "sha256 mismatch" in later.reason
    clock.now += RETRY_AFTER_FAILURE_S + 1
    assert zero.gate(None, key="aa:bb:cc:dd:ee:ff").allowed


def test_install_modes_always_and_never():
    always = Device(name="lab-box", mac="52:54:00:00:00:02", install="always")
    never = Device(name="prod-box", mac="52:54:00:00:00:03", install="never")
    lc = Lifecycle(None, Inventory([always, never]))
    assert lc.gate(always).code == "always"
    lc.arm("prod-box", None, by="cli:test")
    assert lc.gate(never).code == "never"


def test_refused_events_are_rate_limited():
    clock = Clock()
    seen: list[Event] = []
    lc = Lifecycle(None, Inventory([LEAF]), seen.append, clock=clock)
    gate = lc.gate(LEAF)
    for _ in range(50):
        lc.refused(LEAF, gate, MAC)
    assert [e.kind for e in seen] == ["device.refused"] and lc.counters["refused"] == 50
    clock.now += 61
    lc.refused(LEAF, gate, MAC)
    assert len(seen) == 2


def test_intent_lives_in_the_store_and_another_connection_sees_it(tmp_path: Path):
    db = tmp_path / "provision.db"
    with Store(db) as serving, Store(db) as cli:
        server = Lifecycle(serving, Inventory([LEAF]))
        assert not server.gate(LEAF).allowed
        # the CLI process enrolls a device and arms leaf-01
        other = Lifecycle(cli, Inventory([LEAF]))
        other.enroll(Device(name="spine-01", mac="52:54:00:00:00:09", serial="SP1"), by="cli:test")
        other.arm("leaf-01", "2.0", by="cli:test")
        # the server sees both without a restart (PRAGMA data_version changed)
        assert server.gate(LEAF).allowed and server.gate(LEAF).target == "2.0"
        spine = server.inventory.find(serial="sp1")
        assert spine is not None and spine.name == "spine-01" and spine.source == "store"
        # lab.yml wins a clash: an enrolled device with leaf-01's MAC is not added
        other.enroll(Device(name="impostor", mac=MAC), by="cli:test")
        assert server.inventory.named("impostor") is None
        other.forget("spine-01", by="cli:test")
        assert server.inventory.named("spine-01") is None
    with Store(db) as again:  # and it survives a restart
        assert Lifecycle(again, Inventory([LEAF])).intent("leaf-01").armed


def test_device_document_round_trip():
    dev = Device(name="leaf-02", mac="52:54:00:00:00:0a", macs=("52:54:00:00:00:0b",), serial="S2",
                 ip="198.18.0.12", platform="x86_64-kvm_x86_64-r0", site="lab", rack="r1", position="12",
                 asset_tag="A-1", install="always")  # fmt: skip
    again = device_from_doc(device_doc(dev))
    assert again == Device(**{**dev.__dict__, "source": "store"})


def test_enrolled_devices_take_their_groups_settings(tmp_path: Path):
    groups = {"scratch": {"install": "always", "boot": None, "installer": None, "profile": None,
                          "platform": None, "role": None}}  # fmt: skip
    with Store(tmp_path / "p.db") as store:
        lc = Lifecycle(store, Inventory([]), groups=groups)
        lc.enroll(Device(name="tmp-01", mac="52:54:00:00:00:21", group="scratch"), by="cli:test")
        dev = lc.inventory.named("tmp-01")
        assert dev is not None and dev.install == "always" and lc.gate(dev).code == "always"
        lc.reload(Inventory([]), groups={})  # the group gone from lab.yml: the default again
        dev = lc.inventory.named("tmp-01")
        assert dev is not None and dev.install is None and lc.gate(dev).code == "not-armed"
