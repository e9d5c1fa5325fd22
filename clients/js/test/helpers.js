// What the client's tests share: a real legato server in a subprocess (test/app.py),
// a TCP proxy in front of it that can freeze or cut connections, and waiting for events.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
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

/** A TCP proxy to `target`: freeze() stops forwarding on the connections open now
 * (a half-open network: nothing arrives, nothing fails), cut() drops them; new
 * connections are forwarded as usual. */
export async function startProxy(target) {
  const pairs = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    const pair = { client, upstream, frozen: { up: false, down: false } };
    pairs.add(pair);
    client.on("data", (d) => pair.frozen.up || upstream.write(d));
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
  return {
    port: server.address().port,
    get open() { return pairs.size; },
    freeze({ up = true, down = true } = {}) {
      for (const p of pairs) Object.assign(p.frozen, { up, down });
    },
    cut() {
      for (const p of pairs) p.client.destroy(), p.upstream.destroy();
    },
    close() {
      this.cut();
      return new Promise((r) => server.close(r));
    },
  };
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
