"""Cross-site WebSocket hijacking: which handshakes legato refuses by default (W15).

Browsers send a site's cookies on a WebSocket handshake whatever page opens it, and the
Same-Origin Policy does not apply to WebSockets: without a check, any page on the web
can talk to a logged-in user's socket (RFC 6455 §10.2 asks servers to check ``Origin``).
So when a route sets no ``allowed_origins``, legato refuses (403) a handshake whose
``Origin`` is not the server's own host *and* that carries credentials: a ``Cookie``
header, or any handshake when the App uses sessions. Handshakes without ``Origin``
(non-browser clients) and without cookies have no ambient authority to abuse and pass.
``allowed_origins=["*"]`` switches the check off; a list of origins replaces it.
docs/threat-model.md explains the threat.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

__all__ = ["refused_cross_site", "same_origin"]

logger = logging.getLogger("legato.websocket")

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def refused_cross_site(scope: dict[str, Any], sessions: bool) -> bool:
    """True when the handshake comes from a foreign Origin and carries credentials.

    Reads the raw ASGI headers once (lower-case names, as ASGI requires): this runs for
    every handshake, so it builds no Headers object.
    """
    origin = host = None
    credentials = sessions
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value
        elif name == b"cookie":
            credentials = True
        elif name == b"host":
            host = value
    if origin is None or not credentials:
        return False
    text = origin.decode("latin-1")
    if same_origin(text, host.decode("latin-1") if host is not None else "",
                   scope.get("scheme", "ws")):
        return False
    logger.info("refused a cross-site WebSocket handshake to %s from Origin %r (it carries "
                "credentials; set allowed_origins to allow it)", scope.get("path"), text)
    return True


def same_origin(origin: str, host: str, scheme: str) -> bool:
    """Does ``origin`` (``scheme://host[:port]``) name the server reached as ``host``?

    A ``Host`` without a port matches the Origin's host on any port: behind a proxy that
    terminates TLS, the page is ``https://example.com`` (443) and the server sees
    ``Host: example.com`` on plain ``ws``. An explicit port must match.
    """
    try:
        parts = urlsplit(origin)
        origin_host, origin_port = parts.hostname, parts.port
        served = urlsplit("//" + host)
        served_host, served_port = served.hostname, served.port
    except ValueError:  # "null" (sandboxed pages, file://) and other junk are foreign
        return False
    if not origin_host or parts.scheme not in _DEFAULT_PORTS or origin_host != served_host:
        return False
    if served_port is None:
        return True
    if origin_port is None:
        origin_port = _DEFAULT_PORTS[parts.scheme]
    return origin_port == served_port
