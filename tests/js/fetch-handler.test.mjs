// tokenrelay/fetch's handlers in this process, against real servers on loopback:
// an upstream of the test's own (it streams an event stream, echoes bodies, answers
// 204), redis-server behind upstash-local, and a static key. The relay-e2e checklist
// runs through the same handlers in crates/tokenrelay-node/tests/fetch_relay.rs;
// this file holds what only the JS side decides: streaming, the request body's
// bound, where the visitor's address comes from, the mount, and option errors.
//
// Run: node --test tests/js/fetch-handler.test.mjs (the addon must be built)

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";

import { TokenrelayError } from "tokenrelay";
import { createNodeRelay, createRelay } from "tokenrelay/fetch";

import { startRedis, startUpstashLocal, stopAll } from "./support/stand-ins.mjs";

const TEST = { timeout: 20_000 };
const KEY = "static-key-3a9f-never-in-an-answer";
const MAX_REQUEST_BYTES = 1024;

let work = "";
/** @type {Record<string, string>} */
let env = {};
/** @type {http.Server} */
let upstream;
let upstreamUrl = "";
/** Requests the upstream saw: method, url, headers, body length. */
/** @type {{ method?: string, url?: string, headers: http.IncomingHttpHeaders, bytes: number }[]} */
const seen = [];
/** Releases the event stream's second event. */
let releaseSecondEvent = () => {};

before(
  async () => {
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-fetch-"));
    const redis = await startRedis(work);
    const upstash = await startUpstashLocal(redis.port);
    upstream = http.createServer(async (req, res) => {
      let bytes = 0;
      for await (const chunk of req) bytes += chunk.length;
      seen.push({ method: req.method, url: req.url, headers: req.headers, bytes });
      if (req.url?.startsWith("/v1/events")) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("data: first\n\n");
        await new Promise((resolve) => {
          releaseSecondEvent = () => resolve(undefined);
        });
        res.end("data: second\n\n");
      } else if (req.url?.startsWith("/v1/empty")) {
        res.writeHead(204).end();
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ path: req.url, bytes, key: req.headers["api-key"] === KEY }));
      }
    });
    await new Promise((resolve) => upstream.listen(0, "127.0.0.1", () => resolve(undefined)));
    const address = /** @type {import("node:net").AddressInfo} */ (upstream.address());
    upstreamUrl = `http://127.0.0.1:${address.port}/v1`;
    writeFileSync(
      path.join(work, "tokenrelay.toml"),
      `
[relay]
max_request_bytes = ${MAX_REQUEST_BYTES}
rate_limit = { requests = 3, window = "1m" }

[upstreams.api]
base_url = "${upstreamUrl}"
token = { type = "static", key = { env = "API_KEY" } }

[upstreams.api.relay]
inject = { header = "Api-Key", format = "{token}" }
routes = [
  { path = "/events" },
  { path = "/empty" },
  { path = "/echo/**", methods = ["GET", "HEAD", "POST"] },
]
`,
    );
    env = {
      API_KEY: KEY,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: upstash.token,
      TOKENRELAY_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    };
  },
  { timeout: 30_000 },
);

after(async () => {
  upstream.close();
  await stopAll();
  rmSync(work, { recursive: true, force: true });
});

/**
 * A relay on the test's site; each test gets its own visitor address so rate limits do not mix.
 * @param {import("tokenrelay/fetch").RelayOptions} [options]
 */
function relay(options = {}) {
  return createRelay({ cwd: work, env, clientIp: "x-real-ip", ...options });
}

let visitors = 0;
/**
 * A request from a visitor of its own.
 * @param {string} target
 * @param {RequestInit} [init]
 */
function request(target, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("x-real-ip", `198.51.100.${++visitors}`);
  return new Request(`http://site.test${target}`, { ...init, headers });
}

describe("createRelay", () => {
  test("relays with the key attached, and the key never comes back", TEST, async () => {
    const response = await relay()(request("/api/relay/api/echo/a?q=1"));
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.deepEqual(JSON.parse(text), { path: "/v1/echo/a?q=1", bytes: 0, key: true });
    assert.ok(!text.includes(KEY) && ![...response.headers.values()].some((v) => v.includes(KEY)));
    assert.match(response.headers.get("x-request-id") ?? "", /./);
  });

  test("an event stream's first event arrives before the upstream has finished", TEST, async () => {
    const response = await relay()(request("/api/relay/api/events"));
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    const reader = /** @type {ReadableStream<Uint8Array>} */ (response.body).getReader();
    const first = await reader.read();
    assert.equal(new TextDecoder().decode(first.value), "data: first\n\n");
    releaseSecondEvent();
    let rest = "";
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      rest += new TextDecoder().decode(chunk.value);
    }
    assert.equal(rest, "data: second\n\n");
  });

  test("a body over max_request_bytes is refused with 413 before the upstream sees it", TEST, async () => {
    seen.length = 0;
    const handler = relay();
    const within = await handler(
      request("/api/relay/api/echo/b", { method: "POST", body: "x".repeat(MAX_REQUEST_BYTES) }),
    );
    assert.deepEqual(await within.json(), { path: "/v1/echo/b", bytes: MAX_REQUEST_BYTES, key: true });
    // A streamed body the handler stops reading one byte past the limit.
    let pulled = 0;
    const endless = new ReadableStream({
      pull(controller) {
        pulled += 1;
        controller.enqueue(new Uint8Array(512));
      },
    });
    const over = await handler(
      // @ts-ignore: duplex is needed for a streamed body; not in the DOM types.
      request("/api/relay/api/echo/b", { method: "POST", body: endless, duplex: "half" }),
    );
    assert.equal(over.status, 413);
    assert.equal((await over.json()).error.code, "body_too_large");
    assert.ok(pulled <= 4, `the handler read ${pulled} chunks of an endless body`);
    assert.equal(seen.length, 1, "only the body within the limit reached the upstream");
  });

  test("HEAD and 204 answers have no body, and errors are the relay's own", TEST, async () => {
    const handler = relay();
    const head = await handler(request("/api/relay/api/echo/c", { method: "HEAD" }));
    assert.equal(head.status, 200);
    assert.equal(head.body, null);
    const empty = await handler(request("/api/relay/api/empty"));
    assert.equal(empty.status, 204);
    assert.equal(empty.body, null);
    const missing = await handler(request("/api/relay/api/nowhere"));
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, "route_not_found");
    const deleted = await handler(request("/api/relay/api/echo/c", { method: "DELETE" }));
    assert.equal(deleted.status, 405);
  });

  test("the mount option moves the relay, and its session cookies with it", TEST, async () => {
    const handler = relay({ mount: "/relay" });
    assert.equal((await handler(request("/relay/api/echo/d"))).status, 200);
    const old = await handler(request("/api/relay/api/echo/d"));
    assert.equal(old.status, 404);
    assert.equal((await old.json()).error.code, "route_not_found");
  });

  test("the visitor's address comes from the named source, never from X-Forwarded-For", TEST, async () => {
    for (const source of ["x-forwarded-for", "Forwarded", "X-Client-IP"]) {
      assert.throws(
        () => createRelay({ cwd: work, env, clientIp: source }),
        (err) => err instanceof TokenrelayError && err.code === "invalid_options" && /clientIp/.test(err.message),
      );
    }
    // Netlify Functions v2 hand the address over in their context: 3 requests a minute each.
    const handler = createRelay({ cwd: work, env, clientIp: "netlify" });
    /** @param {string} ip */
    const from = (ip) => handler(new Request("http://site.test/api/relay/api/echo/e"), { ip });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await from("203.0.113.7")).status);
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    assert.equal((await from("203.0.113.8")).status, 200, "another address has a limit of its own");
    // A spoofed X-Forwarded-For changes nothing.
    const spoofed = await handler(
      new Request("http://site.test/api/relay/api/echo/e", { headers: { "x-forwarded-for": "192.0.2.1" } }),
      { ip: "203.0.113.7" },
    );
    assert.equal(spoofed.status, 429);
  });

  test("a repeated X-Real-IP counts its first address, as the platforms' functions do", TEST, async () => {
    const handler = relay();
    /** @param {[string, string][]} headers */
    const from = async (headers) =>
      (await handler(new Request("http://site.test/api/relay/api/echo/r", { headers }))).status;
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push(await from([["x-real-ip", "203.0.113.40"]]));
    assert.deepEqual(statuses, [200, 200, 200]);
    // Headers joins the two into "203.0.113.40, 203.0.113.41": the visitor is the first.
    const twice = [
      ["x-real-ip", "203.0.113.40"],
      ["x-real-ip", "203.0.113.41"],
    ];
    assert.equal(await from(/** @type {[string, string][]} */ (twice)), 429, "in the first address's bucket");
    assert.equal(await from([["x-real-ip", "203.0.113.41, 203.0.113.40"]]), 200, "the first is another visitor");
  });

  test("an unusable option is named at once; a bad config answers 500 misconfigured", TEST, async () => {
    assert.throws(
      () => createRelay({ cwd: work, env, mount: "relay/" }),
      (err) => err instanceof TokenrelayError && err.code === "invalid_options" && /option mount/.test(err.message),
    );
    const broken = createRelay({ cwd: work, env: { ...env, API_KEY: "" }, clientIp: "none" });
    const answer = await broken(request("/api/relay/api/echo/f"));
    assert.equal(answer.status, 500);
    const body = await answer.text();
    assert.match(body, /"missing_env"/);
    assert.ok(!body.includes(KEY));
  });
});

describe("createNodeRelay", () => {
  test("serves Node's http with the target as sent and the socket's address", TEST, async () => {
    const listener = createNodeRelay({ cwd: work, env });
    const server = http.createServer((req, res) => void listener(req, res));
    await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
    const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
    try {
      const ok = await fetch(`http://127.0.0.1:${port}/api/relay/api/echo/g`, { method: "POST", body: "hello" });
      assert.deepEqual(await ok.json(), { path: "/v1/echo/g", bytes: 5, key: true });
      // Sent raw, a dot segment reaches the relay as it is, and is refused.
      const raw = await new Promise((resolve, reject) => {
        http
          .get({ host: "127.0.0.1", port, path: "/api/relay/api/echo/../../x" }, (res) => {
            let text = "";
            res.on("data", (c) => (text += c));
            res.on("end", () => resolve({ status: res.statusCode, text }));
          })
          .on("error", reject);
      });
      assert.equal(/** @type {any} */ (raw).status, 400);
      assert.match(/** @type {any} */ (raw).text, /"path_rejected"/);
    } finally {
      server.close();
    }
  });

  test("a complete answer goes out whole, with its length; an event stream streams", TEST, async () => {
    const listener = createNodeRelay({ cwd: work, env, clientIp: "x-real-ip" });
    const server = http.createServer((req, res) => void listener(req, res));
    await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
    const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
    try {
      const headers = { "x-real-ip": "203.0.113.60" };
      // Head and body in one write, with Content-Length: nothing for Nagle to hold back.
      const whole = await fetch(`http://127.0.0.1:${port}/api/relay/api/echo/w`, { headers });
      const text = await whole.text();
      assert.deepEqual(JSON.parse(text), { path: "/v1/echo/w", bytes: 0, key: true });
      assert.equal(whole.headers.get("content-length"), String(Buffer.byteLength(text)));
      assert.equal(whole.headers.get("transfer-encoding"), null);
      const events = await fetch(`http://127.0.0.1:${port}/api/relay/api/events`, { headers });
      assert.equal(events.headers.get("content-length"), null, "sent as it comes");
      releaseSecondEvent();
      assert.match(await events.text(), /first[\s\S]*second/);
    } finally {
      server.close();
    }
  });

  test("a repeated X-Real-IP counts its first address, as Node joins the two", TEST, async () => {
    const listener = createNodeRelay({ cwd: work, env, clientIp: "x-real-ip" });
    const server = http.createServer((req, res) => void listener(req, res));
    await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
    const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
    /** @param {string[]} addresses one X-Real-IP header each */
    const from = (addresses) =>
      new Promise((resolve, reject) => {
        // Raw headers, as sent: Node adds no Host to them itself.
        const headers = ["Host", "site.test", ...addresses.flatMap((address) => ["X-Real-IP", address])];
        http
          .get({ host: "127.0.0.1", port, path: "/api/relay/api/echo/s", headers }, (res) => {
            res.resume();
            resolve(res.statusCode);
          })
          .on("error", reject);
      });
    try {
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push(await from(["203.0.113.50"]));
      assert.deepEqual(statuses, [200, 200, 200]);
      assert.equal(await from(["203.0.113.50", "203.0.113.51"]), 429, "in the first address's bucket");
      assert.equal(await from(["203.0.113.51", "203.0.113.50"]), 200, "the first is another visitor");
    } finally {
      server.close();
    }
  });
});
