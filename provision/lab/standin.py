"""The NOS stand-in of a simulated switch: a tiny root (busybox, stub tools) an sshd session runs in.

Each simulated switch has its own directory `<fleet>/sw/<address>/`, used as a chroot by the
session wrapper (`nos-session`, the sshd's ForceCommand): the switch is picked by the local
address the client connected to (`$SSH_CONNECTION`), so one sshd serves a whole fleet with one
address per switch. Inside, the tools a NOS uses to go back to ONIE (docs/rollout.md "Drivers")
are stubs that record what ran in /var/log/provision-calls and keep the state a real switch
keeps: ONIE's grubenv on ONIE-BOOT (onie_mode), the NOS's grubenv (next_entry), the U-Boot
environment (onie_boot_reason), and /etc/provision-nos-version. `reboot` only leaves
/run/reboot-requested; the fleet (provision.lab.fleet) then "boots" the switch into ONIE or back
into its NOS from that state. A file /etc/fail/<tool> makes that tool fail with its text.

Safety: the session runs in a new PID namespace and a chroot that holds no real reboot, so a
command meant for a switch cannot reach the host.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

CALLS_LOG = "var/log/provision-calls"
VERSION_FILE = "etc/provision-nos-version"
ONIE_GRUBENV = "mnt/onie-boot/grub/grubenv"
NOS_GRUBENV = "boot/grub/grubenv"
UBOOT_ENV = "etc/fw_env"
REBOOT_FLAG = "run/reboot-requested"
MOUNTED_FLAG = "run/onie-boot-mounted"

APPLETS = (
    "sh", "cat", "head", "tail", "echo", "printf", "test", "[", "mkdir", "rm", "touch", "grep",
    "sed", "sleep", "ls", "cut", "tr", "id", "true", "false", "env", "basename", "uname",
)  # fmt: skip

_PRELUDE = """#!/bin/sh
# provision lab stand-in tool (provision/lab/standin.py): records the call, fails on request.
me=${0##*/}
echo "$me${*:+ $*}" >> /var/log/provision-calls
if [ -e "/etc/fail/$me" ]; then cat "/etc/fail/$me" >&2; exit 1; fi
"""

STUBS: dict[str, str] = {
    "sbin/mount": """
case "$*" in
    *LABEL=ONIE-BOOT*|*"-L ONIE-BOOT"*) touch /run/onie-boot-mounted; exit 0 ;;
esac
echo "mount: only the ONIE-BOOT partition exists on this stand-in" >&2
exit 32
""",
    "bin/mountpoint": """
[ "$1" = -q ] && shift
[ "$1" = /mnt/onie-boot ] && [ -e /run/onie-boot-mounted ]
""",
    "mnt/onie-boot/onie/tools/bin/onie-boot-mode": """
[ -e /run/onie-boot-mounted ] || { echo "onie-boot-mode: ONIE-BOOT is not mounted" >&2; exit 1; }
[ "$1" = -o ] || { echo "usage: onie-boot-mode -o install|uninstall|rescue|update|embed|none" >&2; exit 1; }
case "$2" in install|uninstall|rescue|update|embed|none) ;; *) echo "bad mode $2" >&2; exit 1 ;; esac
echo "onie_mode=$2" > /mnt/onie-boot/grub/grubenv
""",
    "sbin/grub-reboot": """
[ -n "$1" ] || { echo "usage: grub-reboot ENTRY" >&2; exit 1; }
echo "next_entry=$1" > /boot/grub/grubenv
""",
    "sbin/fw_setenv": """
[ "$1" = -f ] && shift
[ -n "$1" ] || { echo "usage: fw_setenv NAME [VALUE]" >&2; exit 1; }
name=$1; shift
grep -v "^$name=" /etc/fw_env > /etc/fw_env.new 2>/dev/null
[ $# -gt 0 ] && echo "$name=$*" >> /etc/fw_env.new
cat /etc/fw_env.new > /etc/fw_env; rm -f /etc/fw_env.new
""",
    "sbin/fw_printenv": """
[ "$1" = -n ] && { sed -n "s/^$2=//p" /etc/fw_env; exit 0; }
cat /etc/fw_env
""",
    "sbin/reboot": """
touch /run/reboot-requested
echo "rebooting (simulated)"
""",
}


@dataclass(frozen=True)
class Layout:
    """The fleet directory: shared busybox and stubs, one root per switch address."""

    base: Path

    @property
    def busybox(self) -> Path:
        return self.base / "busybox"

    @property
    def stubs(self) -> Path:
        return self.base / "stubs"

    @property
    def session(self) -> Path:
        return self.base / "nos-session"

    def root(self, address: str) -> Path:
        return self.base / "sw" / address

    def prepare(self, busybox: str | None = None) -> None:
        """The shared files: a copy of a static busybox, the stubs, the session wrapper."""
        found = busybox or shutil.which("busybox")
        if not found:
            raise FileNotFoundError("busybox (Debian busybox-static) is needed for the NOS stand-in")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "sw").mkdir(exist_ok=True)
        if not self.busybox.exists():
            shutil.copy2(found, self.busybox)
        for rel, body in STUBS.items():
            path = self.stubs / rel.replace("/", "__")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_PRELUDE + body.lstrip("\n"))
            path.chmod(0o755)
        self.session.write_text(
            f"""#!/bin/sh
# ForceCommand of the lab fleet's sshd (provision/lab/standin.py): the client's command runs in
# the stand-in root of the switch whose address it connected to, in its own PID namespace.
set -- $SSH_CONNECTION
root="{self.base}/sw/$3"
[ -d "$root/bin" ] || {{ echo "no simulated switch answers at $3" >&2; exit 255; }}
exec env -i PATH=/sbin:/bin HOME=/ unshare --pid --fork chroot "$root" /bin/sh -c "${{SSH_ORIGINAL_COMMAND:-exit 0}}"
"""
        )
        self.session.chmod(0o755)

    def make_root(self, address: str, version: str | None) -> Path:
        """A switch's root (hard links to the shared files: 500 roots cost inodes, not space)."""
        root = self.root(address)
        for d in (
            "bin",
            "sbin",
            "etc/fail",
            "run",
            "var/log",
            "boot/grub",
            "mnt/onie-boot/grub",
            "dev",
            "tmp",
        ):
            (root / d).mkdir(parents=True, exist_ok=True)
        _link(self.busybox, root / "bin/busybox")
        for applet in APPLETS:
            target = root / "bin" / applet
            if not target.is_symlink() and not target.exists():
                target.symlink_to("busybox")
        for rel in STUBS:
            _link(self.stubs / rel.replace("/", "__"), root / rel)
        null = root / "dev/null"
        if not null.exists():
            os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        for rel in (CALLS_LOG, UBOOT_ENV):
            (root / rel).touch()
        if version is not None:
            (root / VERSION_FILE).write_text(f"{version}\n")
        return root


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: a copy
        shutil.copy2(src, dst)


def read_env(path: Path) -> dict[str, str]:
    """name=value lines (the stubs' grubenv and U-Boot environment files)."""
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep:
                out[name] = value
    return out


def calls(root: Path) -> list[str]:
    """The stand-in tools that ran in this root, in order ("tool args")."""
    path = root / CALLS_LOG
    return path.read_text().splitlines() if path.is_file() else []


__all__ = ["Layout", "calls", "read_env"]
