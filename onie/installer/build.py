"""Build one installer image: header script + uncompressed tar payload, in one streaming pass.

The header is written with fixed-width placeholders for the payload's SHA-256 and size, the tar
streams through hashlib into the output file, then we seek back and patch the placeholders. So a
2 GB payload needs neither 2 GB of RAM nor a temporary copy. Kernel, initrd and squashfs are
compressed already: compressing the tar again would cost time and save little.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from onie.installer import tarstream
from onie.installer.fit import FitError, build_fit
from onie.installer.model import BuildResult, InstallerSpec, Member, PlatformInfo, Progress, UBootMedium
from onie.installer.render import (
    PAYLOAD_MARKER,
    render_grub_cfg,
    render_header,
    render_install,
    render_uboot_env,
)

UPDATER_COOKIE = "ONIE-UPDATER-COOKIE"  # ONIE refuses files with this in their first 100 lines
SHA_WIDTH, NUM_WIDTH = 64, 20
_SHA_PH, _SIZE_PH, _OFF_PH = "S" * SHA_WIDTH, "Z" * NUM_WIDTH, "O" * NUM_WIDTH
# Slack in the boot partition for GRUB's modules (x86_64-efi or i386-pc: ~5 MiB) and ext4 metadata.
BOOT_SLACK = 16 * 1024 * 1024
ROOTFS_MEMBER = "nos/rootfs.squashfs"  # streamed to disk by install.sh, never unpacked to tmpfs
FIT_MEMBER = "nos/nos.itb"  # U-Boot platforms: kernel + initrd (+ device tree) in one FIT image


class BuildError(ValueError):
    pass


def _field(n: int) -> str:
    # Left-aligned, space-padded: a zero-padded number would be read as octal by ash's $(( )).
    return f"{n:<{NUM_WIDTH}d}"


def _check_fits(spec: InstallerSpec) -> None:
    boot = spec.layout.boot
    need = spec.kernel.stat().st_size + spec.initrd.stat().st_size + BOOT_SLACK
    need += sum(f.source.stat().st_size for f in spec.files)
    root = spec.layout.rootfs
    if spec.rootfs is not None:
        rootfs_size = spec.rootfs.stat().st_size
        if root is None:
            need += rootfs_size
        elif root.size and rootfs_size > root.size:
            raise BuildError(
                f"rootfs image is {rootfs_size} bytes but partition {root.label} holds {root.size}"
            )
    elif root is not None:
        raise BuildError(f"the plan has a rootfs partition {root.label} but the payload has no rootfs")
    if boot.size and need > boot.size:
        raise BuildError(
            f"boot partition {boot.label} ({boot.size >> 20} MiB) is too small for kernel, initrd, "
            f"files and GRUB ({-(-need >> 20)} MiB needed)"
        )


def payload_plan(spec: InstallerSpec, fit: Path | None = None) -> list[tuple[str, Path, int]]:
    """(archive name, source, mode) of every file member, in archive (sorted) order."""
    files: list[tuple[str, Path, int]] = (
        [(FIT_MEMBER, fit, 0o644)]
        if fit is not None
        else [("nos/kernel", spec.kernel, 0o644), ("nos/initrd", spec.initrd, 0o644)]
    )
    if spec.rootfs is not None:
        files.append((ROOTFS_MEMBER, spec.rootfs, 0o644))
    for f in spec.files:
        files.append((f"nos/files/{f.dest}", f.source, 0o644))
    return sorted(files)


def build(
    spec: InstallerSpec,
    platform: PlatformInfo,
    out: Path,
    templates_dir: Path,
    progress: Callable[[Progress], None] | None = None,
    source_date_epoch: int | None = None,
    dtbs: Path | None = None,
) -> BuildResult:
    """Write the installer for `platform` to `out` (a file path); atomic: a failed build leaves
    no partial file. `source_date_epoch` (else 0) is the mtime of every tar member. U-Boot
    platforms get a FIT image (onie.installer.fit) whose device tree is `dtbs`/<profile fdt>."""
    out = Path(out)
    _check_fits(spec)
    if platform.firmware != "uboot":
        return _build(spec, platform, out, templates_dir, progress, source_date_epoch, None)
    u = platform.uboot
    if u is None:
        raise BuildError(f"{platform.onie_platform}: a U-Boot platform needs its profile's uboot: block")
    if spec.rootfs is not None and u.medium is not UBootMedium.DISK:
        raise BuildError(
            f"a rootfs image needs partitions: uboot medium {u.medium.value} has none (use disk)"
        )
    fdt = None
    if u.fdt:
        if dtbs is None:
            raise BuildError(f"{platform.onie_platform} needs the device tree {u.fdt}: give payload dtbs:")
        fdt = dtbs / u.fdt
    with tempfile.TemporaryDirectory(prefix="provision-fit-") as tmp:
        try:
            fit = build_fit(
                Path(tmp) / "nos.itb",
                f"{spec.nos_name} {spec.nos_version} for {platform.onie_platform}",
                platform.arch,
                spec.kernel,
                spec.initrd,
                fdt,
                source_date_epoch,
            )
        except FitError as exc:
            raise BuildError(str(exc)) from None
        size = fit.stat().st_size
        if u.max_size and size > u.max_size:
            raise BuildError(
                f"the FIT image is {size} bytes but the {u.medium.value} region holds {u.max_size}"
            )
        boot = spec.layout.boot
        if u.medium is UBootMedium.DISK and boot.size and size + BOOT_SLACK > boot.size:
            raise BuildError(
                f"boot partition {boot.label} ({boot.size >> 20} MiB) is too small for the FIT image"
            )
        return _build(spec, platform, out, templates_dir, progress, source_date_epoch, fit)


def _build(
    spec: InstallerSpec,
    platform: PlatformInfo,
    out: Path,
    templates_dir: Path,
    progress: Callable[[Progress], None] | None,
    source_date_epoch: int | None,
    fit: Path | None,
) -> BuildResult:
    mtime = int(source_date_epoch or 0)
    small: dict[str, tuple[bytes, int]] = {
        "installer/install.sh": (render_install(templates_dir, spec, platform, fit).encode(), 0o755),
    }
    if fit is None:
        small["installer/grub-uefi.cfg"] = (
            render_grub_cfg(templates_dir, spec, platform, "uefi").encode(),
            0o644,
        )
    if fit is not None:
        small["installer/uboot-env.txt"] = (
            render_uboot_env(spec, platform, fit.stat().st_size).encode(),
            0o644,
        )
    if fit is None and platform.arch == "x86_64":  # BIOS exists on x86 only (docs/hardware-profiles.md)
        small["installer/grub-bios.cfg"] = (
            render_grub_cfg(templates_dir, spec, platform, "bios").encode(),
            0o644,
        )
    for point, snippet in spec.hooks:
        text = "#!/bin/sh\n# hook " + point.value + " (from the switch spec)\n" + snippet.rstrip("\n") + "\n"
        small[f"installer/hooks/{point.value}.sh"] = (text.encode(), 0o755)
    big = payload_plan(spec, fit)
    # name -> (rendered bytes, or the file to stream, mode)
    members: dict[str, tuple[bytes | Path, int]] = dict(small)
    members.update({name: (src, mode) for name, src, mode in big})
    dirs = sorted({str(Path(n).parent) + "/" for n in members} | {"installer/", "nos/"})
    # Every parent folder, sorted, then every file, sorted: one fixed order for the same inputs.
    all_dirs = sorted({"/".join(d.split("/")[: i + 1]) + "/" for d in dirs for i in range(d.count("/"))})

    unpack = sorted(n for n in members if n != ROOTFS_MEMBER)
    header = render_header(templates_dir, spec, platform, _SHA_PH, _SIZE_PH, _OFF_PH, unpack)
    for ph in (_SHA_PH, _SIZE_PH, _OFF_PH):
        if header.count(ph) != 1:
            raise BuildError(f"header template must use each payload placeholder once ({ph[:4]}...)")
    header_bytes = header.encode("utf-8")
    header_bytes = header_bytes.replace(_OFF_PH.encode(), _field(len(header_bytes)).encode())
    if UPDATER_COOKIE.encode() in header_bytes:
        raise BuildError(f"the header contains {UPDATER_COOKIE}: ONIE would refuse it as an updater")

    total = sum(src.stat().st_size for _, src, _ in big)
    done = 0
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    listing: list[Member] = []
    try:
        with open(tmp, "wb") as f:
            f.write(header_bytes)
            w = tarstream.HashingWriter(f)
            for d in all_dirs:
                tarstream.write_dir(w, d, mtime)
            for name in sorted(members):
                src, mode = members[name]
                if isinstance(src, bytes):
                    tarstream.write_bytes(w, name, src, mode, mtime)
                    listing.append(Member(name, len(src)))
                    continue

                def tick(n: int, name: str = name) -> None:
                    nonlocal done
                    done += n
                    if progress:
                        progress(Progress(done, total, name))

                size = tarstream.write_file(w, name, src, mode, mtime, tick)
                listing.append(Member(name, size))
            tarstream.write_end(w)
            sha = w.sha256.hexdigest()
            f.seek(header_bytes.index(_SHA_PH.encode()))
            f.write(sha.encode())
            f.seek(header_bytes.index(_SIZE_PH.encode()))
            f.write(_field(w.count).encode())
            payload_size = w.count
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BuildResult(
        path=out,
        platform=platform.onie_platform,
        size=len(header_bytes) + payload_size,
        payload_sha256=sha,
        payload_size=payload_size,
        members=tuple(listing),
    )


__all__ = ["PAYLOAD_MARKER", "UPDATER_COOKIE", "BuildError", "build", "payload_plan"]
