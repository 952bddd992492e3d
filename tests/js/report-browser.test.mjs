// The usage report, end to end: real traffic through tokenrelay/fetch's relay
// (stand-in token endpoint and API, redis-server behind upstash-local), then
// `tokenrelay status --json` and `tokenrelay report --out` as an operator runs
// them. status agrees with what the test counted, and the report is one
// self-contained page: headless Chromium renders its charts without fetching
// anything. Saves docs/report.png for the README.
//
// Needs Debian's chromium (/usr/bin/chromium; scripts/test.sh installs it) and
// the addon built. The meter writes at most every 10 s, so the test waits once.
// The request that carries a write from the rate limit's round trip is counted
// with the next write; one refused before the rate limit writes after it is counted.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { chromium } from "playwright-core";
import { createRelay } from "tokenrelay/fetch";

import { run } from "./support/process.mjs";
import { ROOT, startRedis, startStandInApi, startUpstashLocal, stopAll } from "./support/stand-ins.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
];
const CLI = path.join(ROOT, "crates", "tokenrelay-node", "bin", "tokenrelay.js");
/**
 * Two of the meter's write intervals (relay/meter's FLUSH_INTERVAL, 10 s) and a
 * margin: then a request that meets no rate limit writes the counts, its own too.
 */
const FLUSH_WAIT_MS = 20_500;

let work = "";
/** @type {Record<string, string>} */
let env = {};

before(
  async () => {
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-report-"));
    const redis = await startRedis(work);
    const upstash = await startUpstashLocal(redis.port);
    const clientId = `report-${randomBytes(4).toString("hex")}`;
    const clientSecret = randomBytes(16).toString("hex");
    const api = await startStandInApi({ clientId, clientSecret });
    writeFileSync(
      path.join(work, "tokenrelay.toml"),
      `
[relay]
rate_limit = { requests = 5, window = "1h" }

[upstreams.getty]
base_url = "${api.apiUrl}"
token = { type = "oauth2_client_credentials", url = "${api.tokenUrl}", client_id = { env = "GETTY_ID" }, client_secret = { env = "GETTY_SECRET" } }

[upstreams.getty.relay]
budget = { requests = 60, per = "1d" }
routes = [
  { path = "/search/**", methods = ["GET"], cache = { ttl = "10m" } },
  { path = "/echo/**", methods = ["GET"] },
]
`,
    );
    env = {
      GETTY_ID: clientId,
      GETTY_SECRET: clientSecret,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: upstash.token,
      TOKENRELAY_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    };
  },
  { timeout: 30_000 },
);

after(async () => {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
});

test("status --json counts every answer, and the report renders its charts in Chromium with nothing fetched", {
  timeout: 120_000,
}, async () => {
  const relay = createRelay({ cwd: work, env, clientIp: "x-real-ip" });
  /** @type {Record<string, number>} */
  const counted = { answers: 0, refused: 0, rateLimited: 0, routeNotFound: 0 };
  /** @param {string} target @param {string} ip */
  const send = async (target, ip) => {
    const res = await relay(new Request(`http://site.test${target}`, { headers: { "x-real-ip": ip } }));
    await res.arrayBuffer();
    counted.answers++;
    if (res.status === 429) counted.rateLimited++;
    if (res.status === 404) counted.routeNotFound++;
    if (res.status >= 400) counted.refused++;
    return res.status;
  };
  for (let i = 1; i <= 12; i++) {
    const ip = `198.51.100.${i}`;
    assert.equal(await send(`/api/relay/getty/search/images?phrase=cats${i % 3}`, ip), 200);
    assert.equal(await send(`/api/relay/getty/echo/item${i}`, ip), 200);
    if (i % 4 === 0) assert.equal(await send("/api/relay/getty/nope", ip), 404);
  }
  for (let i = 0; i < 8; i++) await send("/api/relay/getty/echo/greedy", "203.0.113.9");
  assert.equal(counted.rateLimited, 3, "a greedy client past its 5 requests");
  // The meter writes the counts with the first request past two intervals that meets no rate limit.
  await new Promise((resolve) => setTimeout(resolve, FLUSH_WAIT_MS));
  assert.equal(await send("/api/relay/getty/last", "198.51.100.99"), 404);

  const cli = (/** @type {string[]} */ args) =>
    run(process.execPath, [CLI, ...args], { cwd: work, env: { ...process.env, ...env }, timeoutMs: 30_000 });
  const status = await cli(["status", "getty", "--json"]);
  assert.equal(status.status, 0, status.stderr);
  const [getty] = JSON.parse(status.stdout);
  const day = getty.usage.map((/** @type {any} */ u) => u.lastDay);
  const sum = (/** @type {(u: any) => number} */ f) =>
    day.reduce((/** @type {number} */ a, /** @type {any} */ u) => a + f(u), 0);
  const answers = sum((u) => Object.values(u.statuses).reduce((a, b) => a + b, 0));
  assert.equal(answers, counted.answers, "every answer, to the request");
  assert.equal(
    sum((u) => u.refusals.rate_limited ?? 0),
    counted.rateLimited,
  );
  assert.equal(
    sum((u) => u.refusals.route_not_found ?? 0),
    counted.routeNotFound,
  );
  const calls = sum((u) => u.calls);
  assert.equal(calls, 12 * 2 - 9 + 5, "3 searches went upstream, the other 9 were cache answers; 12 + 5 echoes");
  assert.equal(
    sum((u) => u.cache.memory),
    9,
  );
  assert.equal(
    sum((u) => u.tokenFetches),
    1,
    "one token for every call",
  );
  // A budget is a ceiling: an instance counts calls in the store ahead of
  // making them, at most an eighth of what is left (60 / 8 of this one).
  const ahead = getty.budgets[0].used - calls;
  assert.ok(ahead >= 0 && ahead <= 60 / 8, `the budget counted every call the meter did, and ${ahead} ahead`);

  const out = path.join(work, "report.html");
  const written = await cli(["report", "--out", out]);
  assert.equal(written.status, 0, written.stderr);
  const html = readFileSync(out, "utf8");
  for (const external of ["<script", "<link", "@import", "url(", "http://", "https://", "<img"]) {
    assert.ok(!html.includes(external), `the page is self-contained: no ${external}`);
  }
  assert.ok(html.includes(`data-calls="${calls}"`), "the report's calls are status's");
  assert.ok(html.includes(`data-refusals="${counted.refused}"`), "and its refusals");

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    /** @type {string[]} */
    const fetched = [];
    page.on("request", (r) => fetched.push(r.url()));
    await page.goto(`file://${out}`);
    assert.deepEqual(fetched, [`file://${out}`], "rendering fetches nothing but the page");
    const charts = await page.locator("figure svg").count();
    assert.ok(charts >= 5, `the charts render: ${charts}`);
    assert.ok((await page.locator("figure svg rect").count()) > 0, "with bars drawn");
    assert.equal(await page.locator('[data-code="rate_limited"]').getAttribute("data-count"), "3");
    const box = await page.locator("figure svg").first().boundingBox();
    assert.ok(box && box.width > 300 && box.height > 60, `a chart has a size: ${JSON.stringify(box)}`);
    await page.screenshot({ path: path.join(ROOT, "docs", "report.png"), fullPage: true });
  } finally {
    await browser.close();
  }
});
