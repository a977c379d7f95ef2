"""The Linux kernel command line a switch boots with, from platform (hardware profile) and NOS
settings. Pure: `onie.installer` renders it into grub.cfg, `provision.config.profiles` shows it.
"""

from __future__ import annotations

from collections.abc import Iterable


def console_arg(device: str, speed: int) -> str:
    """`console=ttyS1,115200n8`: 8 data bits, no parity, as ONIE itself boots."""
    return f"console={device},{speed}n8"


def kernel_args(
    console: str,
    cmdlines: Iterable[str] = (),
    blacklist: Iterable[str] = (),
    load: Iterable[str] = (),
) -> tuple[str, ...]:
    """The words, in order: the given command lines' words (platform's first, then the NOS's;
    repeats dropped), the module settings, and the serial `console` word LAST: the last console=
    becomes /dev/console, where the NOS's init prints [kernel admin-guide serial-console.rst].
    Module names keep their first-seen order (the kernel does not care; people reading it do)."""
    words: list[str] = []
    for part in cmdlines:
        for word in part.split():
            if word != console and word not in words:
                words.append(word)
    banned = list(dict.fromkeys(blacklist))
    wanted = list(dict.fromkeys(load))
    if banned:
        # `module_blacklist=`, not `modprobe.blacklist=`: the kernel's own loader refuses these
        # (kernel/module: module_blacklist), so the ban holds for modprobe, udev coldplug and
        # request_module alike; `modprobe.blacklist=` is only read by kmod's modprobe. Built-in
        # drivers need `initcall_blacklist=` in a cmdline instead.
        words.append("module_blacklist=" + ",".join(banned))
    if wanted:
        # systemd-modules-load reads modules_load= from the kernel command line.
        words.append("modules_load=" + ",".join(wanted))
    words.append(console)
    return tuple(words)


__all__ = ["console_arg", "kernel_args"]
