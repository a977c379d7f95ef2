"""A real OpenSSH sshd for simulated switches (Debian's openssh-server), run by the lab fleet and tests.

It runs in a private mount namespace (`unshare --mount`) so nothing it needs touches the host:
a tmpfs on /run holds its privilege-separation directory (/run/sshd), and when a password is
wanted a copy of /etc/shadow with that password for root is bind-mounted over /etc/shadow (sshd
without PAM checks the shadow file). Every session runs the stand-in's `nos-session`
(ForceCommand; provision/lab/standin.py). MaxStartups is raised: a rollout wave opens dozens of
connections at once, and OpenSSH's default (10:30:100) drops unauthenticated ones beyond 10.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def host_key(folder: Path, kind: str = "ed25519", name: str = "ssh_host_key") -> Path:
    """A new host key `folder/name` (ssh-keygen), replacing any there."""
    key = folder / name
    for p in (key, key.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "provision-lab", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key


def client_key(folder: Path, name: str = "id_ed25519") -> Path:
    """A new client key pair; returns the private key's path (the .pub is beside it)."""
    return host_key(folder, "ed25519", name)


def _shadow_with(password: str, folder: Path) -> Path:
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
    ).stdout.strip()
    lines = []
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "root":
            fields[1] = hashed
        lines.append(":".join(fields))
    out = folder / "shadow"
    out.write_text("\n".join(lines) + "\n")
    out.chmod(0o600)
    return out


def write_config(
    folder: Path,
    *,
    force_command: Path,
    authorized_keys: Path | None,
    port: int = 22,
    listen: str = "0.0.0.0",
    host_key_path: Path | None = None,
    password: str | None = None,
    max_startups: int = 2000,
) -> list[str]:
    """Write `folder/sshd_config` (and a host key when none is given); return the argv that runs
    sshd in the foreground, logging to stderr, in its own mount namespace."""
    folder.mkdir(parents=True, exist_ok=True)
    key = host_key_path or host_key(folder)
    keys = authorized_keys or (folder / "authorized_keys")
    if not keys.exists():
        keys.touch()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {listen}:{port}",
                f"HostKey {key}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {keys}",
                "PermitRootLogin yes",
                "PubkeyAuthentication yes",
                f"PasswordAuthentication {'yes' if password else 'no'}",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                f"MaxStartups {max_startups}",
                "MaxAuthTries 4",
                "LoginGraceTime 30",
                f"ForceCommand {force_command}",
                "PermitTTY no",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                "AllowAgentForwarding no",
                "PrintMotd no",
                "PrintLastLog no",
                "UseDNS no",
                "LogLevel INFO",
                "",
            ]
        )
    )
    setup = "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd"
    if password:
        setup += f" && mount --bind {shlex.quote(str(_shadow_with(password, folder)))} /etc/shadow"
    sshd = shutil.which("sshd") or SSHD
    run = f"exec {sshd} -D -e -f {shlex.quote(str(config))}"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{setup} && {run}"]


def public_key_line(key: Path) -> str:
    """The host key's public half as known_hosts wants it after the host pattern."""
    return key.with_suffix(".pub").read_text().split(" provision-lab")[0].strip()


__all__ = ["client_key", "host_key", "public_key_line", "write_config"]
