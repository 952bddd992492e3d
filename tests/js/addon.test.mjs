// The tokenrelay addon through its package entry (`import ... from "tokenrelay"`),
// against real stand-ins on loopback: stand-in-api's OAuth2 token endpoint
// and API, and redis-server behind upstash-local (the Upstash REST protocol).
// Needs the addon built first (scripts/test.sh runs `napi build`).
//
// Run: node --test tests/js/addon.test.mjs

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";

import { Redis } from "@upstash/redis";
import { check, describeToken, ERROR_CODES, getToken, prefetch, scanForLeaks, TokenrelayError } from "tokenrelay";

import { ROOT, startRedis, startStandInApi, startUpstashLocal, stopAll } from "./support/stand-ins.mjs";
import { run } from "./support/process.mjs";
import { assertNoSecret as noSecret } from "./support/secrets.mjs";

const TEST = { timeout: 20_000 };
const CLIENT = { clientId: "site-client-4f1e9a", clientSecret: "site-secret-8c2d-never-log-me" };

let work = "";
/** @type {Awaited<ReturnType<typeof startUpstashLocal>>} */
let upstash;
/** @type {Awaited<ReturnType<typeof startStandInApi>>} */
let api;
/** @type {Redis} */
let redis;
const key = randomBytes(32).toString("base64");
/** Every token seen, so no message can be checked without them. */
const tokensSeen = new Set();

before(
  async () => {
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-addon-"));
    const redisServer = await startRedis(work);
    [upstash, api] = await Promise.all([startUpstashLocal(redisServer.port), startStandInApi(CLIENT)]);
    redis = new Redis({ url: upstash.url, token: upstash.token, enableAutoPipelining: false });
  },
  { timeout: 30_000 },
);

after(async () => {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
});

beforeEach(async () => {
  await redis.flushdb();
});

/**
 * The config of one upstream, "getty", on stand-in-api (or `tokenUrl`).
 * @param {{ tokenUrl?: string, secret?: string }} [o]
 */
function config({ tokenUrl = api.tokenUrl, secret = '{ env = "GETTY_API_SECRET" }' } = {}) {
  return `
[upstreams.getty]
base_url = "${api.apiUrl}"

[upstreams.getty.token]
type = "oauth2_client_credentials"
url = "${tokenUrl}"
client_id = { env = "GETTY_API_KEY" }
client_secret = ${secret}
timeout = "400ms"
`;
}

let sites = 0;
/**
 * A site directory holding `tokenrelay.toml` (unless `text` is null).
 * @param {string | null} [text]
 */
function site(text = config()) {
  const dir = path.join(work, `site-${++sites}`);
  mkdirSync(dir);
  if (text !== null) writeFileSync(path.join(dir, "tokenrelay.toml"), text);
  return dir;
}

/**
 * The site's environment: credentials, the shared store, and nothing from
 * the machine that could change the outcome.
 * @param {Record<string, string>} [overrides]
 */
function env(overrides = {}) {
  return {
    GETTY_API_KEY: CLIENT.clientId,
    GETTY_API_SECRET: CLIENT.clientSecret,
    UPSTASH_REDIS_REST_URL: upstash.url,
    UPSTASH_REDIS_REST_TOKEN: upstash.token,
    TOKENRELAY_ENCRYPTION_KEY: key,
    TOKENRELAY_LOCAL_STORE: path.join(work, "local-store"),
    TOKENRELAY_CONFIG: "",
    KV_REST_API_URL: "",
    ...overrides,
  };
}

/** @param {string} text */
function assertNoSecret(text) {
  noSecret(text, [CLIENT.clientSecret, upstash.token, key, ...tokensSeen]);
}

/**
 * Asserts `promise` rejects with a TokenrelayError of `code` whose message
 * matches `pattern` and holds no secret.
 * @param {Promise<unknown>} promise
 * @param {string} code
 * @param {RegExp} pattern
 */
async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof TokenrelayError, `not a TokenrelayError: ${err}`);
    assert.equal(err.code, code, err.message);
    assert.ok(ERROR_CODES.includes(err.code));
    assert.match(err.message, pattern);
    assertNoSecret(`${err.message}\n${err.stack}`);
    return true;
  });
}

/** @param {string} token */
async function apiAccepts(token) {
  const res = await fetch(`${api.apiUrl}/search/images?phrase=cats`, { headers: { authorization: `Bearer ${token}` } });
  return res.status === 200;
}

describe("prefetch", () => {
  test("fetches through the shared store and hands back the token as TOKENRELAY_<UPSTREAM>_TOKEN", TEST, async () => {
    const before = Date.now();
    const report = await prefetch({ cwd: site(), env: env() });
    const token = report.env.TOKENRELAY_GETTY_TOKEN;
    tokensSeen.add(token);

    assert.deepEqual(Object.keys(report.env), ["TOKENRELAY_GETTY_TOKEN"]);
    assert.ok(await apiAccepts(token), "the upstream accepts the token");
    assert.equal(report.sharedStore, true);
    assert.match(report.store, /^upstash http:\/\/127\.0\.0\.1:\d+\/? \(AES-256-GCM\)$/);
    assert.equal(report.tokens.length, 1);
    const [t] = report.tokens;
    assert.deepEqual([t.upstream, t.envVar, t.outcome], ["getty", "TOKENRELAY_GETTY_TOKEN", "fetched"]);
    const { expiresInSeconds = 0, expiresAt = "" } = t;
    assert.ok(expiresInSeconds > 1790 && expiresInSeconds <= 1800, `${expiresInSeconds}`);
    const expires = Date.parse(expiresAt);
    assert.ok(Math.abs(expires - (before + 1800_000)) < 5_000, expiresAt);
    // The line the CLI and the plugin print for it.
    assert.equal(describeToken(t), `getty: valid until ${expiresAt} (fetched), as TOKENRELAY_GETTY_TOKEN`);
    // The report minus `env` is safe to log.
    assertNoSecret(JSON.stringify({ ...report, env: undefined }));

    // Warm: the store holds the token, sealed.
    const keys = await redis.keys("tokenrelay:v1:getty:*");
    assert.equal(keys.length, 1, `${keys}`);
    const raw = /** @type {string} */ (
      await new Redis({ url: upstash.url, token: upstash.token, automaticDeserialization: false }).get(keys[0])
    );
    assert.ok(raw.startsWith("v1.") && !raw.includes(token), "stored sealed");
  });

  test("describeToken says a static key has no expiry, and names no variable that was not asked for", () => {
    /** @type {import("tokenrelay").PrefetchedToken} */
    const key = { upstream: "maps", outcome: "static" };
    assert.equal(describeToken(key), "maps: static key, no expiry (static)");
  });

  test("a later build (a fresh process) reuses the stored token instead of fetching", TEST, async () => {
    const dir = site();
    const first = await prefetch({ cwd: dir, env: env() });
    const second = await runNode(`
      const { prefetch } = await import("tokenrelay");
      const r = await prefetch({ cwd: ${JSON.stringify(dir)}, env: ${JSON.stringify(env())} });
      console.log(JSON.stringify({ outcome: r.tokens[0].outcome, token: r.env.TOKENRELAY_GETTY_TOKEN }));
    `);
    const { outcome, token } = JSON.parse(second);
    tokensSeen.add(token);
    assert.equal(outcome, "store");
    assert.equal(token, first.env.TOKENRELAY_GETTY_TOKEN);
  });

  test("envVars names the variables; {} hands back no token but still warms the store", TEST, async () => {
    const dir = site();
    const named = await prefetch({ cwd: dir, env: env(), envVars: { getty: "GETTY_TOKEN" } });
    tokensSeen.add(named.env.GETTY_TOKEN);
    assert.deepEqual(Object.keys(named.env), ["GETTY_TOKEN"]);
    assert.equal(named.tokens[0].envVar, "GETTY_TOKEN");

    await redis.flushdb();
    const none = await prefetch({ cwd: dir, env: env(), envVars: {} });
    assert.deepEqual(none.env, {});
    assert.equal(none.tokens[0].envVar, undefined);
    assert.equal(none.tokens[0].outcome, "fetched");
    assert.equal((await redis.keys("tokenrelay:v1:getty:*")).length, 1);
  });

  test("warmStore: false keeps off the shared store", TEST, async () => {
    const report = await prefetch({ cwd: site(), env: env(), warmStore: false });
    tokensSeen.add(report.env.TOKENRELAY_GETTY_TOKEN);
    assert.equal(report.sharedStore, false);
    assert.match(report.store, /^local file store .*local-store/);
    assert.ok(await apiAccepts(report.env.TOKENRELAY_GETTY_TOKEN));
    assert.deepEqual(await redis.keys("*"), []);
  });

  test("an unreachable shared store degrades to a direct fetch", TEST, async () => {
    const down = `http://127.0.0.1:${await closedPort()}`;
    const report = await prefetch({ cwd: site(), env: env({ UPSTASH_REDIS_REST_URL: down }) });
    tokensSeen.add(report.env.TOKENRELAY_GETTY_TOKEN);
    assert.equal(report.tokens[0].outcome, "direct");
    assert.ok(await apiAccepts(report.env.TOKENRELAY_GETTY_TOKEN));
  });

  test("tokens shorter than the build margin fail, naming both durations; a shorter margin passes", TEST, async () => {
    const shortLived = await startStandInApi({ ...CLIENT, lifetimeSecs: 600 });
    try {
      const dir = site(config({ tokenUrl: shortLived.tokenUrl }));
      await rejectsWith(
        prefetch({ cwd: dir, env: env(), buildMargin: "15m" }),
        "token_unavailable",
        /^upstream "getty": token unavailable: a new token is valid for 10m, less than the required 15m/,
      );
      const report = await prefetch({ cwd: dir, env: env(), buildMargin: 300 });
      tokensSeen.add(report.env.TOKENRELAY_GETTY_TOKEN);
      assert.ok((report.tokens[0]?.expiresInSeconds ?? 0) > 300);
    } finally {
      await shortLived.stop();
    }
  });
});

describe("getToken", () => {
  test("returns the token the store holds, for a build script", TEST, async () => {
    const dir = site();
    const report = await prefetch({ cwd: dir, env: env() });
    const token = await getToken("getty", { cwd: dir, env: env(), buildMargin: "10m" });
    tokensSeen.add(token);
    assert.equal(token, report.env.TOKENRELAY_GETTY_TOKEN);
  });

  test("an unknown upstream lists the configured ones", TEST, async () => {
    const dir = site();
    await rejectsWith(
      getToken("maps", { cwd: dir, env: env() }),
      "unknown_upstream",
      /^unknown upstream "maps": .*tokenrelay\.toml configures "getty"$/,
    );
  });
});

describe("check", () => {
  test("describes config and store with every secret replaced by its variable", TEST, async () => {
    const dir = site();
    const summary = await check({ cwd: dir, env: env() });
    assert.equal(summary.file, path.join(dir, "tokenrelay.toml"));
    assert.equal(summary.sharedStore, true);
    assert.equal(summary.upstreams.length, 1);
    const [u] = summary.upstreams;
    assert.deepEqual([u.name, u.tokenSource, u.tokenUrl], ["getty", "oauth2_client_credentials", api.tokenUrl]);
    assert.deepEqual(u.credentials, [
      { field: "token.client_id", value: "$GETTY_API_KEY (redacted)" },
      { field: "token.client_secret", value: "$GETTY_API_SECRET (redacted)" },
    ]);
    assertNoSecret(JSON.stringify(summary));
    assert.ok(!JSON.stringify(summary).includes(CLIENT.clientId));
  });

  test("reads the site's .env for what the environment leaves unset", TEST, async () => {
    const dir = site();
    writeFileSync(path.join(dir, ".env"), `GETTY_API_SECRET=${CLIENT.clientSecret}\n`);
    const { GETTY_API_SECRET: _, ...unset } = env();
    const summary = await check({ cwd: dir, env: unset });
    assert.equal(summary.upstreams[0].name, "getty");
  });
});

describe("every failure has a stable code and says what to fix, without a secret", () => {
  test("config_unreadable names the file", TEST, async () => {
    const dir = site(null);
    await rejectsWith(
      check({ cwd: dir, env: env() }),
      "config_unreadable",
      new RegExp(`^${dir}/tokenrelay\\.toml: cannot read the config file`),
    );
  });

  test("config_invalid names upstream and field, never the literal", TEST, async () => {
    const dir = site(config({ secret: `"${CLIENT.clientSecret}"` }));
    await rejectsWith(
      prefetch({ cwd: dir, env: env() }),
      "config_invalid",
      /upstream "getty": token\.client_secret: must reference an environment variable/,
    );
  });

  test("missing_env lists the variable and its use", TEST, async () => {
    await rejectsWith(
      prefetch({ cwd: site(), env: env({ GETTY_API_SECRET: "" }) }),
      "missing_env",
      /missing environment variables: GETTY_API_SECRET \(upstream "getty": token\.client_secret\)/,
    );
  });

  test("invalid_env names the variable, not its value", TEST, async () => {
    await rejectsWith(
      prefetch({ cwd: site(), env: env({ TOKENRELAY_ENCRYPTION_KEY: "not-a-key-but-secret" }) }),
      "invalid_env",
      /^environment variable TOKENRELAY_ENCRYPTION_KEY: /,
    );
  });

  test("unknown_upstream in upstreams or envVars", TEST, async () => {
    const dir = site();
    await rejectsWith(
      prefetch({ cwd: dir, env: env(), upstreams: ["maps"] }),
      "unknown_upstream",
      /^option upstreams: unknown upstream "maps": .* configures "getty"$/,
    );
    await rejectsWith(
      prefetch({ cwd: dir, env: env(), envVars: { maps: "MAPS_TOKEN" } }),
      "unknown_upstream",
      /^option envVars: unknown upstream "maps"/,
    );
  });

  test("invalid_options names the option", TEST, async () => {
    const dir = site();
    /** @type {[object, RegExp][]} (options of the wrong type on purpose) */
    const cases = [
      [{ buildMargin: "soon" }, /^option buildMargin: "soon" is not a duration/],
      [{ buildMargin: -5 }, /^option buildMargin: -5 is not a duration/],
      [{ envVars: { getty: "1-BAD" } }, /^option envVars\.getty: "1-BAD" is not a valid variable name/],
      [
        { envVars: { getty: "GETTY_API_SECRET" } },
        /^option envVars\.getty: GETTY_API_SECRET is taken by a credential of upstream "getty"/,
      ],
      [{ envVars: { getty: "UPSTASH_REDIS_REST_TOKEN" } }, /is taken by the shared store's settings/],
      [
        { upstreams: [], envVars: { getty: "T" } },
        /^option envVars\.getty: upstream "getty" is not prefetched: add it to upstreams$/,
      ],
      [{ cwd: path.join(dir, "nope") }, /^option cwd: .*nope is not a directory$/],
      [{ upstreams: "getty" }, /^option upstreams has the wrong type: see the types in index\.d\.ts$/],
      // napi's own message would show the value: it could be a secret.
      [{ env: { GETTY_API_SECRET: { value: CLIENT.clientSecret } } }, /^option env has the wrong type/],
    ];
    for (const [options, pattern] of cases) {
      await rejectsWith(
        prefetch(/** @type {any} */ ({ cwd: dir, env: env(), ...options })),
        "invalid_options",
        pattern,
      );
    }
    await rejectsWith(getToken(/** @type {any} */ (42)), "invalid_options", /^an argument has the wrong type/);
  });

  test("token_rejected: wrong credentials", TEST, async () => {
    await rejectsWith(
      prefetch({ cwd: site(), env: env({ GETTY_API_SECRET: "wrong-secret-but-still-secret" }) }),
      "token_rejected",
      /^upstream "getty": token endpoint rejected the request: invalid_client .*; check the values of \$GETTY_API_KEY, \$GETTY_API_SECRET$/,
    );
  });

  test("token_response_invalid: an endpoint that answers HTML", TEST, async () => {
    const server = http.createServer((_, res) =>
      res.writeHead(200, { "content-type": "text/html" }).end("<html>maintenance</html>"),
    );
    await new Promise((r) => server.listen(0, "127.0.0.1", () => r(undefined)));
    try {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      const dir = site(config({ tokenUrl: `http://127.0.0.1:${port}/oauth2/token` }));
      await rejectsWith(
        prefetch({ cwd: dir, env: env() }),
        "token_response_invalid",
        /^upstream "getty": invalid token response: HTTP 200 OK body is not a JSON token response$/,
      );
    } finally {
      server.close();
    }
  });

  test("token_unavailable: an endpoint that refuses connections, or never answers", TEST, async () => {
    await rejectsWith(
      prefetch({ cwd: site(config({ tokenUrl: `http://127.0.0.1:${await closedPort()}/token` })), env: env() }),
      "token_unavailable",
      /token endpoint failed 3 times, last: connection failed$/,
    );

    /** @type {net.Socket[]} */
    const held = [];
    const silent = net.createServer((socket) => held.push(socket)); // accepts, never answers
    await new Promise((r) => silent.listen(0, "127.0.0.1", () => r(undefined)));
    try {
      const { port } = /** @type {net.AddressInfo} */ (silent.address());
      await rejectsWith(
        prefetch({ cwd: site(config({ tokenUrl: `http://127.0.0.1:${port}/token` })), env: env() }),
        "token_unavailable",
        /last: timed out after 400ms$/,
      );
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
    }
  });

  test("scan_failed: the directory does not exist", TEST, async () => {
    const dir = site();
    await rejectsWith(
      scanForLeaks("dist", { cwd: dir, env: env() }),
      "scan_failed",
      /dist is not a directory: check the publish directory$/,
    );
  });
});

describe("scanForLeaks", () => {
  test("names each file and variable holding a token, credential or store secret", TEST, async () => {
    const dir = site();
    const dist = path.join(dir, "dist");
    const token = `tok_${randomBytes(16).toString("hex")}`;
    mkdirSync(path.join(dist, "assets"), { recursive: true });
    writeFileSync(path.join(dist, "index.html"), "<h1>cats</h1>");
    writeFileSync(path.join(dist, "assets", "app.js"), `fetch(u, { headers: { Authorization: "Bearer ${token}" } })`);
    writeFileSync(
      path.join(dist, "assets", "config.json"),
      JSON.stringify({ secret: encodeURIComponent(CLIENT.clientSecret) }),
    );
    writeFileSync(path.join(dist, "debug.txt"), `redis token: ${upstash.token}`);
    symlinkSync(path.join(dir, "tokenrelay.toml"), path.join(dist, "linked.toml"));

    const report = await scanForLeaks("dist", {
      cwd: dir,
      env: env({ BUILD_TOKEN: token }),
      tokenVars: ["BUILD_TOKEN"],
    });
    assert.deepEqual(
      report.leaks.map((/** @type {import("tokenrelay").Leak} */ l) => [l.file, l.kind, l.variable]),
      [
        ["assets/app.js", "token", "BUILD_TOKEN"],
        ["assets/config.json", "credential", "GETTY_API_SECRET"],
        ["debug.txt", "store", "UPSTASH_REDIS_REST_TOKEN"],
      ],
    );
    assert.equal(report.leaks[1].secret, '$GETTY_API_SECRET (token.client_secret of upstream "getty")');
    // A link out of the directory is reported, not read.
    assert.deepEqual(report.outsideLinks, [
      { file: "linked.toml", target: realpathSync(path.join(dir, "tokenrelay.toml")) },
    ]);
    assert.equal(report.filesScanned, 4);
    // BUILD_TOKEN, GETTY_API_KEY, GETTY_API_SECRET, UPSTASH_REDIS_REST_TOKEN,
    // TOKENRELAY_ENCRYPTION_KEY, and the tokens earlier tests were handed.
    assert.ok(report.secretsScanned >= 5, String(report.secretsScanned));
    assert.deepEqual(report.tooShort, []);
    tokensSeen.add(token);
    assertNoSecret(JSON.stringify(report));
  });

  test("finds tokens this process handed out (no variable named) and relay header values, encoded", TEST, async () => {
    const relayKey = `relay-${randomBytes(12).toString("hex")}`;
    const dir = site(
      `${config()}\n[upstreams.getty.relay]\nroutes = [{ path = "/search/**" }]\nheaders = { Api-Key = { env = "GETTY_RELAY_KEY" } }\n`,
    );
    const siteEnv = env({ GETTY_RELAY_KEY: relayKey });
    const token = await getToken("getty", { cwd: dir, env: siteEnv });
    tokensSeen.add(token);
    const dist = path.join(dir, "dist");
    mkdirSync(dist);
    writeFileSync(path.join(dist, "auth.txt"), Buffer.from(`Authorization: Bearer ${token}`).toString("base64"));
    writeFileSync(path.join(dist, "page.html"), `<img src="/img?k=${encodeURIComponent(relayKey)}">`);
    writeFileSync(path.join(dist, "app.js.gz"), gzipSync(`const k = ${JSON.stringify({ k: relayKey })};`));

    const report = await scanForLeaks("dist", { cwd: dir, env: siteEnv });
    assert.deepEqual(
      report.leaks.map((/** @type {import("tokenrelay").Leak} */ l) => [l.file, l.kind, l.variable, l.secret]),
      [
        ["app.js.gz", "credential", "GETTY_RELAY_KEY", '$GETTY_RELAY_KEY (relay.headers.api-key of upstream "getty")'],
        ["auth.txt", "token", undefined, 'a token of upstream "getty" handed out by getToken'],
        ["page.html", "credential", "GETTY_RELAY_KEY", '$GETTY_RELAY_KEY (relay.headers.api-key of upstream "getty")'],
      ],
    );
    assert.ok(!JSON.stringify(report).includes(relayKey));
    assertNoSecret(JSON.stringify(report));
  });

  test("past maxBytes the scan fails with scan_too_large, naming the file", TEST, async () => {
    const dir = site();
    mkdirSync(path.join(dir, "dist"));
    writeFileSync(path.join(dir, "dist", "video.mp4"), Buffer.alloc(4096));
    await rejectsWith(
      scanForLeaks("dist", { cwd: dir, env: env(), maxBytes: 1024 }),
      "scan_too_large",
      /more than 1024 bytes to search .*reached at video\.mp4/,
    );
  });

  test("a clean directory has no leaks, and short values are listed as not searched", TEST, async () => {
    const dir = site();
    mkdirSync(path.join(dir, "out"));
    writeFileSync(path.join(dir, "out", "index.html"), "<h1>nothing to see</h1>");
    const report = await scanForLeaks(path.join(dir, "out"), {
      env: env({ GETTY_API_KEY: "k123" }),
      configPath: path.join(dir, "tokenrelay.toml"),
    });
    assert.deepEqual(report.leaks, []);
    assert.deepEqual(report.tooShort, ["GETTY_API_KEY"]);
  });
});

describe("loading", () => {
  test("on a platform without a binary, importing fails with unsupported_platform naming it", TEST, async () => {
    // A real process whose process.arch claims a CPU no binary is built for.
    const fake = 'Object.defineProperty(process, "arch", { value: "riscv64" });';
    const out = await runNode(
      `try { await import("tokenrelay"); console.log("loaded") } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`,
      ["--import", `data:text/javascript,${encodeURIComponent(fake)}`],
    );
    const { code, message } = JSON.parse(out);
    assert.equal(code, "unsupported_platform");
    assert.match(message, /^tokenrelay has no native binary that loads on linux-riscv64-(gnu|musl) \(Node v\d+/);
    assert.match(
      message,
      /Binaries are published for: linux-x64-gnu, linux-arm64-gnu, darwin-x64, darwin-arm64, win32-x64-msvc\./,
    );
  });
});

/** A loopback port nothing listens on (it was bound and released). */
async function closedPort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", () => r(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Runs an ES module snippet in a new node process (cwd: the repository, so
 * "tokenrelay" resolves); resolves with its stdout.
 * @param {string} code
 * @param {string[]} [flags]
 */
async function runNode(code, flags = []) {
  const args = [...flags, "--input-type=module", "-e", code];
  const { status, stdout, stderr } = await run(process.execPath, args, { cwd: ROOT, timeoutMs: 15_000 });
  if (status !== 0) throw new Error(`node exited with ${status}: ${stderr}`);
  return stdout.trim();
}
