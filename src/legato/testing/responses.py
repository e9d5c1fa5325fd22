"""What ``TestClient.request()`` returns: the response a client received, decoded."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from .. import jsoncodec
from ..protocol.headers import Headers
from .http import RawResponse

__all__ = ["TestResponse"]


def _decode_content(body: bytes, encodings: list[str]) -> bytes:
    """Undo Content-Encoding gzip/deflate (what the client offers); others stay raw."""
    codings = [c.strip().lower() for v in encodings for c in v.split(",") if c.strip()]
    for coding in reversed(codings):  # RFC 9110 §8.4: listed in the order applied
        if coding in ("gzip", "x-gzip"):
            body = gzip.decompress(body)
        elif coding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:  # some servers send raw deflate without the zlib wrapper
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        elif coding != "identity":
            break  # not ours to decode (br, zstd...): leave the rest as received
    return body


class TestResponse:
    """An HTTP response as the test client received it.

    ``content`` is the body with any gzip/deflate Content-Encoding undone (as httpx
    does); ``cookies`` holds the cookies this response set (deletions left out);
    ``history`` the redirect responses followed to get here.
    """

    __test__ = False  # pytest: not a test class

    def __init__(self, raw: RawResponse, *, url: str, method: str,
                 cookies: dict[str, str]) -> None:
        self.status_code = raw.status_code
        self.reason_phrase = raw.reason
        self.http_version = "HTTP/1.1"
        self.headers = Headers(raw.headers)
        self.raw_content = raw.body
        self.content = _decode_content(raw.body, self.headers.get_all("content-encoding"))
        self.url = url
        self.method = method
        self.cookies = cookies
        self.history: list[TestResponse] = []

    @property
    def encoding(self) -> str:
        """The charset of Content-Type, UTF-8 when it names none."""
        for param in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"')
        return "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.encoding, errors="replace")
        except LookupError:  # an unknown charset
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not JSON."""
        return jsoncodec.loads(self.content)

    @property
    def is_success(self) -> bool:
        """2xx."""
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        """A redirect the client could follow: 301, 302, 303, 307 or 308 with Location."""
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def is_error(self) -> bool:
        """4xx or 5xx."""
        return 400 <= self.status_code < 600

    def __repr__(self) -> str:
        return f"<TestResponse [{self.status_code} {self.reason_phrase}]>"
