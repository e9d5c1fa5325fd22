"""One client connection speaking ``legato.v1`` (docs/channels.md): frames in, frames out.

Frames of one connection are handled in the order they arrive (a ``pub`` after a
``join`` of the same topic sees it joined; two publishes keep their order); only
``call`` runs beside the rest, in a task of its own, because a handler may take long.
Messages reach the client through the hub (encode-once fan-out): this module only
answers requests and sends presence events.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from .. import jsoncodec
from ..exceptions import HTTPError
from ..hub.backend import HubUnavailable
from ..providers import Context
from ..typed import dump_value
from .errors import ChannelError, error_for
from .ports import Service
from .registry import Channel, valid_topic

if TYPE_CHECKING:
    from ..websocket import WebSocket

__all__ = ["ChannelConnection", "PRESENCE_PREFIX"]

logger = logging.getLogger("legato.channels")

_timeout: Any = getattr(asyncio, "timeout", None)


def _start(coro: Any) -> asyncio.Task[None]:
    """A task for a call. On Python 3.12+ it starts at once (eager): a handler that
    does not wait finishes in this step, with no scheduling round; its current task,
    context and timeouts are its own either way."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coro)

#: Hub topic of a channel topic's presence events (clients cannot name it: '~').
PRESENCE_PREFIX = "~presence:"
#: How long a publish's ``once`` key is remembered, seconds.
ONCE_TTL = 300.0
#: The reason of the 1013 close past ``channels_max_connections`` (both transports).
OVERLOADED = "too many connections: try again later"
MAX_TOPICS = 1000
MAX_CALLS = 64
DEFAULT_CALL_TIMEOUT = 30.0
MAX_CALL_TIMEOUT = 300.0


@dataclass
class Joined:
    """A topic this connection joined."""

    channel: Channel
    params: dict[str, str]
    reply: dict[str, Any]
    member: dict[str, Any] | None = None


class ChannelConnection:
    """The server half of one channel connection."""

    def __init__(self, service: Service, ws: WebSocket) -> None:
        self.service = service
        self.app = service.app
        self.hub = service.app.hub
        self.ws = ws
        self.id = uuid4().hex[:16]
        self.joined: dict[str, Joined] = {}
        self.calls: set[asyncio.Task[None]] = set()
        #: More fields of the welcome frame (the SSE transport's token).
        self.welcome_extra: dict[str, Any] = {}

    # ----------------------------------------------------------------- sending

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(jsoncodec.dumps_str(frame))  # the fast path on our server

    async def reply(self, ref: Any, data: Any) -> None:
        await self.send({"t": "reply", "ref": ref, "data": data})

    async def error(self, ref: Any, exc: BaseException) -> None:
        code, message, details = error_for(exc, debug=self.app.debug)
        if code == "error":
            logger.error("channel request failed", exc_info=exc)
        frame: dict[str, Any] = {"t": "error", "ref": ref, "code": code, "message": message}
        if details is not None:
            frame["details"] = details
        await self.send(frame)

    # ----------------------------------------------------------------- the loop

    async def serve(self) -> None:
        await self.send({"t": "welcome", "v": 1, "conn": self.id,
                         "heartbeat": int(self.service.heartbeat * 1000),
                         **self.welcome_extra})
        try:
            async for raw in self.ws:
                if not isinstance(raw, str):
                    await self.ws.close(1003, "legato.v1 frames are text")
                    return
                try:
                    frame = jsoncodec.loads(raw)
                except ValueError:
                    await self.ws.close(1007, "a legato.v1 frame is one JSON object")
                    return
                if not isinstance(frame, dict):
                    await self.ws.close(1007, "a legato.v1 frame is one JSON object")
                    return
                if not await self.handle(frame):
                    return
        finally:
            await self.finish()

    async def handle(self, frame: dict[str, Any]) -> bool:
        """One frame; False when the connection was closed for it."""
        kind, ref = frame.get("t"), frame.get("ref")
        if kind == "ping":
            await self.send({"t": "pong", "ref": ref})
            return True
        if not isinstance(ref, int) or isinstance(ref, bool) or not isinstance(kind, str):
            await self.ws.close(1008, "a legato.v1 request needs an integer ref and a t")
            return False
        handler = _HANDLERS.get(kind)
        if handler is None:
            await self.error(ref, ChannelError("invalid", f"unknown frame type {kind[:40]!r}"))
            return True
        if kind == "call":
            if len(self.calls) >= MAX_CALLS:
                await self.error(ref, ChannelError("too_many", f"at most {MAX_CALLS} calls "
                                                   "at once on one connection"))
                return True
            task = _start(self._answer(handler, ref, frame))
            self.calls.add(task)
            task.add_done_callback(self.calls.discard)
            return True
        await self._answer(handler, ref, frame)
        return True

    async def _answer(self, handler: Any, ref: int, frame: dict[str, Any]) -> None:
        ctx = Context(self.app.providers, self.ws.scope, websocket=self.ws)
        try:
            result = await handler(self, frame, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure answers the request
            if self.ws.state.name == "OPEN":
                await self.error(ref, exc)
        else:
            if self.ws.state.name == "OPEN":
                await self.reply(ref, result)
        finally:
            await ctx.aclose()

    async def finish(self) -> None:
        """The connection ended: calls stop, presence says who left."""
        for task in list(self.calls):
            task.cancel()
        for topic, joined in list(self.joined.items()):
            if joined.member is not None:
                await self._announce(topic, "left", joined.member)
        self.joined.clear()

    # ----------------------------------------------------------------- requests

    def _topic(self, frame: dict[str, Any]) -> str:
        topic = frame.get("topic")
        if not valid_topic(topic):
            raise ChannelError("invalid", "topic must be a string of 1-200 printable "
                                          "characters, not starting with '~'")
        assert isinstance(topic, str)
        return topic

    async def _authorized(self, channel: Channel, ctx: Context, action: str, topic: str,
                          data: Any, message: Any = None) -> None:
        if channel.authorizer is None:
            return
        allowed = await self.service.hook(channel.authorizer, channel)(
            ctx, topic=topic, action=action, data=data, message=message)
        if allowed is False or allowed is None:
            raise ChannelError("forbidden", f"not allowed to {action} {topic!r}")

    async def join(self, frame: dict[str, Any], ctx: Context) -> dict[str, Any]:
        topic = self._topic(frame)
        found = self.joined.get(topic)
        if found is not None:
            return found.reply
        if len(self.joined) >= MAX_TOPICS:
            raise ChannelError("too_many", f"at most {MAX_TOPICS} topics on one connection")
        match = self.service.registry.match(topic)
        if match is None:
            raise ChannelError("not_found", f"no channel matches {topic!r}")
        channel, params = match
        ctx.path_params = params  # every hook of this join may take the placeholders
        since, epoch, data = frame.get("since"), frame.get("epoch"), frame.get("data")
        if since is not None and not isinstance(since, str) or \
                epoch is not None and not isinstance(epoch, str):
            raise ChannelError("invalid", "since and epoch are strings")
        await self._authorized(channel, ctx, "join", topic, data)
        info = None
        if channel.join_hook is not None:
            info = dump_value(await self.service.hook(channel.join_hook, channel)(
                ctx, topic=topic, action="join", data=data))
        current = await self.hub.epoch(topic)
        lost: dict[str, Any] | None = None
        keeps = self.hub.settings(topic).history > 0
        if since is not None and epoch is not None and epoch != current:
            # State lost: the client's ids belong to a history that is gone. Everything
            # of the new epoch is new to it, so it gets all that is kept.
            lost, since = {"reason": "epoch", "first_kept": None}, "0" if keeps else None
        elif since is not None and not keeps:
            lost, since = {"reason": "no_history", "first_kept": None}, None
        member: dict[str, Any] | None = None
        if channel.presence:
            value = data
            if callable(channel.presence):
                value = dump_value(await self.service.hook(channel.presence, channel)(
                    ctx, topic=topic, action="join", data=data))
            member = {"conn": self.id, "data": value}
            await self.hub.subscribe(self.ws, PRESENCE_PREFIX + topic)
        resuming, last = since is not None, None
        if since is None and keeps and lost is None:
            # A live join still gets a resume point: the newest id now. Subscribing from
            # it (not live) also sends what is published between this read and the
            # subscription: the client's view has no hole even before its first message.
            newest = await self.hub.history(topic, limit=1)
            last = newest[-1]["id"] if newest else None
            since = last or "0"
        try:
            sub = await self.hub.subscribe(self.ws, topic, since=since, presence=member)
        except HTTPError as exc:
            raise ChannelError("invalid", "since is not a message id") from exc
        if sub.gap is not None and lost is None:
            lost = {"reason": sub.gap.reason, "first_kept": sub.gap.first_kept}
        reply = {"epoch": current, "resumed": resuming and lost is None, "lost": lost,
                 "last": last, "info": info}
        self.joined[topic] = Joined(channel, params, reply, member)
        if member is not None:
            await self._announce(topic, "joined", member)
        return reply

    async def leave(self, frame: dict[str, Any], ctx: Context) -> dict[str, Any]:
        topic = self._topic(frame)
        joined = self.joined.pop(topic, None)
        if joined is not None:
            await self.hub.unsubscribe(self.ws, topic)
            if joined.member is not None:
                await self.hub.unsubscribe(self.ws, PRESENCE_PREFIX + topic)
                await self._announce(topic, "left", joined.member)
        return {}

    async def tell_lost(self, topic: str, epoch: str, gap: str | None) -> None:
        """After a hub outage: a new epoch (the broker lost the history) or a gap in what
        was refilled is said with a ``lost`` frame; the client keeps the new epoch."""
        joined = self.joined.get(topic)
        if joined is None or self.ws.state.name != "OPEN":
            return
        changed = epoch != joined.reply["epoch"]
        if not changed and gap is None:
            return
        joined.reply = {**joined.reply, "epoch": epoch}
        try:
            await self.send({"t": "lost", "topic": topic, "epoch": epoch,
                             "reason": "epoch" if changed else gap})
        except Exception:  # noqa: BLE001 - the connection is going: nothing to tell
            return

    async def _announce(self, topic: str, kind: str, member: dict[str, Any]) -> None:
        frame = jsoncodec.dumps_str({"t": kind, "topic": topic, "member": member})
        try:
            await self.hub.publish_frame(PRESENCE_PREFIX + topic, frame)
        except HubUnavailable:
            logger.info("channels: %s of %r not announced: the hub is unavailable", kind, topic)

    async def publish(self, frame: dict[str, Any], ctx: Context) -> dict[str, Any]:
        topic = self._topic(frame)
        joined = self.joined.get(topic)
        if joined is None:
            raise ChannelError("not_joined", f"join {topic!r} before publishing to it")
        once = frame.get("once")
        if once is not None and (not isinstance(once, str) or not 1 <= len(once) <= 64):
            raise ChannelError("invalid", "once is a string of 1-64 characters")
        channel, data = joined.channel, frame.get("data")
        ctx.path_params = joined.params
        message = channel.validate(data) if channel.validate is not None else data
        await self._authorized(channel, ctx, "publish", topic, data, message)
        if channel.publish_hook is not None:
            changed = await self.service.hook(channel.publish_hook, channel)(
                ctx, topic=topic, action="publish", data=data, message=message,
                member=joined.member["data"] if joined.member is not None else None)
            if changed is False:
                raise ChannelError("forbidden", f"the publish to {topic!r} was refused")
            if changed is not None:
                message = changed
        if once is None:
            return {"id": await self.hub.publish(topic, message, strict=True)}
        return {"id": await self._publish_once(topic, f"{topic}\x1f{once}", message)}

    async def _publish_once(self, topic: str, key: str, message: Any) -> str:
        """Publish unless ``key`` was published (then its id): a resend after a lost
        reply is never delivered twice (docs/channels.md, Publishing)."""
        for _ in range(100):  # a concurrent first attempt: wait for it, up to ~5 s
            found = await self.hub.claim(key, ONCE_TTL)
            if found is None:
                break
            if found:
                return str(found)
            await asyncio.sleep(0.05)
        else:
            raise ChannelError("unavailable", "the first attempt of this publish did not "
                                              "finish: its outcome is unknown")
        try:
            message_id = await self.hub.publish(topic, message, strict=True)
        except BaseException:
            await self.hub.settle(key, "", 0.001)  # not published: a resend may try again
            raise
        await self.hub.settle(key, message_id, ONCE_TTL)
        return str(message_id)

    async def presence(self, frame: dict[str, Any], ctx: Context) -> dict[str, Any]:
        topic = self._topic(frame)
        if topic not in self.joined:
            raise ChannelError("not_joined", f"join {topic!r} to see who is there")
        if frame.get("count") is True:  # a big room's size, without listing it
            return {"count": await self.hub.presence_count(topic)}
        return {"members": await self.hub.presence(topic)}

    async def call(self, frame: dict[str, Any], ctx: Context) -> Any:
        name = frame.get("name")
        rpc = self.service.registry.rpcs.get(name) if isinstance(name, str) else None
        if rpc is None:
            raise ChannelError("not_found", f"no rpc is named {str(name)[:60]!r}")
        timeout = frame.get("timeout")
        if timeout is None:
            seconds = DEFAULT_CALL_TIMEOUT
        elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool) \
                and timeout > 0:
            seconds = min(timeout / 1000, MAX_CALL_TIMEOUT)
        else:
            raise ChannelError("invalid", "timeout is a positive number of milliseconds")
        hook = self.service.hook(rpc.func)
        try:
            if _timeout is not None:  # 3.11+: no second task per call (wait_for's)
                async with _timeout(seconds):
                    result = await hook(ctx, name=name, data=frame.get("data"))
            else:  # pragma: no cover - Python 3.10
                result = await asyncio.wait_for(
                    hook(ctx, name=name, data=frame.get("data")), seconds)
        except asyncio.TimeoutError:
            raise ChannelError("timeout", f"{name} took longer than {seconds:g} s") from None
        return dump_value(result)


_HANDLERS: dict[str, Any] = {
    "join": ChannelConnection.join,
    "leave": ChannelConnection.leave,
    "pub": ChannelConnection.publish,
    "presence": ChannelConnection.presence,
    "call": ChannelConnection.call,
}

