"""The `ssh` arming driver: log into the switch's running NOS and send it back to ONIE.

asyncssh (pyproject dependency) because it is maintained, asyncio-native (a wave of hundreds of
sessions shares the engine's one event loop, no thread per switch as paramiko would need) and
reads OpenSSH known_hosts files itself. docs/rollout.md "Drivers".

Host keys are always checked, one of two ways (option `host_keys`):
- `known_hosts` (default): the key must be in `known_hosts` (default ~/.ssh/known_hosts).
- `pin`: trust on first use. The first key seen is recorded in `pin_file` (OpenSSH known_hosts
  format; `provision rollout` sets the default to ssh_known_hosts in the state folder, else
  /var/lib/provision/ssh_known_hosts) and from then on enforced like known_hosts.
Credentials never come from the plan: `identity_file` (a private key file), `password_file`, or
the environment (`password_env`, default PROVISION_SSH_PASSWORD; `identity_env`, default
PROVISION_SSH_KEY naming a key file); without any, asyncssh's defaults (~/.ssh/id_*, the agent).
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncssh

from provision.errors import EXIT_INPUT
from provision.rollout.drivers.base import ArmingError, ArmRequest
from provision.rollout.drivers.bootstyle import (
    REBOOT_COMMAND,
    VERSION_COMMAND,
    arm_commands,
    boot_style,
    pick,
    version_of,
)

DEFAULT_PIN_FILE = "/var/lib/provision/ssh_known_hosts"
CONNECT_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 60.0
# After `reboot` the session may end without an exit status (the NOS goes down under it): a
# reboot that neither fails nor returns within this time is taken as under way.
REBOOT_WAIT_S = 10.0
_pin_lock = asyncio.Lock()


def _address(req: ArmRequest) -> str:
    dev = req.device
    addr = req.options.get("address") or dev.ip or dev.hostname
    if not addr:
        raise ArmingError(
            f"{dev.name}: no address to ssh to (the device has no ip or hostname)",
            fix="set ip: or hostname: for it in the inventory, or the driver option address",
            exit_code=EXIT_INPUT,
        )
    return str(addr)


def _host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _steps_script(commands: list[str]) -> str:
    """The commands as one sh script: each announced on stderr, the first failure ends it with
    that command's exit code and names its step."""
    lines = []
    for i, cmd in enumerate(commands):
        lines.append(f"printf '@@step {i}\\n' >&2")
        lines.append(f'{{ {cmd}\n}} || {{ rc=$?; printf \'@@failed {i} %s\\n\' "$rc" >&2; exit "$rc"; }}')
    return "\n".join(lines) + "\n"


def _failed_step(stderr: str, count: int) -> tuple[int | None, str]:
    """(index of the failed step, its last line of stderr) from _steps_script's markers."""
    step: int | None = None
    said: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("@@step "):
            step, said = int(line.split()[1]), []
        elif line.startswith("@@failed "):
            step = int(line.split()[1])
            break
        elif line.strip():
            said.append(line.strip())
    if step is not None and not 0 <= step < count:
        step = None
    return step, said[-1] if said else ""


class SshDriver:
    name = "ssh"
    rearm_safe = True  # base.Driver

    def __init__(self, options: Mapping[str, Any]):
        if "password" in options:
            raise ArmingError(
                "the ssh driver does not take a password from the plan",
                fix="use password_file: FILE or password_env: VARIABLE (docs/rollout.md, Drivers)",
                exit_code=EXIT_INPUT,
            )
        self.options = dict(options)

    # -- connection ---------------------------------------------------------------------------

    def _credentials(self, opts: Mapping[str, Any], name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        key = opts.get("identity_file") or os.environ.get(str(opts.get("identity_env", "PROVISION_SSH_KEY")))
        if key:
            try:
                out["client_keys"] = [asyncssh.read_private_key(str(key))]
            except (OSError, asyncssh.KeyImportError) as exc:
                raise ArmingError(
                    f"{name}: cannot read the ssh key {key}: {exc}",
                    fix="point identity_file (or $PROVISION_SSH_KEY) at a readable private key",
                    exit_code=EXIT_INPUT,
                ) from None
        pw_file = opts.get("password_file")
        if pw_file:
            try:
                out["password"] = Path(str(pw_file)).read_text().rstrip("\n")
            except OSError as exc:
                raise ArmingError(
                    f"{name}: cannot read password_file {pw_file}: {exc.strerror}", exit_code=EXIT_INPUT
                ) from None
        else:
            pw = os.environ.get(str(opts.get("password_env", "PROVISION_SSH_PASSWORD")))
            if pw:
                out["password"] = pw
        if "password" in out and "client_keys" not in out:
            out["client_keys"] = None  # password only: do not offer ~/.ssh keys first
        return out

    async def _known_hosts(self, opts: Mapping[str, Any], host: str, port: int) -> tuple[Any, Path | None]:
        """(asyncssh known_hosts argument, pin file to record the key in after connecting)."""
        mode = opts.get("host_keys", "known_hosts")
        if mode == "known_hosts":
            path = Path(str(opts.get("known_hosts", "~/.ssh/known_hosts"))).expanduser()
            if not path.is_file():
                raise ArmingError(
                    f"no known_hosts file {path}: the host key of {host} cannot be checked",
                    fix="add the switches' keys to it (ssh-keyscan), name another with known_hosts:, "
                    "or pin keys on first use with host_keys: pin",
                    exit_code=EXIT_INPUT,
                )
            return str(path), None
        if mode != "pin":
            raise ArmingError(
                f"driver option host_keys is {mode!r}, not known_hosts or pin", exit_code=EXIT_INPUT
            )
        pin = Path(str(opts.get("pin_file", DEFAULT_PIN_FILE))).expanduser()
        pattern = _host_pattern(host, port)
        lines = []
        if pin.is_file():
            lines = [ln for ln in pin.read_text().splitlines() if ln.split(" ", 1)[0] == pattern]
        if lines:
            return asyncssh.import_known_hosts("\n".join(lines) + "\n"), None
        return None, pin  # first contact: accept, then record

    async def _connect(self, req: ArmRequest) -> asyncssh.SSHClientConnection:
        opts = {**self.options, **req.options}
        name = req.device.name
        host = _address(req)
        port = int(opts.get("port", 22))
        known, record_in = await self._known_hosts(opts, host, port)
        try:
            conn = await asyncssh.connect(
                host,
                port,
                username=str(opts.get("user", "root")),
                known_hosts=known,
                connect_timeout=float(opts.get("connect_timeout", CONNECT_TIMEOUT_S)),
                **self._credentials(opts, name),
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            where = opts.get("known_hosts", "~/.ssh/known_hosts")
            if opts.get("host_keys") == "pin":
                where = opts.get("pin_file", DEFAULT_PIN_FILE)
            raise ArmingError(
                f"{name}: host key of {host}:{port} does not match the one in {where} ({exc.reason})",
                fix="if the switch was really reinstalled or replaced, remove its line from "
                f"{where} and try again; otherwise someone else answers at {host}",
            ) from None
        except asyncssh.PermissionDenied:
            raise ArmingError(
                f"{name}: ssh to {opts.get('user', 'root')}@{host}:{port} refused the credentials",
                fix="check identity_file / password_file / $PROVISION_SSH_PASSWORD for this switch",
            ) from None
        except TimeoutError:
            raise ArmingError(
                f"{name}: no ssh answer from {host}:{port} within "
                f"{opts.get('connect_timeout', CONNECT_TIMEOUT_S)} s",
                fix="is the switch up and its NOS running sshd? (not yet back from a reboot?)",
            ) from None
        except (OSError, asyncssh.Error) as exc:
            # asyncio's "Connect call failed (addr)" hides the reason in errno
            reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
            raise ArmingError(
                f"{name}: cannot ssh to {host}:{port}: {reason}",
                fix="is the switch up and its NOS running sshd on that port?",
            ) from None
        if record_in is not None:
            await self._pin(conn, record_in, _host_pattern(host, port))
        return conn

    async def _pin(self, conn: asyncssh.SSHClientConnection, pin: Path, pattern: str) -> None:
        key = conn.get_server_host_key()
        if key is None:
            return
        line = f"{pattern} {key.export_public_key('openssh').decode().strip()}\n"
        async with _pin_lock:
            pin.parent.mkdir(parents=True, exist_ok=True)
            with pin.open("a") as f:
                f.write(line)

    async def _run(
        self, conn: asyncssh.SSHClientConnection, req: ArmRequest, command: str, timeout: float
    ) -> asyncssh.SSHCompletedProcess:
        name = req.device.name
        try:
            return await asyncio.wait_for(conn.run(command, check=False), timeout)
        except TimeoutError:
            raise ArmingError(f"{name}: `{command}` did not finish within {timeout:.0f} s") from None
        except (OSError, asyncssh.Error) as exc:
            raise ArmingError(f"{name}: `{command}`: the ssh session failed: {exc}") from None

    # -- the driver ---------------------------------------------------------------------------

    async def arm(self, req: ArmRequest) -> str:
        opts = {**self.options, **req.options}
        dev = req.device
        style = boot_style(dev, opts)
        commands = arm_commands(dev, opts, style)
        sudo = "sudo -n " if opts.get("sudo") else ""
        timeout = float(opts.get("command_timeout", COMMAND_TIMEOUT_S))
        conn = await self._connect(req)
        try:
            # One session for every step (a session costs the NOS a fork and a shell, and a wave
            # opens dozens at once); markers on stderr say which step failed.
            script = _steps_script(commands)
            if sudo:
                script = f"{sudo}sh -c {shlex.quote(script)}"
            done = await self._run(conn, req, script, timeout)
            if done.exit_status != 0:
                step, err = _failed_step(str(done.stderr or ""), len(commands))
                cmd = commands[step] if step is not None else "; ".join(commands)
                raise ArmingError(
                    f"{dev.name}: `{cmd}` failed (exit {done.exit_status}"
                    f"{', signal ' + str(done.exit_signal[0]) if done.exit_signal else ''})"
                    f"{': ' + err if err else ''}",
                    fix="the switch was not rebooted; fix the command (driver option commands) "
                    "or the NOS (docs/rollout.md, Drivers: what a NOS needs)",
                )
            reboot = str(pick(opts.get("reboot_command"), dev, style) or REBOOT_COMMAND)
            rebooted: asyncssh.SSHCompletedProcess | None
            try:
                rebooted = await asyncio.wait_for(conn.run(sudo + reboot, check=False), REBOOT_WAIT_S)
            except (TimeoutError, OSError, asyncssh.Error):
                rebooted = None  # the NOS went down under the session: the reboot is under way
            if rebooted is not None and rebooted.exit_status not in (0, None):
                raise ArmingError(
                    f"{dev.name}: `{reboot}` failed (exit {rebooted.exit_status}): "
                    f"{str(rebooted.stderr or '').strip()}",
                    fix="ONIE is armed for the next boot but the switch did not reboot: reboot it",
                )
        finally:
            conn.close()
        return f"{style.value}: {'; '.join(commands)}; {reboot} (ssh {_address(req)})"

    async def current_version(self, req: ArmRequest) -> str | None:
        opts = {**self.options, **req.options}
        command = str(pick(opts.get("version_command"), req.device, None) or VERSION_COMMAND)
        conn = await self._connect(req)
        try:
            done = await self._run(conn, req, command, float(opts.get("command_timeout", COMMAND_TIMEOUT_S)))
        finally:
            conn.close()
        if done.exit_status != 0:
            return None
        return version_of(str(done.stdout or ""))


__all__ = ["DEFAULT_PIN_FILE", "SshDriver"]
