// What the client's tests share: a real legato server in a subprocess (test/app.py),
// a redis-server of their own, a TCP proxy in front of the server that can freeze or
// cut connections (or send new ones elsewhere), an HTTP proxy that refuses WebSocket
// upgrades, and waiting for events.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const VENV = fileURLToPath(new URL("../../../.venv/bin/python", import.meta.url));
const PYTHON = process.env.LEGATO_PYTHON || (existsSync(VENV) ? VENV : "python3");
export const WAIT = 10000; // ms for anything to happen on a loaded 2-core machine

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

const canConnect = (port) =>
  new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1", () => {
      sock.destroy();
      resolve(true);
    });
    sock.on("error", () => resolve(false));
  });

/** `legato run app:app` on `port` (test/app.py; `env` configures it); stop() by PID. */
export async function startServer(port, env = {}) {
  const proc = spawn(PYTHON, ["-m", "legato", "run", "app:app", "--host", "127.0.0.1",
    "--port", String(port), "--log-level", "warning"], {
    cwd: HERE, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((r) => proc.once("exit", (code, signal) => r(code ?? signal)));
  const deadline = Date.now() + WAIT;
  while (!(await canConnect(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`legato did not start on ${port}:\n${stderr}`);
    }
    await sleep(50);
  }
  return {
    port, proc, exited,
    get stderr() { return stderr; },
    /** SIGTERM (a restart: advice, close 1012) and wait for the process to end. */
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** A redis-server of the test's own (no persistence), on a free port; stop() by PID. */
export async function startRedis() {
  const port = await freePort();
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1",
    "--save", "", "--appendonly", "no", "--loglevel", "warning"], { stdio: "ignore" });
  const exited = new Promise((r) => proc.once("exit", r));
  const deadline = Date.now() + WAIT;
  while (!(await canConnect(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error("redis-server did not start");
    await sleep(20);
  }
  return { url: `redis://127.0.0.1:${port}/0`, stop: () => proc.kill() && exited };
}

/** A TCP proxy to `target`: freeze() stops forwarding on the connections open now
 * (a half-open network: nothing arrives, nothing fails), cut() drops them; new
 * connections are forwarded as usual, to `proxy.target` (which a test may change).
 * `match`: only the connections whose first bytes match (say, /^GET \/_legato\/sse/:
 * the SSE stream, not the pooled connections POSTs reuse). */
export async function startProxy(target) {
  const pairs = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(proxy.target, "127.0.0.1");
    const pair = { client, upstream, frozen: { up: false, down: false }, first: null };
    pairs.add(pair);
    client.on("data", (d) => (pair.first ??= d.toString("latin1"), pair.frozen.up || upstream.write(d)));
    upstream.on("data", (d) => pair.frozen.down || client.write(d));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const proxy = {
    port: server.address().port,
    target,
    get open() { return pairs.size; },
    freeze({ up = true, down = true, match = /^/ } = {}) {
      for (const p of pairs) if (match.test(p.first ?? "")) Object.assign(p.frozen, { up, down });
    },
    cut(match = /^/) {
      for (const p of pairs) if (match.test(p.first ?? "")) p.client.destroy(), p.upstream.destroy();
    },
    close() {
      this.cut();
      return new Promise((r) => server.close(r));
    },
  };
  return proxy;
}

/** An HTTP proxy to `target` that answers 403 to every WebSocket upgrade (as some
 * corporate proxies do) and forwards every other request, streaming the answers
 * (SSE included). `requests` lists what went through: "METHOD path". */
export async function startRefusingProxy(target) {
  const requests = [];
  const tunnels = new Set();
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const up = http.request({ host: "127.0.0.1", port: target, method: req.method,
      path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    up.on("error", () => res.destroy());
    res.on("close", () => up.destroy()); // the client went: so does the upstream request
    req.pipe(up);
  });
  server.on("upgrade", (req, socket, head) => {
    requests.push(`UPGRADE ${req.url}`);
    if (proxy.refuse) {
      socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      return;
    }
    const up = net.connect(target, "127.0.0.1", () => { // allowed: a tunnel
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + "\r\n");
      up.write(head);
      up.pipe(socket).pipe(up);
    });
    tunnels.add(socket);
    const end = () => (up.destroy(), socket.destroy(), tunnels.delete(socket));
    up.on("error", end).on("close", end);
    socket.on("error", end).on("close", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const proxy = {
    port: server.address().port,
    refuse: true, // false: upgrades are tunnelled to the server
    requests,
    close() {
      server.closeAllConnections();
      for (const t of tunnels) t.destroy();
      return new Promise((r) => server.close(r));
    },
  };
  return proxy;
}

/** The next `event` of `emitter` whose arguments satisfy `test` (its first argument). */
export function next(emitter, event, test = () => true, ms = WAIT) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} in ${ms} ms`));
    }, ms);
    const off = emitter.on(event, (...args) => {
      if (!test(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args[0]);
    });
  });
}

/** The channel's messages as [data, meta] pairs, as they arrive. */
export function collect(channel) {
  const got = [];
  channel.on("message", (data, meta) => got.push([data, meta]));
  return got;
}

/** Waits until `check()` is true. */
export async function until(check, what = "the condition", ms = WAIT) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export const joined = (ch) =>
  ch.state === "joined" ? Promise.resolve() : next(ch, "state", (s) => s === "joined");

/** The detail of the client's next "disconnected": {code, delay, advice}. */
export function disconnection(client) {
  let detail;
  const test = (state, d) => state === "disconnected" && (detail = d) !== undefined;
  return next(client, "state", test).then(() => detail);
}
