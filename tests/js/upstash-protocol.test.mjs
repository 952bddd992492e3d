// Compatibility of upstash-local with the official @upstash/redis client.
//
// Starts its own redis-server on a free loopback port and the upstash-local
// binary (tests/js/stand-ins.mjs), then drives them through the real client.
//
// Run: node --test tests/js/upstash-protocol.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { Redis } from "@upstash/redis";

import { startRedis, startUpstashLocal, stopAll } from "./support/stand-ins.mjs";

const TEST_TIMEOUT = 10_000;

/** @type {string | undefined} */
let workDir;
let url = "";
let TOKEN = "";

before(
  async () => {
    workDir = mkdtempSync(path.join(tmpdir(), "upstash-protocol-"));
    const redis = await startRedis(workDir);
    ({ url, token: TOKEN } = await startUpstashLocal(redis.port));
  },
  { timeout: 30_000 },
);

after(async () => {
  await stopAll();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

// The client sends commands one per request (POST /) when auto-pipelining is off,
// and batches them into POST /pipeline when it is on (the default since 1.34).
const MODES = {
  "one request per command": () => new Redis({ url, token: TOKEN, enableAutoPipelining: false }),
  "auto-pipelined (client default)": () => new Redis({ url, token: TOKEN }),
};

for (const [mode, makeClient] of Object.entries(MODES)) {
  describe(`@upstash/redis, ${mode}`, () => {
    /** @type {Redis} */
    let redis;
    const prefix = mode.startsWith("one") ? "direct:" : "auto:";
    const key = (/** @type {string} */ name) => `${prefix}${name}`;

    before(() => {
      redis = makeClient();
    });

    test("set and get round-trip strings, numbers and unicode", { timeout: TEST_TIMEOUT }, async () => {
      assert.equal(await redis.set(key("s"), "héllo ✓"), "OK");
      assert.equal(await redis.get(key("s")), "héllo ✓");
      await redis.set(key("n"), 42);
      assert.equal(await redis.get(key("n")), 42);
      assert.equal(await redis.get(key("missing")), null);
    });

    test("set with EX and PX sets a time to live", { timeout: TEST_TIMEOUT }, async () => {
      await redis.set(key("ex"), "v", { ex: 100 });
      const ttl = await redis.ttl(key("ex"));
      assert.ok(ttl > 90 && ttl <= 100, `ttl ${ttl}`);
      await redis.set(key("px"), "v", { px: 50_000 });
      const pttl = await redis.pttl(key("px"));
      assert.ok(pttl > 40_000 && pttl <= 50_000, `pttl ${pttl}`);
      assert.equal(await redis.pttl(key("never-set")), -2);
    });

    test("del removes keys and reports how many", { timeout: TEST_TIMEOUT }, async () => {
      await redis.set(key("d1"), "1");
      await redis.set(key("d2"), "2");
      assert.equal(await redis.del(key("d1"), key("d2"), key("d3")), 2);
      assert.equal(await redis.exists(key("d1")), 0);
    });

    test("incr counts up from nothing", { timeout: TEST_TIMEOUT }, async () => {
      assert.equal(await redis.incr(key("counter")), 1);
      assert.equal(await redis.incrby(key("counter"), 10), 11);
    });

    test("expire and pttl", { timeout: TEST_TIMEOUT }, async () => {
      await redis.set(key("e"), "v");
      assert.equal(await redis.pttl(key("e")), -1);
      assert.equal(await redis.expire(key("e"), 60), 1);
      const pttl = await redis.pttl(key("e"));
      assert.ok(pttl > 50_000 && pttl <= 60_000, `pttl ${pttl}`);
    });

    test("mget returns null for missing keys", { timeout: TEST_TIMEOUT }, async () => {
      await redis.set(key("m1"), "one");
      await redis.set(key("m2"), "two");
      assert.deepEqual(await redis.mget(key("m1"), key("nope"), key("m2")), ["one", null, "two"]);
    });

    test("hset and hgetall", { timeout: TEST_TIMEOUT }, async () => {
      assert.equal(await redis.hset(key("h"), { name: "ada", visits: 3 }), 2);
      assert.deepEqual(await redis.hgetall(key("h")), { name: "ada", visits: 3 });
      assert.equal(await redis.hget(key("h"), "name"), "ada");
      assert.equal(await redis.hgetall(key("no-hash")), null);
    });

    test("JSON values are stored as JSON text and parsed back", { timeout: TEST_TIMEOUT }, async () => {
      const value = { token: "abc", expires_at: 1700000000, scopes: ["a", "b"] };
      await redis.set(key("json"), value);
      assert.deepEqual(await redis.get(key("json")), value);
      const raw = new Redis({ url, token: TOKEN, automaticDeserialization: false, enableAutoPipelining: false });
      assert.equal(await raw.get(key("json")), JSON.stringify(value));
    });

    test("pipeline returns each command's result", { timeout: TEST_TIMEOUT }, async () => {
      const results = await redis
        .pipeline()
        .set(key("p"), "1")
        .incr(key("p"))
        .get(key("p"))
        .lpush(key("p"), "x")
        .exec({ keepErrors: true });
      assert.deepEqual(
        results.map((/** @type {{ result?: unknown }} */ r) => r.result),
        ["OK", 2, 2, undefined],
      );
      assert.match(String(results[3].error), /^WRONGTYPE /);
      await assert.rejects(redis.pipeline().incr(key("p")).lpush(key("p"), "x").exec(), /WRONGTYPE/);
    });

    test("multi-exec runs commands as a transaction", { timeout: TEST_TIMEOUT }, async () => {
      const results = await redis.multi().set(key("tx"), "a").append(key("tx"), "b").get(key("tx")).exec();
      assert.deepEqual(results, ["OK", 2, "ab"]);
    });

    test("eval runs Lua with keys and arguments", { timeout: TEST_TIMEOUT }, async () => {
      await redis.set(key("lua"), "stored");
      const result = await redis.eval(
        "return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1]), 7}",
        [key("lua")],
        ["arg"],
      );
      assert.deepEqual(result, [key("lua"), "arg", "stored", 7]);
    });

    test("Script.exec falls back from EVALSHA to EVAL on NOSCRIPT", { timeout: TEST_TIMEOUT }, async () => {
      const body = `return ARGV[1] .. '${prefix}!'`;
      const script = redis.createScript(body);
      await redis.scriptFlush();
      await assert.rejects(script.evalsha([], ["x"]), /NOSCRIPT/);
      assert.equal(await script.exec([], ["hi"]), `hi${prefix}!`);
      // EVAL loaded it, so EVALSHA now works directly.
      assert.equal(await script.evalsha([], ["again"]), `again${prefix}!`);
    });

    test("a wrong-type command rejects with Redis's error", { timeout: TEST_TIMEOUT }, async () => {
      await redis.set(key("str"), "x");
      await assert.rejects(redis.lpush(key("str"), "y"), (/** @type {Error} */ err) => {
        assert.match(err.message, /WRONGTYPE Operation against a key holding the wrong kind of value/);
        return true;
      });
    });

    test("a bad token is rejected", { timeout: TEST_TIMEOUT }, async () => {
      const intruder = new Redis({
        url,
        token: "wrong-token",
        retry: false,
        enableAutoPipelining: mode.startsWith("auto"),
      });
      await assert.rejects(intruder.set(key("intruder"), "x"), /Unauthorized/);
      assert.equal(await redis.get(key("intruder")), null);
    });
  });
}

describe("wire format", () => {
  /**
   * Runs `body` while recording every fetch the client makes.
   * @param {() => Promise<unknown>} body
   */
  async function recordingFetches(body) {
    /** @type {{ url: string, headers: Record<string, string>, body: string }[]} */
    const seen = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = (input, init) => {
      // The client sends plain-object headers and a JSON string body.
      const headers = /** @type {Record<string, string>} */ (init?.headers ?? {});
      seen.push({ url: String(input), headers, body: /** @type {string} */ (init?.body) });
      return realFetch(input, init);
    };
    try {
      await body();
    } finally {
      globalThis.fetch = realFetch;
    }
    return seen;
  }

  test("by default the client batches concurrent commands into one base64 /pipeline request", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const redis = new Redis({ url, token: TOKEN });
    const seen = await recordingFetches(() => Promise.all([redis.incr("wire:a"), redis.incr("wire:b")]));
    assert.equal(seen.length, 1);
    assert.equal(seen[0].url, `${url}/pipeline`);
    assert.equal(seen[0].headers["Upstash-Encoding"], "base64");
    assert.equal(seen[0].headers.authorization, `Bearer ${TOKEN}`);
    assert.deepEqual(JSON.parse(seen[0].body), [
      ["incr", "wire:a"],
      ["incr", "wire:b"],
    ]);
  });

  test("without auto-pipelining each command is one POST to the base URL", { timeout: TEST_TIMEOUT }, async () => {
    const redis = new Redis({ url, token: TOKEN, enableAutoPipelining: false });
    const seen = await recordingFetches(() => redis.set("wire:c", 5, { ex: 30 }));
    assert.equal(seen.length, 1);
    assert.equal(seen[0].url, url);
    // Numbers stay JSON numbers on the wire; the server forwards their decimal text.
    assert.deepEqual(JSON.parse(seen[0].body), ["set", "wire:c", 5, "ex", 30]);
  });

  test("a client without base64 encoding gets plain strings", { timeout: TEST_TIMEOUT }, async () => {
    const plain = new Redis({ url, token: TOKEN, responseEncoding: false, enableAutoPipelining: false });
    await plain.set("plain:k", "héllo ✓");
    assert.equal(await plain.get("plain:k"), "héllo ✓");
    assert.deepEqual(await plain.mget("plain:k", "plain:none"), ["héllo ✓", null]);
  });

  test("base64 replies encode strings but not OK, numbers or null", { timeout: TEST_TIMEOUT }, async () => {
    const post = async (/** @type {string} */ pathname, /** @type {unknown} */ body) => {
      const res = await fetch(`${url}${pathname}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${TOKEN}`, "Upstash-Encoding": "base64" },
        body: JSON.stringify(body),
      });
      return [res.status, await res.json()];
    };
    const b64 = (/** @type {string} */ s) => Buffer.from(s).toString("base64");
    assert.deepEqual(await post("/", ["SET", "wire:k", "v", "EX", 100]), [200, { result: "OK" }]);
    assert.deepEqual(await post("/", ["GET", "wire:k"]), [200, { result: b64("v") }]);
    assert.deepEqual(await post("/", ["MGET", "wire:k", "wire:none"]), [200, { result: [b64("v"), null] }]);
    assert.deepEqual(await post("/pipeline", [["TTL", "wire:k"], ["PING"]]), [
      200,
      [{ result: 100 }, { result: b64("PONG") }],
    ]);
    const [status, body] = await post("/", ["GET"]);
    assert.equal(status, 400);
    assert.match(body.error, /^ERR wrong number of arguments/);
  });
});
