#!/usr/bin/env node
// `npm run demo`: the whole tokenrelay flow on this machine, with no account
// and no credentials.
//
// A stand-in API (an example fixture from crates/testkit: an OAuth2 token
// endpoint issuing short-lived tokens, and an API accepting only valid ones)
// plays the third party; the embedded local store plays Upstash. The build
// step prefetches a token and renders the example site (site/ → public/);
// then the site is served with its /api/relay function (the Vercel function
// binary). Secrets are generated per run and never printed.
//
// Environment: PORT (default 8888) for the site; DEMO_TOKEN_LIFETIME_SECS
// (default 60); DEMO_CLIENT_ID / DEMO_CLIENT_SECRET and TOKENRELAY_LOCAL_STORE
// to fix what is otherwise generated (tests use them).

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PUBLIC = path.join(ROOT, "public");
const PORT = Number(process.env.PORT ?? 8888);
// These match example/tokenrelay.toml.
const TOKEN_ADDR = "127.0.0.1:4011";
const API_ADDR = "127.0.0.1:4012";
const LIFETIME_SECS = Number(process.env.DEMO_TOKEN_LIFETIME_SECS ?? 60);
/** @type {Record<string, string>} */
const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".css": "text/css",
  ".png": "image/png",
};

/** @type {import("node:child_process").ChildProcess[]} */
const children = [];
let ownStore = "";

/** @param {string} message */
const say = (message) => console.log(`[demo] ${message}`);

/**
 * Runs a command to completion, failing the demo if it fails.
 * @param {string} command
 * @param {string[]} args
 * @param {import("node:child_process").SpawnSyncOptions} [options]
 */
function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: ROOT, stdio: "inherit", ...options });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (exit ${result.status ?? result.signal})`);
  }
}

/**
 * Starts a long-running child; it is stopped when the demo stops.
 * @param {string} command
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} env
 */
function start(command, args, env) {
  const child = spawn(command, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  child.on("exit", (code, signal) => {
    if (!stopping) {
      say(`${path.basename(command)} stopped unexpectedly (${code ?? signal}); stopping the demo`);
      stop(1);
    }
  });
  return child;
}

/**
 * Resolves with the first stdout line matching `pattern`.
 * @param {import("node:child_process").ChildProcessByStdio<null, import("node:stream").Readable, import("node:stream").Readable>} child
 * @param {RegExp} pattern
 * @returns {Promise<string>}
 */
function lineMatching(child, pattern) {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => pattern.test(line) && resolve(line));
    child.on("exit", () => reject(new Error("exited before it was ready")));
  });
}

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/**
 * Turns the relay's JSON log lines into a narration; never prints a raw line.
 * @param {string} line
 */
function narrate(line) {
  /** @type {Record<string, any>} one JSON log line, whatever its fields */
  let event;
  try {
    event = JSON.parse(line);
  } catch {
    return;
  }
  const message = event.message ?? event.fields?.message;
  if (message === "token ready") {
    /** @type {Record<string, string>} */
    const outcomes = {
      fetched: "fetched from the token endpoint (once, for every instance) and sealed into the shared store",
      store: "read from the shared store (another instance fetched it)",
      direct: "fetched directly: the shared store is unavailable",
    };
    const how = outcomes[event.outcome] ?? event.outcome;
    say(`token for "${event.upstream}" ${how}; valid for ${event.valid_for_s} s`);
  } else if (message === "relay request") {
    say(
      `${event.method} ${event.route ?? ""} → ${event.status} in ${Math.round(event.duration_ms)} ms (token: ${event.token ?? "none"})`,
    );
  } else if (message === "token invalidated") {
    say(`the API rejected the token: dropped it, fetching a new one`);
  } else if (event.level === "WARN" || event.level === "ERROR") {
    say(`${event.level.toLowerCase()}: ${message}${event.error ? `: ${event.error}` : ""}`);
  }
}

/**
 * Serves public/ and hands /api/relay/* to the relay function, as the platform would.
 * @param {number} relayPort
 */
function serveSite(relayPort) {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname.startsWith("/api/relay/")) {
      const headers = { ...req.headers, "x-real-ip": req.socket.remoteAddress ?? "127.0.0.1" };
      const upstream = http.request(
        { host: "127.0.0.1", port: relayPort, method: req.method, path: req.url, headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", () => res.writeHead(502).end());
      req.pipe(upstream);
      return;
    }
    const file = path.join(PUBLIC, url.pathname === "/" ? "index.html" : path.normalize(url.pathname));
    if (!file.startsWith(PUBLIC + path.sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": CONTENT_TYPES[path.extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
}

let stopping = false;
function stop(code = 0) {
  stopping = true;
  for (const child of children) child.kill("SIGTERM");
  if (ownStore) rmSync(ownStore, { recursive: true, force: true });
  process.exit(code);
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));

async function main() {
  say("building the relay function, the stand-in API and the Node addon (the first run takes a few minutes)");
  if (!existsSync(path.join(ROOT, "node_modules"))) run("npm", ["install", "--no-audit", "--no-fund"]);
  // The same build as the test command, so one warms the other (selecting fewer
  // packages or targets would unify dependency features differently and rebuild them).
  run("cargo", ["build", "--workspace", "--all-targets", "--locked"]);
  const addonDir = path.join(ROOT, "crates", "tokenrelay-node");
  if (!readdirSync(addonDir).some((f) => f.endsWith(".node"))) run("npm", ["run", "build", "--prefix", addonDir]);

  const clientId = process.env.DEMO_CLIENT_ID ?? `demo-${randomBytes(6).toString("hex")}`;
  const clientSecret = process.env.DEMO_CLIENT_SECRET ?? randomBytes(24).toString("hex");
  ownStore = process.env.TOKENRELAY_LOCAL_STORE ? "" : mkdtempSync(path.join(os.tmpdir(), "tokenrelay-demo-"));
  /** @type {NodeJS.ProcessEnv} */
  const env = {
    ...process.env,
    TOKENRELAY_CONFIG: path.join(ROOT, "example", "tokenrelay.toml"),
    TOKENRELAY_LOCAL_STORE: process.env.TOKENRELAY_LOCAL_STORE ?? ownStore,
    GETTY_API_KEY: clientId,
    GETTY_API_SECRET: clientSecret,
    RUST_LOG: "info",
  };
  // Embedded defaults only: never touch a real database from the demo.
  for (const name of ["UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "KV_REST_API_URL", "KV_REST_API_TOKEN"])
    delete env[name];
  const target = path.join(ROOT, "target", "debug");

  say(
    `starting the stand-in API (example fixture): token endpoint on ${TOKEN_ADDR}, API on ${API_ADDR}; tokens live ${LIFETIME_SECS} s`,
  );
  const standIn = start(
    path.join(target, "stand-in-api"),
    ["--token-listen", TOKEN_ADDR, "--api-listen", API_ADDR, "--lifetime-secs", String(LIFETIME_SECS)],
    { ...env, STAND_IN_CLIENT_ID: clientId, STAND_IN_CLIENT_SECRET: clientSecret },
  );
  standIn.stderr.pipe(process.stderr);
  await lineMatching(standIn, /^api_url=/);

  say("build time: prefetching the token into the build's environment, then rendering the site (site/ → public/)");
  const cli = path.join(addonDir, "bin", "tokenrelay.js");
  run(
    "node",
    [
      cli,
      "prefetch",
      "--build-margin",
      `${Math.floor(LIFETIME_SECS / 3)}s`,
      "--scan",
      "public",
      "--",
      "node",
      "site/build.mjs",
    ],
    { env },
  );
  say("build output scanned: no token, key or secret in public/");

  const relayPort = await freePort();
  say(`browse time: starting the /api/relay function (Vercel function binary) on port ${relayPort}`);
  const relay = start(path.join(target, "relay"), [], { ...env, VERCEL_DEV_PORT: String(relayPort) });
  createInterface({ input: relay.stderr }).on("line", narrate);
  relay.stdout.resume();
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://127.0.0.1:${relayPort}/_vercel/ping`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (i > 200) throw new Error("the relay function did not start");
    await new Promise((r) => setTimeout(r, 50));
  }

  const site = serveSite(relayPort);
  await new Promise((resolve, reject) => site.listen(PORT, "127.0.0.1", () => resolve(undefined)).on("error", reject));
  say(`ready: open http://localhost:${PORT} and search; tokens rotate every ${LIFETIME_SECS} s (Ctrl-C to stop)`);
}

main().catch((err) => {
  say(`failed: ${err.message}`);
  stop(1);
});
