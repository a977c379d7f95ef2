"""`provision serve`: the DHCP/proxyDHCP + TFTP + HTTP boot server (provision.server)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

import click

from provision import logs
from provision.cli.common import EXIT_INPUT, CLIError
from provision.config import ConfigError
from provision.config import lab as labconfig
from provision.config.check import check_file
from provision.server import hostnet
from provision.server.quick import quick_config
from provision.server.root import BootServer


@click.command("serve")
@click.argument("lab", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("-i", "--interface", "interface", help="Quick mode: serve on this interface (no lab.yml).")
@click.option("--kernel", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="x86-64 kernel.")
@click.option("--initrd", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="x86-64 initrd.")
@click.option("--cmdline", default="", help="Kernel command line (both arches unless --cmdline-arm64).")
@click.option(
    "--kernel-arm64",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ARM64 kernel (Image); ARM64 UEFI machines then boot it through GRUB.",
)
@click.option(
    "--initrd-arm64", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="ARM64 initrd."
)
@click.option("--cmdline-arm64", default=None, help="ARM64 command line (default: --cmdline).")
@click.option("--proxy", is_flag=True, help="Quick mode: proxyDHCP (another server hands out addresses).")
@click.option("--http-port", type=int, default=None, help="HTTP port (default 80, or lab.yml's).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Leases, events and built images (default /var/lib/provision, or lab.yml's paths.state_dir).",
)
def serve(
    lab: Path | None,
    interface: str | None,
    kernel: Path | None,
    initrd: Path | None,
    cmdline: str,
    kernel_arm64: Path | None,
    initrd_arm64: Path | None,
    cmdline_arm64: str | None,
    proxy: bool,
    http_port: int | None,
    state_dir: Path | None,
) -> None:
    """Network-boot machines: DHCP (or proxyDHCP), TFTP and HTTP on the given interfaces only.

    \b
    With a lab file (interfaces, subnets, boot entries, devices):
      provision serve examples/lab.yml
    Quick mode, no file: boot every BIOS, UEFI and ARM64 machine on eth1 into one kernel:
      provision serve -i eth1 --kernel vmlinuz --initrd initrd.gz --cmdline console=ttyS0
      provision serve -i eth1 --kernel vmlinuz --initrd initrd.gz --proxy   # keep your DHCP server

    \b
    What each machine gets (the one policy: provision.server.router, docs/architecture.md):
      BIOS PXE → undionly.kpxe · UEFI x64 PXE → ipxe.efi · UEFI HTTP boot → http://…/ipxe.efi
      iPXE → http://…/ipxe/<mac>.ipxe (kernel + initrd over HTTP)
      ARM64 UEFI PXE → GRUB (grubaa64.efi) → grub/grub.cfg rendered per device → Image + initrd
      ARM64 UEFI HTTP boot → the same GRUB over HTTP · ONIE switches → lab.yml's `onie:` section
    Every DHCP/TFTP/HTTP step is recorded: see `provision status`. Stop with Ctrl-C (or SIGTERM).
    Exit codes: 2 bad lab.yml/arguments, 3 environment (not root, interface, port in use).
    """
    if lab and interface:
        raise CLIError("give either a lab file or --interface, not both", "drop one of them", EXIT_INPUT)
    if lab:
        if kernel or initrd or kernel_arm64 or proxy:
            raise CLIError(
                "--kernel/--initrd/--proxy are for quick mode",
                "put them in lab.yml's boot entries",
                EXIT_INPUT,
            )
        try:
            lab.read_bytes()
        except OSError as exc:
            raise CLIError(
                f"{lab}: cannot read: {exc.strerror}", "check the path to lab.yml", EXIT_INPUT
            ) from None
        try:
            cfg = labconfig.load_lab(lab, check_files=True)
        except ConfigError:
            # load_lab stops at the first error; `provision check`'s rules list them all.
            check_file(lab).raise_errors()
            raise
        if state_dir:
            cfg = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, state_dir=state_dir))
        if http_port:
            cfg = dataclasses.replace(cfg, http_port=http_port)
    elif interface:
        if not kernel:
            raise CLIError("quick mode needs --kernel", "add --kernel PATH [--initrd PATH]", EXIT_INPUT)
        iface = hostnet.interface_ipv4(interface)  # NetInfoError: exit 3 with its fix
        cfg = quick_config(
            iface,
            kernel.resolve(),
            initrd.resolve() if initrd else None,
            cmdline,
            kernel_arm64.resolve() if kernel_arm64 else None,
            initrd_arm64.resolve() if initrd_arm64 else None,
            cmdline_arm64,
            proxy=proxy,
            state_dir=state_dir,
            http_port=http_port or 80,
        )
    else:
        raise CLIError(
            "nothing to serve", "give a lab.yml, or --interface IF --kernel K (see --help)", EXIT_INPUT
        )

    logging.getLogger("provision").setLevel(min(logging.getLogger().level, logging.INFO))
    logging.getLogger("pxe").setLevel(min(logging.getLogger().level, logging.INFO))
    # No line of ours shows the caller's file and line (provision.logs), and finding them walks
    # the stack for every record, a lease's line included: the logging HOWTO's "Optimization".
    # Nor the thread or process (the same HOWTO: each is looked up for every record otherwise).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    if not logging.getLogger().handlers:  # run without the `provision` group (a test's runner)
        fmt = os.environ.get(logs.ENV_FORMAT, "")
        logs.configure(logging.getLogger().level, fmt if fmt in logs.FORMATS else "text")
    server = BootServer(cfg, on_ready=lambda: click.echo("provision serve: ready", err=True))
    try:
        server.prepare()  # ServeError (exit 3) or ConfigError (exit 2), each with its fix
        asyncio.run(server.run())
    except KeyboardInterrupt:
        pass


COMMANDS = [serve]
