"""A server installs once, then boots its local disk (docs/lifecycle.md), in QEMU (SeaBIOS + iPXE).

Boot 1, armed: `provision serve` hands the iPXE ROM the installer script; the stand-in installer
(tests/support/server_install.py) writes a boot sector to the virtio disk and reports
`stage=complete status=ok` to the URL on its kernel command line; the arming ends. Boot 2, same
disk and MAC: the iPXE script now boots the local disk, and the disk's boot sector prints its
marker. Before arming, the script sends the machine to its disk as well (nothing is installed
that was not meant). Boot times are printed, never asserted.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import pytest

from provision.config.lab import load_lab
from provision.devices.lifecycle import Lifecycle
from provision.store.sqlite import Store
from tests.support import vm
from tests.support.netns import namespaces, tap
from tests.support.server_install import INSTALL_MARKER, LOCAL_MARKER, build_installer_initramfs
from tests.support.serving import serving
from tests.support.tools import require_root, require_tool

pytestmark = [pytest.mark.vm, pytest.mark.netns]

NET = "198.18.38"
MAC = "52:54:00:3a:00:08"
LAB = """\
interfaces: [tap0]
subnets:
  - network: {net}.0/24
    interface: tap0
    pool: [{net}.100-{net}.150]
boot:
  default: installer
  entries:
    installer:
      x86_64: {{kernel: {kernel}, initrd: {initrd}, cmdline: console=ttyS0 panic=-1}}
paths:
  state_dir: {state}
devices:
  - {{name: srv-01, mac: "{mac}", ip: {net}.10}}
"""


def _guest(disk: Path) -> vm.Guest:
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot"]
    argv += ["-boot", "order=n", "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]
    argv += ["-device", f"e1000,netdev=n0,mac={MAC}"]  # QEMU's e1000 ROM is iPXE
    argv += ["-drive", f"file={disk},if=virtio,format=raw"]
    return vm.Guest("x86-bios-disk", argv)


def _boot(ns, disk: Path, log: Path, until: str, timeout: float = 300) -> tuple[str, float]:
    """Run the guest until `until` is on its console (then stop it) or it powers off."""
    t0 = time.monotonic()
    with open(log, "wb") as fh:
        proc = ns.popen(_guest(disk).argv, stdout=fh, stderr=fh, stdin=-3)
        try:
            while proc.poll() is None and time.monotonic() - t0 < timeout:
                time.sleep(0.5)
                if until in log.read_text(errors="replace"):
                    break
        finally:
            ns.stop(proc)
    return log.read_text(errors="replace"), time.monotonic() - t0


@pytest.mark.timeout(900)
def test_server_installs_once_then_boots_its_disk(tmp_path):
    require_root()
    require_tool("qemu-system-x86_64")
    kernel = vm.x86_kernel()
    release = kernel.name.removeprefix("vmlinuz-") if kernel else ""
    if kernel is None or not Path(f"/lib/modules/{release}/modules.dep").is_file():
        pytest.fail(f"need the host kernel and its modules (/boot/vmlinuz-*, /lib/modules/{release})")
    initrd = build_installer_initramfs(Path("/bin/busybox"), release, tmp_path / "installer.gz")
    lab = tmp_path / "lab.yml"
    lab.write_text(LAB.format(net=NET, kernel=kernel, initrd=initrd, state=tmp_path / "state", mac=MAC))
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4 << 20))
    with namespaces(1, prefix="vm") as (ns,):
        tap(ns, "tap0", f"{NET}.1/24")
        with serving(ns, str(lab), timeout=120) as sp:
            # 0. Enrolled, not armed: the script sends it to its (empty) disk, nothing installs.
            console, _ = _boot(ns, disk, tmp_path / "boot0.log", "boots its local disk", timeout=240)
            assert "boots its local disk" in console and "not armed" in console, console[-2000:]
            assert disk.read_bytes()[510:512] == b"\0\0"
            # 1. Armed (as `provision devices arm srv-01` does: intent in the store, which the
            #    running server re-reads when another process commits).
            with Store(tmp_path / "state" / "provision.db") as store:
                Lifecycle(store, load_lab(lab).inventory).arm("srv-01", None, by="test")
            console, took = _boot(ns, disk, tmp_path / "boot1.log", INSTALL_MARKER)
            print(f"\ninstall boot: {took:.1f} s (TCG, {platform.machine()})")
            assert INSTALL_MARKER in console, f"{console[-3000:]}\n--- serve:\n{sp.output[-3000:]}"
            assert disk.read_bytes()[510:512] == b"\x55\xaa"
            # 2. Installed: the next boot goes to the local disk, whose boot sector says so.
            console, took = _boot(ns, disk, tmp_path / "boot2.log", LOCAL_MARKER)
            print(f"local boot: {took:.1f} s")
            assert LOCAL_MARKER in console, f"{console[-3000:]}\n--- serve:\n{sp.output[-3000:]}"
            assert "installed" in console  # the script's own line says why it went to the disk
        with Store(tmp_path / "state" / "provision.db") as store:
            intent = store.intents()["srv-01"]
            kinds = [e.kind for e in store.events(kinds=["device.installing", "device.installed"])]
        assert not intent.armed and intent.outcome == "installed"
        assert kinds == ["device.installing", "device.installed"]
        assert "installer.report" in sp.output
