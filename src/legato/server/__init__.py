"""legato's built-in asyncio HTTP/1.1 + WebSocket server (ASGI 3).

``Server(app, ServerConfig(...))`` serves any ASGI 3 app; ``legato run module:app`` is
the command line (see legato.cli).
"""

from .config import ServerConfig
from .serve import Server, import_app
from .websocket import ClientDisconnected

__all__ = ["ClientDisconnected", "Server", "ServerConfig", "import_app"]
