"""provision.onie.progress: a switch's install stage derived from its events."""

from __future__ import annotations

from provision.onie.progress import OnieStage, progress_of, stage_of, stages_by_device
from pxe.policy import Event

MAC = "52:54:00:12:34:56"


def discovered(ts: float, source: str = "dhcp") -> Event:
    return Event(
        "onie.discovered",
        mac=MAC,
        detail={
            "serial": "S1",
            "platform": "x86_64-kvm_x86_64-r0",
            "onie_version": "2023.05",
            "source": source,
        },
        ts=ts,
    )


def fetched(ts: float) -> Event:
    return Event(
        "installer.fetched", mac=MAC, detail={"file": "onie-installer-x86_64-kvm_x86_64-r0.bin"}, ts=ts
    )


def report(ts: float, stage: str, status: str, message: str = "", mac: str | None = None) -> Event:
    # the HTTP server does not know the MAC of a report; the installer puts it in the query
    return Event(
        "installer.report",
        mac=None,
        detail={"stage": stage, "status": status, "mac": mac or MAC, "message": message},
        ts=ts,
    )


def test_no_events():
    assert stage_of([]) is OnieStage.NONE
    assert stage_of([Event("dhcp.ack", mac=MAC, ts=1)]) is OnieStage.NONE


def test_happy_path_each_step():
    events = [discovered(1), fetched(2), report(3, "started", "progress"), report(9, "complete", "ok")]
    expected = [OnieStage.DISCOVERED, OnieStage.FETCHED, OnieStage.INSTALLING, OnieStage.INSTALLED]
    for n, want in enumerate(expected, start=1):
        assert stage_of(events[:n]) is want


def test_failed_then_rediscovered():
    events = [discovered(1), fetched(2), report(3, "verified", "failed", "sha256 mismatch")]
    assert stage_of(events) is OnieStage.FAILED
    assert stage_of([*events, discovered(30)]) is OnieStage.DISCOVERED


def test_order_is_by_time_not_by_list():
    events = [report(9, "complete", "ok"), discovered(1), fetched(2)]
    assert stage_of(events) is OnieStage.INSTALLED


def test_progress_after_complete_other_stage_names():
    assert stage_of([report(1, "payload", "progress")]) is OnieStage.INSTALLING
    assert stage_of([report(1, "complete", "progress")]) is OnieStage.INSTALLING
    assert stage_of([report(1, "complete", "FAILED")]) is OnieStage.FAILED


def test_by_device_uses_report_mac():
    other = "52:54:00:00:00:02"
    events = [discovered(1), report(2, "complete", "ok", mac=other.upper().replace(":", "-")), fetched(3)]
    assert stages_by_device(events) == {MAC: OnieStage.FETCHED, other: OnieStage.INSTALLED}


def test_progress_facts():
    p = progress_of([discovered(1), fetched(2), report(3, "payload", "progress", "writing rootfs")])
    assert p.stage is OnieStage.INSTALLING
    assert p.serial == "S1" and p.platform == "x86_64-kvm_x86_64-r0" and p.onie_version == "2023.05"
    assert p.installer == "onie-installer-x86_64-kvm_x86_64-r0.bin"
    assert p.report_stage == "payload" and p.message == "writing rootfs" and p.updated == 3
    assert OnieStage.FETCHED.label == "installer fetched" and OnieStage.INSTALLED.done
    assert str(OnieStage.INSTALLING) == "installing" and str(OnieStage.NONE) == "-"


def test_derived_from_protocol_events():
    ack = Event("dhcp.ack", mac=MAC, detail={"vendor_class": "onie_vendor:x86_64-kvm_x86_64-r0"}, ts=1)
    pxe = Event("dhcp.ack", mac=MAC, detail={"vendor_class": "PXEClient:Arch:00007:UNDI:003000"}, ts=1)
    miss = Event(
        "http.sent", mac=MAC, detail={"path": "/onie-installer-x86_64-kvm_x86_64-r0", "status": 404}, ts=2
    )
    got = Event(
        "http.sent", mac=MAC, detail={"path": "/onie-installer.bin", "status": 200, "method": "GET"}, ts=3
    )
    head = Event(
        "http.sent", mac=MAC, detail={"path": "/onie-installer.bin", "status": 200, "method": "HEAD"}, ts=3
    )
    cut = Event(
        "http.sent", mac=MAC, detail={"path": "/onie-installer.bin", "status": 200, "aborted": True}, ts=3
    )
    tftp = Event("tftp.sent", mac=MAC, detail={"path": "52-54-00-12-34-56/onie-installer-x86_64"}, ts=3)
    other = Event("http.sent", mac=MAC, detail={"path": "/boot/vmlinuz", "status": 200}, ts=4)
    assert stage_of([pxe]) is OnieStage.NONE
    assert stage_of([ack, miss]) is OnieStage.DISCOVERED
    assert stage_of([ack, miss, got, other]) is OnieStage.FETCHED
    assert stage_of([ack, head]) is stage_of([ack, cut]) is OnieStage.DISCOVERED
    assert stage_of([ack, tftp]) is OnieStage.FETCHED
    assert stage_of([ack, got, report(5, "complete", "ok")]) is OnieStage.INSTALLED
