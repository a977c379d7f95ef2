"""The firmware-stage binaries: iPXE from Debian's `ipxe` package, GRUB arm64 network images.

Nothing is downloaded at run time. iPXE comes from /usr/lib/ipxe (or a configured folder). Debian
ships no ARM64 iPXE (docs/netboot.md), so ARM64 UEFI machines get GRUB: an image built once per start
with `grub-mkimage -O arm64-efi` from grub-efi-arm64-bin's module folder (or a configured prebuilt
image). The TFTP image relies on the firmware's PXE: GRUB's efinet sets root to (tftp,siaddr). The
UEFI HTTP boot image must run `net_bootp` itself and name its (http,server) root, so one is built
per server address.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from provision import resources
from provision.errors import EXIT_ENV, ProvisionError

# Names clients ask for (DHCP bootfile / HTTP boot URL path). Stable: they appear in logs and events.
UNDIONLY = "undionly.kpxe"  # BIOS PXE → iPXE, using the NIC ROM's UNDI driver
IPXE_EFI = "ipxe.efi"
SNPONLY_EFI = "snponly.efi"
GRUB_ARM64_TFTP = "grubaa64.efi"
GRUB_ARM64_HTTP_PREFIX = "grubaa64-http-"  # + server address + ".efi"

# Modules in the GRUB network image: network (efinet, net, tftp, http), config scripting (normal,
# configfile, echo, test, sleep), booting Linux (linux, gzio for a gzip'd arm64 Image).
GRUB_MODULES = [
    "efinet",
    "tftp",
    "http",
    "net",
    "linux",
    "normal",
    "configfile",
    "echo",
    "gzio",
    "efi_gop",
    "part_gpt",
    "fat",
    "boot",
    "ls",
    "test",
    "sleep",
]


class BootFileError(ProvisionError):
    """A boot loader that cannot be found or built here (exit 3: a missing tool or file)."""

    exit_code = EXIT_ENV


@dataclass(frozen=True)
class BootFiles:
    """Where each firmware-stage binary is on disk; the policy serves them by these names."""

    ipxe_dir: Path
    grub_tftp: Path | None = None
    grub_http: dict[str, Path] = field(default_factory=dict)  # server address → image

    def ipxe(self, name: str) -> Path:
        return self.ipxe_dir / name

    def by_name(self, name: str) -> Path | None:
        name = name.lstrip("/")
        if name in (UNDIONLY, IPXE_EFI, SNPONLY_EFI):
            path = self.ipxe(name)
            return path if path.is_file() else None
        if name == GRUB_ARM64_TFTP:
            return self.grub_tftp
        if name.startswith(GRUB_ARM64_HTTP_PREFIX) and name.endswith(".efi"):
            return self.grub_http.get(name[len(GRUB_ARM64_HTTP_PREFIX) : -4])
        return None


def grub_http_name(server: str) -> str:
    return f"{GRUB_ARM64_HTTP_PREFIX}{server}.efi"


def check_ipxe(ipxe_dir: Path, needed: tuple[str, ...] = (UNDIONLY, IPXE_EFI)) -> None:
    missing = [n for n in needed if not (ipxe_dir / n).is_file()]
    if missing:
        raise BootFileError(
            f"iPXE binaries missing in {ipxe_dir}: {', '.join(missing)}",
            "apt-get install ipxe (Debian), or set paths.ipxe_dir in lab.yml to a folder that has them",
        )


def _env() -> jinja2.Environment:
    return resources.template_env()


def build_grub_image(
    modules_dir: Path, out: Path, kind: str, server: str | None = None, mkimage: str = "grub-mkimage"
) -> Path:
    """Build a GRUB arm64-efi network image (kind "tftp" or "http") into `out`; cached by content."""
    if not (modules_dir / "moddep.lst").is_file():
        raise BootFileError(
            f"GRUB arm64-efi modules not found in {modules_dir}",
            "run scripts/setup.sh (it unpacks grub-efi-arm64-bin:arm64 into /var/cache/provision-lab/arm64), "
            "or set paths.grub_arm64_modules / paths.grub_arm64_efi in lab.yml",
        )
    tool = shutil.which(mkimage)
    if not tool:
        raise BootFileError("grub-mkimage not found", "apt-get install grub-common")
    early = _env().get_template("grub/early.cfg.j2").render(kind=kind, server=server)
    key = hashlib.sha256((early + str(modules_dir) + " ".join(GRUB_MODULES)).encode()).hexdigest()[:16]
    stamp = out.with_suffix(out.suffix + ".key")
    if out.is_file() and stamp.is_file() and stamp.read_text() == key:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = out.with_suffix(".early.cfg")
    cfg.write_text(early)
    tmp = out.with_suffix(".tmp")
    proc = subprocess.run(
        [tool, "-d", str(modules_dir), "-O", "arm64-efi", "-o", str(tmp), "-p", "/grub", "-c", str(cfg)]
        + GRUB_MODULES,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BootFileError(f"grub-mkimage failed: {proc.stderr.strip()}", "check the GRUB module folder")
    tmp.replace(out)
    stamp.write_text(key)
    return out


def find_grub_modules(configured: Path) -> Path | None:
    """The configured arm64-efi module folder, else the lab cache scripts/setup.sh fills."""
    for candidate in (configured, Path("/var/cache/provision-lab/arm64/root/usr/lib/grub/arm64-efi")):
        if (candidate / "moddep.lst").is_file():
            return candidate
    return None


def prepare(
    ipxe_dir: Path,
    out_dir: Path,
    servers: list[str],
    grub_modules: Path,
    grub_prebuilt: Path | None = None,
    want_arm64: bool = True,
) -> BootFiles:
    """Check iPXE, and build the GRUB images ARM64 clients need (when arm64 entries exist)."""
    check_ipxe(ipxe_dir)
    if not want_arm64:
        return BootFiles(ipxe_dir)
    if grub_prebuilt is not None:
        if not grub_prebuilt.is_file():
            raise BootFileError(
                f"GRUB image not found: {grub_prebuilt}", "fix paths.grub_arm64_efi in lab.yml"
            )
        grub_tftp = grub_prebuilt
    else:
        grub_tftp = None
    modules = find_grub_modules(grub_modules)
    if modules is None:
        if grub_tftp is None:
            raise BootFileError(
                f"GRUB arm64-efi modules not found in {grub_modules}",
                "run scripts/setup.sh (arm64 pieces), or set paths.grub_arm64_modules or paths.grub_arm64_efi",
            )
        return BootFiles(ipxe_dir, grub_tftp)
    if grub_tftp is None:
        grub_tftp = build_grub_image(modules, out_dir / GRUB_ARM64_TFTP, "tftp")
    http = {s: build_grub_image(modules, out_dir / grub_http_name(s), "http", server=s) for s in servers}
    return BootFiles(ipxe_dir, grub_tftp, http)
