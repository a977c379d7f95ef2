"""What a boot file is, by the magic bytes its format defines, so a truncated download or a file
copied under the wrong name is caught by `provision check` instead of by a machine that hangs.

Only a few bytes are read from each file (never the whole file). The formats (docs/lab.md
"provision check"):
- x86 Linux kernel (bzImage): `HdrS` at 0x202, the boot protocol header
  (Linux Documentation/arch/x86/boot.rst).
- arm64 Linux kernel (Image): `ARM\\x64` at 0x38 (Documentation/arch/arm64/booting.rst); also a
  gzip-compressed Image (GRUB decompresses it on load) and the EFI zboot image (`MZ`, then
  `zimg` at 4) that newer kernels build as vmlinuz.efi.
- initrd: a cpio archive in the kernel's "newc" format (`070701`, or `070702` with checksums),
  bare or compressed with one of the compressors the kernel unpacks (gzip, xz, zstd, lz4,
  bzip2, lzma, lzo); a plain cpio may be followed by a compressed one (early microcode first).
- squashfs: `hsqs` at 0 (little-endian superblock magic 0x73717368).
"""

from __future__ import annotations

from pathlib import Path

HEAD = 4096  # enough for every magic below

_BZIMAGE = (0x202, b"HdrS")
_ARM64_IMAGE = (0x38, b"ARM\x64")
_CPIO = (b"070701", b"070702")
_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x02\x21\x4c\x18": "lz4",  # the legacy frame the kernel's own lz4 compression writes
    b"\x04\x22\x4d\x18": "lz4",
    b"BZh": "bzip2",
    b"\x5d\x00\x00": "lzma",
    b"\x89LZO": "lzo",
}
SQUASHFS = b"hsqs"


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEAD)


def _at(head: bytes, where: tuple[int, bytes]) -> bool:
    offset, magic = where
    return head[offset : offset + len(magic)] == magic


def _compressor(head: bytes) -> str | None:
    return next((name for magic, name in _COMPRESSED.items() if head.startswith(magic)), None)


def describe(head: bytes) -> str:
    """A short name for what `head` looks like, for error messages."""
    if not head:
        return "an empty file"
    if _at(head, _BZIMAGE):
        return "an x86 Linux kernel (bzImage)"
    if _at(head, _ARM64_IMAGE):
        return "an arm64 Linux kernel (Image)"
    if head.startswith(_CPIO):
        return "a cpio archive"
    if head.startswith(SQUASHFS):
        return "a squashfs image"
    comp = _compressor(head)
    if comp:
        return f"{comp}-compressed data"
    if head.startswith(b"MZ"):
        return "a PE/EFI executable"
    if head.startswith(b"\x7fELF"):
        return "an ELF file (an uncompressed vmlinux? boot loaders want bzImage or Image)"
    if head.startswith(b"#!"):
        return "a script"
    return "none of the known formats"


def kernel_problem(path: Path, arch: str | None) -> str | None:
    """None if `path` is a kernel for `arch` ("x86_64", "arm64"; None: either), else what it is."""
    head = _head(path)
    x86 = _at(head, _BZIMAGE)
    arm = (
        _at(head, _ARM64_IMAGE)
        or head.startswith(b"\x1f\x8b")
        or (head.startswith(b"MZ") and head[4:8] == b"zimg")
    )
    ok = {"x86_64": x86, "arm64": arm, None: x86 or arm}[arch]
    if ok:
        return None
    return f"is {describe(head)}"


def initrd_problem(path: Path) -> str | None:
    """None if `path` is a (compressed) cpio archive, else what it is."""
    head = _head(path)
    if head.startswith(_CPIO) or _compressor(head):
        return None
    return f"is {describe(head)}"


def squashfs_problem(path: Path) -> str | None:
    head = _head(path)
    if head.startswith(SQUASHFS):
        return None
    return f"is {describe(head)}"


__all__ = ["SQUASHFS", "describe", "initrd_problem", "kernel_problem", "squashfs_problem"]
