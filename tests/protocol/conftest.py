"""Fixtures shared by the protocol tests; the helpers themselves live in ``wire.py``."""

from __future__ import annotations

import pytest

from legato.protocol.connection import Role
from wire import Peer


@pytest.fixture(params=[Role.SERVER, Role.CLIENT], ids=["server", "client"])
def role(request: pytest.FixtureRequest) -> Role:
    """Both roles, for rules that bind servers and clients alike."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def peer(role: Role) -> Peer:
    """The remote end of a connection in each role, with default limits."""
    return Peer(role)


@pytest.fixture
def server() -> Peer:
    """A client talking to a server-role connection (its frames are masked)."""
    return Peer(Role.SERVER)


@pytest.fixture
def client() -> Peer:
    """A server talking to a client-role connection (its frames are not masked)."""
    return Peer(Role.CLIENT)


# -- opening handshake (test_handshake.py, test_deflate.py) -----------------------------

#: RFC 6455 §1.3: the example Sec-WebSocket-Key.
RFC_EXAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _upgrade_headers(*, without=(), replace=None, extra=()):  # type: ignore[no-untyped-def]
    """Headers of a valid RFC 6455 §4.1 upgrade request, with one rule bent.

    ``without`` drops headers (case-insensitive), ``replace`` swaps a header's value (a
    list gives one header line per value), ``extra`` appends lines.
    """
    from legato.protocol.headers import Headers

    base = [("Host", "server.example.com"), ("Upgrade", "websocket"),
            ("Connection", "Upgrade"), ("Sec-WebSocket-Key", RFC_EXAMPLE_KEY),
            ("Sec-WebSocket-Version", "13")]
    dropped = {name.lower() for name in without}
    replace = {name.lower(): value for name, value in (replace or {}).items()}
    items = []
    for name, value in base:
        if name.lower() not in dropped:
            new = replace.pop(name.lower(), value)
            items.extend((name, v) for v in ([new] if isinstance(new, str) else new))
    for name, new in replace.items():
        items.extend((name, v) for v in ([new] if isinstance(new, str) else new))
    items.extend(extra)
    return Headers(items)


@pytest.fixture
def upgrade_headers():  # type: ignore[no-untyped-def]
    """Factory for the headers of a valid upgrade request (see ``_upgrade_headers``)."""
    return _upgrade_headers
