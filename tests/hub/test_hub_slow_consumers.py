"""P2/P3 over real sockets on legato's server: a subscriber that stops reading fills its
bounded buffer and meets its topic's policy, while the others get every message, in
order, without waiting for it."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from legato import App, WebSocket

sys.path.insert(0, str(Path(__file__).parents[1] / "framework"))
from live import MODES, client_for, serve_legato  # noqa: E402

MESSAGE = "x" * 32_000
COUNT = 300  # ~9.6 MB: far more than a stalled socket's buffers hold


KEYS = 5


def hub_app(policy: str, buffer: int = 32) -> App:
    app = App(hub_envelope=False, hub_policy=policy, hub_buffer=buffer)

    @app.websocket("/sub")
    async def sub(ws: WebSocket) -> None:
        await app.hub.subscribe(ws, "news")
        await ws.send_text("subscribed")
        await ws.wait_closed()

    @app.websocket("/pub")
    async def pub(ws: WebSocket) -> None:
        async for count in ws:
            for n in range(int(count)):
                await app.hub.publish("news", f"{n:05d}{MESSAGE}")
                # A live feed, not one burst: a burst faster than any network would
                # fill every subscriber's buffer, reading or not.
                await asyncio.sleep(0.001)
            await ws.send_text("published")

    @app.websocket("/pub-keyed")
    async def pub_keyed(ws: WebSocket) -> None:
        async for count in ws:
            for n in range(int(count)):
                await app.hub.publish("news", f"{n:05d}k{n % KEYS}{MESSAGE}",
                                      key=f"k{n % KEYS}")
                await asyncio.sleep(0.001)
            await ws.send_text("published")

    @app.websocket("/pub-each")
    async def pub_each(ws: WebSocket) -> None:
        async for message in ws:
            await app.hub.publish("news", message)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return app.hub.stats()

    return app


def stalled_subscriber(port: int, path: str = "/sub") -> socket.socket:
    """Completes the handshake on ``path``, reads the 'subscribed' message, then never
    reads again (a tiny receive buffer, so the server's transport pauses quickly)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    seen = b""
    while b"subscribed" not in seen:
        chunk = sock.recv(1)
        assert chunk
        seen += chunk
    return sock


def read_until_quiet(sock: socket.socket, quiet: float = 2.0) -> bytes:
    """What the server sent from here on, until the socket closes or stays quiet."""
    sock.settimeout(quiet)
    data = b""
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return data


def stats(port: int) -> dict[str, Any]:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "latest"])
def test_P3_a_stalled_subscriber_does_not_delay_the_others(policy: str) -> None:
    with serve_legato(hub_app(policy)) as port:
        slow = stalled_subscriber(port)
        try:
            with connect(f"ws://127.0.0.1:{port}/sub", max_size=None) as fast, \
                    connect(f"ws://127.0.0.1:{port}/pub") as pub:
                assert fast.recv(timeout=5) == "subscribed"
                received: list[str] = []

                def read_all() -> None:
                    while len(received) < COUNT:
                        received.append(str(fast.recv(timeout=20))[:5])

                reader = threading.Thread(target=read_all)
                reader.start()
                pub.send(str(COUNT))
                assert pub.recv(timeout=30) == "published"
                reader.join(30)
                # Every message reached the reading subscriber, in order, while the
                # stalled one held up nobody (it has still not read a byte more).
                assert received == [f"{n:05d}" for n in range(COUNT)]
                numbers = stats(port)
                assert numbers["dropped"] > 0  # counted, visible (P3, P7)
                assert numbers["max_queue_depth"] <= 32
        finally:
            slow.close()


def test_P3_a_stalled_subscriber_adds_no_latency_for_the_others() -> None:
    """The reading subscriber's delivery latency (from the publisher's send to its
    receipt; both clients live in this process, so one clock) while another subscriber
    has stopped reading, against the same measurement before it connected. Relative, in
    the test's own terms: no absolute speed is assumed."""
    with serve_legato(hub_app("drop_oldest")) as port:
        with connect(f"ws://127.0.0.1:{port}/sub", max_size=None) as fast, \
                connect(f"ws://127.0.0.1:{port}/pub-each", max_size=None) as pub:
            assert fast.recv(timeout=5) == "subscribed"

            def median_latency(count: int) -> float:
                latencies: list[float] = []

                def read() -> None:
                    for _ in range(count):
                        message = str(fast.recv(timeout=20))
                        latencies.append(time.perf_counter() - float(message[:20]))

                reader = threading.Thread(target=read)
                reader.start()
                for _ in range(count):
                    pub.send(f"{time.perf_counter():020.6f}{MESSAGE}")
                    time.sleep(0.002)  # a live feed, as in the test above
                reader.join(30)
                assert len(latencies) == count  # every message, none lost
                return statistics.median(latencies)

            alone = median_latency(150)
            slow = stalled_subscriber(port)
            try:
                beside_a_stalled_one = median_latency(COUNT)
                # The stall was real: its buffer overflowed and messages were dropped.
                assert stats(port)["dropped"] > 0
            finally:
                slow.close()
    print(f"median delivery latency: alone {alone * 1000:.2f} ms, beside a stalled "
          f"subscriber {beside_a_stalled_one * 1000:.2f} ms")
    assert beside_a_stalled_one <= 2 * alone + 0.005, (alone, beside_a_stalled_one)


def test_P3_policy_close_ends_a_stalled_subscriber_with_1013() -> None:
    with serve_legato(hub_app("close", buffer=4)) as port:
        slow = stalled_subscriber(port)
        with connect(f"ws://127.0.0.1:{port}/pub") as pub:
            pub.send("200")
            assert pub.recv(timeout=30) == "published"
        # Now read what the server sent the stalled client: frames, then a Close 1013.
        slow.settimeout(10)
        data = b""
        while True:
            chunk = slow.recv(65536)
            if not chunk:
                break
            data += chunk
        slow.close()
        close_at = data.rfind(b"\x88\x02\x03\xf5")  # FIN+Close, 2-byte payload, 1013
        if close_at < 0:
            close_at = data.rfind(b"\x88")
        assert close_at >= 0
        assert stats_closed(data) == 1013


def test_P3_policy_latest_keeps_the_newest_message_of_every_key_for_a_stalled_subscriber(
        ) -> None:
    """Keys (publish(..., key=...)) on one topic: the stalled subscriber's buffer holds
    one message per key, so when it reads again every key's last message is there,
    after whatever older ones the socket already held; the rest were dropped, counted."""
    with serve_legato(hub_app("latest")) as port:
        slow = stalled_subscriber(port)
        try:
            with connect(f"ws://127.0.0.1:{port}/pub-keyed") as pub:
                pub.send(str(COUNT))
                assert pub.recv(timeout=30) == "published"
            numbers = stats(port)
            assert numbers["dropped"] > 0
            assert numbers["max_queue_depth"] <= KEYS
            # Read until quiet: the socket's backlog, then the queued latest messages.
            data = read_until_quiet(slow)
        finally:
            slow.close()
    received = [int(p[:5]) for p in text_payloads(data)]
    assert received == sorted(received)  # in order, nothing twice
    assert len(received) < COUNT
    newest = {k: max(n for n in range(COUNT) if n % KEYS == k) for k in range(KEYS)}
    for k, n in newest.items():
        assert n in received, f"key k{k} lost its newest message {n}"


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each complete unmasked frame in ``data``, a server's byte
    stream read from the start."""
    pos, frames = 0, []
    while pos + 2 <= len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            length = int.from_bytes(data[pos:pos + 2], "big")
            pos += 2
        elif length == 127:
            length = int.from_bytes(data[pos:pos + 8], "big")
            pos += 8
        if pos + length > len(data):
            break
        frames.append((opcode, data[pos:pos + length]))
        pos += length
    return frames


def metric_lines(text: str, label: str) -> dict[str, int]:
    """The samples of /metrics whose labels contain ``label``."""
    return {line.split()[0]: int(line.split()[1]) for line in text.splitlines()
            if not line.startswith("#") and label in line}


def text_payloads(data: bytes) -> list[bytes]:
    return [payload for opcode, payload in server_frames(data) if opcode == 0x1]


def stats_closed(data: bytes) -> int:
    """The code of the Close frame the server sent last."""
    codes = [int.from_bytes(payload[:2], "big") for opcode, payload in server_frames(data)
             if opcode == 0x8 and len(payload) >= 2]
    return codes[-1] if codes else 0


# ------------------------------------------------- one connection, several topics


def topics_app(hub_url: str, **options: Any) -> App:
    """``/multi?topics=a,b``: subscribes to each topic in that order (the first one's
    settings must not rule the others); ``/feed/{topic}?count=&keys=``: a live feed of
    numbered messages, keyed ``k0``..``k{keys-1}`` when ``keys`` is given."""
    app = App(hub=hub_url, hub_envelope=False, **options)

    @app.websocket("/multi")
    async def multi(ws: WebSocket, topics: str) -> None:
        for topic in topics.split(","):
            await app.hub.subscribe(ws, topic)
        await ws.send_text("subscribed")
        await ws.wait_closed()

    @app.post("/feed/{topic}")
    async def feed(topic: str, count: int, keys: int = 0) -> dict[str, int]:
        for n in range(count):
            key = f"k{n % keys}" if keys else None
            await app.hub.publish(topic, f"{n:05d}{key or '--'}{MESSAGE}", key=key)
            await asyncio.sleep(0.001)  # a live feed (see hub_app)
        return {"published": count}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return app.hub.stats()

    return app


def feed(port: int, topic: str, count: int, keys: int = 0) -> None:
    import httpx

    response = httpx.post(f"http://127.0.0.1:{port}/feed/{topic}",
                          params={"count": count, "keys": keys}, timeout=60)
    assert response.json() == {"published": count}


def test_P3_each_topic_keeps_its_own_slow_consumer_policy(hub_url: str) -> None:
    """Subscribed to a "drop_newest" topic first and a "latest" one second, a stalled
    connection still keeps the newest message of every key of the "latest" topic (the
    first topic's policy used to rule the whole buffer and drop them)."""
    app = topics_app(hub_url)
    app.hub.configure("plain", policy="drop_newest", buffer=8)
    app.hub.configure("prices", policy="latest")
    with serve_legato(app) as port:
        slow = stalled_subscriber(port, "/multi?topics=plain,prices")
        try:
            feed(port, "plain", COUNT)
            feed(port, "prices", COUNT, keys=KEYS)
            numbers = stats(port)
            assert numbers["dropped"] > 0
            # Each lane is bounded by its own topic: 8 plain + one per key of prices.
            assert numbers["max_queue_depth"] <= 8 + KEYS
            data = read_until_quiet(slow)
        finally:
            slow.close()
    payloads = [p.decode()[:7] for p in text_payloads(data)]
    prices = [int(p[:5]) for p in payloads if p[5:7] != "--"]
    assert prices == sorted(prices)  # in order, nothing twice
    for k in range(KEYS):
        newest = max(n for n in range(COUNT) if n % KEYS == k)
        assert newest in prices, f"key k{k} lost its newest message {newest}"
    plain = [int(p[:5]) for p in payloads if p[5:7] == "--"]
    # drop_newest on "plain": what got through is a prefix of the feed, in order.
    assert plain == list(range(len(plain))) and len(plain) < COUNT


@pytest.mark.parametrize("order", ["strict,calm", "calm,strict"])
def test_P3_only_the_topic_whose_policy_is_close_closes_with_its_own_code(
        hub_url: str, order: str) -> None:
    """"strict" closes with 1008 when its lane is full; "calm" drops its oldest. A
    backlog of "calm" messages never closes the connection, whichever topic came
    first; a backlog of "strict" ones closes it with 1008, not the hub's 1013."""
    app = topics_app(hub_url)
    app.hub.configure("strict", policy="close", buffer=4, close_code=1008)
    app.hub.configure("calm", policy="drop_oldest", buffer=4)
    with serve_legato(app) as port:
        slow = stalled_subscriber(port, f"/multi?topics={order}")
        try:
            feed(port, "calm", COUNT // 2)
            assert stats(port)["dropped"] > 0
            assert stats(port)["subscriptions"] == 2  # not closed: still on both topics
            feed(port, "strict", COUNT // 2)
            data = read_until_quiet(slow, quiet=10)
        finally:
            slow.close()
    assert stats_closed(data) == 1008


# ----------------------------------------------------------- a burst, no yielding

BURST = 3000
SMALL = "y" * 4000  # 3000 of them: 12 MB, far beyond any socket's buffers


def burst_app(hub_url: str, buffer: int) -> App:
    app = topics_app(hub_url, hub_buffer=buffer)

    @app.post("/burst/{topic}")
    async def burst(topic: str) -> dict[str, int]:
        # The memory backend's publish() never suspends: this loop does not yield
        # until it is done (a synchronous burst); Redis round trips let it yield.
        for n in range(BURST):
            await app.hub.publish(topic, f"{n:05d}{SMALL}")
        return {"published": BURST}

    @app.get("/buffered")
    async def buffered() -> list[int]:
        # Bytes waiting in each subscriber's transport (beyond its high-water mark
        # only while it is not reading).
        return [o.http.transport.get_write_buffer_size() for o in app.hub._outboxes.values()
                if o.http is not None and o.http.transport is not None]

    return app


def test_P3_a_burst_that_never_yields_grows_no_stalled_subscriber_past_its_buffer(
        hub_url: str) -> None:
    """The deliveries a loop iteration gathers go out in slices of at most the topic's
    buffer: a stalled subscriber's transport holds at most one slice beyond its
    high-water mark (the whole burst, joined into one write, used to land there), its
    outbox at most its buffer; the rest is dropped by its policy, counted."""
    import httpx

    buffer = 32
    with serve_legato(burst_app(hub_url, buffer)) as port:
        slow = stalled_subscriber(port, "/multi?topics=news")
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/burst/news", timeout=60)
            assert response.json() == {"published": BURST}
            numbers = stats(port)
            assert numbers["max_queue_depth"] <= buffer
            assert numbers["dropped"] > 0
            frame = len(SMALL) + 5 + 4  # payload + number + header
            (held,) = httpx.get(f"http://127.0.0.1:{port}/buffered", timeout=5).json()
            assert held <= 64 * 1024 + buffer * frame, held
            data = read_until_quiet(slow)
        finally:
            slow.close()
    received = [int(p[:5]) for p in text_payloads(data)]
    assert received == sorted(received)
    assert received[-1] == BURST - 1  # drop_oldest: the newest is never lost
    assert len(received) + numbers["dropped"] == BURST  # each one sent or counted


def test_P7_a_stalled_subscriber_counts_exactly_the_frames_it_was_sent(
        hub_url: str) -> None:
    """messages_out/bytes_out of a subscriber that stalled and read again: what went
    straight out, what its outbox flushed when the socket drained, not what its policy
    dropped."""
    import httpx

    with serve_legato(topics_app(hub_url, metrics=True, hub_buffer=16)) as port:
        slow = stalled_subscriber(port, "/multi?topics=news")
        try:
            feed(port, "news", COUNT)
            assert stats(port)["dropped"] > 0
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            before = metric_lines(text, 'route="/multi"')
            payloads = text_payloads(read_until_quiet(slow))
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            dropped = stats(port)["dropped"]
        finally:
            slow.close()
    sent = metric_lines(text, 'route="/multi"')
    # Drops and the backlog show per route too (P7), the backlog gone once read.
    assert sent['legato_websocket_hub_dropped_total{route="/multi"}'] == dropped > 0
    assert 0 < before['legato_websocket_hub_queued{route="/multi"}'] <= 16
    assert sent['legato_websocket_hub_queued{route="/multi"}'] == 0
    assert sent['legato_websocket_messages_out_total{route="/multi"}'] == 1 + len(payloads)
    assert sent['legato_websocket_bytes_out_total{route="/multi"}'] == \
        len("subscribed") + sum(len(p) for p in payloads)


@pytest.mark.parametrize("mode", MODES)
def test_P3_a_burst_that_never_yields_keeps_every_subscriber_within_its_buffer(
        hub_url: str, mode: str) -> None:
    """On every entry point (under other servers the outbox's sender task writes): a
    reading subscriber of a burst gets the messages in order, the newest last, each one
    either sent or dropped by the policy and counted, never more than its buffer
    waiting."""
    buffer = 32
    with client_for(mode, burst_app(hub_url, buffer)) as client:
        with client.websocket_connect("/multi?topics=news") as ws:
            assert ws.receive_text() == "subscribed"
            assert client.post("/burst/news").json() == {"published": BURST}
            received = [int(ws.receive_text()[:5])]
            while received[-1] != BURST - 1:
                received.append(int(ws.receive_text()[:5]))
            numbers = client.get("/stats").json()
    assert received == sorted(received)
    assert len(received) + numbers["dropped"] == BURST
    assert numbers["max_queue_depth"] <= buffer


@pytest.mark.parametrize("mode", MODES)
def test_P3_in_a_burst_on_two_topics_each_meets_its_own_policy(hub_url: str,
                                                              mode: str) -> None:
    """Under other ASGI servers a burst queues before the sender task runs, so the
    policies act even for a reading client: the "latest" topic subscribed after a
    "drop_newest" one still delivers the newest message of every key. On legato's
    server and the TestClient the reader may get everything; the promise is the same."""
    count = 600
    app = topics_app(hub_url)
    app.hub.configure("plain", policy="drop_newest", buffer=8)
    app.hub.configure("prices", policy="latest")

    @app.post("/burst2")
    async def burst2() -> dict[str, int]:
        for n in range(count):  # no yielding with the memory backend
            await app.hub.publish("plain", f"{n:05d}--")
            await app.hub.publish("prices", f"{n:05d}k{n % KEYS}", key=f"k{n % KEYS}")
        await app.hub.publish("end", "end")
        return {"published": count}

    with client_for(mode, app) as client:
        with client.websocket_connect("/multi?topics=plain,prices,end") as ws:
            assert ws.receive_text() == "subscribed"
            assert client.post("/burst2").json() == {"published": count}
            got = []
            while (text := ws.receive_text()) != "end":
                got.append(text)
    prices = [int(t[:5]) for t in got if t[5:7] != "--"]
    assert prices == sorted(prices)
    for k in range(KEYS):
        newest = max(n for n in range(count) if n % KEYS == k)
        assert newest in prices, f"key k{k} lost its newest message {newest}"
    plain = [int(t[:5]) for t in got if t[5:7] == "--"]
    assert plain == list(range(len(plain)))  # drop_newest: a prefix, in order


def test_P3_what_waits_for_a_topic_is_not_sent_after_unsubscribing_from_it(
        hub_url: str) -> None:
    """A stalled connection on "a" and "b" unsubscribes from "a": the "a" messages its
    outbox still held are not sent later (only what the transport already had), nor
    counted as a slow consumer's drops; "b" goes on."""
    import httpx

    app = topics_app(hub_url)
    app.hub.configure("a", buffer=16)

    @app.post("/leave/{topic}")
    async def leave(topic: str) -> dict[str, int]:
        for ws in list(app.hub._outboxes):
            await app.hub.unsubscribe(ws, topic)
        return {"queued": app.hub.stats()["queued"]}

    with serve_legato(app) as port:
        slow = stalled_subscriber(port, "/multi?topics=a,b")
        try:
            feed(port, "a", COUNT // 2)
            before = stats(port)
            assert before["queued"] == 16
            assert httpx.post(f"http://127.0.0.1:{port}/leave/a", timeout=5).json() == {
                "queued": 0}
            assert stats(port)["dropped"] == before["dropped"]
            feed(port, "b", 3, keys=1)
            data = read_until_quiet(slow)
        finally:
            slow.close()
    kinds = [p.decode()[5:7] for p in text_payloads(data)]
    assert kinds[-3:] == ["k0"] * 3
    a_sent = kinds.count("--")
    # What the transport held when "a" was left, and none of the 16 queued after it.
    assert a_sent + before["dropped"] + 16 == COUNT // 2
