"""The fallback transport (docs/channels.md, SSE): Server-Sent Events down, POST up,
against real ``legato run`` processes on a real Redis (hub_apps:app)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from test_channel_processes import Peer
from test_hub_processes import Legato, hub_url, start  # noqa: F401 - fixtures


class Stream:
    """One SSE channel connection: events as they come, POSTs up."""

    def __init__(self, client: httpx.AsyncClient, legato: Legato, response: httpx.Response
                 ) -> None:
        self.client, self.legato, self.response = client, legato, response
        self.lines = response.aiter_lines()
        self.ref = 0
        self.last_id = ""
        self.welcome: dict[str, Any] = {}

    async def event(self) -> dict[str, Any]:
        data = []
        while True:
            line = await asyncio.wait_for(self.lines.__anext__(), 10)
            if line.startswith("id: "):
                self.last_id = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                frame: dict[str, Any] = json.loads("\n".join(data))
                return frame

    async def post(self, *frames: dict[str, Any], token: str | None = None,
                   to: Legato | None = None) -> httpx.Response:
        target = to or self.legato
        return await self.client.post(
            f"http://127.0.0.1:{target.port}/_legato/send",
            params={"conn": self.welcome["conn"]},
            headers={"x-legato-token": token or self.welcome["token"]},
            content=json.dumps(list(frames)))

    async def request(self, kind: str, to: Legato | None = None, **fields: Any) -> int:
        self.ref += 1
        response = await self.post({"t": kind, "ref": self.ref, **fields}, to=to)
        assert response.status_code == 202, response.text
        return self.ref

    async def answer(self, ref: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        before = []
        while True:
            frame = await self.event()
            if frame.get("ref") == ref and frame.get("t") in ("reply", "error"):
                return frame, before
            before.append(frame)

    async def ok(self, kind: str, to: Legato | None = None, **fields: Any) -> Any:
        frame, _ = await self.answer(await self.request(kind, to=to, **fields))
        assert frame["t"] == "reply", frame
        return frame["data"]


@asynccontextmanager
async def sse(client: httpx.AsyncClient, legato: Legato, last_event_id: str | None = None,
              token: str | None = None) -> AsyncIterator[Stream]:
    headers = {"last-event-id": last_event_id} if last_event_id else {}
    if token:
        headers["x-legato-token"] = token
    async with client.stream("GET", f"http://127.0.0.1:{legato.port}/_legato/sse",
                             headers=headers, timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(client, legato, response)
        if last_event_id is None:
            stream.welcome = await stream.event()
        yield stream


async def test_over_sse_a_client_joins_publishes_and_calls_with_answers_down_the_stream(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(hub_url, 1)
    async with httpx.AsyncClient() as client, sse(client, legato) as stream:
        assert stream.welcome["t"] == "welcome" and stream.welcome["transport"] == "sse"
        assert stream.welcome["token"] and stream.welcome["conn"]
        joined = await stream.ok("join", topic="room:s")
        assert joined["lost"] is None
        ack = await stream.ok("pub", topic="room:s", data="over sse")
        message = await stream.event()
        while "t" in message:
            message = await stream.event()
        assert message == {"topic": "room:s", "id": ack["id"], "data": "over sse"}
        assert isinstance(await stream.ok("call", name="pid"), int)


async def test_a_post_with_a_wrong_token_or_a_bad_body_is_refused_with_a_clear_status(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(hub_url, 1)
    async with httpx.AsyncClient() as client, sse(client, legato) as stream:
        wrong = await stream.post({"t": "ping", "ref": 1}, token="not-the-token")
        assert wrong.status_code == 403
        base = f"http://127.0.0.1:{legato.port}/_legato/send"
        no_conn = await client.post(base, content="{}")
        assert no_conn.status_code == 400
        not_json = await client.post(base, params={"conn": stream.welcome["conn"]},
                                     headers={"x-legato-token": stream.welcome["token"]},
                                     content="nope")
        assert not_json.status_code == 400 and "JSON" in not_json.text


async def test_a_post_that_reaches_another_process_is_carried_to_the_stream_by_the_hub(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    one, two = start(hub_url, 2)
    async with httpx.AsyncClient() as client, sse(client, one) as stream:
        await stream.ok("join", topic="room:x", to=two)
        assert await stream.ok("call", name="pid", to=two) == \
            await stream.ok("call", name="pid", to=one)  # answered where the stream is


async def test_a_stream_back_within_the_linger_with_its_token_gets_every_frame_after_it(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(hub_url, 1)
    ws = await Peer.open(legato)
    await ws.ok("join", topic="room:l")
    async with httpx.AsyncClient() as client:
        async with sse(client, legato) as stream:
            await stream.ok("join", topic="room:l")
            welcome, last = stream.welcome, stream.last_id
        sent = [(await ws.ok("pub", topic="room:l", data=n))[0]["id"] for n in range(5)]
        async with sse(client, legato, last_event_id=last, token="forged") as other:
            # The id alone (presence shows it) does not resume: a new connection.
            assert other.response.headers["x-legato-resumed"] == "0"
            fresh = await other.event()
            assert fresh["t"] == "welcome" and fresh["conn"] != welcome["conn"]
        async with sse(client, legato, last_event_id=last, token=welcome["token"]) as back:
            back.welcome = welcome
            ids = []
            while len(ids) < 5:
                frame = await back.event()
                if "t" not in frame:
                    ids.append(frame["id"])
            assert ids == sent
            assert back.last_id.startswith(welcome["conn"] + ".")
            assert await back.ok("call", name="pid")
    await ws.conn.close()


async def test_a_websocket_client_and_an_sse_client_in_one_room_see_each_other(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(hub_url, 1)
    ws = await Peer.open(legato)
    await ws.ok("join", topic="room:mix")
    async with httpx.AsyncClient() as client, sse(client, legato) as stream:
        await stream.ok("join", topic="room:mix")
        (ack, _) = await ws.ok("pub", topic="room:mix", data="from ws")
        frame = await stream.event()
        while "t" in frame:
            frame = await stream.event()
        assert frame["id"] == ack["id"] and frame["data"] == "from ws"
        up = await stream.ok("pub", topic="room:mix", data="from sse")
        seen = []
        while not seen or seen[-1] != up["id"]:
            got = await ws.recv()
            if "t" not in got:
                seen.append(got["id"])
        assert seen == [ack["id"], up["id"]]  # its own, then the SSE client's
    await ws.conn.close()


async def test_at_shutdown_an_sse_stream_ends_with_reconnect_advice_and_close_1012(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(hub_url, 1)
    async with httpx.AsyncClient() as client, sse(client, legato) as stream:
        legato.proc.send_signal(signal.SIGTERM)
        advice = await stream.event()
        assert advice["t"] == "reconnect" and advice["reason"] == "shutdown"
        closing = await stream.event()
        assert closing == {"t": "close", "code": 1012, "reason": "server restarting"}


async def test_a_resumed_stream_says_so_at_once_and_a_close_post_ends_the_connection(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(hub_url, 1)
    ws = await Peer.open(legato)
    await ws.ok("join", topic="room:c")
    async with httpx.AsyncClient() as client:
        async with sse(client, legato) as stream:
            await stream.ok("join", topic="room:c", data={"name": "sse"})
            welcome, last = stream.welcome, stream.last_id
        async with sse(client, legato, last_event_id=last, token=welcome["token"]) as back:
            assert back.response.headers["x-legato-resumed"] == "1"
            back.welcome = welcome
            assert await back.event() == {"t": "resumed", "conn": welcome["conn"],
                                          "after": int(last.split(".")[1])}
            assert (await back.post({"t": "close"})).status_code == 202
            with contextlib.suppress(StopAsyncIteration, httpx.ReadError):
                while True:  # the stream ends
                    await back.event()
    (members, _) = await ws.ok("presence", topic="room:c")
    assert [m["data"] for m in members["members"]] == [None]  # only the WebSocket peer
    await ws.conn.close()


SSE_FIRST_APP = '''
from legato import App

app = App(channels_max_connections=2)  # no hub_history: the channel's own history= counts
app.channel("room:{id}", history=10)


@app.rpc("whoami")
async def whoami(ws) -> dict:
    return {"name": ws.query_params.get("name"), "agent": ws.headers.get("user-agent")}
'''


async def test_a_first_connection_over_sse_sets_the_channels_up_like_a_websocket_does(
        tmp_path: Any) -> None:
    from ports import free_port, port_is_open  # noqa: PLC0415

    (tmp_path / "sse_first.py").write_text(SSE_FIRST_APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "legato", "run", "sse_first:app",
                             "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_is_open(port):
            assert proc.poll() is None
            await asyncio.sleep(0.05)
        legato = Legato(proc, port, tmp_path / "none")
        async with httpx.AsyncClient(headers={"user-agent": "sse-test"}) as client:
            async with sse(client, legato) as first:
                await first.ok("join", topic="room:h")
                sent = await first.ok("pub", topic="room:h", data="kept")
                # ws in an rpc over SSE is the stream's request: query, headers
                assert await first.ok("call", name="whoami") == {"name": None,
                                                                 "agent": "sse-test"}
                async with sse(client, legato) as second:
                    frame, before = await second.answer(
                        await second.request("join", topic="room:h", since="0"))
                    assert [f["id"] for f in before if "t" not in f] == [sent["id"]]
                    async with sse(client, legato) as third:  # past max_connections
                        assert third.welcome["t"] == "reconnect"
                        assert third.welcome["reason"] == "overload"
                        assert await third.event() == {
                            "t": "close", "code": 1013,
                            "reason": "too many connections: try again later"}
    finally:
        proc.terminate()
        proc.wait(15)
