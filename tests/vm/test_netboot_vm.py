"""Real firmware network-boots from `provision serve` (docs/lab.md "QEMU firmware recipes").

Each test: its own namespace with a tap on 198.18.3x.1/24, `provision serve lab.yml` in it, QEMU
(-accel tcg) attached to the tap, and a busybox initramfs served by us that prints
`PROVISION-NETBOOT-OK arch=...` on the serial console. Boot times are printed, never asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import vm
from tests.support.cli import run_cli
from tests.support.netns import namespaces, tap
from tests.support.serving import serving
from tests.support.tools import IN_CI, require_root, require_tool

pytestmark = [pytest.mark.vm, pytest.mark.netns]

LAB = """\
interfaces: [tap0]
subnets:
  - network: {net}.0/24
    interface: tap0
    pool: [{net}.100-{net}.150]
    router: {net}.1
boot:
  default: marker
  unknown: ignore
  uefi_x64_loader: ipxe.efi
  entries:
    marker:
{entries}
paths:
  state_dir: {state}
devices:
  - {{name: guest, mac: "{mac}", ip: {net}.10, install: always}}
"""

X86_ENTRY = "      x86_64: {{kernel: {k}, initrd: {i}, cmdline: console=ttyS0 panic=-1}}\n"
ARM_ENTRY = "      arm64: {{kernel: {k}, initrd: {i}, cmdline: console=ttyAMA0 panic=-1}}\n"

# name: (arch, firmware kind, subnet, what the guest fetches first)
CASES = {
    "x86-bios-ipxe-rom": ("x86_64", "bios", "198.18.31", ".ipxe"),  # the ROM is iPXE already
    "x86-uefi-ipxe-rom": ("x86_64", "uefi-ipxe", "198.18.32", ".ipxe"),
    "x86-uefi-native-pxe": ("x86_64", "uefi-pxe", "198.18.33", "ipxe.efi"),
    "x86-uefi-http": ("x86_64", "uefi-http", "198.18.37", "/ipxe.efi"),
    "arm64-uefi-pxe": ("arm64", "pxe", "198.18.34", "grubaa64.efi"),
    "arm64-uefi-http": ("arm64", "http", "198.18.35", "grubaa64-http-198.18.35.1.efi"),
}


def _need_arm64() -> None:
    if vm.arm64_kernel() and vm.arm64_busybox() and (vm.ARM64_ROOT / "usr/lib/grub/arm64-efi").is_dir():
        return
    msg = f"arm64 guest pieces missing in {vm.ARM64_ROOT}: run scripts/setup.sh (arm64_pieces)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", list(CASES))
def test_firmware_netboots_from_provision_serve(case, tmp_path):
    require_root()
    arch, kind, net, first_fetch = CASES[case]
    if arch == "x86_64":
        require_tool("qemu-system-x86_64")
        for f in (vm.OVMF_CODE, vm.IPXE_EFI_ROM) if kind != "bios" else ():
            if not f.exists():
                pytest.fail(f"{f} missing: apt-get install ovmf ipxe-qemu") if IN_CI else pytest.skip(
                    f"{f} missing"
                )
    else:
        require_tool("qemu-system-aarch64")
        _need_arm64()
    made = vm.netboot_files(tmp_path / "netboot", (arch,))
    assert arch in made, f"could not build the {arch} kernel+initrd"
    kernel, initrd = made[arch]
    entry = (X86_ENTRY if arch == "x86_64" else ARM_ENTRY).format(k=kernel, i=initrd)
    mac = "52:54:00:3a:00:01"
    lab = tmp_path / "lab.yml"
    lab.write_text(LAB.format(net=net, entries=entry, state=tmp_path / "state", mac=mac))
    with namespaces(1, prefix="vm") as (ns,):
        tap(ns, "tap0", f"{net}.1/24")
        with serving(ns, str(lab), timeout=120) as sp:
            guest = (
                vm.x86_guest(kind, "tap0", mac, tmp_path)
                if arch == "x86_64"
                else vm.arm64_guest(kind, "tap0", mac)
            )
            console, seconds = vm.run_guest(ns, guest, tmp_path / "console.log", timeout=420)
            status = json.loads(run_cli("status", "--state-dir", str(tmp_path / "state"), "--json").stdout)
        server_log = sp.output
    found = vm.MARKER in console
    want_arch = "x86_64" if arch == "x86_64" else "aarch64"
    print(f"\n{case}: {'marker after' if found else 'NO marker after'} {seconds:.1f} s (TCG)")
    fetched = [ln for ln in server_log.splitlines() if "tftp.sent" in ln or "http.sent" in ln]
    print("\n".join(fetched[-8:]))
    if not found:
        Path(tmp_path / "serve.log").write_text(server_log)
        pytest.fail(
            f"no {vm.MARKER} on the console; tail:\n{console[-3000:]}\n--- serve:\n{server_log[-4000:]}"
        )
    assert f"{vm.MARKER} arch={want_arch}" in console
    row = next(r for r in status["devices"] if r["mac"] == mac)
    assert row["ip"] == f"{net}.10"
    assert row["last_fetch"] is not None
    if first_fetch:
        assert first_fetch in server_log
    assert "initrd.gz" in server_log  # the initrd came from us


@pytest.mark.timeout(900)
def test_proxy_dhcp_beside_dnsmasq_quick_mode(tmp_path):
    """Another server (dnsmasq, addresses only) owns the link; `provision serve --proxy` in quick
    mode adds the boot information: OVMF native PXE → ipxe.efi → iPXE script → kernel."""
    require_root()
    require_tool("qemu-system-x86_64")
    dnsmasq = require_tool("dnsmasq")
    made = vm.netboot_files(tmp_path / "netboot", ("x86_64",))
    kernel, initrd = made["x86_64"]
    net, mac = "198.18.36", "52:54:00:3a:00:06"
    with namespaces(1, prefix="vm") as (ns,):
        tap(ns, "tap0", f"{net}.1/24")
        ns.popen(
            [dnsmasq, "--no-daemon", "--port=0", "--interface=tap0", "--bind-interfaces", "--no-ping",
             f"--dhcp-range={net}.100,{net}.150,1h", f"--dhcp-leasefile={tmp_path / 'leases'}",
             "--log-dhcp", f"--log-facility={tmp_path / 'dnsmasq.log'}"],
        )  # fmt: skip
        args = ["-i", "tap0", "--proxy", "--kernel", str(kernel), "--initrd", str(initrd)]
        args += ["--cmdline", "console=ttyS0 panic=-1", "--state-dir", str(tmp_path / "state")]
        with serving(ns, *args, timeout=120) as sp:
            guest = vm.x86_guest("uefi-pxe", "tap0", mac, tmp_path)
            console, seconds = vm.run_guest(ns, guest, tmp_path / "console.log", timeout=420)
        server_log = sp.output
    found = vm.MARKER in console
    print(
        f"\nproxyDHCP + dnsmasq, OVMF native PXE: {'marker after' if found else 'NO marker after'} {seconds:.1f} s"
    )
    if not found:
        dlog = (
            (tmp_path / "dnsmasq.log").read_text(errors="replace")
            if (tmp_path / "dnsmasq.log").exists()
            else ""
        )
        pytest.fail(
            f"no marker; console tail:\n{console[-2500:]}\n--- serve:\n{server_log[-3000:]}\n--- dnsmasq:\n{dlog[-2000:]}"
        )
    assert f"{vm.MARKER} arch=x86_64" in console
    leases = (tmp_path / "leases").read_text()
    assert mac in leases  # the address came from dnsmasq, not from us
    assert "ipxe.efi" in server_log and "boot/quick/x86_64/initrd.gz" in server_log


@pytest.mark.timeout(900)
def test_quick_mode_boots_arm64_and_x86_without_a_lab_file(tmp_path):
    """`provision serve -i tap0 --kernel … --kernel-arm64 …`: an unknown AAVMF machine boots the
    ARM64 kernel through GRUB, and an unknown SeaBIOS one the x86 kernel, from one server."""
    require_root()
    require_tool("qemu-system-aarch64")
    require_tool("qemu-system-x86_64")
    _need_arm64()
    made = vm.netboot_files(tmp_path / "netboot")
    (k, i), (ka, ia) = made["x86_64"], made["arm64"]
    net = "198.18.38"
    with namespaces(1, prefix="vm") as (ns,):
        tap(ns, "tap0", f"{net}.1/24")
        args = ["-i", "tap0", "--kernel", str(k), "--initrd", str(i), "--cmdline", "console=ttyS0 panic=-1"]
        args += [
            "--kernel-arm64",
            str(ka),
            "--initrd-arm64",
            str(ia),
            "--cmdline-arm64",
            "console=ttyAMA0 panic=-1",
        ]
        args += ["--state-dir", str(tmp_path / "state")]
        with serving(ns, *args, timeout=120) as sp:
            results = {}
            for name, guest in (
                ("arm64", vm.arm64_guest("pxe", "tap0", "52:54:00:3a:00:08")),
                ("x86_64", vm.x86_guest("bios", "tap0", "52:54:00:3a:00:09", tmp_path)),
            ):
                results[name] = vm.run_guest(ns, guest, tmp_path / f"{name}.log", timeout=420)
    for name, (console, seconds) in results.items():
        ok = vm.MARKER in console
        print(f"\nquick mode {name}: {'marker after' if ok else 'NO marker after'} {seconds:.1f} s (TCG)")
        assert ok, f"{name}: no marker\n{console[-2500:]}\n--- serve:\n{sp.output[-3000:]}"
    assert f"{vm.MARKER} arch=aarch64" in results["arm64"][0]
    assert f"{vm.MARKER} arch=x86_64" in results["x86_64"][0]
    assert "boot/quick/arm64/Image" in sp.output and "boot/quick/x86_64/vmlinuz" in sp.output
