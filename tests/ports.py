"""Loopback ports for tests that start servers (on sys.path through pytest's
``pythonpath``, so every test folder imports the same two helpers)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int) -> bool:
    """Does something accept connections on 127.0.0.1:``port``?"""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True
