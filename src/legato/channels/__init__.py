"""Channels: many topics on one WebSocket, with resume by epoch and id, publish with
acks, request/reply, presence and reconnect advice (the ``legato.v1`` protocol,
docs/channels.md).

::

    room = app.channel("room:{id}", message=Chat, history=100, presence=True)

    @room.authorize
    async def may(action: str, id: str, session) -> bool: ...

    @app.rpc("rooms.count")
    async def count(data: Query) -> int: ...

Modules: ``registry`` (what the App declares), ``connection`` (one client connection),
``calls`` (injecting hooks), ``errors`` (the error codes), ``service`` (the endpoint).
"""

from .errors import CODES, ChannelError
from .registry import Channel, Rpc
from .service import SUBPROTOCOL, Channels

__all__ = ["CODES", "SUBPROTOCOL", "Channel", "ChannelError", "Channels", "Rpc"]
