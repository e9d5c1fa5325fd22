"""Typed WebSocket messages (W14) and the AsyncAPI document of the WebSocket routes
(W17). Tests taking ``connect`` run with the TestClient, legato's server and uvicorn."""

import asyncio
import dataclasses
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import BaseModel, Field

import legato.typed
from legato import App, InvalidMessage, WebSocket, WebSocketDisconnect, status

# ---------------------------------------------------------------- message types


class Author(BaseModel):
    name: str
    admin: bool = False


class Chat(BaseModel):
    """A chat message."""

    text: str = Field(max_length=50)
    author: Author
    tags: list[str] = []


class Stamped(BaseModel):
    at: datetime
    note: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


def closed_by_server(session: Any) -> WebSocketDisconnect:
    with pytest.raises(WebSocketDisconnect) as info:
        message = session.receive_text()
        pytest.fail(f"expected a close, got the message {message!r}")
    return info.value


CHAT = {"text": "hi", "author": {"name": "ann"}}
CHAT_FULL = {"text": "hi", "author": {"name": "ann", "admin": False}, "tags": []}


# ------------------------------------------------------------------ W14: receiving


def test_W14_receive_with_a_type_validates_json_into_a_model_or_dataclass(connect):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        chat = await ws.receive(Chat)
        point = await ws.receive_json(Point)
        await ws.send_json([type(chat).__name__, type(chat.author).__name__,
                            type(point).__name__, point.x + point.y])

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.send_json(CHAT)
        session.send_json({"x": 1, "y": "2"}, mode="binary")  # JSON in a binary frame too
        assert session.receive_json() == ["Chat", "Author", "Point", 3]


def test_W14_route_receive_type_gives_every_message_as_the_type(connect):
    app = App()

    @app.websocket("/chat", receive_type=Chat)
    async def chat(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send_json([type(message).__name__, message.author.name])

    @app.websocket("/points", receive_type=list[Point])
    async def points(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send_json([type(p).__name__ for p in message])

    client = connect(app)
    with client.websocket_connect("/chat") as session:
        session.send_json(CHAT)
        assert session.receive_json() == ["Chat", "ann"]
    with client.websocket_connect("/points") as session:
        session.send_json([{"x": 1, "y": 2}, {"x": 3, "y": 4}])
        assert session.receive_json() == ["Point", "Point"]


@pytest.mark.parametrize(("receive_type", "message", "where"), [
    (Chat, {"author": {"name": "ann"}}, "text"),  # missing field
    (Chat, {"text": "x" * 51, "author": {"name": "ann"}}, "text"),  # constraint
    (Chat, {"text": "hi", "author": {"name": 5}}, "author.name"),  # nested, wrong type
    (Point, {"x": "one", "y": 2}, "x"),
    (Point, [1, 2], "Point"),
], ids=["missing", "too-long", "nested", "dataclass", "not-an-object"])
def test_W14_a_message_that_does_not_validate_closes_1007_with_the_first_error(
        connect, receive_type, message, where):
    app = App()
    probe: list[Any] = []

    @app.websocket("/ws", receive_type=receive_type)
    async def handler(ws: WebSocket) -> None:
        async for value in ws:
            probe.append(value)  # never: nothing valid arrives

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.send_json(message)
        closed = closed_by_server(session)
    assert closed.code == status.WS_1007_INVALID_FRAME_PAYLOAD_DATA
    assert where in closed.reason
    assert len(closed.reason.encode()) <= 123
    assert probe == []


def test_W14_a_handler_may_catch_invalid_message_and_read_its_errors(connect):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        while True:
            try:
                chat = await ws.receive(Chat)
            except InvalidMessage as exc:
                await ws.send_json({"error": str(exc), "code": exc.close_code,
                                    "locs": [list(e["loc"]) for e in exc.errors]})
                continue
            await ws.send_json({"ok": chat.text})

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.send_json({"author": {}})
        reply = session.receive_json()
        assert reply["code"] == 1007
        assert reply["locs"] == [["text"], ["author", "name"]]  # every error, in order
        assert reply["error"].startswith("text:")  # the message names the first
        session.send_json(CHAT)
        assert session.receive_json() == {"ok": "hi"}


# -------------------------------------------------------------------- W14: sending


def test_W14_send_serialises_models_and_dataclasses(connect):
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send(Chat.model_validate(CHAT))
        await ws.send(Point(1, 2))
        await ws.send(Stamped(at=at, note="n"))  # JSON mode: datetimes as ISO 8601
        await ws.send([Point(3, 4), Point(5, 6)])
        await ws.send_json(Author(name="bob"))

    @app.websocket("/typed", send_type=Chat)
    async def typed(ws: WebSocket) -> None:
        await ws.send(Chat.model_validate(CHAT))

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_json() == CHAT_FULL
        assert session.receive_json() == {"x": 1, "y": 2}
        stamped = session.receive_json()
        assert datetime.fromisoformat(stamped["at"].replace("Z", "+00:00")) == at
        assert session.receive_json() == [{"x": 3, "y": 4}, {"x": 5, "y": 6}]
        assert session.receive_json() == {"name": "bob", "admin": False}
    with client.websocket_connect("/typed") as session:
        assert session.receive_json() == CHAT_FULL


def test_W14_value_type_model_reads_and_writes_the_model(connect):
    app = App()

    @app.websocket("/move", value_type=Point)
    async def move(ws: WebSocket) -> None:
        async for point in ws:
            await ws.send(Point(point.x + 1, point.y + 1))

    client = connect(app)
    with client.websocket_connect("/move") as session:
        session.send_json({"x": 1, "y": 1})
        assert session.receive_json() == {"x": 2, "y": 2}


def test_W14_dataclasses_work_without_pydantic(monkeypatch):
    # pydantic is an optional extra (typed.py): without it dataclass fields are checked
    # by name. Driven over a bare ASGI pair, so no server shares the patched module.
    monkeypatch.setattr(legato.typed, "_pydantic", None)
    monkeypatch.setattr(legato.websocket, "_VALIDATORS", {})  # validators are cached

    async def run(*messages: Any) -> list[Any]:
        events = iter([{"type": "websocket.connect"},
                       *({"type": "websocket.receive", "text": json.dumps(m)}
                         for m in messages)])
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return next(events)

        async def send(event: dict[str, Any]) -> None:
            if event["type"] == "websocket.send":
                sent.append(event["text"])

        ws = WebSocket({"type": "websocket", "path": "/", "headers": []}, receive, send)
        await ws.accept()
        for _ in messages:
            try:
                point = await ws.receive(Point)
            except InvalidMessage as exc:
                sent.append(f"InvalidMessage: {exc}")
            else:
                await ws.send(point)
        return sent

    valid, missing, unknown, not_object = asyncio.run(
        run({"x": 1, "y": 2}, {"x": 1}, {"x": 1, "y": 2, "z": 3}, [1]))
    assert valid == '{"x":1,"y":2}'
    assert missing.startswith("InvalidMessage: Point:") and "'y'" in missing
    assert unknown == "InvalidMessage: unknown field 'z' for Point"
    assert not_object == "InvalidMessage: expected a JSON object for Point"


# ------------------------------------------------------------------ W17: AsyncAPI


def typed_app(**options: Any) -> App:
    app = App(title="Chat service", version="2.1.0", **options)

    @app.websocket("/chat/{room}", receive_type=Chat, send_type=Chat)
    async def chat(ws: WebSocket, room: str) -> None:
        """Talk in a room.

        Longer text that is not the summary."""

    @app.websocket("/points/{n:int}", value_type=Point, summary="Move points")
    async def points(ws: WebSocket, n: int) -> None:
        pass

    @app.websocket("/plain")
    async def plain(ws: WebSocket) -> None:
        pass

    @app.get("/page")
    async def page() -> str:
        return "not a channel"

    return app


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON Pointer ``$ref`` (RFC 6901) inside ``doc``."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert part in node, f"{ref} does not resolve (no {part!r})"
        node = node[part]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        refs = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return refs + [r for v in node.values() for r in all_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in all_refs(v)]
    return []


def test_W17_asyncapi_describes_each_websocket_route_as_a_channel():
    doc = typed_app().asyncapi()
    json.dumps(doc)  # plain JSON values only
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"] == {"title": "Chat service", "version": "2.1.0"}
    channels = doc["channels"]
    assert set(channels) == {"chat", "points", "plain"}  # HTTP routes are not channels
    assert channels["chat"]["address"].startswith("/chat/{room")
    assert set(channels["chat"]["parameters"]) == {"room"}
    assert set(channels["points"]["parameters"]) == {"n"}
    assert channels["plain"]["address"] == "/plain"
    assert "parameters" not in channels["plain"]
    assert channels["chat"]["summary"] == "Talk in a room."  # the docstring's first line
    assert channels["points"]["summary"] == "Move points"  # the route's summary option
    for ref in all_refs(doc):
        resolve(doc, ref)


def test_W17_each_channel_has_a_receive_and_a_send_operation():
    doc = typed_app().asyncapi()
    by_channel: dict[str, set[str]] = {}
    for operation in doc["operations"].values():
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        channel = channel_ref.removeprefix("#/channels/")
        by_channel.setdefault(channel, set()).add(operation["action"])
        for message in operation["messages"]:  # AsyncAPI 3: the channel's own messages
            assert message["$ref"].startswith(f"{channel_ref}/messages/")
            assert "payload" in resolve(doc, resolve(doc, message["$ref"])["$ref"])
    assert by_channel == {name: {"receive", "send"} for name in doc["channels"]}


def payload(doc: dict[str, Any], channel: str, action: str) -> dict[str, Any]:
    """The payload schema (refs followed once) of a channel's operation."""
    [operation] = [o for o in doc["operations"].values()
                   if o["channel"]["$ref"] == f"#/channels/{channel}" and o["action"] == action]
    [message_ref] = operation["messages"]
    message = resolve(doc, resolve(doc, message_ref["$ref"])["$ref"])
    schema: dict[str, Any] = message["payload"]
    return resolve(doc, schema["$ref"]) if "$ref" in schema else schema


def test_W17_message_schemas_come_from_the_models():
    doc = typed_app().asyncapi()
    chat = payload(doc, "chat", "receive")
    assert chat == payload(doc, "chat", "send")
    assert chat["type"] == "object"
    assert set(chat["properties"]) == {"text", "author", "tags"}
    assert set(chat["required"]) == {"text", "author"}
    assert chat["properties"]["text"]["maxLength"] == 50
    author = resolve(doc, chat["properties"]["author"]["$ref"])  # nested models are shared
    assert set(author["properties"]) == {"name", "admin"}
    point = payload(doc, "points", "receive")
    assert point == payload(doc, "points", "send")  # value_type sets both
    assert point["properties"]["x"]["type"] == "integer"
    assert set(point["required"]) == {"x", "y"}
    assert set(doc["components"]["schemas"]) >= {"Chat", "Author", "Point"}
    assert payload(doc, "plain", "receive") == {"type": "string"}  # no type: text


def test_W17_channel_addresses_use_plain_parameter_expressions():
    doc = typed_app().asyncapi()
    for channel in doc["channels"].values():
        for name in channel.get("parameters", {}):
            assert "{" + name + "}" in channel["address"], channel["address"]
    assert doc["channels"]["points"]["address"] == "/points/{n}"


def test_W17_asyncapi_json_is_served_when_docs_are_on(connect):
    app = typed_app(docs=True)
    client = connect(app)
    response = client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == json.loads(json.dumps(app.asyncapi()))


def test_W17_asyncapi_json_is_not_served_by_default(connect):
    client = connect(typed_app())
    assert client.get("/asyncapi.json").status_code == 404
