"""Free TCP ports on this machine, for the demo's embedded servers (and the tests' servers).

A port is free when a server can bind it now, as asyncio's servers bind (with SO_REUSEADDR).
A connect probe is not enough: a port can be nobody's listening port and still be the local
end of a client connection, which makes a later bind fail with "address in use".
"""

from __future__ import annotations

import socket

from gateway.errors import GatewayError

__all__ = ["bindable", "free_ports"]


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """A server could listen on ``port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_ports(count: int = 1, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive ports a server can bind now (simulators of several
    machines listen on P, P+1, …); the kernel chooses P."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            first = int(sock.getsockname()[1])
        if first + count <= 65535 and all(bindable(first + k, host) for k in range(1, count)):
            return first
    raise GatewayError(f"no run of {count} free TCP ports found on {host}")
