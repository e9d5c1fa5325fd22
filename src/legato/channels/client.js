/**
 * legato's browser client for the `legato.v1` channel protocol (docs/channels.md):
 * many topics on one WebSocket, publish with an ack, request/reply, presence, and a
 * connection that comes back by itself. One ES module, no dependencies.
 *
 * States (docs/channels.md "States"); every transition goes through `_set`:
 *   Client:  connecting -> connected (welcome) -> disconnected (socket gone, a
 *            reconnect scheduled) -> connecting ...; closed after close().
 *   Channel: joining -> joined -> (connection lost) joining -> joined ...;
 *            left after leave(); failed when the server refused the join.
 *
 * A request (pub, call, presence) is in one of two places: `_queue` (waiting for a
 * connection, or for its topic's join) or `_refs` (sent, keyed by ref). When the
 * socket goes, sent publishes and presence requests go back to the front of the queue
 * (a publish keeps its `once`, so the server never publishes it twice) and sent calls
 * fail with `disconnected`: the client cannot know whether they ran.
 */

/** A failure with the protocol's `code` (docs/channels.md "Errors") and `details`. */
export class LegatoError extends Error {
  constructor(code, message, details) {
    super(message || code);
    this.name = "LegatoError";
    this.code = code;
    this.details = details;
  }
}

const fail = (code, message) => new LegatoError(code, message);

// Decides a request once: an answer, a timeout, a lost connection or close(),
// whichever comes first.
const settle = (r, error, value) => {
  if (r.done) return;
  r.done = true;
  clearTimeout(r.timer);
  error ? r.reject(error) : r.resolve(value);
};

// `once` keys: 4 random 32-bit numbers in base 36, about 26 characters (the protocol
// allows 1-64). getRandomValues, unlike randomUUID, works outside secure contexts too.
const onceKey = () =>
  crypto.getRandomValues(new Uint32Array(4)).reduce((s, n) => s + n.toString(36), "");

/** `base` (a path, or an http(s)/ws(s) URL) + `path` + `params` as the query, with a
 * ws(s) scheme for the WebSocket, http(s) for the rest. */
const url = (base, path, params, ws) => {
  const u = new URL(base.replace(/\/+$/, "") + path, globalThis.location?.href);
  u.protocol = ws ? u.protocol.replace("http", "ws") : u.protocol.replace("ws", "http");
  for (const k in params) u.searchParams.set(k, params[k]);
  return u.href;
};

/**
 * The fallback transport (docs/channels.md "The fallback transport: SSE down, POST
 * up"), shaped like the part of a WebSocket the Client uses: send(), close(),
 * onmessage ({data}: the frame, parsed), onclose ({code}).
 *
 * The stream is read with fetch, not EventSource: one code path in browsers and Node,
 * no reconnects of its own fighting the Client's backoff, and errors that are seen.
 * Frames sent in one tick go up in one POST (a JSON array, at most 100 frames), one
 * POST at a time so the server reads them in order.
 *
 * A stream that drops is opened again once, right away, with
 * `Last-Event-ID`: within the server's linger on the same process the connection
 * goes on (the frames missed come first); otherwise the server's new `welcome` comes
 * up and the Client rejoins as after any reconnect. A failed resume, a failed POST or
 * a `close` event is the end: onclose.
 */
class Sse {
  constructor(base, params, fetch) {
    this._url = (path, more) => url(base, path, { ...params, ...more });
    this._fetch = fetch;
    this._up = []; // frames waiting for the next POST
    this._read();
  }

  send(text) {
    this._up.push(text);
    if (!this._posting) {
      this._posting = 1;
      queueMicrotask(() => this._post());
    }
  }

  close() {
    // Tell the server (it would otherwise keep the connection and its presence for its
    // linger); `keepalive` lets the POST outlive a page that is being unloaded.
    if (!this._gone && this.conn) {
      const headers = { "X-Legato-Token": this._token };
      this._fetch(this._url("/send", { conn: this.conn }), { method: "POST", headers, body: '[{"t":"close"}]', keepalive: true })
        .catch(() => {});
    }
    this._gone = 1;
    this._abort?.abort();
  }

  async _post() {
    while (this._up.length && !this._gone) {
      const conn = this.conn;
      const body = "[" + this._up.splice(0, 100) + "]";
      const headers = { "X-Legato-Token": this._token };
      const status = await this._fetch(this._url("/send", { conn }), { method: "POST", headers, body })
        .then(async (r) => (await r.text(), r.status))
        .catch(() => 0);
      // An answer about a connection the server has replaced does not matter.
      if (status !== 202 && conn === this.conn) this._end(1006);
    }
    this._posting = 0;
  }

  async _read() {
    const abort = (this._abort = new AbortController());
    const headers = this._id ? { "Last-Event-ID": this._id, "X-Legato-Token": this._token } : {};
    try {
      const r = await this._fetch(this._url("/sse"), { headers, signal: abort.signal, cache: "no-store" });
      if (!r.ok) throw r.status;
      const reader = r.body.getReader();
      const text = new TextDecoder();
      for (let rest = "", got; !(got = await reader.read()).done && !this._gone; ) {
        const events = (rest += text.decode(got.value, { stream: true })).split(/\r?\n\r?\n/);
        rest = events.pop();
        for (const e of events) this._gone || this._event(e);
      }
    } catch {} // the loss is the same, whatever the error
    if (this._gone) return;
    if (this._resumed || !this.conn) return this._end(1006);
    this._resumed = 1;
    this._read();
  }

  // One event: `id`, `retry` and `data` fields (comments and others ignored).
  _event(e) {
    let data;
    for (const line of e.split(/\r?\n/)) {
      const [, k, v] = line.match(/^([^:]*):? ?(.*)/);
      if (k === "id") this._id = v;
      else if (k === "data") data = data == null ? v : data + "\n" + v;
    }
    if (data == null) return;
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    this._resumed = 0; // the stream works: a later drop may resume again
    if (f.t === "close") return this._end(f.code);
    if (f.t === "welcome") {
      this.conn = f.conn;
      this._token = f.token;
      this._up = []; // frames for the connection the server replaced
    }
    this.onmessage?.({ data: f });
  }

  _end(code) {
    const done = this.onclose;
    this.close();
    done?.({ code });
  }
}

class Emitter {
  constructor() {
    this._on = {};
  }

  /** Calls `fn` on every `event`; returns a function that stops it. */
  on(event, fn) {
    (this._on[event] ||= []).push(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this._on[event] = (this._on[event] || []).filter((f) => f !== fn);
  }

  _emit(event, ...args) {
    for (const fn of this._on[event] || []) {
      // A listener that throws must not break the connection's state: report it
      // (as an uncaught error) and carry on with the others.
      try {
        fn(...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

/**
 * One connection to a legato App's channels, kept open until close().
 *
 * Options (times in ms):
 * - `params`: query parameters of the WebSocket URL, an object or a function
 *   returning one (called at every connect: fresh tokens).
 * - `heartbeat`: ping interval; by default the server's (welcome, 25,000).
 * - `grace` (10,000): the connection is dead after heartbeat + grace without a frame.
 * - `baseDelay` (500), `maxDelay` (30,000): reconnect backoff, full jitter.
 * - `queueLimit` (100): requests that may wait for a connection; more fail at once
 *   with `queue_full`.
 * - `transport`: "auto" (the default), "websocket" or "sse". Auto uses the WebSocket
 *   and falls back to SSE + POST after 2 WebSocket attempts in a row that never
 *   reached `welcome` (a proxy refusing the upgrade), when fetch can stream. Each SSE
 *   connection of the fallback then opens one WebSocket as a probe: if it opens (the
 *   server was only restarting, or the network changed), the client reconnects on
 *   the WebSocket. An SSE attempt that fails too (the server is down, not the
 *   WebSocket) goes back to the WebSocket. `client.transport` is the one in use.
 * - `WebSocket`, `fetch`: what to connect with (default: the globals).
 *
 * Events: "state" (state, detail: for "disconnected", {code, delay, advice}: the close
 * code (1006 when the heartbeat found the connection dead), the ms until the next
 * attempt, the server's reconnect frame or null), "error" (a LegatoError the server
 * sent about no request).
 */
export class Client extends Emitter {
  constructor(url = "/_legato", options = {}) {
    super();
    this.url = url;
    this.options = { baseDelay: 500, maxDelay: 30000, queueLimit: 100, grace: 10000, ...options };
    new URL(url, globalThis.location?.href); // a bad URL throws here, not later in a timer
    this.state = "connecting";
    this.conn = null; // the server's id of this connection (welcome)
    this._topics = new Map(); // topic -> Channel, every one not left or failed
    this._queue = [];
    this._refs = new Map();
    this._ref = 0;
    this._attempt = 0; // reconnects since the last welcome: the backoff's exponent
    this._advice = null; // the server's last `reconnect` frame on this socket
    this.transport = null; // "websocket" or "sse": what this connection uses
    this._wsFails = 0; // WebSocket attempts in a row that never reached welcome
    this._fallen = false; // on SSE because the WebSocket failed (auto)
    // Connect after the caller's synchronous code, so its "state" listener sees
    // "connecting".
    queueMicrotask(() => this._connect());
  }

  /** Joins `topic` (once: joining again gives the same Channel, options ignored).
   * `since`: where the first join resumes from ("0": all the topic keeps; an id the
   * page stored, with its `epoch` if it has it); later joins resume from the last id
   * seen. Without it, the first join is live. */
  join(topic, { data, since, epoch } = {}) {
    if (this.state === "closed") throw fail("closed", "the client is closed");
    let ch = this._topics.get(topic);
    if (!ch) {
      this._topics.set(topic, (ch = new Channel(this, topic, data, since, epoch)));
      if (this.state === "connected") ch._join();
    }
    return ch;
  }

  /** Calls the server's `@app.rpc(name)` handler; resolves with what it returned.
   * `timeout` bounds the whole wait (queue included) and the handler on the server. */
  call(name, data, { timeout } = {}) {
    const frame = { t: "call", name, data };
    if (timeout) frame.timeout = timeout;
    return this._request(frame, null, timeout);
  }

  /** Closes for good: pending requests fail with `closed`, no reconnect. */
  close() {
    if (this.state === "closed") return;
    this._set("closed");
    clearTimeout(this._timer);
    this._detach(1000);
    const error = fail("closed", "the client was closed");
    for (const r of [...this._refs.values(), ...this._queue]) settle(r, error);
    this._refs.clear();
    this._queue = [];
    for (const ch of this._topics.values()) ch._set("left");
    this._topics.clear();
  }

  _set(state, detail) {
    this.state = state;
    this._emit("state", state, detail);
  }

  _connect() {
    if (this.state === "closed") return;
    const o = this.options;
    this.transport = this._pick();
    this._welcomed = false;
    this._set("connecting");
    const params = (this._params = typeof o.params === "function" ? o.params() : o.params);
    const ws = (this._ws = this.transport === "sse"
      ? new Sse(this.url, params, o.fetch || ((...a) => fetch(...a)))
      : new (o.WebSocket || WebSocket)(url(this.url, "/ws", params, 1), "legato.v1"));
    ws.onmessage = (e) => this._frame(e.data);
    ws.onclose = (e) => this._lost(ws, e.code);
    // Browsers follow "error" with "close" (1006); Node 20's WebSocket, on a refused
    // connection, never does. The loss is the same: take the first.
    ws.onerror = () => this._lost(ws, 1006);
    this._watch(o.heartbeat || 25000); // a handshake that hangs is a dead connection too
  }

  // The transport of the next attempt (see `transport` above).
  _pick() {
    const t = this.options.transport;
    if (t && t !== "auto") return t;
    if (!(this.options.fetch || globalThis.ReadableStream)) return "websocket";
    return this._fallen || this._wsFails > 1 ? "sse" : "websocket";
  }

  // The fallback's probe: a WebSocket that opens ends the SSE connection `sse`, and
  // the next connection is a WebSocket (a reconnect like any other: rejoin, resend).
  // Calls in flight would fail with `disconnected`, so it waits until there are none.
  _probe(sse) {
    const ws = new (this.options.WebSocket || WebSocket)(url(this.url, "/ws", this._params, 1), "legato.v1");
    const back = () => {
      if (this._ws !== sse) return;
      if ([...this._refs.values()].some((r) => r.frame.t === "call")) return setTimeout(back, 100);
      this._fallen = false;
      this._wsFails = 0;
      this._lost(sse, 1000);
    };
    ws.onopen = () => {
      ws.close(1000);
      back();
    };
  }

  // The dead-connection watch (docs/channels.md "Heartbeat"): no frame at all for
  // `interval + grace` ms closes the socket and reconnects. One timer, re-armed for
  // the time left, instead of one per frame.
  _watch(interval) {
    const limit = interval + this.options.grace;
    this._last = Date.now();
    clearTimeout(this._dead);
    const check = () => {
      const idle = Date.now() - this._last;
      if (idle < limit) this._dead = setTimeout(check, limit - idle);
      else this._lost(this._ws, 1006);
    };
    this._dead = setTimeout(check, limit);
  }

  // Forgets the socket (its late events are ignored) and closes it without waiting
  // for the close handshake: a dead peer never answers it.
  _detach(code) {
    const ws = this._ws;
    this._ws = null;
    clearTimeout(this._dead);
    clearInterval(this._ping);
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      ws.close(code);
    }
  }

  _lost(ws, code) {
    if (ws !== this._ws) return;
    this._detach();
    this._reset();
    if (!this._welcomed) {
      if (this.transport === "websocket") this._wsFails++;
      else this._fallen = this._wsFails = 0; // SSE fails too: the server is away
    }
    const advice = this._advice;
    const o = this.options;
    this._advice = null;
    // docs/channels.md "Reconnecting": the server's advice, else full-jitter backoff.
    const delay = advice
      ? (advice.delay || 0) + Math.random() * (advice.jitter || 0)
      : Math.random() * Math.min(o.maxDelay, o.baseDelay * 2 ** this._attempt++);
    this._timer = setTimeout(() => this._connect(), delay);
    this._set("disconnected", { code, delay, advice });
  }

  // The connection is gone (or replaced: a new SSE welcome): what was sent waits to be
  // sent again, or fails when it cannot be.
  _reset() {
    clearInterval(this._ping);
    const resend = [];
    for (const r of this._refs.values()) {
      const t = r.frame.t;
      if (t === "call") settle(r, fail("disconnected", "the connection was lost during the call"));
      else if (t === "leave") settle(r, null, {}); // a new connection has not joined it
      else if (t === "join") continue; // redone for every topic anyway
      else if (this._topics.get(r.ch.topic) === r.ch) resend.push(r);
      else settle(r, fail("not_joined", "the topic was left"));
    }
    this._refs.clear();
    this._queue.unshift(...resend); // sent before what was queued after them: order kept
    for (const ch of this._topics.values()) if (ch.state === "joined") ch._set("joining");
  }

  _frame(text) {
    this._last = Date.now();
    let f;
    try {
      f = typeof text === "string" ? JSON.parse(text) : text; // SSE parsed it
    } catch {
      return; // not ours to fail on: the server never sends it
    }
    const t = f.t;
    if (!t) this._topics.get(f.topic)?._message(f);
    else if (t === "reply" || t === "error") this._answer(f);
    else if (t === "joined" || t === "left") this._topics.get(f.topic)?._emit(t, f.member);
    else if (t === "welcome") this._welcome(f);
    else if (t === "reconnect") this._advice = f;
    else if (t === "lost") this._topics.get(f.topic)?._lost(f);
  }

  _welcome(f) {
    const every = this.options.heartbeat || f.heartbeat || 25000;
    // A second welcome on one SSE transport: the stream could not resume, the server
    // made a new connection. What the old one had in flight is redone as after a loss.
    if (this._welcomed) this._reset();
    this._welcomed = true;
    this._wsFails = 0;
    const t = this.options.transport;
    if ((this._fallen = this.transport === "sse") && (!t || t === "auto")) this._probe(this._ws);
    this.conn = f.conn;
    this._attempt = 0;
    this._watch(every);
    this._ping = setInterval(() => this._send({ t: "ping", ref: ++this._ref }), every);
    this._set("connected");
    for (const ch of this._topics.values()) ch._join();
    this._flush(); // calls now; publishes once their topic is joined again
  }

  _answer(f) {
    const r = this._refs.get(f.ref);
    const error = f.t === "error" && new LegatoError(f.code, f.message, f.details);
    if (!r) {
      if (error && f.ref == null) this._emit("error", error);
      return;
    }
    this._refs.delete(f.ref);
    settle(r, error, f.data);
  }

  _send(frame) {
    this._ws.send(JSON.stringify(frame));
  }

  _out(r) {
    r.frame.ref = ++this._ref;
    this._refs.set(r.frame.ref, r);
    this._send(r.frame);
  }

  _ready(r) {
    return this.state === "connected" && (!r.ch || r.ch.state === "joined");
  }

  // Sends what waited and may go now; the rest keeps its order in the queue.
  _flush() {
    const wait = [];
    for (const r of this._queue) if (!r.done) this._ready(r) ? this._out(r) : wait.push(r);
    this._queue = wait;
  }

  // Fails what waits for `ch` (left, or its join refused).
  _drain(ch, error) {
    this._topics.delete(ch.topic);
    this._queue = this._queue.filter((r) => r.ch !== ch || settle(r, error));
  }

  _request(frame, ch, timeout) {
    return new Promise((resolve, reject) => {
      const r = { frame, ch, resolve, reject };
      if (this.state === "closed") return reject(fail("closed", "the client is closed"));
      // Nothing of `ch` waits when it is ready (joining flushes it), so sending now
      // keeps the order.
      if (this._ready(r)) this._out(r);
      else if (this._queue.length < this.options.queueLimit) this._queue.push(r);
      else return reject(fail("queue_full", "too many requests wait for a connection"));
      if (timeout) {
        r.timer = setTimeout(() => {
          this._refs.delete(frame.ref);
          this._queue = this._queue.filter((q) => q !== r);
          settle(r, fail("timeout", "no answer in time"));
        }, timeout);
      }
    });
  }
}

/**
 * One topic joined on a Client (client.join(topic)).
 *
 * Events: "message" (data, {id, topic}), "joined"/"left" (member: presence),
 * "lost" ({reason, first_kept}: messages after the last one seen cannot be sent),
 * "state" (state, detail: the join's reply, or the error), "error" (join refused).
 */
export class Channel extends Emitter {
  constructor(client, topic, data, since, epoch) {
    super();
    this.client = client;
    this.topic = topic;
    this.data = data;
    this.state = "joining";
    this.info = null; // what the channel's on_join hook returned
    // The last id seen, and the epoch it belongs to: the resume point (at first, the
    // caller's, if any).
    this._since = since ?? null;
    this._epoch = epoch ?? null;
    this._seen = new Set(); // recent ids: a message delivered twice is dropped
  }

  /** Publishes `data`; resolves with the message's id once the server has it. */
  publish(data) {
    return this._request({ t: "pub", topic: this.topic, data, once: onceKey() }).then((d) => d.id);
  }

  /** The members listed on this topic: [{conn, data}, ...]. */
  presence() {
    return this._request({ t: "presence", topic: this.topic }).then((d) => d.members);
  }

  /** How many are on the topic now, without the list (cheap for a big room). */
  presenceCount() {
    return this._request({ t: "presence", topic: this.topic, count: true }).then((d) => d.count);
  }

  /** Leaves the topic: no more messages; what waited to be sent fails (`not_joined`). */
  leave() {
    if (this.state === "left" || this.state === "failed") return Promise.resolve();
    const c = this.client;
    this._set("left");
    c._drain(this, fail("not_joined", "the topic was left"));
    return c.state === "connected" ? c._request({ t: "leave", topic: this.topic }) : Promise.resolve();
  }

  _request(frame) {
    if (this.state === "left" || this.state === "failed") {
      return Promise.reject(fail("not_joined", `${this.topic} is ${this.state}`));
    }
    return this.client._request(frame, this);
  }

  _set(state, detail) {
    this.state = state;
    this._emit("state", state, detail);
  }

  _join() {
    const f = { t: "join", topic: this.topic, data: this.data };
    if (this._since) {
      f.since = this._since;
      f.epoch = this._epoch;
    }
    this._fresh = []; // ids received during this join: they belong to the reply's epoch
    this.client._out({ frame: f, resolve: (d) => this._joined(d), reject: (e) => this._failed(e) });
  }

  // The server's `lost` while joined (its broker came back empty, or could not refill
  // what this topic missed): a new epoch's ids start afresh, from its beginning.
  _lost(f) {
    if (this.state !== "joined") return;
    if (f.epoch !== this._epoch) {
      this._epoch = f.epoch;
      this._seen = new Set();
      this._since = "0";
    }
    this._emit("lost", { reason: f.reason, first_kept: null });
  }

  _joined(d) {
    if (this.state !== "joining") return; // left meanwhile
    // Another epoch: the ids seen before belong to a history that no longer exists;
    // what this join sent (all the new epoch keeps) is where to resume from.
    if (this._epoch != null && d.epoch !== this._epoch) {
      this._seen = new Set(this._fresh);
      this._since = this._fresh.at(-1) ?? "0";
    }
    // Nothing seen yet: resume from the topic's newest id when joined (`last`), or
    // from the start ("0") when it had none, so what is published while away is
    // not lost.
    this._since ??= d.last ?? "0";
    this._epoch = d.epoch;
    this.info = d.info ?? null;
    if (d.lost) this._emit("lost", d.lost);
    this._set("joined", d);
    this.client._flush();
  }

  _failed(error) {
    if (this.state !== "joining") return;
    this._set("failed", error);
    this.client._drain(this, error);
    this._emit("error", error);
  }

  _message(f) {
    const id = f.id;
    if (id != null) {
      const seen = this._seen;
      if (seen.has(id)) return;
      seen.add(id);
      // 1,000 ids: far more than a resume replays twice in practice, a few KB a topic.
      if (seen.size > 1000) seen.delete(seen.values().next().value);
      this._since = id;
      if (this.state === "joining") this._fresh.push(id);
    }
    this._emit("message", f.data, { id, topic: this.topic });
  }
}
