// Unit tests of the plugin's helpers (relay-function.js), beside them; the
// plugin as Netlify runs it is tested in tests/js/netlify-plugin.test.mjs and
// tests/js/packed-sites.test.mjs. Not shipped: package.json lists its files.
//
// Run: node --test netlify/plugins/tokenrelay/relay-function.test.mjs

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import {
  addRoute,
  FUNCTION_NAME,
  ownRelayFunction,
  placeDevFunction,
  placeRelayFunction,
  removePlaced,
} from "./relay-function.js";

/** A fresh directory, removed after `fn`. @param {(dir: string) => Promise<void> | void} fn */
async function inTemp(fn) {
  const dir = mkdtempSync(path.join(tmpdir(), "tokenrelay-plugin-"));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("addRoute", () => {
  const relayRule = { from: "/api/relay/*", to: "/.netlify/functions/relay/:splat", status: 200, force: true };

  test("routes the mount first, ahead of a site's catch-all", async () => {
    const config = { redirects: [{ from: "/*", to: "/index.html", status: 200 }] };
    assert.equal(await addRoute(config), true);
    assert.deepEqual(config.redirects, [relayRule, { from: "/*", to: "/index.html", status: 200 }]);
  });

  test("leaves the mount alone when the site routes it, or a path under it, itself", async () => {
    for (const from of ["/api/relay", "/api/relay/*", "/api/relay/getty/*"]) {
      const config = { redirects: [{ from, to: "/elsewhere", status: 200 }] };
      assert.equal(await addRoute(config), false, from);
      assert.deepEqual(config.redirects, [{ from, to: "/elsewhere", status: 200 }], from);
    }
  });

  test("a rule that merely starts with the same letters is another route", async () => {
    const config = { redirects: [{ from: "/api/relay-status", to: "/status", status: 200 }, { to: "/no-from" }] };
    assert.equal(await addRoute(config), true);
    assert.deepEqual(config.redirects[0], relayRule);
  });
});

describe("placing the function", () => {
  // The trailer's bytes are the addon's (crates/tokenrelay/src/appended.rs tests them with the
  // reader the function uses); packed-sites.test.mjs runs a placed function on its config.
  test("the prebuilt binary's copy gets the config appended, and is executable", async () => {
    await inTemp(async (dir) => {
      const binary = path.join(dir, "netlify-relay");
      const config = path.join(dir, "tokenrelay.toml");
      writeFileSync(binary, "\x7fELF-not-really");
      writeFileSync(config, '[upstreams.getty]\nbase_url = "https://api.gettyimages.com"\n');
      const placed = await placeRelayFunction(binary, config, path.join(dir, "functions"));
      assert.equal(placed, path.join(dir, "functions", FUNCTION_NAME));
      const bytes = readFileSync(placed);
      const text = readFileSync(config);
      assert.deepEqual(bytes.subarray(0, 15), Buffer.from("\x7fELF-not-really", "latin1"));
      assert.deepEqual(bytes.subarray(15, 15 + text.length), text);
      assert.equal(statSync(placed).mode & 0o111, 0o111, "executable");
    });
  });

  test("a config that cannot be read fails with its code, naming the file", async () => {
    await inTemp(async (dir) => {
      const binary = path.join(dir, "netlify-relay");
      writeFileSync(binary, "\x7fELF-not-really");
      const missing = path.join(dir, "missing.toml");
      await assert.rejects(placeRelayFunction(binary, missing, path.join(dir, "functions")), (err) => {
        const e = /** @type {{ code?: string, message: string }} */ (err);
        return e.code === "config_unreadable" && e.message.includes(missing);
      });
    });
  });

  test("the dev function runs the binary per request in the site, and removePlaced clears both kinds", async () => {
    await inTemp(async (dir) => {
      const functions = path.join(dir, "functions");
      const dev = await placeDevFunction("/opt/netlify-relay", functions, "/site");
      const source = readFileSync(dev, "utf8");
      assert.match(source, /import \{ invokeOnce \} from "\/.*dev-function\.js";/);
      assert.match(source, /invokeOnce\("\/opt\/netlify-relay", event, \{ cwd: "\/site" \}\)/);
      writeFileSync(path.join(functions, FUNCTION_NAME), "binary");
      await removePlaced(functions);
      assert.throws(() => statSync(dev));
      assert.throws(() => statSync(path.join(functions, FUNCTION_NAME)));
    });
  });

  test("ownRelayFunction finds a site's own relay by its name, whatever its form", async () => {
    await inTemp((dir) => {
      assert.equal(ownRelayFunction(undefined), undefined);
      assert.equal(ownRelayFunction(path.join(dir, "missing")), undefined);
      writeFileSync(path.join(dir, "other.mjs"), "");
      assert.equal(ownRelayFunction(dir), undefined);
      mkdirSync(path.join(dir, "relay"));
      assert.equal(ownRelayFunction(dir), path.join(dir, "relay"));
    });
  });
});
