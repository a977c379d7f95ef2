"""Real firmware network-boots from `provision serve` (LAB.md's dnsmasq probes, our server instead).

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
  - {{name: guest, mac: "{mac}", ip: {net}.10}}
"""

X86_ENTRY = "      x86_64: {{kernel: {k}, initrd: {i}, cmdline: console=ttyS0 panic=-1}}\n"
ARM_ENTRY = "      arm64: {{kernel: {k}, initrd: {i}, cmdline: console=ttyAMA0 panic=-1}}\n"

# name: (arch, firmware kind, subnet, what the guest fetches first)
CASES = {
    "x86-bios-ipxe-rom": ("x86_64", "bios", "198.18.31", ".ipxe"),  # the ROM is iPXE already
    "x86-uefi-ipxe-rom": ("x86_64", "uefi-ipxe", "198.18.32", ".ipxe"),
    "x86-uefi-native-pxe": ("x86_64", "uefi-pxe", "198.18.33", "ipxe.efi"),
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
