// docs/channels.md "The fallback transport: SSE down, POST up" against real legato
// servers: the client forced onto SSE (join, publish with an ack, calls, presence,
// frames batched into one POST, a dropped stream resumed with Last-Event-ID, a stream
// that comes back on another process, a restart on Redis), and the automatic fallback
// behind a proxy that refuses WebSocket upgrades.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client } from "../legato.js";
import {
  collect, disconnection, freePort, joined, next, sleep, startProxy, startRedis,
  startRefusingProxy, startServer, until,
} from "./helpers.js";

const stack = []; // what to stop after the tests, last first
after(async () => {
  while (stack.length) await stack.pop()();
});
const later = (stop) => (stack.push(stop), undefined);
const client = (port, options) => {
  const c = new Client(`http://127.0.0.1:${port}/_legato`, { baseDelay: 100, maxDelay: 500, ...options });
  later(() => c.close());
  return c;
};
const sse = (port, options) => client(port, { transport: "sse", ...options });
const server = async (port, env) => {
  const s = await startServer(port, env);
  later(() => s.stop());
  return s;
};
const connected = (c) =>
  c.state === "connected" ? Promise.resolve() : next(c, "state", (s) => s === "connected");
const data = (got) => got.map(([d]) => d);
const STREAM = /^GET \/_legato\/sse/; // the proxy's connections that carry the stream

// A fetch that records the POSTs' bodies (the frames sent up), then does the real fetch.
const recording = () => {
  const posts = [];
  const f = (url, init) => {
    if (init?.method === "POST") posts.push(JSON.parse(init.body));
    return fetch(url, init);
  };
  return { posts, fetch: f };
};

describe("Forced onto SSE", () => {
  let port;
  before(async () => {
    port = (await server(await freePort())).port;
  });

  test("transport is sse; a publish resolves with its id and comes back as a message", async () => {
    const c = sse(port);
    const room = c.join("room:sse", { data: { name: "ann" } });
    const got = collect(room);
    await joined(room);
    assert.equal(c.transport, "sse");
    assert.match(c.conn, /^\w+$/);
    assert.deepEqual(room.info, { room: "sse" });
    const id = await room.publish({ text: "hi" });
    await until(() => got.length === 1, "the message");
    assert.deepEqual(got[0], [{ text: "hi" }, { id, topic: "room:sse" }]);
  });

  test("an SSE client and a WebSocket client on one topic hear each other", async () => {
    const [ann, bob] = [sse(port), client(port, { transport: "websocket" })];
    const [a, b] = [ann.join("room:mixed"), bob.join("room:mixed")];
    const [gotA, gotB] = [collect(a), collect(b)];
    await Promise.all([joined(a), joined(b)]);
    const ids = [await a.publish("from sse"), await b.publish("from ws")];
    await until(() => gotA.length === 2 && gotB.length === 2, "both messages on both");
    assert.deepEqual(gotA.map(([d, m]) => [d, m.id]), [["from sse", ids[0]], ["from ws", ids[1]]]);
    assert.deepEqual(data(gotB), ["from sse", "from ws"]);
  });

  test("calls: a reply, a handler's error with code and details, not_found, timeout", async () => {
    const c = sse(port);
    assert.equal(await c.call("add", { a: 2, b: 3 }), 5);
    await assert.rejects(c.call("refuse", 7), { code: "forbidden", message: "not you", details: { why: 7 } });
    await assert.rejects(c.call("nope"), { code: "not_found" });
    await assert.rejects(c.call("sleep", 5, { timeout: 200 }), { code: "timeout" });
  });

  test("presence: joined events and the members' list", async () => {
    const [ann, bob] = [sse(port), sse(port)];
    const a = ann.join("room:sse-here", { data: { name: "ann" } });
    await joined(a);
    const bobJoins = next(a, "joined", (m) => m.data?.name === "bob");
    const b = bob.join("room:sse-here", { data: { name: "bob" } });
    await joined(b);
    assert.deepEqual(await bobJoins, { conn: bob.conn, data: { name: "bob" } });
    const members = await b.presence();
    assert.deepEqual(members.map((m) => m.data.name).sort(), ["ann", "bob"]);
    // close() tells the server: bob leaves at once, not after the server's 30 s linger.
    const bobLeaves = next(a, "left", (m) => m.data?.name === "bob");
    bob.close();
    assert.deepEqual(await bobLeaves, { conn: members.find((m) => m.data.name === "bob").conn, data: { name: "bob" } });
  });

  test("frames sent in one tick go up in one POST, in order; pings go up as POSTs", async () => {
    const { posts, fetch } = recording();
    const c = sse(port, { fetch, heartbeat: 150 });
    const room = c.join("room:batch");
    await joined(room);
    posts.length = 0;
    const ids = await Promise.all([room.publish(1), room.publish(2), c.call("add", { a: 1, b: 1 })]);
    assert.equal(ids[2], 2);
    assert.deepEqual(posts[0].map((f) => [f.t, f.data]), [["pub", 1], ["pub", 2], ["call", { a: 1, b: 1 }]]);
    await until(() => posts.some((p) => p.some((f) => f.t === "ping")), "a ping POST");
  });

  test("a dropped stream resumes with Last-Event-ID: same connection, the answer sent meanwhile arrives", async () => {
    const proxy = await startProxy(port);
    later(() => proxy.close());
    const c = sse(proxy.port);
    const room = c.join("room:resume");
    const got = collect(room);
    await joined(room);
    const conn = c.conn;
    const states = [];
    c.on("state", (s) => states.push(s));
    proxy.freeze({ up: false, down: true, match: STREAM }); // the stream hears nothing; POSTs go on
    const publishing = room.publish("while the stream was away");
    await sleep(200);
    proxy.cut(STREAM);
    const id = await publishing;
    await until(() => got.length === 1, "the message");
    assert.deepEqual(got[0], ["while the stream was away", { id, topic: "room:resume" }]);
    assert.equal(c.conn, conn);
    assert.deepEqual(states, []); // never disconnected
  });
});

describe("SSE across processes (Redis)", () => {
  test("a stream that comes back on another process gets a new welcome: rejoined from the last id, the publish in flight resent with its once", async () => {
    const redis = await startRedis();
    later(() => redis.stop());
    const env = { LEGATO_TEST_HUB: redis.url };
    const [a, b] = [await server(await freePort(), env), await server(await freePort(), env)];
    const proxy = await startProxy(a.port);
    later(() => proxy.close());
    const [ann, bob] = [sse(proxy.port), client(b.port)];
    const [ra, rb] = [ann.join("room:move"), bob.join("room:move")];
    const [gotA, gotB] = [collect(ra), collect(rb)];
    await Promise.all([joined(ra), joined(rb)]);
    await rb.publish("first");
    await until(() => gotA.length === 1, "ann's first message");
    const conn = ann.conn;

    proxy.freeze({ up: false, down: true, match: STREAM });
    const publishing = ra.publish("in flight");
    await until(() => gotB.length === 2, "the publish reaching the server");
    proxy.target = b.port; // the stream's next request reaches the other process
    proxy.cut(STREAM);
    const id = await publishing;
    assert.notEqual(ann.conn, conn); // a new connection (welcome) on process b
    assert.equal(id, gotB[1][1].id); // not published twice: the once key, in Redis
    await rb.publish("after");
    await until(() => gotA.length === 3 && gotB.length === 3, "the last message");
    await sleep(100);
    assert.deepEqual(data(gotA), ["first", "in flight", "after"]);
    assert.deepEqual(data(gotB), ["first", "in flight", "after"]);
  });

  test("a restart (SIGTERM): advice and close 1012 down the stream; what was queued arrives once after the rejoin", async () => {
    const redis = await startRedis();
    later(() => redis.stop());
    const env = { LEGATO_TEST_HUB: redis.url };
    const old = await server(await freePort(), env);
    const proxy = await startProxy(old.port); // the address the clients know
    later(() => proxy.close());
    const [ann, bob] = [sse(proxy.port), sse(proxy.port)];
    const [a, b] = [ann.join("room:restart"), bob.join("room:restart")];
    const [gotA, gotB] = [collect(a), collect(b)];
    await Promise.all([joined(a), joined(b)]);
    await a.publish("before");
    await until(() => gotA.length === 1 && gotB.length === 1, "the first message");

    const closes = [disconnection(ann), disconnection(bob)];
    await old.stop("SIGTERM");
    for (const { code, advice } of await Promise.all(closes)) {
      assert.equal(code, 1012);
      assert.equal(advice.reason, "shutdown");
    }
    const queued = [a.publish("away 1"), ann.call("add", { a: 2, b: 2 }), a.publish("away 2")];
    const fresh = await server(await freePort(), env); // the restarted process
    proxy.target = fresh.port;
    const ids = await Promise.all(queued);
    assert.equal(ids[1], 4);
    await until(() => gotA.length === 3 && gotB.length === 3, "the queued messages");
    await sleep(200); // nothing more comes: no resend, no replay twice
    for (const got of [gotA, gotB]) {
      assert.deepEqual(data(got), ["before", "away 1", "away 2"]);
      assert.deepEqual(got.slice(1).map(([, m]) => m.id), [ids[0], ids[2]]);
    }
    assert.equal(ann.transport, "sse");
  });

  test("a fresh process whose first channel connection is SSE keeps the channel's history", async () => {
    const s = await server(await freePort());
    const room = sse(s.port).join("room:cold");
    await joined(room);
    await room.publish("kept?");
    const replay = sse(s.port).join("room:cold", { since: "0" });
    const got = collect(replay);
    await joined(replay);
    assert.deepEqual(data(got), ["kept?"]);
  });
});

describe("Automatic fallback (transport: auto)", () => {
  test("behind a proxy refusing WebSocket upgrades: 2 failed attempts, then SSE, and it works", async () => {
    const s = await server(await freePort());
    const proxy = await startRefusingProxy(s.port);
    later(() => proxy.close());
    const c = client(proxy.port);
    const codes = [];
    c.on("state", (st, d) => st === "disconnected" && codes.push(d.code));
    const room = c.join("room:fallback");
    const got = collect(room);
    await joined(room);
    assert.equal(c.transport, "sse");
    assert.deepEqual(codes, [1006, 1006]);
    const id = await room.publish("through the proxy");
    await until(() => got.length === 1, "the message");
    assert.equal(got[0][1].id, id);
    assert.equal(await c.call("add", { a: 1, b: 2 }), 3);
    await until(() => proxy.requests.filter((r) => r.startsWith("UPGRADE")).length === 3, "the probe");
    await sleep(100);
    assert.equal(c.transport, "sse"); // the probe was refused too
    assert.deepEqual(proxy.requests.slice(0, 3), ["UPGRADE /_legato/ws", "UPGRADE /_legato/ws", "GET /_legato/sse"]);
  });

  test("when upgrades go through again, the next SSE connection's probe moves the client back to the WebSocket", async () => {
    const port = await freePort();
    let s = await server(port);
    const proxy = await startRefusingProxy(port);
    later(() => proxy.close());
    const c = client(proxy.port);
    const room = c.join("room:back");
    const got = collect(room);
    await joined(room);
    assert.equal(c.transport, "sse");
    proxy.refuse = false;
    await s.stop("SIGTERM"); // the SSE connection ends (1012); the next one is SSE again
    s = await server(port);
    await until(() => c.transport === "websocket" && c.state === "connected", "the WebSocket again", 15000);
    await joined(room);
    const id = await room.publish("on the WebSocket");
    await until(() => got.some(([, m]) => m.id === id), "the message");
  });
});
