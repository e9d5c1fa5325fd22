"""P5 on every entry point (TestClient, legato's server, uvicorn) and both backends: the
history a ``since=`` resume replays is sent before ``subscribe()`` returns, so what the
handler sends next comes after it (under other ASGI servers too, where the outbox's
sender task writes the replay)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legato import App, WebSocket

sys.path.insert(0, str(Path(__file__).parents[1] / "framework"))
from live import MODES, client_for  # noqa: E402

MISSED = 20


def resume_app(hub_url: str) -> App:
    app = App(hub=hub_url, hub_history=MISSED + 1, hub_envelope=False)

    @app.websocket("/sub")
    async def sub(ws: WebSocket, since: str) -> None:
        await app.hub.subscribe(ws, "t", since=since)
        await ws.send_text("ready")  # after the replay, whatever the server
        await ws.wait_closed()

    @app.post("/pub")
    async def pub(text: str) -> dict[str, str]:
        return {"id": await app.hub.publish("t", text)}

    return app


@pytest.fixture(params=MODES)
def client(request: pytest.FixtureRequest, hub_url: str) -> Iterator[Any]:
    with client_for(request.param, resume_app(hub_url)) as running:
        yield running


def test_P5_what_the_handler_sends_after_subscribe_comes_after_the_replay(
        client: Any) -> None:
    first = client.post("/pub", params={"text": "seen"}).json()["id"]
    for n in range(MISSED):
        client.post("/pub", params={"text": f"missed-{n}"})
    for _ in range(3):
        with client.websocket_connect(f"/sub?since={first}") as ws:
            got = [ws.receive_text() for _ in range(MISSED + 1)]
        assert got == [f"missed-{n}" for n in range(MISSED)] + ["ready"]
