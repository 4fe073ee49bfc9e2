"""Free loopback ports."""

from __future__ import annotations

import socket

# SeaweedFS also listens on every HTTP port + 10000 for gRPC.
GRPC_OFFSET = 10000


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int, start: int = 21000, stop: int = 29000) -> list[int]:
    """``count`` ports p in [start, stop) such that p and p + 10000 are both free on loopback."""
    found: list[int] = []
    for port in range(start, stop):
        if _is_free(port) and _is_free(port + GRPC_OFFSET):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError(f"not enough free ports in {start}..{stop}")


def wait_for_port(port: int, timeout: float) -> bool:
    """True once something accepts connections on 127.0.0.1:``port``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False
