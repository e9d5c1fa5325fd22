"""legato: a Python web framework for real-time applications.

WebSockets are first-class, HTTP serves the pages and APIs around them, and a pub/sub
hub carries broadcasts from one process to many hosts. The protocol core lives in
:mod:`legato.protocol` (sans-I/O RFC 6455/7692), the built-in server in
:mod:`legato.server`.
"""

from typing import TYPE_CHECKING, Any

from . import status
from .datastructures import URL, Address, FormData, Headers, QueryParams, UploadFile
from .exceptions import (
    BadRequest,
    Forbidden,
    HistoryGap,
    HTTPError,
    InternalServerError,
    InvalidHandshake,
    InvalidMessage,
    LegatoError,
    LocalProtocolError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RemoteProtocolError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnprocessableEntity,
    WebSocketClientClosed,
    WebSocketDenied,
    WebSocketDisconnect,
)
# Imported on first use: `import legato` stays cheap, and helpers with optional
# dependencies load only when asked for.
_LAZY = {
    "App": "app",
    "Request": "requests", "TestClient": "testclient",
    "Response": "responses", "HTMLResponse": "responses", "PlainTextResponse": "responses",
    "JSONResponse": "responses", "RedirectResponse": "responses",
    "StreamingResponse": "responses", "FileResponse": "responses",
    "Close": "websocket", "WebSocket": "websocket", "WebSocketState": "websocket",
    "ws_accept": "websocket", "ws_close": "websocket", "ws_send": "websocket",
}

if TYPE_CHECKING:
    from .app import App
    from .requests import Request
    from .responses import (
        FileResponse,
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        RedirectResponse,
        Response,
        StreamingResponse,
    )
    from .testclient import TestClient
    from .websocket import Close, WebSocket, WebSocketState, ws_accept, ws_close, ws_send


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'legato' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "App", "Request", "WebSocket", "WebSocketState", "TestClient", "status",
    "Response", "HTMLResponse", "PlainTextResponse", "JSONResponse", "RedirectResponse",
    "StreamingResponse", "FileResponse",
    "Close", "ws_send", "ws_close", "ws_accept",
    "URL", "Address", "FormData", "Headers", "QueryParams", "UploadFile",
    "HTTPError", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
    "MethodNotAllowed", "PayloadTooLarge", "UnprocessableEntity", "TooManyRequests",
    "InternalServerError", "ServiceUnavailable",
    "WebSocketDisconnect", "WebSocketClientClosed", "WebSocketDenied", "InvalidMessage",
    "HistoryGap", "LegatoError", "LocalProtocolError", "RemoteProtocolError", "InvalidHandshake",
    "__version__",
]


def __dir__() -> list[str]:
    return sorted(__all__)
