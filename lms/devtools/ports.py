"""Local TCP ports for the processes tests, benchmarks and `make run` start side by side.

Each emulator, `lms mon` metrics server and `lms api` gets a port the kernel picked, so runs in
parallel (pytest-xdist workers, a benchmark beside a test run) never collide on a fixed one.
"""

from __future__ import annotations

import socket

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A port nothing listens on right now.

    The socket is closed before the caller binds, so another process could take the port in
    between; callers that can retry (the emulator launcher) do, the others accept the tiny race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def accepts_connections(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port: a log line saying a server
    started can come before its socket listens."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
