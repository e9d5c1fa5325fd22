// docs/channels.md against a real legato server: join, publish with an ack, two
// clients, calls, presence, leave, errors.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client, LegatoError } from "../legato.js";
import { collect, freePort, joined, next, startServer, until } from "./helpers.js";

let server;
let base;
const clients = [];
const connect = (options) => {
  const c = new Client(base, options);
  clients.push(c);
  return c;
};

before(async () => {
  server = await startServer(await freePort());
  base = `http://127.0.0.1:${server.port}/_legato`;
});
after(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

describe("Connecting", () => {
  test("the state goes connecting then connected, and the welcome names the connection", async () => {
    const c = connect();
    const states = [];
    c.on("state", (s) => states.push(s));
    await next(c, "state", (s) => s === "connected");
    assert.deepEqual(states, ["connecting", "connected"]);
    assert.match(c.conn, /^\w+$/);
  });

  test("params become the WebSocket URL's query (a function is called at each connect)", async () => {
    const c = connect({ params: () => ({ token: "t1" }) });
    assert.deepEqual(await c.call("whoami"), { token: "t1" });
  });

  test("a ws:// URL is used as is", async () => {
    const c = connect();
    c.url = `ws://127.0.0.1:${server.port}/_legato/`;
    assert.equal(await c.call("add", { a: 1, b: 1 }), 2);
  });

  test("close() ends the client: state closed, later requests fail with closed", async () => {
    const c = connect();
    await next(c, "state", (s) => s === "connected");
    c.close();
    assert.equal(c.state, "closed");
    await assert.rejects(c.call("add", { a: 1, b: 2 }), { code: "closed" });
    assert.throws(() => c.join("room:x"), { code: "closed" });
  });
});

describe("Joining and publishing", () => {
  test("a publish resolves with its id after the ack, and comes back as a message", async () => {
    const c = connect();
    const room = c.join("room:pub", { data: { name: "ann" } });
    const got = collect(room);
    await joined(room);
    assert.deepEqual(room.info, { room: "pub" }); // the on_join hook's value
    const id = await room.publish({ text: "hi" });
    assert.equal(typeof id, "string");
    await until(() => got.length === 1, "the message");
    assert.deepEqual(got[0], [{ text: "hi" }, { id, topic: "room:pub" }]);
  });

  test("publishing before the join's reply waits for it, in order", async () => {
    const c = connect();
    const room = c.join("room:early");
    const got = collect(room);
    const ids = await Promise.all([1, 2, 3].map((n) => room.publish(n)));
    await until(() => got.length === 3, "three messages");
    assert.deepEqual(got.map(([d]) => d), [1, 2, 3]);
    assert.deepEqual(got.map(([, m]) => m.id), ids);
  });

  test("two clients on one topic see each other's messages; another topic sees none", async () => {
    const [ann, bob, eve] = [connect(), connect(), connect()];
    const [a, b, e] = [ann.join("room:two"), bob.join("room:two"), eve.join("room:other")];
    const [gotA, gotB, gotE] = [collect(a), collect(b), collect(e)];
    await Promise.all([joined(a), joined(b), joined(e)]);
    const id = await b.publish({ from: "bob" });
    await until(() => gotA.length === 1 && gotB.length === 1, "both deliveries");
    assert.equal(gotA[0][1].id, id);
    assert.deepEqual(gotA[0][0], { from: "bob" });
    assert.equal(gotE.length, 0);
  });

  test("joining a topic again gives the same channel", () => {
    const c = connect();
    assert.equal(c.join("room:same"), c.join("room:same"));
  });

  test("a topic no channel matches fails with not_found: state failed, error event", async () => {
    const c = connect();
    const ch = c.join("nowhere:1");
    const error = await next(ch, "error");
    assert.ok(error instanceof LegatoError);
    assert.equal(error.code, "not_found");
    assert.equal(ch.state, "failed");
    await assert.rejects(ch.publish("x"), { code: "not_joined" });
  });

  test("a join the authorize hook refuses fails with forbidden, and its waiting publishes too", async () => {
    const c = connect();
    const ch = c.join("secret:1");
    const publishing = ch.publish("x");
    await assert.rejects(publishing, { code: "forbidden" });
    assert.equal(ch.state, "failed");
  });

  test("after leave() no message arrives and a publish fails with not_joined", async () => {
    const [ann, bob] = [connect(), connect()];
    const [a, b] = [ann.join("room:leave"), bob.join("room:leave")];
    const got = collect(a);
    await Promise.all([joined(a), joined(b)]);
    await a.leave();
    assert.equal(a.state, "left");
    await b.publish("after");
    await assert.rejects(a.publish("x"), { code: "not_joined" });
    const probe = ann.join("room:leave2"); // a later frame on ann's socket: ordering
    await joined(probe);
    await b.publish("after2");
    assert.equal(got.length, 0);
  });
});

describe("Joining from a given id (since)", () => {
  test("since '0' replays all the topic keeps, then live; since an id replays what came after it", async () => {
    const c = connect();
    const room = c.join("room:since");
    await joined(room);
    const ids = [await room.publish("one"), await room.publish("two")];
    const all = connect().join("room:since", { since: "0" });
    const gotAll = collect(all);
    await joined(all);
    assert.deepEqual(gotAll.map(([d]) => d), ["one", "two"]); // replayed before the reply
    const after = connect().join("room:since", { since: ids[0] });
    const gotAfter = collect(after);
    await joined(after);
    assert.deepEqual(gotAfter, [["two", { id: ids[1], topic: "room:since" }]]);
    await room.publish("three");
    await until(() => gotAll.length === 3 && gotAfter.length === 2, "the live message");
  });

  test("a stored id with an epoch that is gone reports lost (epoch) and gets all that is kept", async () => {
    const c = connect();
    const room = c.join("room:since-epoch");
    await joined(room);
    const id = await room.publish("kept");
    const ch = connect().join("room:since-epoch", { since: id, epoch: "an-old-epoch" });
    const got = collect(ch);
    const lost = next(ch, "lost");
    await joined(ch);
    assert.equal((await lost).reason, "epoch");
    assert.deepEqual(got.map(([d]) => d), ["kept"]);
  });
});

describe("Presence", () => {
  test("joined and left events carry the member, presence() lists everyone", async () => {
    const [ann, bob] = [connect(), connect()];
    const a = ann.join("room:here", { data: { name: "ann" } });
    await joined(a);
    const bobJoins = next(a, "joined", (m) => m.data?.name === "bob");
    const b = bob.join("room:here", { data: { name: "bob" } });
    await joined(b);
    const member = await bobJoins;
    await until(() => bob.conn, "bob's welcome");
    assert.deepEqual(member, { conn: bob.conn, data: { name: "bob" } });
    const members = await a.presence();
    assert.deepEqual(members.map((m) => m.data.name).sort(), ["ann", "bob"]);
    assert.equal(await a.presenceCount(), 2); // the size without the list
    const bobLeaves = next(a, "left");
    await b.leave();
    assert.deepEqual(await bobLeaves, member);
  });
});

describe("Calls", () => {
  test("a call resolves with what the handler returned", async () => {
    assert.equal(await connect().call("add", { a: 2, b: 3 }), 5);
  });

  test("a handler's ChannelError rejects with its code, message and details", async () => {
    const error = await connect().call("refuse", 7).catch((e) => e);
    assert.ok(error instanceof Error && error instanceof LegatoError);
    assert.equal(error.code, "forbidden");
    assert.equal(error.message, "not you");
    assert.deepEqual(error.details, { why: 7 });
  });

  test("a handler that raises rejects with error; an unknown name with not_found", async () => {
    const c = connect();
    await assert.rejects(c.call("boom"), { code: "error" });
    await assert.rejects(c.call("nope"), { code: "not_found" });
  });

  test("a timeout rejects with timeout", async () => {
    await assert.rejects(connect().call("sleep", 5, { timeout: 200 }), { code: "timeout" });
  });
});
