// Measures the Node addon's costs at build time:
//
// 1. Load: how long `await import("tokenrelay")` takes in a fresh node
//    process (loader + the .node binary), against importing an empty module.
// 2. Prefetch overhead: prefetch's duration minus the token endpoint's own
//    latency. The endpoint is stand-in-api on loopback, timed directly with
//    one client-credentials POST per fresh connection (as the addon makes
//    it); the shared store is redis-server behind upstash-local.
//
// Run after `cargo build --workspace --bins` and `napi build` (scripts/test.sh):
//   node bench/addon.mjs [--runs N]
// To measure another build of the addon (e.g. a release one), point
// NAPI_RS_NATIVE_LIBRARY_PATH at its .node file.

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

import { Redis } from "@upstash/redis";

import { ROOT, startRedis, startStandInApi, startUpstashLocal, stopAll } from "../tests/js/support/stand-ins.mjs";

const { values } = parseArgs({ options: { runs: { type: "string", default: "50" } } });
const RUNS = Number(values.runs);
const CLIENT = { clientId: "bench-client", clientSecret: "bench-secret" };

/** @param {number[]} xs */
function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (/** @type {number} */ q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { median: at(0.5), p90: at(0.9), min: s[0] };
}

/** @param {number} ms */
const fmt = (ms) => `${ms.toFixed(2)} ms`;

/** @param {string} label @param {number[]} xs */
function report(label, xs) {
  const { median, p90, min } = stats(xs);
  console.log(
    `${label.padEnd(58)} median ${fmt(median).padStart(10)}  p90 ${fmt(p90).padStart(10)}  min ${fmt(min).padStart(10)}`,
  );
  return median;
}

/** Milliseconds `import(specifier)` takes in a fresh node process. */
function importTime(/** @type {string} */ specifier) {
  const code = `const t = performance.now(); await import(${JSON.stringify(specifier)}); console.log(performance.now() - t);`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`import failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** @template T @param {() => Promise<T>} fn */
async function timed(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

const work = mkdtempSync(path.join(tmpdir(), "tokenrelay-bench-"));
try {
  // 1. Load time.
  const empty = path.join(work, "empty.mjs");
  writeFileSync(empty, "export {};\n");
  const baseline = Array.from({ length: Math.min(RUNS, 20) }, () => importTime(empty));
  const addon = Array.from({ length: Math.min(RUNS, 20) }, () => importTime("tokenrelay"));
  console.log(`addon: ${process.env.NAPI_RS_NATIVE_LIBRARY_PATH ?? "crates/tokenrelay-node (as built)"}`);
  const b = report("import of an empty module (fresh process)", baseline);
  const a = report('import("tokenrelay") (fresh process)', addon);
  console.log(`${"=> addon load time".padEnd(58)} ${fmt(a - b)}\n`);

  // 2. Prefetch overhead.
  const redisServer = await startRedis(work);
  const [upstash, api] = await Promise.all([startUpstashLocal(redisServer.port), startStandInApi(CLIENT)]);
  const redis = new Redis({ url: upstash.url, token: upstash.token, enableAutoPipelining: false });
  const site = path.join(work, "site");
  mkdirSync(site);
  writeFileSync(
    path.join(site, "tokenrelay.toml"),
    `[upstreams.getty]\nbase_url = "${api.apiUrl}"\n[upstreams.getty.token]\ntype = "oauth2_client_credentials"\n` +
      `url = "${api.tokenUrl}"\nclient_id = { env = "GETTY_API_KEY" }\nclient_secret = { env = "GETTY_API_SECRET" }\n`,
  );
  const env = {
    GETTY_API_KEY: CLIENT.clientId,
    GETTY_API_SECRET: CLIENT.clientSecret,
    UPSTASH_REDIS_REST_URL: upstash.url,
    UPSTASH_REDIS_REST_TOKEN: upstash.token,
    TOKENRELAY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString("base64"),
    TOKENRELAY_LOCAL_STORE: path.join(work, "local-store"),
  };
  const { prefetch, getToken, check } = await import("tokenrelay");

  // The endpoint alone: one POST on a fresh connection, like the addon's
  // per-call HTTP client.
  const basic = Buffer.from(`${CLIENT.clientId}:${CLIENT.clientSecret}`).toString("base64");
  const endpointOnce = () =>
    new Promise((resolve, reject) => {
      const req = http.request(api.tokenUrl, {
        method: "POST",
        agent: false,
        headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" },
      });
      req.once("error", reject);
      req.once("response", (res) => res.resume().once("end", resolve));
      req.end("grant_type=client_credentials");
    });

  /** @param {() => Promise<unknown>} fn @param {() => Promise<unknown>} [reset] */
  async function sample(fn, reset) {
    const xs = [];
    for (let i = 0; i < RUNS + 3; i++) {
      if (reset) await reset();
      const ms = await timed(fn);
      if (i >= 3) xs.push(ms); // the first runs warm up JIT and sockets
    }
    return xs;
  }
  const flush = () => redis.flushdb();
  const localOnly = async () => rmSync(env.TOKENRELAY_LOCAL_STORE, { recursive: true, force: true });

  const endpoint = report("token endpoint alone (POST, fresh connection)", await sample(endpointOnce));
  const cold = report(
    "prefetch, empty Upstash store (fetch + lock + store)",
    await sample(() => prefetch({ cwd: site, env }), flush),
  );
  const warm = report(
    "prefetch, warm Upstash store (one read, no fetch)",
    await sample(() => prefetch({ cwd: site, env })),
  );
  const local = report(
    "prefetch, warmStore: false, empty local store",
    await sample(() => prefetch({ cwd: site, env, warmStore: false }), localOnly),
  );
  report("getToken, warm Upstash store", await sample(() => getToken("getty", { cwd: site, env })));
  const chk = report("check (config + store settings, no network)", await sample(() => check({ cwd: site, env })));
  console.log(`${"=> prefetch overhead beyond the endpoint (Upstash)".padEnd(58)} ${fmt(cold - endpoint)}`);
  console.log(`${"=> prefetch overhead beyond the endpoint (local store)".padEnd(58)} ${fmt(local - endpoint)}`);
  console.log(`${"=> of which per-call setup (check: config, client, store)".padEnd(58)} ${fmt(chk)}`);
  console.log(`${"=> warm prefetch (no endpoint call at all)".padEnd(58)} ${fmt(warm)}`);
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
