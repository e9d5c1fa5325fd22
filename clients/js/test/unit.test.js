// What a real server cannot make happen on demand, against a fake WebSocket: the
// backoff's numbers (docs/channels.md "Reconnecting"), the URL, the frames a resend
// carries, and the duplicate-id safety net.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { Client } from "../legato.js";
import { until } from "./helpers.js";

class FakeSocket {
  static all = [];
  constructor(url, protocol) {
    Object.assign(this, { url, protocol, sent: [] });
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code) {
    this.closed = code ?? null;
  }
  frame(f) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  welcome() {
    this.frame({ t: "welcome", v: 1, conn: "c1", heartbeat: 25000 });
  }
  drop(code = 1006) {
    this.onclose?.({ code });
  }
}
const last = () => FakeSocket.all.at(-1);
const sockets = (n) => until(() => FakeSocket.all.length === n, `socket ${n}`);

let clients;
const make = (options = {}, url = "http://example.test/_legato") => {
  const c = new Client(url, { WebSocket: FakeSocket, transport: "websocket", ...options });
  clients.push(c);
  return c;
};
beforeEach((t) => {
  FakeSocket.all = [];
  clients = [];
  t.mock.method(Math, "random", () => 0.5);
});
afterEach(() => clients.forEach((c) => c.close()));

describe("URLs", () => {
  test("an http(s) base becomes ws(s) + /ws, with params as the query", async () => {
    make({ params: { token: "a b" } }, "https://example.test/base/");
    await sockets(1);
    assert.equal(last().url, "wss://example.test/base/ws?token=a+b");
    assert.equal(last().protocol, "legato.v1");
  });

  test("a path needs a page to resolve against: without one the constructor throws", () => {
    assert.throws(() => new Client("/_legato", { WebSocket: FakeSocket }), TypeError);
  });
});

describe("Backoff", () => {
  test("full jitter: random(0, min(maxDelay, baseDelay * 2 ** attempt)), reset by welcome", async () => {
    const c = make({ baseDelay: 4, maxDelay: 20 });
    const delays = [];
    c.on("state", (s, d) => s === "disconnected" && delays.push(d.delay));
    for (let n = 1; n <= 5; n++) {
      await sockets(n);
      last().drop();
    }
    await sockets(6);
    last().welcome();
    last().drop();
    assert.deepEqual(delays, [2, 4, 8, 10, 10, 2]); // Math.random() is 0.5 here
  });

  test("the server's advice replaces the backoff once: delay + random(0, jitter)", async () => {
    const c = make({ baseDelay: 4, maxDelay: 20 });
    const details = [];
    c.on("state", (s, d) => s === "disconnected" && details.push(d));
    await sockets(1);
    last().welcome();
    last().frame({ t: "reconnect", delay: 10, jitter: 30, reason: "overload" });
    last().drop(1013);
    await sockets(2);
    last().drop();
    assert.deepEqual(details.map((d) => [d.code, d.delay, d.advice?.reason]),
      [[1013, 25, "overload"], [1006, 2, undefined]]);
  });

  test("after close() nothing reconnects", async () => {
    const c = make({ baseDelay: 1, maxDelay: 1 });
    await sockets(1);
    c.close();
    assert.equal(last().closed, 1000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(FakeSocket.all.length, 1);
  });
});

describe("Resending", () => {
  test("a publish in flight is resent after the rejoin with the same once; the rejoin has since and epoch", async () => {
    const c = make({ baseDelay: 1, maxDelay: 1 });
    const room = c.join("room:a");
    await sockets(1);
    last().welcome();
    last().frame({ t: "reply", ref: last().sent[0].ref, data: { epoch: "E1", resumed: false, lost: null, info: null } });
    last().frame({ topic: "room:a", id: "5-0", data: "x" });
    const publishing = room.publish("hi");
    const calling = c.call("slow", null);
    const [pub] = last().sent.filter((f) => f.t === "pub");
    assert.match(pub.once, /^[0-9a-z]{1,64}$/);
    last().drop();
    await assert.rejects(calling, { code: "disconnected" });
    await sockets(2);
    last().welcome();
    const [join] = last().sent;
    assert.deepEqual([join.t, join.topic, join.since, join.epoch], ["join", "room:a", "5-0", "E1"]);
    assert.equal(last().sent.length, 1); // the publish waits for the join's reply
    last().frame({ t: "reply", ref: join.ref, data: { epoch: "E1", resumed: true, lost: null, info: null } });
    const again = last().sent[1];
    assert.equal(again.once, pub.once);
    last().frame({ t: "reply", ref: again.ref, data: { id: "6-0" } });
    assert.equal(await publishing, "6-0");
  });

  test("a lost frame while joined: the lost event, the new epoch's ids are new, the rejoin carries the new epoch", async () => {
    const c = make({ baseDelay: 1, maxDelay: 1 });
    const room = c.join("room:a");
    const lost = [];
    const got = [];
    room.on("lost", (info) => lost.push(info));
    room.on("message", (data, meta) => got.push(meta.id));
    await sockets(1);
    last().welcome();
    last().frame({ t: "reply", ref: last().sent[0].ref, data: { epoch: "E1", resumed: false, lost: null, info: null } });
    last().frame({ topic: "room:a", id: "9-0", data: "old" });
    last().frame({ t: "lost", topic: "room:a", reason: "epoch", epoch: "E2" });
    assert.deepEqual(lost, [{ reason: "epoch", first_kept: null }]);
    last().frame({ topic: "room:a", id: "9-0", data: "same id, new epoch" });
    assert.deepEqual(got, ["9-0", "9-0"]);
    last().drop();
    await sockets(2);
    last().welcome();
    const [join] = last().sent;
    assert.deepEqual([join.since, join.epoch], ["9-0", "E2"]);
  });

  test("an initial since is sent on the first join only; the rejoin resumes from the last id seen", async () => {
    const c = make({ baseDelay: 1, maxDelay: 1 });
    c.join("room:a", { since: "0" });
    c.join("room:b", { since: "7-0", epoch: "E0" });
    await sockets(1);
    last().welcome();
    const [a, b] = last().sent;
    assert.deepEqual([a.topic, a.since, a.epoch, b.topic, b.since, b.epoch],
      ["room:a", "0", null, "room:b", "7-0", "E0"]);
    last().frame({ topic: "room:a", id: "3-0", data: "replayed" });
    for (const f of [a, b]) {
      last().frame({ t: "reply", ref: f.ref, data: { epoch: "E0", resumed: true, lost: null, info: null } });
    }
    last().drop();
    await sockets(2);
    last().welcome();
    const again = last().sent.map((f) => [f.topic, f.since, f.epoch]);
    assert.deepEqual(again, [["room:a", "3-0", "E0"], ["room:b", "7-0", "E0"]]);
  });

  test("a message whose id was seen is dropped", async () => {
    const c = make();
    const room = c.join("room:a");
    const got = [];
    room.on("message", (d, m) => got.push(m.id));
    await sockets(1);
    last().welcome();
    for (const id of ["1-0", "2-0", "1-0", "2-0", "3-0"]) last().frame({ topic: "room:a", id, data: 0 });
    assert.deepEqual(got, ["1-0", "2-0", "3-0"]);
  });

  test("a listener that throws does not stop the others", async (t) => {
    const c = make();
    const room = c.join("room:a");
    const got = [];
    room.on("message", () => {
      throw new Error("listener bug");
    });
    room.on("message", (d) => got.push(d));
    await sockets(1);
    last().welcome();
    const later = [];
    t.mock.method(globalThis, "setTimeout", (fn) => later.push(fn));
    last().frame({ topic: "room:a", id: "1-0", data: "x" });
    t.mock.restoreAll();
    assert.deepEqual(got, ["x"]);
    assert.throws(later[0], { message: "listener bug" }); // still reported, uncaught
  });
});

// A fetch for the SSE transport: each GET gets a stream the test writes SSE text to
// (feed) and ends (drop); POSTs are recorded and answered 202.
class FakeFetch {
  constructor() {
    this.streams = [];
    this.posts = [];
    this.fetch = (url, init = {}) => {
      if (init.method === "POST") {
        this.posts.push({ url, headers: init.headers, frames: JSON.parse(init.body) });
        return Promise.resolve(new Response("{}", { status: 202 }));
      }
      const s = { url, headers: init.headers };
      const body = new ReadableStream({ start: (c) => (s.controller = c) });
      init.signal?.addEventListener("abort", () => s.controller.error(new Error("aborted")));
      this.streams.push(s);
      return Promise.resolve(new Response(body, { status: 200 }));
    };
  }
  get last() {
    return this.streams.at(-1);
  }
  feed(text) {
    this.last.controller.enqueue(new TextEncoder().encode(text));
  }
  event(seq, frame, conn = "c1") {
    this.feed(`id: ${conn}.${seq}\ndata: ${JSON.stringify(frame)}\n\n`);
  }
  drop() {
    this.last.controller.close();
  }
}

describe("SSE transport", () => {
  const sseClient = (options = {}) => {
    const http = new FakeFetch();
    return [make({ transport: "sse", fetch: http.fetch, ...options }), http];
  };
  const welcome = (conn = "c1") => ({ t: "welcome", v: 1, conn, heartbeat: 25000, token: `tok-${conn}`, transport: "sse" });

  test("events split across chunks, CRLF lines, comments and multi-line data are read", async () => {
    const [c, http] = sseClient();
    const room = c.join("room:a");
    const got = [];
    room.on("message", (d) => got.push(d));
    await until(() => http.streams.length === 1, "the stream");
    assert.match(http.last.url, /^http:\/\/example\.test\/_legato\/sse$/);
    http.feed("retry: 1000\n\n: keepalive\n\n");
    http.event(1, welcome());
    await until(() => c.state === "connected", "connected");
    await until(() => http.posts.length === 1, "the join POST");
    const [{ url, headers, frames: [join] }] = http.posts;
    assert.equal(url, "http://example.test/_legato/send?conn=c1");
    assert.deepEqual(headers, { "X-Legato-Token": "tok-c1" });
    http.event(2, { t: "reply", ref: join.ref, data: { epoch: "E", resumed: false, lost: null, last: null, info: null } });
    http.feed('id: c1.3\r\ndata: {"topic": "room:a", "id": "1-0",\r\ndata:  "data": "two lines"}\r\n');
    http.feed('\r\nid: c1.4\ndata: {"topic": "room:a", "id": "2-0", "da');
    http.feed('ta": "split"}\n\n');
    await until(() => got.length === 2, "two messages");
    assert.deepEqual(got, ["two lines", "split"]);
  });

  test("a dropped stream is asked again with Last-Event-ID; a new welcome rejoins from the last id and resends with the same once", async () => {
    const [c, http] = sseClient();
    const room = c.join("room:a");
    await until(() => http.streams.length === 1, "the stream");
    http.event(1, welcome());
    await until(() => http.posts.length === 1, "the join");
    http.event(2, { t: "reply", ref: http.posts[0].frames[0].ref, data: { epoch: "E", resumed: false, lost: null, info: null } });
    http.event(3, { topic: "room:a", id: "5-0", data: "x" });
    await until(() => room.state === "joined", "joined");
    const publishing = room.publish("hi");
    await until(() => http.posts.length === 2, "the publish");
    const [pub] = http.posts[1].frames;
    http.drop();
    await until(() => http.streams.length === 2, "the second request");
    assert.deepEqual(http.last.headers, { "Last-Event-ID": "c1.3", "X-Legato-Token": "tok-c1" }); // the token proves it is ours
    http.event(1, welcome("c2"), "c2"); // the server could not resume: a new connection
    await until(() => http.posts.length === 3, "the rejoin");
    const [join] = http.posts[2].frames;
    assert.equal(http.posts[2].url, "http://example.test/_legato/send?conn=c2");
    assert.deepEqual([join.t, join.since, join.epoch], ["join", "5-0", "E"]);
    http.event(2, { t: "reply", ref: join.ref, data: { epoch: "E", resumed: true, lost: null, info: null } }, "c2");
    await until(() => http.posts.length === 4, "the resend");
    const [again] = http.posts[3].frames;
    assert.equal(again.once, pub.once);
    http.event(3, { t: "reply", ref: again.ref, data: { id: "6-0" } }, "c2");
    assert.equal(await publishing, "6-0");
    assert.equal(c.conn, "c2");
  });

  test("a close event ends the connection with its code; the reconnect frame before it is the advice", async () => {
    const [c, http] = sseClient();
    await until(() => http.streams.length === 1, "the stream");
    http.event(1, welcome());
    const details = [];
    c.on("state", (s, d) => s === "disconnected" && details.push(d));
    http.event(2, { t: "reconnect", delay: 10, jitter: 0, reason: "shutdown" });
    http.event(3, { t: "close", code: 1012, reason: "server restarting" });
    await until(() => details.length === 1, "the disconnection");
    assert.deepEqual([details[0].code, details[0].delay, details[0].advice.reason], [1012, 10, "shutdown"]);
    await until(() => http.streams.length === 2, "the next connection");
    assert.equal(http.last.headers["Last-Event-ID"], undefined); // a new connection
  });
});

describe("Choosing the transport (auto)", () => {
  test("2 WebSocket attempts that never reached welcome, then SSE; an SSE attempt that fails goes back to the WebSocket", async () => {
    const http = new FakeFetch();
    const c = make({ transport: "auto", fetch: http.fetch, baseDelay: 1, maxDelay: 1 });
    const used = [];
    c.on("state", (s) => s === "connecting" && used.push(c.transport));
    await sockets(1);
    last().drop();
    await sockets(2);
    last().drop();
    await until(() => http.streams.length === 1, "the SSE attempt");
    http.drop(); // no welcome: the server is away
    await sockets(3);
    assert.deepEqual(used, ["websocket", "websocket", "sse", "websocket"]);
  });

  test("on the fallback a probe WebSocket that opens brings the client back to the WebSocket", async () => {
    const http = new FakeFetch();
    const c = make({ transport: "auto", fetch: http.fetch, baseDelay: 1, maxDelay: 1 });
    await sockets(1);
    last().drop();
    await sockets(2);
    last().drop();
    await until(() => http.streams.length === 1, "the SSE attempt");
    http.event(1, { t: "welcome", v: 1, conn: "c1", heartbeat: 25000, token: "t" });
    await sockets(3); // the probe
    assert.equal(c.transport, "sse");
    last().onopen();
    assert.equal(last().closed, 1000);
    await sockets(4);
    last().welcome();
    assert.equal(c.transport, "websocket");
    assert.equal(c.state, "connected");
  });
});
