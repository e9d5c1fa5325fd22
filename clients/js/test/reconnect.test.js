// docs/channels.md "Reconnecting" and "Heartbeat" against a real legato server: a
// restart (SIGTERM: advice, 1012) with Redis keeping the history, a memory hub's
// restart (epoch lost), a dropped connection with a publish in flight (resent with
// its `once`: delivered once), requests queued while disconnected, and a half-open
// connection found dead by the heartbeat.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { Client } from "../legato.js";
import {
  collect, disconnection, freePort, joined, next, sleep, startProxy, startRedis, startServer, until,
  WAIT,
} from "./helpers.js";

const stack = []; // what to stop after each test, last first
after(async () => {
  while (stack.length) await stack.pop()();
});
const client = (port, options) => {
  const c = new Client(`http://127.0.0.1:${port}/_legato`, { baseDelay: 100, maxDelay: 500, ...options });
  stack.push(() => c.close());
  return c;
};
const server = async (port, env) => {
  const s = await startServer(port, env);
  stack.push(() => s.stop());
  return s;
};

async function redis() {
  const r = await startRedis();
  stack.push(() => r.stop());
  return r.url;
}

const data = (got) => got.map(([d]) => d);
const connected = (c) => next(c, "state", (s) => s === "connected");

describe("A server restart (SIGTERM)", () => {
  test("advice, 1012, reconnect, resume: queued publishes and calls arrive once each", async () => {
    const port = await freePort();
    const hub = await redis();
    let s = await server(port, { LEGATO_TEST_HUB: hub });
    // The WebSocket only: a fallback to SSE while the server is down is sse.test.js's.
    const [ann, bob] = [client(port, { transport: "websocket" }), client(port, { transport: "websocket" })];
    const [a, b] = [ann.join("room:restart"), bob.join("room:restart")];
    const [gotA, gotB] = [collect(a), collect(b)];
    await Promise.all([joined(a), joined(b)]);
    await a.publish("before");
    await until(() => gotA.length === 1 && gotB.length === 1, "the first message");

    const closes = [disconnection(ann), disconnection(bob)];
    await s.stop("SIGTERM");
    for (const { code, advice } of await Promise.all(closes)) {
      assert.equal(code, 1012);
      assert.equal(advice.reason, "shutdown");
    }
    const queued = [a.publish("while away 1"), ann.call("add", { a: 2, b: 2 }), a.publish("while away 2")];
    s = await server(port, { LEGATO_TEST_HUB: hub });

    const ids = await Promise.all(queued);
    assert.equal(ids[1], 4);
    await until(() => gotA.length === 3 && gotB.length === 3, "the queued messages", WAIT);
    await sleep(200); // nothing more comes: no resend, no replay twice
    for (const got of [gotA, gotB]) {
      assert.deepEqual(data(got), ["before", "while away 1", "while away 2"]);
      assert.deepEqual(got.slice(1).map(([, m]) => m.id), [ids[0], ids[2]]);
    }
  });

  test("the close is 1012 with the server's advice, and the delay honours it", async () => {
    const port = await freePort();
    const s = await server(port, { LEGATO_TEST_JITTER: "0.3" });
    const c = client(port, { baseDelay: 60000, maxDelay: 60000 });
    await connected(c);
    const detail = disconnection(c);
    await s.stop("SIGTERM");
    const { code, delay, advice } = await detail;
    assert.equal(code, 1012);
    assert.equal(advice.reason, "shutdown");
    assert.equal(advice.jitter, 300);
    assert.ok(delay >= advice.delay && delay <= advice.delay + advice.jitter, `delay ${delay}`);
  });

  test("with the memory hub the history is gone: the topic reports lost (epoch) and goes on", async () => {
    const port = await freePort();
    let s = await server(port);
    const c = client(port);
    const room = c.join("room:epoch");
    const got = collect(room);
    await joined(room);
    await room.publish("old");
    await until(() => got.length === 1, "the first message");
    await s.stop("SIGTERM");
    const lost = next(room, "lost");
    s = await server(port);
    assert.equal((await lost).reason, "epoch");
    await joined(room);
    await room.publish("new");
    await until(() => got.length === 2, "the new message");
    assert.deepEqual(data(got), ["old", "new"]);
  });
});

describe("A dropped connection", () => {
  test("a publish whose ack was lost is resent with its once and delivered once", async () => {
    const port = await freePort();
    await server(port);
    const proxy = await startProxy(port);
    stack.push(() => proxy.close());
    const [ann, bob] = [client(proxy.port), client(port)];
    const [a, b] = [ann.join("room:once"), bob.join("room:once")];
    const [gotA, gotB] = [collect(a), collect(b)];
    await Promise.all([joined(a), joined(b)]);
    await b.publish("seen by both"); // ann has an id to resume from
    await until(() => gotA.length === 1, "ann's first message");

    proxy.freeze({ up: false, down: true }); // ann's frames still reach the server
    const publishing = a.publish("in flight");
    const calling = ann.call("sleep", 0.05);
    await until(() => gotB.length === 2, "the publish reaching the server");
    proxy.cut();
    await assert.rejects(calling, { code: "disconnected" });
    const id = await publishing;
    assert.equal(id, gotB[1][1].id); // the first publish's id: not published again
    await until(() => gotA.length === 2, "ann's resume");
    await b.publish("after");
    await until(() => gotA.length === 3 && gotB.length === 3, "the last message");
    assert.deepEqual(data(gotA), ["seen by both", "in flight", "after"]);
    assert.deepEqual(data(gotB), ["seen by both", "in flight", "after"]);
  });

  test("a client that saw no message yet resumes from the join's last: nothing published while away is lost", async () => {
    const port = await freePort();
    await server(port);
    const proxy = await startProxy(port);
    stack.push(() => proxy.close());
    const [ann, bob] = [client(proxy.port), client(port)];
    const b = bob.join("room:last");
    await joined(b);
    await b.publish("before ann joined"); // not hers to see
    const a = ann.join("room:last");
    const gotA = collect(a);
    await joined(a);
    proxy.freeze(); // ann is away (her socket does not know it yet)
    const missed = await b.publish("while ann was away");
    proxy.cut();
    await next(a, "state", (st) => st === "joining");
    await joined(a);
    await until(() => gotA.length === 1, "ann's resume");
    await sleep(100);
    assert.deepEqual(gotA, [["while ann was away", { id: missed, topic: "room:last" }]]);
  });

  test("requests made while disconnected wait in order; past queueLimit they fail with queue_full", async () => {
    const port = await freePort();
    const c = client(port, { queueLimit: 3 }); // no server yet
    const room = c.join("room:queue");
    const got = collect(room);
    await disconnection(c);
    const first = room.publish("q1");
    const adding = c.call("add", { a: 1, b: 2 });
    const second = room.publish("q2");
    await assert.rejects(room.publish("q3"), { code: "queue_full" });
    await server(port);
    assert.equal(await adding, 3);
    const ids = await Promise.all([first, second]);
    await until(() => got.length === 2, "the queued messages");
    assert.deepEqual(got, [["q1", { id: ids[0], topic: "room:queue" }], ["q2", { id: ids[1], topic: "room:queue" }]]);
  });
});

describe("Heartbeat", () => {
  test("a connection silent for heartbeat + grace is closed and replaced; the topic rejoins", async () => {
    const port = await freePort();
    await server(port);
    const proxy = await startProxy(port);
    stack.push(() => proxy.close());
    const c = client(proxy.port, { heartbeat: 200, grace: 300 });
    const room = c.join("room:dead");
    const got = collect(room);
    await joined(room);
    const pongs = [];
    const frame = c._frame.bind(c);
    c._frame = (text) => (pongs.push(text), frame(text)); // every frame, pongs included
    await sleep(500);
    assert.ok(pongs.some((t) => JSON.parse(t).t === "pong"), "pings are answered");

    const frozenAt = Date.now();
    proxy.freeze(); // half-open: nothing arrives, nothing fails
    const detail = await disconnection(c);
    const after = Date.now() - frozenAt;
    assert.equal(detail.code, 1006);
    assert.ok(after >= 250 && after < 2000, `found dead after ${after} ms`);
    await joined(room);
    assert.equal(c.state, "connected");
    await room.publish("alive");
    await until(() => got.length === 1, "a message on the new connection");
  });
});
