"""The `manual` arming driver: say what to do on the device, and leave the waiting to the engine.

For switches nobody can reach from here (no ssh into the NOS, no BMC). `arm` prints, per the
device's boot style, the commands an operator runs on its NOS console (bootstyle.py) and returns
at once; the engine then waits for the installer's reports like for any other driver. With
`instructions: TEXT` in the options that text is printed instead ({name}, {ip} filled in).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from provision.rollout.drivers.base import ArmRequest
from provision.rollout.drivers.bootstyle import boot_style, steps_text


def _stderr(text: str) -> None:
    click.echo(text, err=True)


class ManualDriver:
    name = "manual"
    rearm_safe = True  # base.Driver

    def __init__(self, options: Mapping[str, Any], say: Callable[[str], None] | None = None):
        self.options = dict(options)
        self.say = say or _stderr

    def instructions(self, req: ArmRequest) -> str:
        opts = {**self.options, **req.options}
        dev = req.device
        given = opts.get("instructions")
        if given:
            return str(given).format(name=dev.name, ip=dev.ip or "?", mac=dev.mac or "?")
        style = boot_style(dev, opts)
        where = f" ({dev.ip})" if dev.ip else ""
        lines = [f"{dev.name}{where}: on its NOS console, as root ({style.value} platform):"]
        lines += [f"    {cmd}" for cmd in steps_text(dev, opts, style)]
        lines.append(
            f"  then it installs from this server (rollout {req.rollout_id}); waiting for its report"
        )
        return "\n".join(lines)

    async def arm(self, req: ArmRequest) -> str:
        text = self.instructions(req)
        self.say(text)
        return "told the operator: " + " ; ".join(ln.strip() for ln in text.splitlines()[1:-1])

    async def current_version(self, req: ArmRequest) -> str | None:
        return None


__all__ = ["ManualDriver"]
