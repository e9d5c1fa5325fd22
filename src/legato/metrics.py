"""P7 metrics: per-route WebSocket and HTTP counters and the hub's gauges, as Prometheus
text at ``/metrics`` when ``App(metrics=True)``.

Counting is off by default: with it off, the per-message path checks one attribute
(and a broadcast one flag of the hub, not one per subscriber). Byte counts are payload
bytes (UTF-8 for text), not frame overhead.

``messages_out``/``bytes_out`` count every message a connection sends, whoever sent it:
its handler, and the hub's deliveries, however they were written (legato's broadcast
loop in C, a backlog flushed when the socket drained, the sender task under other ASGI
servers, the history a ``since=`` resume replays). What a slow consumer's policy dropped
is not counted there but in ``legato_hub_dropped_total``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["RouteMetrics", "Metrics", "render"]


class RouteMetrics:
    """Counters of one WebSocket route."""

    __slots__ = ("open", "opened", "messages_in", "messages_out", "bytes_in", "bytes_out",
                 "close_codes", "hub_dropped")

    def __init__(self) -> None:
        self.open = 0
        self.opened = 0
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_codes: Counter[int] = Counter()
        #: Hub messages a slow-consumer policy dropped for this route's connections (P3).
        self.hub_dropped = 0

    def received(self, data: str | bytes) -> None:
        self.messages_in += 1
        self.bytes_in += len(data.encode("utf-8")) if isinstance(data, str) else len(data)

    def sent(self, data: str | bytes) -> None:
        self.messages_out += 1
        self.bytes_out += len(data.encode("utf-8")) if isinstance(data, str) else len(data)


class Metrics:
    """All counters of one App."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteMetrics] = {}
        self.http_requests: Counter[tuple[str, int]] = Counter()

    def route(self, path: str) -> RouteMetrics:
        metrics = self.routes.get(path)
        if metrics is None:
            metrics = self.routes[path] = RouteMetrics()
        return metrics


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(metrics: Metrics, hub: Any = None) -> str:
    """The Prometheus text exposition (format 0.0.4) of ``metrics`` and, when the App
    has made one, its ``hub``'s gauges (``queued_by_route()``, ``stats()``)."""
    lines: list[str] = []

    def family(name: str, kind: str, helptext: str, samples: list[tuple[str, Any]]) -> None:
        lines.append(f"# HELP {name} {helptext}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value}")

    routes = sorted(metrics.routes.items())
    per_route = [("open", "gauge", "WebSocket connections open now"),
                 ("opened", "counter", "WebSocket connections accepted"),
                 ("messages_in", "counter", "WebSocket messages received"),
                 ("messages_out", "counter", "WebSocket messages sent (handlers and hub)"),
                 ("bytes_in", "counter", "WebSocket payload bytes received"),
                 ("bytes_out", "counter", "WebSocket payload bytes sent (handlers and hub)"),
                 ("hub_dropped", "counter",
                  "hub messages dropped for this route's slow consumers (P3)")]
    for attr, kind, helptext in per_route:
        suffix = "_total" if kind == "counter" else ""
        family(f"legato_websocket_{attr}{suffix}", kind, helptext,
               [(f'{{route="{_label(p)}"}}', getattr(m, attr)) for p, m in routes])
    family("legato_websocket_closes_total", "counter", "WebSocket closes by close code",
           [(f'{{route="{_label(p)}",code="{code}"}}', n)
            for p, m in routes for code, n in sorted(m.close_codes.items())])
    family("legato_http_requests_total", "counter", "HTTP requests by route and status",
           [(f'{{route="{_label(p)}",status="{s}"}}', n)
            for (p, s), n in sorted(metrics.http_requests.items())])
    if hub is not None:
        waiting = hub.queued_by_route()
        family("legato_websocket_hub_queued", "gauge",
               "hub messages waiting in this route's subscriber buffers",
               [(f'{{route="{_label(p)}"}}', waiting.get(id(m), 0)) for p, m in routes])
        stats = hub.stats()
        for key, kind, helptext in (
                ("topics", "gauge", "hub topics with local subscribers"),
                ("subscriptions", "gauge", "hub subscriptions in this process"),
                ("published", "counter", "messages published from this process"),
                ("delivered", "counter", "messages handed to local subscribers"),
                ("dropped", "counter", "messages dropped for slow consumers (P3)"),
                ("queued", "gauge", "messages waiting in subscriber buffers"),
                ("max_queue_depth", "gauge", "deepest subscriber buffer"),
                ("backend_reconnects", "counter", "reconnections to the hub broker"),
                ("backend_outages", "counter", "times the hub broker became unreachable"),
                ("gaps", "counter", "times missed messages could not be refilled (a "
                 "reconnection) or replayed (a since= older than the history)"),
                ("published_locally", "counter",
                 "messages delivered in this process only (broker unreachable)")):
            suffix = "_total" if kind == "counter" else ""
            family(f"legato_hub_{key}{suffix}", kind, helptext, [("", stats[key])])
        shards = stats["shards"]
        for key, name, kind, helptext in (
                ("up", "up", "gauge", "1 while this process reaches the broker shard (its "
                 "pub/sub connection, else its command connection)"),
                ("topics", "topics", "gauge", "topics this process receives from the shard"),
                ("pending", "pending", "gauge", "commands queued for or awaiting the shard"),
                ("lag", "lag_seconds", "gauge", "publish to delivery of the last message "
                 "from the shard (the broker's clock against this host's)"),
                ("reconnects", "reconnects_total", "counter",
                 "reconnections of the pub/sub connection to the shard")):
            family(f"legato_hub_shard_{name}", kind, helptext,
                   [(f'{{shard="{_label(s["shard"])}"}}', int(s[key]) if key == "up"
                     else s[key]) for s in shards])
    return "\n".join(lines) + "\n"
