// Real local stand-ins for the JS tests, each a child process on a free
// loopback port: redis-server, upstash-local in front of it (the Upstash REST
// protocol), stand-in-api (an OAuth2 token endpoint plus an API that only
// accepts its live tokens), and stand-in-vercel-api (what `vercel dev` asks of
// Vercel's API). Binaries come from `cargo build --workspace --bins` (override
// with UPSTASH_LOCAL_BIN / STAND_IN_API_BIN / STAND_IN_VERCEL_API_BIN).
//
// Readiness is awaited on a condition (a PONG, a "ready" line), never a
// fixed sleep, and bounded. stopAll() kills whatever is still running.

import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const UPSTASH_LOCAL_BIN = process.env.UPSTASH_LOCAL_BIN ?? path.join(ROOT, "target", "debug", "upstash-local");
const STAND_IN_API_BIN = process.env.STAND_IN_API_BIN ?? path.join(ROOT, "target", "debug", "stand-in-api");
const STAND_IN_VERCEL_API_BIN =
  process.env.STAND_IN_VERCEL_API_BIN ?? path.join(ROOT, "target", "debug", "stand-in-vercel-api");
/** How long a stand-in may take to get ready. */
const READY_TIMEOUT_MS = 10_000;

/** @type {Set<import("node:child_process").ChildProcess>} */
const running = new Set();

/** A loopback port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Polls `check` until it resolves truthy, failing after `timeoutMs`.
 * @param {string} what
 * @param {number} timeoutMs
 * @param {() => unknown} check
 */
export async function waitFor(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
}

/** @param {import("node:child_process").ChildProcess} child */
function exited(child) {
  return child.exitCode !== null || child.signalCode !== null;
}

/**
 * Spawns a tracked child.
 * @param {string} file
 * @param {string[]} args
 * @param {import("node:child_process").SpawnOptions} options
 */
function track(file, args, options) {
  const child = spawn(file, args, options);
  running.add(child);
  child.once("exit", () => running.delete(child));
  return child;
}

/** @param {import("node:child_process").ChildProcess} child */
async function stop(child) {
  if (exited(child)) return;
  const gone = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await gone;
}

/** Kills every stand-in still running. */
export async function stopAll() {
  await Promise.all([...running].map(stop));
}

/** @param {number} port */
function redisPongs(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    /** @param {boolean} ok */
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(300, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}

/**
 * Starts a throwaway redis-server (no persistence) on a free port.
 * @param {string} workDir where redis may write (nothing is persisted)
 * @returns {Promise<{ port: number, stop(): Promise<void> }>}
 */
export async function startRedis(workDir) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = track(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { cwd: workDir, stdio: "ignore" },
    );
    await waitFor(
      "redis-server answers PING or exits",
      READY_TIMEOUT_MS,
      async () => exited(child) || (await redisPongs(port)),
    );
    if (!exited(child)) return { port, stop: () => stop(child) };
    // The port was taken between picking and binding: try another.
  }
  throw new Error("redis-server did not start");
}

/**
 * Starts `file args`, resolving with the match of `pattern` against its
 * first stdout lines (it prints them once it serves).
 * @param {string} file
 * @param {string[]} args
 * @param {RegExp[]} patterns one per expected line, in order
 * @param {NodeJS.ProcessEnv} [env]
 */
function startPrinting(file, args, patterns, env = process.env) {
  const child = track(file, args, { stdio: ["ignore", "pipe", "inherit"], env });
  const name = path.basename(file);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not get ready in ${READY_TIMEOUT_MS} ms`)),
      READY_TIMEOUT_MS,
    );
    child.once("error", (err) => reject(new Error(`cannot run ${file}: ${err.message}`)));
    child.once("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
    /** @type {RegExpExecArray[]} */
    const found = [];
    const lines = createInterface({ input: /** @type {import("node:stream").Readable} */ (child.stdout) });
    lines.on("line", (line) => {
      const match = patterns[found.length]?.exec(line);
      if (!match) return reject(new Error(`${name}: unexpected line ${JSON.stringify(line)}`));
      found.push(match);
      if (found.length === patterns.length) {
        clearTimeout(timer);
        resolve({ found, stop: () => stop(child), running: () => !exited(child) });
      }
    });
  });
}

/**
 * Starts upstash-local in front of the redis on `redisPort`.
 * @param {number} redisPort
 * @returns {Promise<{ url: string, token: string, stop(): Promise<void> }>}
 */
export async function startUpstashLocal(redisPort) {
  const token = `js_${Math.random().toString(16).slice(2)}`;
  const args = ["--redis", `redis://127.0.0.1:${redisPort}`, "--listen", "127.0.0.1:0", "--token", token];
  const { found, stop } = await startPrinting(UPSTASH_LOCAL_BIN, args, [/^upstash-local ready url=(\S+)$/]);
  return { url: found[0][1], token, stop };
}

/**
 * Starts tests/js/support/serve-relay.mjs: a Node server over tokenrelay/fetch
 * (`adapter`: "fetch" or "node"), the visitor's address from `clientIp`, its site
 * in `env` (`TOKENRELAY_CONFIG` and the secrets). `running()` says whether the
 * process is still alive.
 * @param {"fetch" | "node"} adapter
 * @param {string} clientIp
 * @param {NodeJS.ProcessEnv} env
 * @returns {Promise<{ port: number, running(): boolean, stop(): Promise<void> }>}
 */
export async function startServeRelay(adapter, clientIp, env) {
  const port = await freePort();
  const script = path.join(ROOT, "tests", "js", "support", "serve-relay.mjs");
  const { stop, running } = await startPrinting(
    process.execPath,
    [script, adapter, clientIp],
    [/^serve-relay \w+ listening$/],
    { ...process.env, ...env, PORT: String(port) },
  );
  return { port, running, stop };
}

/**
 * Starts stand-in-api: a token endpoint accepting one client, and an API
 * that accepts only that endpoint's live tokens (`apiUrl` ends in `/v3`;
 * e.g. `GET {apiUrl}/search/images?phrase=cats`).
 * @param {{ clientId: string, clientSecret: string, lifetimeSecs?: number }} client
 * @returns {Promise<{ tokenUrl: string, apiUrl: string, stop(): Promise<void> }>}
 */
export async function startStandInApi({ clientId, clientSecret, lifetimeSecs = 1800 }) {
  const args = [
    "--token-listen",
    "127.0.0.1:0",
    "--api-listen",
    "127.0.0.1:0",
    "--lifetime-secs",
    String(lifetimeSecs),
  ];
  // Credentials through the environment, not argv, as a real deployment would.
  const env = { ...process.env, STAND_IN_CLIENT_ID: clientId, STAND_IN_CLIENT_SECRET: clientSecret };
  const { found, stop } = await startPrinting(STAND_IN_API_BIN, args, [/^token_url=(\S+)$/, /^api_url=(\S+)$/], env);
  return { tokenUrl: found[0][1], apiUrl: found[1][1], stop };
}

/**
 * Starts stand-in-vercel-api (testkit's `VercelApi`): the calls `vercel dev`
 * makes to Vercel's API in a project linked to `projectId` of team `orgId`,
 * for a CLI sending `token`, with `env` as the project's Development variables
 * and `framework` as its framework setting. Calls it does not answer are
 * printed on this process's stderr.
 * @param {{ projectId: string, orgId: string, token: string, env: Record<string, string>, framework?: string }} project
 * @returns {Promise<{ url: string, stop(): Promise<void> }>}
 */
export async function startVercelApi({ projectId, orgId, token, env, framework }) {
  const args = ["--project-id", projectId, "--org-id", orgId];
  if (framework) args.push("--framework", framework);
  for (const name of Object.keys(env)) args.push("--pull", name);
  // The variables' values and the token through the environment, not argv.
  const childEnv = { ...process.env, ...env, STAND_IN_VERCEL_TOKEN: token };
  const { found, stop } = await startPrinting(STAND_IN_VERCEL_API_BIN, args, [/^url=(\S+)$/], childEnv);
  return { url: found[0][1], stop };
}

process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});
