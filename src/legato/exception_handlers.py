"""The App's exception handlers (``@app.exception_handler``) and what an error becomes:
the handler's answer for its exception types, an ``HTTPError``'s status, or nothing (a
500 the server logs). Handed to the endpoints, which need no more of the App to answer
an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .exceptions import HTTPError
from .plans import Plans
from .providers import Context, call_plan
from .requests import Request
from .responses import Response, error_response, to_response
from .sessions import SessionCodec

__all__ = ["ExceptionHandlers"]

#: What an exception handler takes by name, besides what any callable may.
_EXTRAS = ("exc", "error")


class ExceptionHandlers:
    """Handlers by exception type (first match wins, in registration order), and
    ``debug`` (traceback pages and texts, H6)."""

    __slots__ = ("handlers", "plans", "sessions", "debug")

    def __init__(self, plans: Plans, sessions: SessionCodec | None, *,
                 debug: bool = False) -> None:
        self.handlers: list[tuple[type[BaseException], Callable[..., Any]]] = []
        self.plans = plans
        self.sessions = sessions
        self.debug = debug

    async def respond(self, request: Request, exc: Exception) -> Response | None:
        """The response for ``exc``, or None when it is unhandled (a 500 to log)."""
        for exc_type, handler in self.handlers:
            if isinstance(exc, exc_type):
                ctx = Context(self.plans.providers, request.scope, request=request)
                ctx.extras = {"exc": exc, "error": exc}
                result = await call_plan(self.plans.for_callable(handler, _EXTRAS), ctx)
                return to_response(result)
        if isinstance(exc, HTTPError):
            response = error_response(exc)
            if self.sessions is not None:
                for name, value in self.sessions.headers_for(request.scope):
                    response.headers.append(name, value)
            return response
        return None
