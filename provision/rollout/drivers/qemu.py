"""The `qemu` arming driver: a lab guest's QEMU monitor (QMP) over its unix socket.

QMP is JSON lines: the server greets ({"QMP": ...}), the client sends `qmp_capabilities`, then
commands; asynchronous events ({"event": ...}) may arrive between answers and are skipped.
What QMP offers for "boot something else next time" (docs/rollout.md "Drivers"):
- `qom-set <device> bootindex N`: a device's bootindex is a settable property; QEMU rebuilds
  the firmware's boot order (fw_cfg "bootorder") at the next reset. Option `bootindex:
  {net0: 0, disk0: 1}` (a device id or a QOM path).
- HMP `boot_set` (through `human-monitor-command`): the PC machine's legacy boot order string
  (`n` = network first), also read at the next reset. Option `boot_set: n`. There is no QMP
  twin of `-boot once=`: both are lasting until changed back.
- then `system_reset` (option `reset: false` to skip it).
A QMP socket cannot read the guest's NOS version: current_version runs `version_command` (a
host command, {name} filled in; the last word of its output) when given, else None.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from collections.abc import Mapping
from typing import Any

from provision.errors import EXIT_INPUT
from provision.rollout.drivers.base import ArmingError, ArmRequest
from provision.rollout.drivers.bootstyle import version_of

QMP_TIMEOUT_S = 10.0


class Qmp:
    """One QMP session on a unix socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str):
        self.reader, self.writer, self.where = reader, writer, where

    @classmethod
    async def open(cls, path: str, timeout: float = QMP_TIMEOUT_S) -> Qmp:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
        qmp = cls(reader, writer, path)
        greeting = await qmp._read(timeout)
        if "QMP" not in greeting:
            raise ArmingError(f"{path} is not a QMP socket (greeting {greeting})")
        await qmp.execute("qmp_capabilities")
        return qmp

    async def _read(self, timeout: float) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ArmingError(f"QMP {self.where}: QEMU closed the socket")
        return json.loads(line)

    async def execute(self, command: str, **arguments: Any) -> Any:
        timeout = QMP_TIMEOUT_S
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.writer.write(json.dumps(msg).encode() + b"\n")
        await self.writer.drain()
        while True:
            answer = await self._read(timeout)
            if "event" in answer:
                continue
            if "error" in answer:
                err = answer["error"]
                raise ArmingError(f"QMP {command}: {err.get('class')}: {err.get('desc')}")
            return answer.get("return")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class QemuDriver:
    name = "qemu"
    rearm_safe = False  # base.Driver

    def __init__(self, options: Mapping[str, Any]):
        self.options = dict(options)

    def _socket(self, req: ArmRequest, opts: Mapping[str, Any]) -> str:
        path = opts.get("qmp")
        if not path:
            raise ArmingError(
                f"{req.device.name}: the qemu driver needs the option qmp: SOCKET (e.g. /run/lab/{{name}}.qmp)",
                fix="start the guest with -qmp unix:PATH,server=on,wait=off and name PATH in the plan",
                exit_code=EXIT_INPUT,
            )
        return str(path).format(name=req.device.name)

    async def arm(self, req: ArmRequest) -> str:
        opts = {**self.options, **req.options}
        path = self._socket(req, opts)
        name = req.device.name
        try:
            qmp = await Qmp.open(path)
        except (OSError, TimeoutError) as exc:
            raise ArmingError(
                f"{name}: cannot open the QMP socket {path}: {getattr(exc, 'strerror', None) or exc}",
                fix="is the guest running with -qmp unix:PATH,server=on,wait=off?",
            ) from None
        done: list[str] = []
        try:
            for dev, index in dict(opts.get("bootindex") or {}).items():
                qom = dev if str(dev).startswith("/") else f"/machine/peripheral/{dev}"
                await qmp.execute("qom-set", path=qom, property="bootindex", value=int(index))
                done.append(f"{dev} bootindex {index}")
            if opts.get("boot_set"):
                out = await qmp.execute(
                    "human-monitor-command", **{"command-line": f"boot_set {opts['boot_set']}"}
                )
                if out and "now set to" not in str(out):  # HMP answers text, success included
                    raise ArmingError(f"{name}: boot_set {opts['boot_set']}: {str(out).strip()}")
                done.append(f"boot_set {opts['boot_set']}")
            if opts.get("reset", True):
                await qmp.execute("system_reset")
                done.append("system_reset")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ArmingError(f"{name}: QMP {path}: {exc}") from None
        finally:
            await qmp.close()
        return f"qmp {path}: {', '.join(done) or 'nothing'}"

    async def current_version(self, req: ArmRequest) -> str | None:
        opts = {**self.options, **req.options}
        command = opts.get("version_command")
        if not command:
            return None
        argv = [
            a.format(name=req.device.name)
            for a in (command if isinstance(command, list) else shlex.split(str(command)))
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
        return version_of(out.decode(errors="replace")) if proc.returncode == 0 else None


__all__ = ["QemuDriver", "Qmp"]
