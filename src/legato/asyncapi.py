"""The AsyncAPI 3.0 document of an App's WebSocket routes (W17).

Each WebSocket route is a channel (its path is the address, its path parameters the
channel parameters). The messages the app receives on it are a ``receive`` operation,
those it sends a ``send`` operation, with payload schemas from the route's
``receive_type``/``send_type`` (pydantic models or dataclasses give their JSON Schema;
``"text"``, ``"bytes"``, ``"json"`` give string, binary, any).

Declared channels (docs/channels.md) are channels too: the address is the topic pattern
(``room:{id}``), reached through the ``legato.v1`` endpoint; ``send`` is the message
clients receive (the hub's envelope around the channel's message type), ``receive`` what
they publish. Each rpc is a ``receive`` operation on the endpoint with its ``reply``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .annotations import hints_of
from .channels.registry import Registry
from .params import is_model_type
from .routing import Route, WebSocketOptions
from .typed import json_schema

__all__ = ["build_document"]

_TYPED_PARAM = re.compile(r"{(\w+):\w+}")


def build_document(title: str, version: str,
                   routes: Iterable[tuple[Route, WebSocketOptions]],
                   declared: Registry | None = None, endpoint_path: str = "") -> dict[str, Any]:
    """The document: ``routes`` are the WebSocket routes with their settings (the App's
    defaults filled in); ``declared`` the channels and rpcs, joined over
    ``{endpoint_path}/ws``."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for route, settings in routes:
        channel_id = _identifier(route.name or route.path, channels)
        # AsyncAPI addresses use plain {name} expressions (no legato pattern types).
        address = _TYPED_PARAM.sub(r"{\1}", route.path)
        channel: dict[str, Any] = {"address": address, "messages": {}}
        doc = settings.summary or (route.endpoint.__doc__ or "").strip().split("\n")[0]
        if doc:
            channel["summary"] = doc
        if route.pattern.names:
            channel["parameters"] = {
                name: {"description": "path parameter "
                       f"({route.pattern.types.get(name) or _annotation(route, name)})"}
                for name in route.pattern.names}
        for action, tp in (("receive", settings.receive_type), ("send", settings.send_type)):
            message_id = f"{channel_id}{action.capitalize()}Message"
            payload = _hoist(json_schema(tp), schemas)
            messages[message_id] = {"name": message_id, "payload": payload,
                                    "contentType": _content_type(tp)}
            channel["messages"][message_id] = {"$ref": f"#/components/messages/{message_id}"}
            operations[f"{channel_id}_{action}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
            }
        channels[channel_id] = channel
    if declared is not None:
        _describe_channels(declared, endpoint_path, channels, operations, messages, schemas)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _describe_channels(registry: Registry, path: str, channels: dict[str, Any],
                       operations: dict[str, Any], messages: dict[str, Any],
                       schemas: dict[str, Any]) -> None:
    endpoint = "legato-channels"
    if endpoint in channels:
        channels[endpoint]["description"] = (
            "The legato.v1 channel protocol (subprotocol legato.v1): JSON frames, see "
            "docs/channels.md. The channels below are topics reached through it.")
    for declared in registry.channels:
        channel_id = _identifier(declared.pattern, channels)
        data = _hoist(json_schema(declared.message or "json"), schemas)
        envelope = {"type": "object", "required": ["topic", "id", "data"], "properties": {
            "topic": {"type": "string"}, "id": {"type": "string"}, "data": data}}
        channel: dict[str, Any] = {
            "address": declared.pattern, "messages": {},
            "description": "A legato.v1 channel: join it over "
                           f"{path}/ws" + (" (with presence)" if declared.presence
                                                    else "")}
        if declared.summary:
            channel["summary"] = declared.summary
        if declared.topic.names:
            channel["parameters"] = {n: {"description": "topic placeholder"}
                                     for n in declared.topic.names}
        for action, payload in (("send", envelope), ("receive", data)):
            message_id = f"{channel_id}{action.capitalize()}Message"
            messages[message_id] = {"name": message_id, "payload": payload,
                                    "contentType": "application/json"}
            channel["messages"][message_id] = {"$ref": f"#/components/messages/{message_id}"}
            operations[f"{channel_id}_{action}"] = {
                "action": action, "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}]}
        channels[channel_id] = channel
    if not registry.rpcs or endpoint not in channels:
        return
    for name, rpc in registry.rpcs.items():
        message_id = _identifier(f"rpc.{name}", messages)
        request, answer = _rpc_types(rpc.func)
        messages[message_id] = {"name": message_id, "contentType": "application/json",
                                "payload": _hoist(json_schema(request), schemas)}
        reply_id = f"{message_id}.reply"
        messages[reply_id] = {"name": reply_id, "contentType": "application/json",
                              "payload": _hoist(json_schema(answer), schemas)}
        channels[endpoint]["messages"][message_id] = {"$ref": f"#/components/messages/{message_id}"}
        channels[endpoint]["messages"][reply_id] = {"$ref": f"#/components/messages/{reply_id}"}
        operation: dict[str, Any] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{endpoint}"},
            "messages": [{"$ref": f"#/channels/{endpoint}/messages/{message_id}"}],
            "reply": {"channel": {"$ref": f"#/channels/{endpoint}"},
                      "messages": [{"$ref": f"#/channels/{endpoint}/messages/{reply_id}"}]}}
        if rpc.summary:
            operation["summary"] = rpc.summary
        operations[_identifier(f"rpc_{name}", operations)] = operation


def _rpc_types(func: Any) -> tuple[Any, Any]:
    """The model an rpc validates its data into ("json" if none), and its return type."""
    resolved = hints_of(func).resolved
    request = next((a for n, a in resolved.items() if n != "return" and is_model_type(a)),
                   "json")
    answer = resolved.get("return", "json")
    if not is_model_type(answer):
        answer = "json"
    return request, answer


def _identifier(name: str, taken: dict[str, Any]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "channel"
    ident, n = base, 2
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    return ident


def _annotation(route: Route, name: str) -> str:
    annotation = getattr(route.endpoint, "__annotations__", {}).get(name, "str")
    return getattr(annotation, "__name__", str(annotation))


def _hoist(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Move pydantic's ``$defs`` into components.schemas (refs already point there)."""
    defs = schema.pop("$defs", None) or {}
    schemas.update(defs)
    title = schema.get("title")
    if title and schema.get("type") == "object":
        schemas[title] = schema
        return {"$ref": f"#/components/schemas/{title}"}
    return schema


def _content_type(tp: Any) -> str:
    if tp in (None, "text"):
        return "text/plain"
    if tp == "bytes":
        return "application/octet-stream"
    return "application/json"
