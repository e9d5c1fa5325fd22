"""The server side of the legato.v1 channel protocol (docs/channels.md), frame by frame,
through the TestClient (legato's server over an in-memory transport), on the memory
hub and on a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from legato import App, HTTPError, TestClient, WebSocketDenied, WebSocketDisconnect
from legato.channels import ChannelError

PROTOCOL = ["legato.v1"]


@dataclass
class Chat:
    user: str
    text: str


def channel_app(hub_url: str = "memory://", **options: Any) -> App:
    app = App(hub=hub_url, **options)
    room = app.channel("room:{id}", history=20, presence=True)

    @room.authorize
    def may(action: str, id: str, data: Any) -> bool:
        if id == "closed":
            return False
        return not (action == "publish" and id == "readonly")

    @room.on_join
    def joined(id: str) -> dict[str, str]:
        return {"room": id}

    app.channel("live:{id}")  # no history
    typed = app.channel("typed:{id}", message=Chat, history=5)

    @typed.on_publish
    def stamp(message: Chat) -> Any:
        if message.text == "forbidden":
            return False
        return {"user": message.user.upper(), "text": message.text}

    @app.rpc("add")
    async def add(data: Any) -> int:
        return int(data["a"]) + int(data["b"])

    @app.rpc("sum")
    async def total(data: list[int], name: str) -> dict[str, Any]:
        return {"name": name, "sum": sum(data)}

    @app.rpc("slow")
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    @app.rpc("boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    @app.rpc("denied")
    async def denied() -> None:
        raise HTTPError(403, "admins only")

    @app.rpc("refused")
    async def refused() -> None:
        raise ChannelError("too_many", "slow down", {"retry": 1})

    return app


class Peer:
    """One channel connection through the TestClient."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ref = 0
        #: Frames read while looking for something else (until() looks here first).
        self.backlog: list[dict[str, Any]] = []
        self.welcome = self.recv()

    def recv(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(self.ws.receive_text())
        return frame

    def request(self, kind: str, **fields: Any) -> int:
        self.ref += 1
        self.ws.send_text(json.dumps({"t": kind, "ref": self.ref, **fields}))
        return self.ref

    def answer(self, ref: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The reply or error to ``ref``, and the frames that came before it."""
        before = []
        while True:
            frame = self.recv()
            if frame.get("ref") == ref and frame.get("t") in ("reply", "error"):
                return frame, before
            before.append(frame)
            self.backlog.append(frame)

    def ok(self, kind: str, **fields: Any) -> Any:
        frame, _ = self.answer(self.request(kind, **fields))
        assert frame["t"] == "reply", frame
        return frame["data"]

    def fails(self, kind: str, **fields: Any) -> dict[str, Any]:
        frame, _ = self.answer(self.request(kind, **fields))
        assert frame["t"] == "error", frame
        return frame

    def until(self, predicate: Any) -> dict[str, Any]:
        for i, frame in enumerate(self.backlog):
            if predicate(frame):
                return self.backlog.pop(i)
        while True:
            frame = self.recv()
            if predicate(frame):
                return frame


@contextmanager
def peer(client: TestClient, path: str = "/_legato/ws") -> Iterator[Peer]:
    with client.websocket_connect(path, subprotocols=PROTOCOL) as ws:
        yield Peer(ws)


def test_a_handshake_without_the_legato_v1_subprotocol_is_refused_with_400() -> None:
    with TestClient(channel_app()) as client:
        with pytest.raises(WebSocketDenied) as denied:
            with client.websocket_connect("/_legato/ws"):
                pass
        assert denied.value.status_code == 400
        assert b"legato.v1" in denied.value.body


def test_the_first_frame_is_welcome_with_version_connection_id_and_heartbeat() -> None:
    with TestClient(channel_app(channels_heartbeat=5)) as client, peer(client) as p:
        assert p.welcome["t"] == "welcome"
        assert p.welcome["v"] == 1
        assert isinstance(p.welcome["conn"], str) and p.welcome["conn"]
        assert p.welcome["heartbeat"] == 5000
        assert p.ws.subprotocol == "legato.v1" if hasattr(p.ws, "subprotocol") else True


def test_join_then_publish_reaches_every_joined_connection_with_the_acked_id(
        hub_url: str) -> None:
    with TestClient(channel_app(hub_url)) as client, peer(client) as a, peer(client) as b:
        joined = a.ok("join", topic="room:1")
        assert joined["info"] == {"room": "1"}
        assert joined["lost"] is None and joined["resumed"] is False
        assert isinstance(joined["epoch"], str)
        b.ok("join", topic="room:1")
        ack = a.ok("pub", topic="room:1", data={"text": "hi"})
        got = b.until(lambda f: "t" not in f)
        assert got == {"topic": "room:1", "id": ack["id"], "data": {"text": "hi"}}
        mine = a.until(lambda f: "t" not in f)
        assert mine["id"] == ack["id"]


def test_a_publish_repeating_its_once_key_is_not_published_again(hub_url: str) -> None:
    with TestClient(channel_app(hub_url)) as client, peer(client) as a:
        a.ok("join", topic="room:1")
        first = a.ok("pub", topic="room:1", data=1, once="k1")
        again = a.ok("pub", topic="room:1", data=1, once="k1")
        other = a.ok("pub", topic="room:1", data=2, once="k2")
        assert again["id"] == first["id"] != other["id"]
        ids = [a.until(lambda f: "t" not in f)["id"] for _ in range(2)]
        assert ids == [first["id"], other["id"]]
        a.ok("leave", topic="room:1")
        reply, before = a.answer(a.request("join", topic="room:1", since="0"))
        assert [f["id"] for f in before if "t" not in f] == ids


def test_a_join_with_since_replays_what_was_missed_before_its_reply(hub_url: str) -> None:
    with TestClient(channel_app(hub_url)) as client:
        with peer(client) as a:
            epoch = a.ok("join", topic="room:r")["epoch"]
            first = a.ok("pub", topic="room:r", data="one")["id"]
            ids = [a.ok("pub", topic="room:r", data=n)["id"] for n in ("two", "three")]
        with peer(client) as b:
            reply, before = b.answer(b.request("join", topic="room:r", since=first,
                                               epoch=epoch))
            assert reply["data"]["resumed"] is True and reply["data"]["lost"] is None
            assert [f["id"] for f in before if "t" not in f] == ids


def test_a_join_whose_epoch_is_not_the_topics_is_told_state_lost_and_gets_the_new_epoch(
        hub_url: str) -> None:
    with TestClient(channel_app(hub_url)) as client, peer(client) as a:
        a.ok("join", topic="room:e")
        last = a.ok("pub", topic="room:e", data="x")["id"]
        with peer(client) as b:
            reply, before = b.answer(b.request("join", topic="room:e", since=last,
                                               epoch="an-old-epoch"))
            assert reply["data"]["lost"] == {"reason": "epoch", "first_kept": None}
            assert reply["data"]["resumed"] is False
            # Everything of the topic's (new) epoch is new to it: all that is kept.
            assert [f["id"] for f in before if "t" not in f] == [last]


def test_a_join_from_before_the_kept_history_is_told_what_was_trimmed(hub_url: str) -> None:
    app = channel_app(hub_url)
    app.channel("short:{id}", history=2)
    with TestClient(app) as client, peer(client) as a:
        epoch = a.ok("join", topic="short:1")["epoch"]
        ids = [a.ok("pub", topic="short:1", data=n)["id"] for n in range(5)]
        with peer(client) as b:
            reply, before = b.answer(b.request("join", topic="short:1", since=ids[0],
                                               epoch=epoch))
            lost = reply["data"]["lost"]
            assert lost["reason"] == "trimmed"
            assert [f["id"] for f in before if "t" not in f] == ids[-2:]
            assert lost["first_kept"] == ids[-2]


def test_a_join_with_since_on_a_channel_without_history_says_it_cannot_know() -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        reply = a.ok("join", topic="live:1", since="1-0")
        assert reply["lost"] == {"reason": "no_history", "first_kept": None}


def test_authorize_refuses_a_join_and_a_publish_with_forbidden() -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        assert a.fails("join", topic="room:closed")["code"] == "forbidden"
        a.ok("join", topic="room:readonly")
        assert a.fails("pub", topic="room:readonly", data=1)["code"] == "forbidden"


def test_publish_before_join_and_presence_before_join_are_not_joined() -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        assert a.fails("pub", topic="room:1", data=1)["code"] == "not_joined"
        assert a.fails("presence", topic="room:1")["code"] == "not_joined"


def test_a_topic_no_channel_matches_and_an_unknown_rpc_are_not_found() -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        assert a.fails("join", topic="nowhere")["code"] == "not_found"
        assert a.fails("join", topic="room:a:b")["code"] == "not_found"
        assert a.fails("call", name="missing", data=None)["code"] == "not_found"


def test_typed_messages_are_validated_and_on_publish_may_change_or_refuse_them() -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        a.ok("join", topic="typed:1")
        bad = a.fails("pub", topic="typed:1", data={"user": "ann"})
        assert bad["code"] == "invalid"
        assert a.fails("pub", topic="typed:1", data={"user": "a", "text": "forbidden"}
                       )["code"] == "forbidden"
        a.ok("pub", topic="typed:1", data={"user": "ann", "text": "hi"})
        got = a.until(lambda f: "t" not in f)
        assert got["data"] == {"user": "ANN", "text": "hi"}


def test_call_answers_with_what_the_handler_returns_or_a_coded_error() -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        assert a.ok("call", name="add", data={"a": 2, "b": 3}) == 5
        assert a.ok("call", name="sum", data=[1, 2, 3]) == {"name": "sum", "sum": 6}
        crashed = a.fails("call", name="boom", data=None)
        assert crashed["code"] == "error" and "secret" not in crashed["message"]
        assert a.fails("call", name="denied")["code"] == "forbidden"
        refused = a.fails("call", name="refused")
        assert refused["code"] == "too_many" and refused["details"] == {"retry": 1}
        assert a.fails("call", name="add", data=None)["code"] == "error"


def test_a_call_past_its_timeout_answers_timeout_and_others_are_not_held_up() -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        slow = a.request("call", name="slow", timeout=200)
        fast = a.request("call", name="add", data={"a": 1, "b": 1})
        first, _ = a.answer(fast)
        assert first["data"] == 2
        late, _ = a.answer(slow)
        assert late["t"] == "error" and late["code"] == "timeout"
        assert a.fails("call", name="add", timeout="soon")["code"] == "invalid"


def test_presence_lists_members_counts_them_and_announces_joined_and_left(
        hub_url: str) -> None:
    with TestClient(channel_app(hub_url)) as client, peer(client) as a:
        a.ok("join", topic="room:p", data={"name": "ann"})
        mine = a.until(lambda f: f.get("t") == "joined")
        assert mine["member"] == {"conn": a.welcome["conn"], "data": {"name": "ann"}}
        with peer(client) as b:
            b.ok("join", topic="room:p", data={"name": "bob"})
            seen = a.until(lambda f: f.get("t") == "joined")
            assert seen["member"]["data"] == {"name": "bob"}
            members = a.ok("presence", topic="room:p")["members"]
            assert sorted(m["data"]["name"] for m in members) == ["ann", "bob"]
            # A big room's size without the list (issue 18 item 8).
            assert a.ok("presence", topic="room:p", count=True) == {"count": 2}
        gone = a.until(lambda f: f.get("t") == "left")
        assert gone["member"]["data"] == {"name": "bob"}
        assert [m["data"]["name"] for m in a.ok("presence", topic="room:p")["members"]] \
            == ["ann"]


def test_after_leave_nothing_more_of_the_topic_arrives() -> None:
    with TestClient(channel_app()) as client, peer(client) as a, peer(client) as b:
        a.ok("join", topic="live:1")
        b.ok("join", topic="live:1")
        assert a.ok("leave", topic="live:1") == {}
        b.ok("pub", topic="live:1", data="after")
        b.until(lambda f: "t" not in f)
        assert a.ok("call", name="add", data={"a": 0, "b": 0}) == 0
        assert [f for f in a.backlog if "t" not in f] == []


@pytest.mark.parametrize(("send", "code"), [
    (lambda ws: ws.send_bytes(b"\x00"), 1003),
    (lambda ws: ws.send_text("not json"), 1007),
    (lambda ws: ws.send_text("[1, 2]"), 1007),
    (lambda ws: ws.send_text('{"t": "join"}'), 1008),
    (lambda ws: ws.send_text('{"t": "join", "ref": "1"}'), 1008),
])
def test_a_frame_that_breaks_the_protocol_closes_with_its_code(send: Any, code: int) -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        send(a.ws)
        with pytest.raises(WebSocketDisconnect) as closed:
            a.recv()
        assert closed.value.code == code


def test_an_unknown_frame_type_with_a_ref_is_answered_invalid_and_the_connection_stays() -> None:
    with TestClient(channel_app()) as client, peer(client) as a:
        assert a.fails("subscribe", topic="room:1")["code"] == "invalid"
        assert a.fails("join", topic=5)["code"] == "invalid"
        assert a.fails("join", topic="~presence:room:1")["code"] == "invalid"
        assert a.fails("join", topic="room:1", since="yesterday")["code"] == "invalid"
        assert a.fails("pub", topic="room:1", data=1, once="") ["code"] in ("invalid",
                                                                             "not_joined")
        a.ws.send_text(json.dumps({"t": "ping", "ref": 9}))
        assert a.recv() == {"t": "pong", "ref": 9}


def test_past_channels_max_connections_a_connection_gets_overload_advice_and_1013() -> None:
    with TestClient(channel_app(channels_max_connections=1)) as client, peer(client):
        with client.websocket_connect("/_legato/ws", subprotocols=PROTOCOL) as ws:
            advice = json.loads(ws.receive_text())
            assert advice["t"] == "reconnect" and advice["reason"] == "overload"
            assert advice["delay"] >= 0 and advice["jitter"] >= 1000
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1013


def test_the_app_serves_the_browser_client_at_a_fixed_path() -> None:
    with TestClient(channel_app()) as client:
        response = client.get("/_legato/client.js")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert b"legato.v1" in response.content


def test_plain_websocket_routes_keep_working_beside_channels() -> None:
    app = channel_app()

    @app.websocket("/echo")
    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    with TestClient(app) as client, client.websocket_connect("/echo") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "hello"


def test_declaring_a_channel_twice_or_a_bad_pattern_is_an_error_at_once() -> None:
    app = App()
    app.channel("room:{id}")
    with pytest.raises(ValueError, match="twice"):
        app.channel("room:{id}")
    with pytest.raises(ValueError):
        app.channel("~internal")
    with pytest.raises(TypeError, match="message="):
        app.channel("x:{id}", message=int)
    with pytest.raises(ValueError, match="channels_path"):
        App(channels_path="no-slash").channel("a")


def test_asyncapi_describes_each_channel_its_message_type_and_each_rpc_with_its_reply() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Line(pydantic.BaseModel):
        text: str

    class Query(pydantic.BaseModel):
        room: str

    app = App(docs=True)
    app.channel("room:{id}", message=Line, presence=True, summary="Chat rooms")

    @app.rpc("count")
    async def count(data: Query) -> int:
        """How many are in a room."""
        return 1

    doc = app.asyncapi()
    json.dumps(doc)
    [room] = [c for c in doc["channels"].values() if c["address"] == "room:{id}"]
    assert room["summary"] == "Chat rooms" and set(room["parameters"]) == {"id"}
    assert "legato.v1" in doc["channels"]["legato-channels"]["description"]
    sent = [doc["components"]["messages"][r["$ref"].rsplit("/", 1)[1]]
            for r in room["messages"].values()]
    envelope = next(m["payload"] for m in sent if "properties" in m["payload"])
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/Line"}
    rpc = doc["operations"]["rpc_count"]
    assert rpc["action"] == "receive" and rpc["summary"] == "How many are in a room."
    assert rpc["reply"]["messages"][0]["$ref"].startswith("#/channels/legato-channels/")
    assert "Query" in doc["components"]["schemas"]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


def test_a_live_join_gets_the_newest_id_as_its_resume_point(hub_url: str) -> None:
    with TestClient(channel_app(hub_url)) as client, peer(client) as a:
        empty = a.ok("join", topic="room:last")
        assert empty["last"] is None  # nothing there yet
        first = a.ok("pub", topic="room:last", data="one")["id"]
        with peer(client) as b:
            joined = b.ok("join", topic="room:last")
            assert joined["last"] == first and joined["resumed"] is False
            assert [f for f in b.backlog if "t" not in f] == []  # live: nothing replayed
            later = a.ok("pub", topic="room:last", data="two")["id"]
        with peer(client) as c:  # b's page, back after a drop, resumes from `last`
            reply, before = c.answer(c.request("join", topic="room:last",
                                               since=joined["last"], epoch=joined["epoch"]))
            assert reply["data"]["resumed"] is True
            assert [f["id"] for f in before if "t" not in f] == [later]
        assert a.ok("join", topic="live:x")["last"] is None  # keeps no history


def test_every_hook_gets_the_topics_placeholders_with_or_without_authorize() -> None:
    app = App()
    seen: list[tuple[str, str]] = []
    room = app.channel("game:{id}:{side}", presence=lambda id, side: {"at": f"{id}/{side}"})

    @room.on_join
    def greet(id: str, side: str) -> str:
        seen.append(("join", f"{id}/{side}"))
        return f"welcome to {id}"

    @room.on_publish
    def stamp(id: str, data: Any) -> Any:
        seen.append(("publish", id))
        return {"game": id, "move": data}

    with TestClient(app) as client, peer(client) as a:
        assert a.ok("join", topic="game:7:red")["info"] == "welcome to 7"
        a.ok("pub", topic="game:7:red", data="e4")
        assert a.until(lambda f: "t" not in f)["data"] == {"game": "7", "move": "e4"}
        assert a.ok("presence", topic="game:7:red")["members"][0]["data"] == {"at": "7/red"}
    assert seen == [("join", "7/red"), ("publish", "7")]
