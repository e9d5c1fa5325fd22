"""legato: a Python web framework for real-time applications.

WebSockets are first-class, HTTP serves the pages and APIs around them, and a pub/sub
hub carries broadcasts from one process to many hosts. The protocol core lives in
:mod:`legato.protocol` (sans-I/O RFC 6455/7692).
"""

from .exceptions import (
    InvalidHandshake,
    LegatoError,
    LocalProtocolError,
    RemoteProtocolError,
)

__version__ = "0.1.0"

__all__ = [
    "InvalidHandshake",
    "LegatoError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "__version__",
]
