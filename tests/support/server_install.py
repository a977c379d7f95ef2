"""A stand-in OS installer for the server lifecycle VM test (tests/vm/test_server_install_vm.py).

The initramfs is static busybox, the host kernel's own modules for an e1000 NIC and a virtio disk
(Debian builds both as modules), and an /init that does what an OS installer's last steps do:
get an address, write the disk (a 512-byte boot sector that prints `LOCAL_MARKER` on the serial
port and halts), then report `stage=complete status=ok` to the URL that `provision serve` put on
the kernel command line (`provision.report=...`), and power off (QEMU runs with -no-reboot).
"""

from __future__ import annotations

import stat
from pathlib import Path

from tests.support.vm import busybox_entries, write_initramfs

INSTALL_MARKER = "PROVISION-INSTALLER-DONE"
LOCAL_MARKER = "PROVISION-LOCAL-DISK-OK"
MODULES = ("virtio_pci", "virtio_blk", "e1000")

# 16-bit real mode, loaded at 0x7c00 by the BIOS: DS=0, print the message on COM1, halt.
#   cld; xor ax,ax; mov ds,ax; mov si,0x7c17; mov dx,0x3f8
#   next: lodsb; test al,al; jz stop; out dx,al; jmp next
#   stop: cli; hlt; jmp stop(hlt)
_CODE = bytes.fromhex("FC31C08ED8BE177CBAF803AC84C07403EEEBF8FAF4EBFD")


def boot_sector() -> bytes:
    msg = f"\r\n{LOCAL_MARKER}\r\n".encode() + b"\0"
    body = _CODE + msg
    assert len(_CODE) == 0x17 and len(body) <= 446
    return body + bytes(510 - len(body)) + b"\x55\xaa"


INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
url=$(sed -n 's/.*provision\\.report=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
echo "installer: report to $url"
ip link set eth0 up
udhcpc -i eth0 -n -q -f -t 10 -T 2 -s /udhcpc.sh || echo "installer: no address"
n=0; while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
dd if=/bootsector.bin of=/dev/vda bs=512 count=1 conv=fsync && echo "installer: disk written"
sync
wget -q -O /dev/null "$url&stage=complete&status=ok&message=installed" && echo "{INSTALL_MARKER}"
poweroff -f
"""

UDHCPC = """#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/${mask:-24}" dev "$interface"
"""


def _module_order(kernel_release: str) -> list[tuple[str, Path]]:
    """MODULES and what they need, dependencies first (from modules.dep)."""
    root = Path("/lib/modules") / kernel_release
    needs: dict[str, list[str]] = {}  # module path -> the module paths it needs
    for line in (root / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        needs[path] = deps.split()

    def name(path: str) -> str:
        return Path(path).name.split(".ko")[0]

    by_name = {name(p): p for p in needs}
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        for dep in needs[path]:
            visit(dep)
        order.append((name(path), root / path))

    for module in MODULES:
        visit(by_name[module])
    return order


def build_installer_initramfs(busybox: Path, kernel_release: str, out: Path) -> Path:
    order = _module_order(kernel_release)
    entries = busybox_entries(busybox, INIT) + [
        ("lib", stat.S_IFDIR | 0o755, b"", 0),
        ("lib/modules", stat.S_IFDIR | 0o755, b"", 0),
        ("udhcpc.sh", stat.S_IFREG | 0o755, UDHCPC.encode(), 0),
        ("bootsector.bin", stat.S_IFREG | 0o644, boot_sector(), 0),
        ("modules.order", stat.S_IFREG | 0o644, "\n".join(n for n, _ in order).encode() + b"\n", 0),
    ]
    entries += [
        (f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, path.read_bytes(), 0) for name, path in order
    ]
    return write_initramfs(entries, out)
