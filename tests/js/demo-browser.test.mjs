// The newcomer's path, end to end: `npm run demo` (scripts/demo.mjs), exactly as the README says, driven
// in headless Chromium. The build-time content is on the page, a browse-time
// search shows results, and nothing the browser received (HTML, JS, every
// response body and header, cookies, storage) holds the key, secret or token.
// Saves docs/screenshot.png for the README.
//
// Needs Debian's chromium (/usr/bin/chromium; scripts/test.sh installs it).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";

import { chromium } from "playwright-core";
import { getToken } from "tokenrelay";

import { ROOT, freePort } from "./support/stand-ins.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const READY_TIMEOUT_MS = 300_000;
const STEP_TIMEOUT_MS = 15_000;
// As the machine's notes advise for a closed network: no background traffic.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const clientId = `demo-${randomBytes(6).toString("hex")}`;
const clientSecret = randomBytes(24).toString("hex");
const store = mkdtempSync(path.join(os.tmpdir(), "tokenrelay-demo-test-"));
const env = {
  ...process.env,
  DEMO_CLIENT_ID: clientId,
  DEMO_CLIENT_SECRET: clientSecret,
  TOKENRELAY_LOCAL_STORE: store,
  DEMO_TOKEN_LIFETIME_SECS: "300",
};

/** @type {import("node:child_process").ChildProcessByStdio<null, import("node:stream").Readable, import("node:stream").Readable>} */
let demo;
let output = "";
let siteUrl = "";

before(
  async () => {
    const port = await freePort();
    // Its own process group: npm does not pass signals on to the script it runs,
    // so stopping the demo means signalling the whole group.
    demo = spawn("npm", ["run", "demo"], {
      cwd: ROOT,
      env: { ...env, PORT: String(port) },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    demo.stderr.on("data", (chunk) => (output += chunk));
    siteUrl = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo was not ready in time:\n${output}`)), READY_TIMEOUT_MS);
      createInterface({ input: demo.stdout }).on("line", (line) => {
        output += `${line}\n`;
        const ready = line.match(/ready: open (http:\/\/localhost:\d+)/);
        if (ready) {
          clearTimeout(timer);
          resolve(ready[1]);
        }
      });
      demo.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the demo exited (${code}):\n${output}`));
      });
    });
  },
  { timeout: READY_TIMEOUT_MS + 5_000 },
);

after(
  async () => {
    if (demo?.exitCode === null && demo.pid !== undefined) {
      const exited = new Promise((resolve) => demo.on("exit", resolve));
      process.kill(-demo.pid, "SIGINT");
      await exited;
    }
    rmSync(store, { recursive: true, force: true });
  },
  { timeout: 15_000 },
);

test("build-time content, browse-time search, and no secret in anything the browser received", {
  timeout: 120_000,
}, async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    /** @type {string[]} */
    const received = [];
    page.on("response", async (response) => {
      received.push(`${response.url()}\n${JSON.stringify(await response.allHeaders())}`);
      received.push(await response.text().catch(() => ""));
    });

    await page.goto(siteUrl);
    const featured = await page.locator("#featured li").allTextContents();
    assert.deepEqual(featured, ["lighthouse 1", "lighthouse 2", "lighthouse 3"], "rendered at build time from the API");

    await page.fill("#phrase", "mountains");
    await page.click("button[type=submit]");
    await page.locator("#results li").first().waitFor();
    assert.deepEqual(await page.locator("#results li").allTextContents(), [
      "mountains 1",
      "mountains 2",
      "mountains 3",
    ]);
    assert.match((await page.locator("#status").textContent()) ?? "", /3 photos for “mountains”/);

    mkdirSync(path.join(ROOT, "docs"), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, "docs", "screenshot.png"), fullPage: true });

    received.push(await page.content());
    received.push(JSON.stringify(await context.cookies()));
    received.push(
      await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } })),
    );

    // The token both the build and the relay used: the one in the shared store.
    const token = await getToken("getty", {
      env: {
        ...env,
        TOKENRELAY_CONFIG: path.join(ROOT, "example", "tokenrelay.toml"),
        GETTY_API_KEY: clientId,
        GETTY_API_SECRET: clientSecret,
      },
    });
    assert.ok(received.length >= 6, "the page, its assets and the relay answer were captured");
    for (const [name, secret] of [
      ["API key", clientId],
      ["API secret", clientSecret],
      ["access token", token],
    ]) {
      for (const item of received) assert.ok(!item.includes(secret), `the browser received the ${name}`);
      assert.ok(!output.includes(secret), `the demo printed the ${name}`);
    }
    assert.match(
      output,
      /token for "getty" (fetched|read from the shared store)/,
      "the terminal says what happens to the token",
    );
  } finally {
    await browser.close();
  }
});
