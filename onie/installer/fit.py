"""The NOS as a U-Boot FIT image (kernel, initrd, device tree) for ONIE's U-Boot platforms.

ONIE's U-Boot runs `nos_bootcmd`, which a NOS installer sets (docs/onie.md "U-Boot platforms");
ours loads one FIT image and `bootm`s it. The image source (.its) is written here and compiled
by `mkimage -f` (Debian's u-boot-tools; it calls dtc). mkimage stamps the FIT with
SOURCE_DATE_EPOCH when set, so the same inputs give the same bytes.

The kernel is `kernel_noload`: U-Boot runs it where it lies, and for arm64 `bootm` moves an
Image to the alignment its header asks (U-Boot's bootm_load_os, booti_setup), so one FIT fits
every board without a per-board load address.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

KERNEL = "kernel-1"
RAMDISK = "ramdisk-1"
FDT = "fdt-1"
CONFIG = "conf-1"
UBOOT_ARCH = {"arm64": "arm64", "x86_64": "x86_64"}


class FitError(RuntimeError):
    pass


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_its(description: str, arch: str, kernel: Path, initrd: Path, fdt: Path | None = None) -> str:
    """The image source: three images with SHA-256 hashes and one default configuration."""
    a = UBOOT_ARCH[arch]
    fdt_image = ""
    fdt_ref = ""
    if fdt is not None:
        fdt_image = f"""
        {FDT} {{
            description = {_q(fdt.name)};
            data = /incbin/({_q(str(fdt))});
            type = "flat_dt";
            arch = "{a}";
            compression = "none";
            hash-1 {{ algo = "sha256"; }};
        }};"""
        fdt_ref = f'\n            fdt = "{FDT}";'
    return f"""/dts-v1/;

/ {{
    description = {_q(description)};
    #address-cells = <1>;

    images {{
        {KERNEL} {{
            description = "Linux kernel";
            data = /incbin/({_q(str(kernel))});
            type = "kernel_noload";
            arch = "{a}";
            os = "linux";
            compression = "none";
            load = <0>;
            entry = <0>;
            hash-1 {{ algo = "sha256"; }};
        }};
        {RAMDISK} {{
            description = "initramfs";
            data = /incbin/({_q(str(initrd))});
            type = "ramdisk";
            arch = "{a}";
            os = "linux";
            compression = "none";
            hash-1 {{ algo = "sha256"; }};
        }};{fdt_image}
    }};

    configurations {{
        default = "{CONFIG}";
        {CONFIG} {{
            description = {_q(description)};
            kernel = "{KERNEL}";
            ramdisk = "{RAMDISK}";{fdt_ref}
        }};
    }};
}};
"""


def build_fit(
    out: Path,
    description: str,
    arch: str,
    kernel: Path,
    initrd: Path,
    fdt: Path | None = None,
    source_date_epoch: int | None = None,
) -> Path:
    """Write the FIT image to `out` with mkimage; FitError names what is missing."""
    mkimage = shutil.which("mkimage")
    if mkimage is None:
        raise FitError("mkimage not found: install Debian's u-boot-tools (and device-tree-compiler)")
    if fdt is not None and not fdt.is_file():
        raise FitError(f"device tree {fdt} not found")
    its = out.with_suffix(".its")
    its.write_text(render_its(description, arch, kernel.resolve(), initrd.resolve(), fdt and fdt.resolve()))
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(int(source_date_epoch or 0))}
    res = subprocess.run([mkimage, "-f", str(its), str(out)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise FitError(f"mkimage -f {its} failed: {(res.stderr or res.stdout).strip()[-800:]}")
    return out


__all__ = ["CONFIG", "FDT", "KERNEL", "RAMDISK", "FitError", "build_fit", "render_its"]
