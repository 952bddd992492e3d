// No request takes a Node server down (issue 29): the Node listener (createNodeRelay
// with its default address, the socket's, as the README's `http.createServer(createNodeRelay())`)
// and a Fetch handler server (createRelay behind node:http, as frameworks serve it), each in
// a process of its own (tests/js/support/serve-relay.mjs), get oversized, aborted, slow and
// malformed requests and upstreams that fail midway, over raw sockets. After each, the same
// process answers the next request. Each case gets a fresh process.
//
// Run: node --test tests/js/request-safety.test.mjs (the addon and the workspace's bins must be built)

import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { startRedis, startServeRelay, startUpstashLocal, stopAll } from "./support/stand-ins.mjs";

const TEST = { timeout: 20_000 };
const MAX_REQUEST_BYTES = 1024;
/** How long one raw exchange may take before the test gives up on it. */
const EXCHANGE_TIMEOUT_MS = 10_000;
/** More than the relay reads ahead of its answer (64 KiB), so a reset comes after the head went out. */
const STREAMED_BYTES = 256 * 1024;

let work = "";
/** @type {NodeJS.ProcessEnv} */
let env = {};
/** @type {http.Server} */
let upstream;

before(
  async () => {
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-safety-"));
    const redis = await startRedis(work);
    const upstash = await startUpstashLocal(redis.port);
    upstream = http.createServer(async (req, res) => {
      let bytes = 0;
      for await (const chunk of req) bytes += chunk.length;
      if (req.url?.startsWith("/v1/reset")) {
        // A head, part of the body, then a TCP reset.
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": 2 * STREAMED_BYTES });
        res.write(Buffer.alloc(STREAMED_BYTES), () => req.socket.resetAndDestroy());
      } else if (req.url?.startsWith("/v1/latin1")) {
        // A header value that is not UTF-8: Node writes the character as the byte 0xE9.
        res.writeHead(200, { "content-type": "text/plain; name=caf\u00e9" }).end("ok");
      } else if (req.url?.startsWith("/limits/v1/")) {
        // Issue 29 item 2: a reset time past what the clock can add, which panicked the relay.
        res.writeHead(200, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "18446744073709551615" }).end("{}");
      } else {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ bytes }));
      }
    });
    await new Promise((resolve) => upstream.listen(0, "127.0.0.1", () => resolve(undefined)));
    const { port } = /** @type {import("node:net").AddressInfo} */ (upstream.address());
    const config = path.join(work, "tokenrelay.toml");
    writeFileSync(
      config,
      `
[relay]
max_request_bytes = ${MAX_REQUEST_BYTES}
rate_limit = { requests = 10000, window = "1m" }

[upstreams.api]
base_url = "http://127.0.0.1:${port}/v1"
token = { type = "static", key = { env = "API_KEY" } }

[upstreams.api.relay]
inject = { header = "Api-Key", format = "{token}" }
routes = [{ path = "/**", methods = ["GET", "HEAD", "POST"] }]

# Its own upstream: a cooldown it may record does not reach the one above.
[upstreams.limits]
base_url = "http://127.0.0.1:${port}/limits/v1"
token = { type = "static", key = { env = "API_KEY" } }

[upstreams.limits.relay]
inject = { header = "Api-Key", format = "{token}" }
routes = [{ path = "/**" }]
`,
    );
    env = {
      TOKENRELAY_CONFIG: config,
      API_KEY: "static-key-never-in-an-answer",
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: upstash.token,
      TOKENRELAY_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
      // The relay's line per request would drown the test's output; errors stay.
      RUST_LOG: "error",
    };
  },
  { timeout: 30_000 },
);

after(async () => {
  upstream?.close();
  await stopAll();
  rmSync(work, { recursive: true, force: true });
});

/**
 * @typedef {object} Outcome
 * @property {number | undefined} status the answer's status, if one came
 * @property {string} text everything that came back, as Latin-1
 * @property {string | undefined} error the connection's error code (ECONNRESET…), if any
 */

/**
 * Sends `parts` on a fresh connection, one by one, `gapMs` apart, and reads
 * until the server closes it: a reset is an outcome, never a rejection.
 * `abort` destroys the connection after the last part instead.
 * @param {number} port
 * @param {(string | Buffer)[]} parts
 * @param {{ gapMs?: number, abort?: boolean }} [options]
 * @returns {Promise<Outcome>}
 */
function exchange(port, parts, { gapMs = 0, abort = false } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    /** @type {Buffer[]} */
    const received = [];
    /** @type {string | undefined} */
    let error;
    socket.setTimeout(EXCHANGE_TIMEOUT_MS, () => socket.destroy(new Error("timed out")));
    socket.on("data", (/** @type {Buffer} */ data) => received.push(data));
    socket.on("error", (err) => {
      error = /** @type {NodeJS.ErrnoException} */ (err).code ?? err.message;
    });
    socket.on("close", () => {
      const text = Buffer.concat(received).toString("latin1");
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1];
      resolve({ status: status ? Number(status) : undefined, text, error });
    });
    socket.once("connect", async () => {
      for (const part of parts) {
        if (socket.destroyed) return;
        if (!socket.write(part)) await new Promise((r) => socket.once("drain", r).once("close", r));
        if (gapMs) await sleep(gapMs);
      }
      if (abort) socket.destroy();
    });
  });
}

/**
 * A request's head for `target`, closing the connection after the answer.
 * @param {string} method
 * @param {string} target
 * @param {string[]} [headers]
 */
function head(method, target, headers = []) {
  return [`${method} ${target} HTTP/1.1`, "Host: site.test", "Connection: close", ...headers, "", ""].join("\r\n");
}

/**
 * A chunked body of `size` bytes in chunks of at most `chunk` bytes, with its last chunk.
 * @param {number} size
 * @param {number} chunk
 */
function chunked(size, chunk) {
  /** @type {Buffer[]} */
  const parts = [];
  for (let sent = 0; sent < size; sent += chunk) {
    const n = Math.min(chunk, size - sent);
    parts.push(Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), Buffer.alloc(n, 0x78), Buffer.from("\r\n")]));
  }
  parts.push(Buffer.from("0\r\n\r\n"));
  return parts;
}

/** @param {Outcome} outcome */
function errorCode(outcome) {
  const body = outcome.text.slice(outcome.text.indexOf("\r\n\r\n") + 4);
  return /"code":"([a-z_]+)"/.exec(body)?.[1];
}

for (const [adapter, clientIp] of /** @type {const} */ ([
  ["node", "socket"],
  ["fetch", "x-real-ip"],
])) {
  describe(`the ${adapter === "node" ? "Node listener" : "Fetch handler"}'s process survives`, () => {
    /** @type {Awaited<ReturnType<typeof startServeRelay>>} */
    let server;

    // A process per test: each case shows on its own whether it takes the process down.
    beforeEach(async () => {
      server = await startServeRelay(adapter, clientIp, env);
    });
    afterEach(() => server.stop());

    /** The same process answers an ordinary request. */
    async function answersTheNext() {
      assert.ok(server.running(), "the server's process exited");
      const answer = await exchange(server.port, [head("GET", "/api/relay/api/echo/next")]);
      assert.equal(answer.status, 200, `the next request got ${JSON.stringify(answer)}`);
      assert.ok(server.running(), "the server's process exited");
    }

    test("a body one byte over the limit", TEST, async () => {
      const declared = await exchange(server.port, [
        head("POST", "/api/relay/api/echo/a", [`Content-Length: ${MAX_REQUEST_BYTES + 1}`]),
        Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x78),
      ]);
      assert.equal(declared.status, 413, JSON.stringify(declared));
      assert.equal(errorCode(declared), "body_too_large");
      await answersTheNext();
      // Without a declared length, the relay finds out while reading.
      const streamed = await exchange(server.port, [
        head("POST", "/api/relay/api/echo/a", ["Transfer-Encoding: chunked"]),
        ...chunked(MAX_REQUEST_BYTES + 1, MAX_REQUEST_BYTES + 1),
      ]);
      if (adapter === "node") assert.equal(streamed.status, 413, JSON.stringify(streamed));
      // The Fetch handler cancels the rest of the body, and node:http closes the connection with it.
      else assert.ok(streamed.status === 413 || streamed.status === undefined, JSON.stringify(streamed));
      await answersTheNext();
    });

    test("a body far over the limit", TEST, async () => {
      const declared = await exchange(server.port, [
        head("POST", "/api/relay/api/echo/b", [`Content-Length: ${8 * 1024 * 1024}`]),
        ...Array.from({ length: 128 }, () => Buffer.alloc(64 * 1024, 0x78)),
      ]);
      assert.ok(declared.status === 413 || declared.error !== undefined, JSON.stringify(declared.status));
      const streamed = await exchange(server.port, [
        head("POST", "/api/relay/api/echo/b", ["Transfer-Encoding: chunked"]),
        ...chunked(8 * 1024 * 1024, 64 * 1024),
      ]);
      assert.ok(streamed.status === 413 || streamed.error !== undefined, JSON.stringify(streamed.status));
      await answersTheNext();
    });

    test("a body the visitor abandons midway", TEST, async () => {
      for (const framing of [["Content-Length: 1000"], ["Transfer-Encoding: chunked"]]) {
        const request = head("POST", "/api/relay/api/echo/c", framing);
        const partial = framing[0].startsWith("Content") ? "x".repeat(100) : "3e8\r\nxxxxxxxxxx";
        await exchange(server.port, [request, partial], { gapMs: 50, abort: true });
        await answersTheNext();
      }
    });

    test("a slow body, a few bytes at a time", TEST, async () => {
      const parts = Array.from({ length: 10 }, () => "x".repeat(10));
      const slow = await exchange(
        server.port,
        [head("POST", "/api/relay/api/echo/d", ["Content-Length: 100"]), ...parts],
        { gapMs: 50 },
      );
      assert.equal(slow.status, 200, JSON.stringify(slow));
      assert.match(slow.text, /\{"bytes":100\}/);
      await answersTheNext();
    });

    test("malformed requests", TEST, async () => {
      const malformed = [
        // A TLS ClientHello's first bytes, on plain HTTP.
        Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
        "\u0000\u0001 garbage\r\n\r\n",
        "GET /api/relay/api/echo/e HTTP/9.9\r\nHost: site.test\r\n\r\n",
        "GET /api/relay/api/echo/e extra HTTP/1.1\r\nHost: site.test\r\n\r\n",
        head("GET", "/api/relay/api/echo/e", ["X-Bad\u0001Name: y"]),
        head("GET", "/api/relay/api/echo/e", ["No colon here"]),
        Buffer.from(head("GET", "/api/relay/api/echo/e", ["X-Name: caf\u00e9"]), "latin1"),
        Buffer.from(head("GET", "/api/relay/api/echo/e", ["X-Name: \u00ff\u0080"]), "latin1"),
        head("GET", "/api/relay/api/echo/e", ["Host: a b"]),
        head("TRACE", "/api/relay/api/echo/e"),
        head("GET", "*"),
        head("GET", "http://elsewhere.test/api/relay/api/echo/e"),
        head("GET", "/api/relay/api/echo/%ZZ/%00"),
        `${head("POST", "/api/relay/api/echo/e", ["Transfer-Encoding: chunked"])}zz\r\nxx\r\n0\r\n\r\n`,
        `${head("POST", "/api/relay/api/echo/e", ["Content-Length: 5", "Transfer-Encoding: chunked"])}0\r\n\r\n`,
        `${head("POST", "/api/relay/api/echo/e", ["Content-Length: 5", "Content-Length: 6"])}xxxxx`,
        `${head("POST", "/api/relay/api/echo/e", ["Content-Length: -1"])}`,
      ];
      for (const request of malformed) {
        const outcome = await exchange(server.port, [request]);
        assert.ok(outcome.status === undefined || outcome.status >= 200, JSON.stringify(outcome));
        await answersTheNext();
      }
    });

    test("an upstream that resets the connection midway through its body", TEST, async () => {
      const reset = await exchange(server.port, [head("GET", "/api/relay/api/reset")]);
      assert.equal(reset.status, 200, "the head went out before the reset");
      assert.ok(reset.text.length < 2 * STREAMED_BYTES, "the answer is cut short, not passed off as whole");
      assert.doesNotMatch(reset.text, /\r\n0\r\n\r\n$/, "a broken answer does not end like a whole one");
      await answersTheNext();
    });

    test("an upstream header value that is not UTF-8", TEST, async () => {
      const answer = await exchange(server.port, [head("GET", "/api/relay/api/latin1")]);
      assert.equal(answer.status, 200, JSON.stringify(answer));
      assert.match(answer.text, /content-type: text\/plain; name=caf\u00e9\r\n/i, "the byte passes as it came");
      await answersTheNext();
    });

    test("a panic in the relay", TEST, async () => {
      // The upstream header that panicked the relay (issue 29 item 2): answered 500
      // internal_error while it panics, as the upstream's answer once it no longer does.
      const answer = await exchange(server.port, [head("GET", "/api/relay/limits/x")]);
      assert.ok(answer.status !== undefined, JSON.stringify(answer));
      if (answer.status === 500) assert.equal(errorCode(answer), "internal_error");
      await answersTheNext();
    });
  });
}
