"""legato's channel client (the `legato.v1` protocol, docs/channels.md), on asyncio and
legato's own sans-I/O WebSocket core.

::

    from legato.client import Client, ChannelError

    async with Client("ws://127.0.0.1:8000/_legato/ws") as client:
        room = await client.join("room:lobby", data={"name": "ann"})
        msg_id = await room.publish({"text": "hi"})
        async for msg in room:
            print(msg.topic, msg.id, msg.data)

Modules: :mod:`.client` (the connection loop, requests), :mod:`.topic` (delivery,
events), :mod:`.requests` (what waits and what a reconnect does to it), :mod:`.frames`
(the protocol's frames), :mod:`.transport` (the WebSocket on asyncio streams),
:mod:`.sse` (the fallback: SSE down, POST up), :mod:`.eventstream` (its sans-I/O
parser), :mod:`.http` (HTTP/1.1 on asyncio streams), :mod:`.fallback` (which transport
the next attempt uses), :mod:`.backoff`, :mod:`.state`, :mod:`.errors`, :mod:`.queues`,
:mod:`.observers`.
"""

from .client import Client
from .errors import ChannelError, ConnectError, Disconnected, ServerProtocolError
from .frames import Member, Message
from .state import ConnectionState, StateChange, TopicState
from .topic import Lost, PresenceEvent, Topic, TopicEvent

__all__ = [
    "ChannelError", "Client", "ConnectError", "ConnectionState", "Disconnected", "Lost",
    "Member", "Message", "PresenceEvent", "ServerProtocolError", "StateChange", "Topic",
    "TopicEvent", "TopicState",
]
