"""Quick mode: `provision serve -i IF --kernel K`, a lab of one link built from flags.

Every machine on the link boots one kernel per architecture; authoritative mode hands out the half
of the link's subnet that does not hold our own address.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from provision.config.lab import (
    Arch,
    BootConfig,
    BootEntry,
    KernelSet,
    LabConfig,
    Mode,
    Paths,
    Pool,
    Subnet,
    Unknown,
)
from provision.errors import EXIT_INPUT, ProvisionError
from provision.server.hostnet import InterfaceAddress

QUICK_ENTRY = "quick"
MIN_POOL_NETWORK = 8  # addresses in the link's subnet: a /29 leaves a pool of three


def quick_pool(iface: InterfaceAddress) -> Pool:
    """Half of the interface's subnet, the half without our own address, minus network/broadcast."""
    net = iface.network
    if net.num_addresses < MIN_POOL_NETWORK:
        raise ProvisionError(
            f"{iface.ifname}'s subnet {net} is too small for a pool",
            "give the interface a /29 or larger, or write a lab.yml with an explicit pool",
            EXIT_INPUT,
        )
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    mid = (first + last) // 2
    own = int(iface.address)
    lo, hi = (mid + 1, last) if own <= mid else (first, mid)
    return Pool(ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi))


def quick_config(
    iface: InterfaceAddress,
    kernel: Path,
    initrd: Path | None,
    cmdline: str = "",
    kernel_arm64: Path | None = None,
    initrd_arm64: Path | None = None,
    cmdline_arm64: str | None = None,
    proxy: bool = False,
    state_dir: Path | None = None,
    http_port: int = 80,
) -> LabConfig:
    """A LabConfig that boots any machine on `iface` into one kernel (per arch)."""
    kernels = {Arch.X86_64: KernelSet(kernel, initrd, cmdline)}
    if kernel_arm64:
        kernels[Arch.ARM64] = KernelSet(kernel_arm64, initrd_arm64, cmdline_arm64 or cmdline)
    entry = BootEntry(QUICK_ENTRY, kernels, "from the command line")
    subnets: tuple[Subnet, ...] = ()
    if not proxy:
        subnets = (Subnet(iface.network, iface.ifname, (quick_pool(iface),)),)
    return LabConfig(
        interfaces=(iface.ifname,),
        mode=Mode.PROXY if proxy else Mode.AUTHORITATIVE,
        subnets=subnets,
        boot=BootConfig({QUICK_ENTRY: entry}, QUICK_ENTRY, Unknown.DISCOVER, QUICK_ENTRY),
        paths=Paths(state_dir=state_dir) if state_dir else Paths(),
        http_port=http_port,
    )
