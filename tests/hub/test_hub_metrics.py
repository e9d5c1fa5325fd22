"""P7 over every entry point (TestClient, legato's server, uvicorn) and both backends:
what the hub delivers counts in the route's ``messages_out``/``bytes_out`` like what a
handler sends, whoever wrote the frame (legato's C broadcast loop, an outbox flushing a
backlog, the sender task under other servers, a since= replay)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legato import App, WebSocket

sys.path.insert(0, str(Path(__file__).parents[1] / "framework"))
from live import MODES, client_for  # noqa: E402

ROUTE = "/sub"


def metered_app(hub_url: str, **options: Any) -> App:
    app = App(hub=hub_url, metrics=True, hub_history=10, **options)

    @app.websocket(ROUTE)
    async def sub(ws: WebSocket, since: str | None = None) -> None:
        await app.hub.subscribe(ws, "t", since=since)
        await ws.send_text("ready")
        await ws.wait_closed()

    @app.post("/pub")
    async def pub(text: str) -> dict[str, str]:
        return {"id": await app.hub.publish("t", text)}

    return app


@pytest.fixture(params=MODES)
def client(request: pytest.FixtureRequest, hub_url: str) -> Iterator[Any]:
    with client_for(request.param, metered_app(hub_url)) as running:
        yield running


def sent(client: Any) -> tuple[int, int]:
    """(messages_out, bytes_out) of ROUTE, read from /metrics."""
    text = client.get("/metrics").text
    found = []
    for name in ("messages_out", "bytes_out"):
        match = re.search(rf'^legato_websocket_{name}_total{{route="{ROUTE}"}} (\d+)$', text,
                          re.MULTILINE)
        assert match, text
        found.append(int(match.group(1)))
    return found[0], found[1]


def utf8(messages: list[str]) -> int:
    return sum(len(m.encode("utf-8")) for m in messages)


def test_P7_hub_deliveries_count_in_the_route_messages_out(client: Any) -> None:
    with client.websocket_connect(ROUTE) as ws:
        got = [ws.receive_text()]
        assert got == ["ready"]
        for text in ("héllo", "wörld"):  # UTF-8: bytes_out counts bytes, not characters
            client.post("/pub", params={"text": text})
            got.append(ws.receive_text())
        assert sent(client) == (3, utf8(got))


def test_P7_replayed_history_counts_in_the_route_messages_out(client: Any) -> None:
    first = client.post("/pub", params={"text": "seen"}).json()["id"]
    for text in ("missed-1", "missed-2"):
        client.post("/pub", params={"text": text})
    with client.websocket_connect(f"{ROUTE}?since={first}") as ws:
        got = [ws.receive_text() for _ in range(3)]
        assert got[-1] == "ready" and "missed-2" in got[1]
        client.post("/pub", params={"text": "live"})
        got.append(ws.receive_text())
        assert sent(client) == (4, utf8(got))


def test_P7_every_subscriber_counts_each_broadcast_once(client: Any) -> None:
    with client.websocket_connect(ROUTE) as a, client.websocket_connect(ROUTE) as b:
        got = [a.receive_text(), b.receive_text()]
        for n in range(5):
            client.post("/pub", params={"text": f"m{n}"})
        for ws in (a, b):
            got += [ws.receive_text() for _ in range(5)]
        assert sent(client) == (12, utf8(got))


def test_P7_metrics_show_each_broker_shard_with_its_state_topics_and_lag(
        client: Any, hub_url: str) -> None:
    """Operators see each broker shard (one Redis: itself; a cluster: each master):
    whether this process's pub/sub connection to it is up, its topics, its commands
    pending, the lag of the last delivery and the reconnections."""
    with client.websocket_connect(ROUTE) as ws:
        assert ws.receive_text() == "ready"
        client.post("/pub", params={"text": "x"})
        assert ws.receive_text()
        text = client.get("/metrics").text
    up = re.findall(r'^legato_hub_shard_up{shard="([^"]+)"} (\d)$', text, re.MULTILINE)
    if hub_url.startswith(("memory:", "nats:")):
        assert up == []  # no shards: the families are there, empty
        assert "# TYPE legato_hub_shard_up gauge" in text
        return
    expected = 3 if "+cluster" in hub_url else 1
    assert len(up) == expected, text
    topics = dict(re.findall(r'^legato_hub_shard_topics{shard="([^"]+)"} (\d+)$', text,
                             re.MULTILINE))
    assert sorted(topics.values()) == ["0"] * (expected - 1) + ["1"]  # "t" on one shard
    home = next(shard for shard, n in topics.items() if n == "1")
    assert (home, "1") in up
    lag = re.search(rf'^legato_hub_shard_lag_seconds{{shard="{re.escape(home)}"}} (\S+)$',
                    text, re.MULTILINE)
    assert lag and 0 <= float(lag.group(1)) < 1.0
    assert re.search(r'^legato_hub_shard_pending{shard="[^"]+"} \d+$', text, re.MULTILINE)
    assert re.search(r'^legato_hub_shard_reconnects_total{shard="[^"]+"} 0$', text,
                     re.MULTILINE)
