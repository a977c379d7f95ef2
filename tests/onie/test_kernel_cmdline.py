"""onie.kernel_cmdline: the one builder of the kernel command line (installer grub.cfg and
`provision profiles show` alike)."""

from __future__ import annotations

from onie.kernel_cmdline import console_arg, kernel_args
from provision.config.profiles import ProfileRegistry


def test_order_dedup_and_console_last():
    console = console_arg("ttyS1", 9600)
    assert console == "console=ttyS1,9600n8"
    words = kernel_args(
        console,
        ("quiet console=ttyS1,9600n8 acpi=off", "quiet nos=1"),
        blacklist=("b", "a", "b"),
        load=("x", "y", "x"),
    )
    assert words == ("quiet", "acpi=off", "nos=1", "module_blacklist=b,a", "modules_load=x,y", console)
    assert kernel_args(console) == (console,)


def test_profiles_use_the_same_builder():
    for profile in ProfileRegistry(use_env=False).all():
        expected = kernel_args(
            console_arg(profile.console.device, profile.console.speed),
            (profile.cmdline,),
            blacklist=profile.modules_blacklist,
        )
        assert profile.kernel_args() == expected, profile.id
        assert profile.kernel_args()[-1].startswith("console=")
        assert not any(w.startswith("modprobe.blacklist=") for w in profile.kernel_args())
