"""The protocol's error codes (docs/channels.md, Errors) and how exceptions map to them."""

from __future__ import annotations

import asyncio
from typing import Any

from ..exceptions import HTTPError, InvalidMessage, LegatoError
from ..hub.backend import HubUnavailable

__all__ = ["CODES", "ChannelError", "error_for"]

#: Codes the server sends in ``error`` frames.
CODES = ("invalid", "not_found", "forbidden", "not_joined", "timeout", "too_many",
         "unavailable", "error")

_BY_STATUS = {400: "invalid", 422: "invalid", 401: "forbidden", 403: "forbidden",
              404: "not_found", 429: "too_many", 503: "unavailable", 504: "timeout"}


class ChannelError(LegatoError):
    """Raise in a channel hook or rpc handler to answer with ``code`` (one of
    :data:`CODES`); the clients raise it too, with their own codes added."""

    def __init__(self, code: str, message: str = "", details: Any = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code
        self.details = details


def error_for(exc: BaseException, *, debug: bool = False) -> tuple[str, str, Any]:
    """``(code, message, details)`` for an exception a hook or handler raised; the
    message of an unexpected exception is shown in debug mode only."""
    if isinstance(exc, ChannelError):
        return exc.code, exc.message, exc.details
    if isinstance(exc, InvalidMessage):
        return "invalid", str(exc), exc.errors or None
    if isinstance(exc, HTTPError):
        code = _BY_STATUS.get(exc.status_code, "error")
        detail = exc.detail
        return code, str(detail) if not isinstance(detail, (dict, list)) else code, \
            detail if isinstance(detail, (dict, list)) else None
    if isinstance(exc, HubUnavailable):
        return "unavailable", str(exc), None
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout", "the handler took too long", None
    return "error", f"{type(exc).__name__}: {exc}" if debug else "internal error", None
