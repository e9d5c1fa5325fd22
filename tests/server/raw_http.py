"""Raw-socket HTTP/1.1 for server tests: byte-exact requests, an independent response
reader, and the checks every bad-input test shares.

:class:`RawConnection` reads responses itself (Content-Length, chunked, or until close)
instead of trusting a client library, so a test sees exactly what went over the wire.
:func:`bystanders` opens two connections before a bad-input case and proves afterwards
that the server kept serving them: one idle between keep-alive requests, one in the
middle of a request body.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RawConnection", "Response", "request", "websocket_handshake", "send_slowly",
    "bystanders", "expect_rejection", "KEY",
]

#: The sample nonce of RFC 6455 §1.3, a valid Sec-WebSocket-Key.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@dataclass
class Response:
    """One response as it arrived; header names lower-cased, body de-chunked."""

    status_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    chunks: list[bytes] | None = None  # the chunk payloads, for a chunked response
    raw_head: bytes = field(default=b"", repr=False)

    @property
    def status(self) -> int:
        return int(self.status_line.split(b" ")[1])

    def header(self, name: str) -> bytes | None:
        """The one value of ``name``; AssertionError if it is repeated."""
        values = self.values(name)
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    def values(self, name: str) -> list[bytes]:
        key = name.lower().encode()
        return [value for n, value in self.headers if n == key]


def request(method: str = "GET", target: str = "/", headers: Sequence[tuple[str, str]] = (),
            body: bytes = b"", *, version: str = "HTTP/1.1") -> bytes:
    """A well-formed request: Host first, Content-Length for a body unless framed already."""
    lines = [f"{method} {target} {version}", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers]
    framed = any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers)
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def websocket_handshake(target: str = "/", *, key: str = KEY, version: str = "13") -> bytes:
    """An RFC 6455 §4.1 opening handshake request."""
    return request("GET", target, [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)])


def send_slowly(sock: socket.socket, data: bytes) -> int:
    """Send ``data`` one byte per ``send()``, stopping once the server answers or closes.

    Returns how many bytes went out."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for sent in range(len(data)):
        if select.select([sock], [], [], 0)[0]:
            return sent
        try:
            sock.send(data[sent:sent + 1])
        except OSError:
            return sent
    return len(data)


class RawConnection:
    """A client socket with a read buffer, so pipelined responses can be taken one by one."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    @classmethod
    def open(cls, server: Any) -> RawConnection:
        return cls(server.connect())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------------------ reading

    def _fill(self, deadline: float) -> bool:
        """Read more into the buffer; False at end of stream (a reset counts as one)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _take_until(self, marker: bytes, deadline: float) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            if not self._fill(deadline):
                raise AssertionError(f"closed before {marker!r}; got {bytes(self.buffer)!r}")
        data = bytes(self.buffer[:end])
        del self.buffer[:end + len(marker)]
        return data

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not self._fill(deadline):
                raise AssertionError(f"closed {size - len(self.buffer)} bytes short; "
                                     f"got {bytes(self.buffer)!r}")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def response(self, timeout: float = 5.0, *, head_only: bool = False) -> Response:
        """The next complete response (an interim 1xx counts as one)."""
        deadline = time.monotonic() + timeout
        try:
            head = self._take_until(b"\r\n\r\n", deadline)
            status_line, *lines = head.split(b"\r\n")
            headers = []
            for line in lines:
                name, sep, value = line.partition(b":")
                assert sep and name == name.strip(), f"malformed response header {line!r}"
                headers.append((name.lower(), value.strip(b" \t")))
            response = Response(status_line, headers, raw_head=head)
            self._read_body(response, head_only, deadline)
        except TimeoutError:
            raise AssertionError(f"no complete response within {timeout} s; "
                                 f"got {bytes(self.buffer)!r}") from None
        return response

    def _read_body(self, response: Response, head_only: bool, deadline: float) -> None:
        status = response.status
        if head_only or status < 200 or status in (204, 304):
            return
        coding = response.header("transfer-encoding")
        length = response.header("content-length")
        if coding is not None:
            assert coding == b"chunked", coding
            assert length is None, "Transfer-Encoding with Content-Length"
            response.chunks = []
            while size := int(self._take_until(b"\r\n", deadline).split(b";")[0], 16):
                response.chunks.append(self._take(size, deadline))
                assert self._take(2, deadline) == b"\r\n", "chunk not followed by CRLF"
            assert self._take_until(b"\r\n", deadline) == b"", "unexpected trailers"
            response.body = b"".join(response.chunks)
        elif length is not None:
            response.body = self._take(int(length), deadline)
        else:
            response.body = self.rest(deadline - time.monotonic())

    def wait_for(self, marker: bytes, timeout: float = 2.0) -> None:
        """Block until ``marker`` has arrived, consuming nothing."""
        deadline = time.monotonic() + timeout
        try:
            while marker not in self.buffer:
                if not self._fill(deadline):
                    raise AssertionError(f"closed before {marker!r}; got {bytes(self.buffer)!r}")
        except TimeoutError:
            raise AssertionError(f"{marker!r} not received within {timeout} s; "
                                 f"got {bytes(self.buffer)!r}") from None

    def rest(self, timeout: float = 2.0) -> bytes:
        """Everything until the server closes; AssertionError if it stays open."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            raise AssertionError(f"the server did not close within {timeout} s; "
                                 f"got {bytes(self.buffer)!r}") from None
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def closed_silently(self, timeout: float = 2.0) -> bool:
        """The server closes without sending anything (more)."""
        return self.rest(timeout) == b""


def expect_rejection(conn: RawConnection, status_line: bytes,
                     timeout: float = 0.5) -> Response:
    """The exact error status with ``connection: close``, then the server closes, and
    nothing after the error (a pipelined request) is answered."""
    response = conn.response(timeout)
    assert response.status_line == status_line, response
    assert response.header("connection") == b"close", response
    assert conn.rest(timeout) == b"", "bytes after the error response"
    return response


@contextmanager
def bystanders(server: Any) -> Iterator[None]:
    """Two connections of an echo app opened before the block, checked after it.

    One is idle between keep-alive requests, the other is in the middle of a request
    body; bad input on another connection must not disturb either."""
    idle = RawConnection.open(server)
    busy = RawConnection.open(server)
    try:
        idle.send(request("GET", "/idle"))
        assert idle.response().body == b"GET /idle "
        busy.send(request("POST", "/busy", [("Content-Length", "10")]) + b"hello")
        yield
        busy.send(b"world")
        assert busy.response().body == b"POST /busy helloworld"
        idle.send(request("GET", "/idle-again"))
        assert idle.response().body == b"GET /idle-again "
    finally:
        idle.close()
        busy.close()
