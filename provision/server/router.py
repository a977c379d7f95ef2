"""The one decision point `provision serve` hands every front end: switch or server?

A DHCP request whose options say ONIE (provision.onie.identity, read once here) goes to the ONIE
policy; everything else to the server boot policy. Files: the boot policy's per-device files
first (iPXE scripts, grub.cfg, loaders, kernels), then the ONIE installer names. Nothing else
decides; pxe asks only this.
"""

from __future__ import annotations

from provision.boot.policy import BootPolicy
from provision.onie.identity import identity_of
from provision.onie.policy import OniePolicy
from pxe.policy import BootDecision, Client, RenderedFile


class Router:
    """`pxe.Policy`. `onie` is None when lab.yml has no `onie:` section: switches are then left
    to another server on the link (silence), as are machines the boot policy does not own."""

    def __init__(self, boot: BootPolicy, onie: OniePolicy | None = None) -> None:
        self.boot = boot
        self.onie = onie

    def swap(self, boot: BootPolicy, onie: OniePolicy | None) -> None:
        """A reloaded lab file's policies, both at once (the servers keep asking this router)."""
        self.boot, self.onie = boot, onie

    def decide(self, client: Client) -> BootDecision | None:
        identity = identity_of(client)
        if identity is not None:
            return self.onie.decide(client, identity) if self.onie is not None else None
        return self.boot.decide(client)

    def render(self, client: Client, path: str) -> RenderedFile | None:
        rendered = self.boot.render(client, path)
        if rendered is None and self.onie is not None:
            rendered = self.onie.render(client, path)
        return rendered
