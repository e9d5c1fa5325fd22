"""Signed-cookie sessions (SPEC H4), shared by HTTP and WebSocket handlers.

The session lives in the cookie itself: base64 of its JSON, signed with a timestamp by
``itsdangerous.TimestampSigner``. The server keeps nothing, so every worker and host
reads every session; the price is that the client can *read* the data (signed, not
encrypted — keep secrets out) and that it must fit a cookie (browsers drop cookies over
4096 bytes, so we log a warning past that).

A cookie that is missing, tampered with, expired or not JSON loads as an empty session:
the client sent garbage or something stale, and the answer is a fresh session, not an
error page. The cookie is written back only when the session was changed.

A WebSocket can carry the cookie only in its 101 response, so once the handshake is
accepted its session is *sealed*: a change then raises :class:`SessionSealed` at the
line that makes it, instead of being lost without a word.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from . import jsoncodec
from .datastructures import format_set_cookie
from .scope import HTTPConnection

__all__ = ["Session", "SessionCodec", "SessionSealed", "SEALED_AFTER_ACCEPT"]

logger = logging.getLogger("legato.sessions")

#: RFC 6265 §6.1: user agents should support at least 4096 bytes per cookie, and the
#: major browsers stop there.
COOKIE_LIMIT = 4096


#: Why a WebSocket's session cannot change once the connection is accepted.
SEALED_AFTER_ACCEPT = (
    "ws.session cannot change after the WebSocket is accepted: the session cookie "
    "travels only in the 101 response, so this change would be lost. Change it before "
    "accept (in on_connect, in a before_request(websocket=True) hook, or in a handler "
    "with auto_accept=False before ws.accept()), or over an HTTP request "
    "(docs/framework.md, Sessions)")


class SessionSealed(RuntimeError):
    """A change to a session that can no longer reach the client's cookie."""


class Session(dict[str, Any]):
    """A dict that remembers whether it was changed (``modified``), so unchanged
    sessions cost no Set-Cookie header; :meth:`seal` makes every later change an
    error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modified = False
        #: Why the session can no longer change (None: it can).
        self.sealed: str | None = None

    def seal(self, reason: str) -> None:
        """From now on a change raises :class:`SessionSealed` with ``reason``."""
        self.sealed = reason

    def _change(self) -> None:
        if self.sealed is not None:
            raise SessionSealed(self.sealed)
        self.modified = True

    def __setitem__(self, key: str, value: Any) -> None:
        self._change()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        if key in self:
            self._change()
        super().__delitem__(key)

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self._change()
        super().__ior__(other)
        return self

    # The methods below mark the session only when they change it: a no-op such as
    # ``session.pop("flash", None)`` on every page must not rewrite the cookie.

    def clear(self) -> None:
        if self:
            self._change()
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self._change()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        if self:
            self._change()
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._change()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            self._change()
        super().update(*args, **kwargs)


class SessionCodec:
    """Reads sessions from request cookies and writes them into Set-Cookie headers.

    ``max_age`` (seconds; None for a browser-session cookie) is both the cookie's
    lifetime and the oldest signature :meth:`load` accepts, so a copied cookie cannot
    outlive it. ``https_only`` marks the cookie ``Secure`` on every response.
    ``RuntimeError`` when itsdangerous is not installed.
    """

    def __init__(self, secret_key: str | bytes, *, cookie_name: str = "session",
                 max_age: int | None = 14 * 24 * 3600, same_site: str = "lax",
                 https_only: bool = False, path: str = "/") -> None:
        try:
            import itsdangerous  # noqa: PLC0415 - optional extra
        except ImportError:
            raise RuntimeError("signed-cookie sessions need itsdangerous: "
                               "pip install legato[sessions]") from None
        if not secret_key:
            raise ValueError("secret_key must not be empty")
        # The salt keeps these signatures from being valid anywhere else the same key
        # signs (itsdangerous's default salt is shared by every application).
        self._signer = itsdangerous.TimestampSigner(secret_key, salt="legato.session")
        self._bad_signature = itsdangerous.BadSignature  # SignatureExpired is one too
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.same_site = same_site
        self.https_only = https_only
        self.path = path
        format_set_cookie(cookie_name, path=path, samesite=same_site)  # ValueError early

    def load(self, cookies: dict[str, str]) -> Session:
        """The session in ``cookies``; empty when missing, tampered with, expired or
        not a JSON object. Never raises for what the client sent."""
        raw = cookies.get(self.cookie_name)
        if not raw:
            return Session()
        try:
            payload = self._signer.unsign(raw, max_age=self.max_age)
            data = jsoncodec.loads(_b64decode(payload))
        except (self._bad_signature, ValueError, binascii.Error):
            return Session()
        return Session(data) if isinstance(data, dict) else Session()

    def load_into(self, scope: dict[str, Any]) -> None:
        """Put the request's session in ``scope["session"]`` (unless one is there)."""
        if "session" not in scope:
            scope["session"] = self.load(HTTPConnection(scope).cookies)

    def headers_for(self, scope: dict[str, Any]) -> list[tuple[str, str]]:
        """The Set-Cookie header for the session in ``scope``; none when unchanged."""
        session = scope.get("session")
        if session is None:
            return []
        value = self.set_cookie_header(session, scope.get("scheme") in ("https", "wss"))
        return [("set-cookie", value)] if value else []

    def dumps(self, session: dict[str, Any]) -> str:
        """The signed cookie value; ``TypeError`` for values JSON cannot express."""
        # Unpadded: '=' is a cookie-octet, but some cookie parsers quote or split on it.
        payload = base64.urlsafe_b64encode(jsoncodec.dumps(dict(session))).rstrip(b"=")
        return self._signer.sign(payload).decode("ascii")

    def set_cookie_header(self, session: Session, secure: bool) -> str | None:
        """The Set-Cookie value to send, or None when the session is unchanged. An
        emptied session expires the cookie. ``secure`` (the request came over TLS) or
        ``https_only`` adds the Secure attribute."""
        if not session.modified:
            return None
        secure = secure or self.https_only
        if not session:
            return format_set_cookie(self.cookie_name, "", max_age=0,
                                     expires="Thu, 01 Jan 1970 00:00:00 GMT",
                                     path=self.path, secure=secure, httponly=True,
                                     samesite=self.same_site)
        header = format_set_cookie(self.cookie_name, self.dumps(session), max_age=self.max_age,
                                   path=self.path, secure=secure, httponly=True,
                                   samesite=self.same_site)
        if len(header) > COOKIE_LIMIT:
            logger.warning("session cookie is %d bytes; browsers drop cookies over %d",
                           len(header), COOKIE_LIMIT)
        return header


def _b64decode(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))  # padding restored
