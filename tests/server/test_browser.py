"""A real browser against the built-in server: Chromium, driven by Playwright.

The page is served over HTTP by the app itself; its script opens a WebSocket back to the
same server, sends a text and a binary (ArrayBuffer) message, and writes what comes back
into the page. Chromium offers permessage-deflate (RFC 7692) by default, so this is also
interop of our compression with the most widespread client there is.
"""

from __future__ import annotations

import json
import os
import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import RunningServer

CHROMIUM = "/usr/bin/chromium"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium')",
                allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>legato</title></head>
<body><pre id="out"></pre>
<script>
const out = document.getElementById("out");
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.binaryType = "arraybuffer";
const result = {};
const big = "legato ".repeat(20000);
let answers = 0;
ws.onopen = () => {
  result.extensions = ws.extensions;
  result.protocol = ws.protocol;
  ws.send("héllo 🎵");
  ws.send(new Uint8Array([0, 1, 2, 127, 128, 253, 254, 255]).buffer);
  ws.send(big);
};
ws.onmessage = (event) => {
  if (typeof event.data === "string") {
    if (event.data.length > 1000) result.bigOk = event.data === "echo: " + big;
    else result.text = event.data;
  } else {
    result.binary = Array.from(new Uint8Array(event.data));
  }
  if (++answers === 3) {
    ws.close(1000, "page done");
  }
};
ws.onclose = (event) => {
  result.closeCode = event.code;
  out.textContent = JSON.stringify(result);
};
ws.onerror = () => { result.error = true; };
</script></body></html>
"""


class BrowserApp:
    """GET / → the page; /ws → echoes text with a prefix and binary reversed."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[Any, ...]] = queue.Queue()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8")]})
            await send({"type": "http.response.body", "body": PAGE.encode()})
        else:
            await self.websocket(scope, receive, send)

    async def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        offered = dict(scope["headers"]).get(b"sec-websocket-extensions", b"").decode()
        self.seen.put(("offered", offered))
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.seen.put(("disconnect", message["code"], message.get("reason", "")))
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": "echo: " + message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Any, url: str) -> dict[str, Any]:
    """Load the page and return what its script wrote once the WebSocket closed."""
    page = browser.new_page()
    try:
        page.goto(url, timeout=10_000)
        page.wait_for_function("document.getElementById('out').textContent !== ''",
                               timeout=10_000)
        return json.loads(page.inner_text("#out"))  # type: ignore[no-any-return]
    finally:
        page.close()


def test_chromium_echoes_text_and_binary_over_a_compressed_websocket(
        serve: Callable[..., RunningServer], browser: Any) -> None:
    app = BrowserApp()
    server = serve(app)
    result = open_page(browser, server.url + "/")
    assert "error" not in result
    assert result["text"] == "echo: héllo 🎵"
    assert result["binary"] == [255, 254, 253, 128, 127, 2, 1, 0]
    assert result["bigOk"] is True  # 140 KB of text, compressed both ways
    assert result["closeCode"] == 1000
    # RFC 7692 §5: Chromium offered permessage-deflate and our server accepted it.
    assert app.seen.get(timeout=3)[1].startswith("permessage-deflate")
    assert result["extensions"].startswith("permessage-deflate")
    # RFC 6455 §7.1.5: the browser's Close code and reason reach the app.
    assert app.seen.get(timeout=3) == ("disconnect", 1000, "page done")


def test_chromium_works_without_compression_when_the_server_refuses_it(
        serve: Callable[..., RunningServer], browser: Any) -> None:
    """With ws_deflate=None the handshake carries no extension and messages go plain."""
    app = BrowserApp()
    server = serve(app, ws_deflate=None)
    result = open_page(browser, server.url + "/")
    assert result["extensions"] == ""
    assert result["text"] == "echo: héllo 🎵"
    assert result["bigOk"] is True
