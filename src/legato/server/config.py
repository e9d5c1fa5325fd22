"""Every setting of the built-in server, with its default and the reason for it.

Limits are the server's first line of defence (docs/server.md lists the answers they
give); each is in bytes, seconds or a count, and ``None`` never means "unlimited" unless
said so.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from ..protocol import DEFAULT_MAX_MESSAGE_SIZE, PerMessageDeflate

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    #: Serve WebSockets (False: upgrade requests are plain HTTP requests, R8/--no-ws).
    ws: bool = True
    log_level: str = "info"
    access_log: bool = False

    # -- HTTP limits ---------------------------------------------------------------------
    #: Request line (method, target, version) in bytes → 414. 8 KiB, as nginx's default
    #: large_client_header_buffers line and what browsers stay well within.
    max_request_line: int = 8192
    #: One header field (name + value) in bytes → 431.
    max_header_size: int = 8192
    #: Header fields per request → 431. 100, as h11 and Go's net/http allow.
    max_headers: int = 100
    #: The whole request head in bytes → 431.
    max_head_size: int = 64 * 1024
    #: Request body in bytes → 413. 1 MiB like nginx's client_max_body_size; raise it for
    #: uploads (None: unlimited, the app reads with flow control).
    max_body_size: int | None = 1024 * 1024
    #: Absolute deadline (s) for the whole request head, from the first byte (or from
    #: accept for a new connection) → 408: a slowloris client cannot hold a slot longer.
    head_timeout: float = 10.0
    #: Idle time (s) allowed between keep-alive requests before the server closes.
    keepalive_timeout: float = 5.0
    #: Concurrent connections; one more gets 503 (HTTP and WebSocket handshakes alike).
    max_connections: int = 25_000
    #: Pipelined requests buffered per connection before reading pauses.
    max_pipelined: int = 16
    #: Transport write buffer (bytes) above which senders wait, and below which they go on.
    write_high_water: int = 64 * 1024
    write_low_water: int = 16 * 1024

    # -- WebSocket -----------------------------------------------------------------------
    ws_max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    #: Keepalive: a Ping every ping_interval s; no Pong within ping_timeout s closes the
    #: connection (1011). 20 s/20 s: inside the 30-60 s idle cut-off of common proxies.
    ws_ping_interval: float | None = 20.0
    ws_ping_timeout: float | None = 20.0
    #: How long (s) to wait for the peer's Close after ours before dropping TCP.
    ws_close_timeout: float = 10.0
    #: When a peer breaks the protocol (RFC 6455 §7.1.7), how long (s) the app gets to
    #: answer the messages that arrived before the bad frame before our Close goes out
    #: (it goes as soon as the app is back in receive()). 1 s: an echo or a lookup
    #: answers well within it, and a broken peer holds its slot no longer than that.
    #: 0: the Close goes out at once and those answers are lost.
    ws_fail_grace: float = 1.0
    #: Received messages queued per connection before reading pauses (backpressure).
    ws_max_queue: int = 32
    #: permessage-deflate settings, None to switch compression off.
    ws_deflate: PerMessageDeflate | None = field(default_factory=PerMessageDeflate)
    #: Origins allowed to open WebSockets (None: any; see RFC 6455 §10.2).
    ws_allowed_origins: list[str] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    #: Seconds HTTP requests in flight get to finish on shutdown before they are cut.
    shutdown_timeout: float = 10.0
    #: "auto": run the ASGI lifespan protocol if the app supports it; "on"; "off".
    lifespan: str = "auto"
    #: ``--workers N``: each worker listens on a socket of its own bound with
    #: SO_REUSEPORT, so the kernel spreads connections evenly over them (by address
    #: hash) instead of all of them waking for each one on a shared socket (Linux; one
    #: shared socket elsewhere, with --reload, or when False). docs/design.md.
    reuse_port: bool = True
    #: After startup, gc.freeze() what exists (modules, app): full GC passes then scan
    #: only per-connection objects, which keeps their cost flat as the app grows.
    gc_freeze: bool = True
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    root_path: str = ""

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server TLS context when a certificate is configured (https/wss)."""
        if not self.ssl_certfile:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context
