"""Serving a directory's files (SPEC H3): ``app.static("/static", "public")``.

The path comes from the client, so it is the attack surface. A request may only ever
reach a regular file under ``directory``:

1. the decoded path is split on ``/``; a ``..`` segment, a backslash, a NUL byte or a
   drive letter rejects it (404), before the file system is asked anything;
2. the joined path is resolved with ``realpath`` and must still lie under the
   (resolved) directory, so a symlink cannot lead out unless ``follow_symlinks=True``;
3. only regular files are served; a directory is served as its ``index.html`` when
   ``html=True``, otherwise 404.

Every refusal is a 404, whatever the reason, so probes learn nothing about the disk.
Validators, 304s, ranges and HEAD come from :class:`~legato.responses.FileResponse`.
"""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any
from urllib.parse import quote

from .responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from .scope import route_path

__all__ = ["StaticFiles"]


class StaticFiles:
    """An ASGI app serving the files under ``directory`` for ``scope["path"]`` (the path
    below the mount point). GET and HEAD only. ``html=True`` serves ``index.html`` for
    directories and ``404.html`` (with status 404) for missing files, as a static site
    expects. ``RuntimeError`` at construction when ``directory`` is not a directory.
    """

    def __init__(self, directory: str | os.PathLike[str], *, html: bool = False,
                 follow_symlinks: bool = False) -> None:
        self.directory = os.path.realpath(directory)
        if not os.path.isdir(self.directory):
            raise RuntimeError(f"StaticFiles: {os.fspath(directory)!r} does not exist or is "
                               f"not a directory")
        self.html = html
        self.follow_symlinks = follow_symlinks

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            # A WebSocket upgrade for a file: closing before accept refuses the handshake.
            await send({"type": "websocket.close", "code": 1008})
            return
        response: Response
        if scope.get("method") not in ("GET", "HEAD"):
            response = PlainTextResponse("Method Not Allowed", 405,
                                         headers={"allow": "GET, HEAD"})
        else:
            # realpath and stat touch the disk: off the event loop, in one hop.
            response = await asyncio.to_thread(self.lookup, scope)
        await response(scope, receive, send)

    def lookup(self, scope: dict[str, Any]) -> Response:
        """The response for ``scope["path"]`` (blocking: runs in a worker thread)."""
        path = route_path(scope)
        segments = safe_segments(path)
        if segments is None:
            return self._not_found()
        target = self._resolve(os.path.join(self.directory, *segments))
        found = _stat(target)
        if found is not None and stat.S_ISDIR(found.st_mode):
            if not self.html:
                return self._not_found()
            if not path.endswith("/"):
                redirect = _slash_redirect(scope, segments)
                if redirect is not None:
                    return redirect
            target = self._resolve(os.path.join(target or "", "index.html"))
            found = _stat(target)
        if target is None or found is None or not stat.S_ISREG(found.st_mode):
            return self._not_found()
        return FileResponse(target, stat_result=found)

    def _resolve(self, path: str) -> str | None:
        """The real path, or None when it leads out of the directory."""
        real = os.path.realpath(path)
        if self.follow_symlinks:
            return real
        try:
            inside = os.path.commonpath([real, self.directory]) == self.directory
        except ValueError:  # another drive (Windows)
            inside = False
        return real if inside else None

    def _not_found(self) -> Response:
        if self.html:
            page = self._resolve(os.path.join(self.directory, "404.html"))
            found = _stat(page)
            if page is not None and found is not None and stat.S_ISREG(found.st_mode):
                return FileResponse(page, status_code=404, stat_result=found)
        return PlainTextResponse("Not Found", 404)


def safe_segments(path: str) -> list[str] | None:
    """The path's segments, or None when it must not reach the file system: ``..``
    anywhere (already percent-decoded by the server, so ``%2e%2e`` is caught here), a
    backslash (a separator on Windows), NUL (truncates C paths), a drive letter."""
    if "\x00" in path or "\\" in path:
        return None
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == ".." or os.path.splitdrive(segment)[0]:
            return None
        if os.altsep and os.altsep in segment:
            return None
        segments.append(segment)
    return segments


def _stat(path: str | None) -> os.stat_result | None:
    if path is None:
        return None
    try:
        return os.stat(path)
    except (OSError, ValueError):  # missing, too long, or not encodable for the OS
        return None


def _slash_redirect(scope: dict[str, Any], segments: list[str]) -> Response | None:
    """A directory asked for without its trailing slash: redirect to it, or the
    relative links of its index.html would resolve one level up. The Location is
    relative (RFC 9110 §10.2.2), so it is right whatever the mount prefix."""
    if segments:
        last = segments[-1]
    else:  # the mount point itself, e.g. "/static"
        last = str(scope.get("root_path", "")).rstrip("/").rpartition("/")[2]
        if not last:
            return None
    location = quote(last, safe="") + "/"  # a '?', '#' or ':' in the name stays a name
    query = scope.get("query_string", b"")
    if query:
        location += "?" + bytes(query).decode("latin-1")
    return RedirectResponse(location, status_code=307)
