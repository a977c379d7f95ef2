"""Free ports on 127.0.0.1 for servers a test starts (the fixture BMC, sushy-emulator, ipmi_sim).
Standard library only, so that pure tests can import it without the emulators' dependencies."""

from __future__ import annotations

import socket


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now (the kernel's choice for a bind to port 0)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)
