// One list of error codes: they are declared once in Rust (`stable_codes!`:
// the core's ErrorCode, the relay's RelayCode, the addon's AddonCode) and the
// addon exports them (`errorCodes()`); every list written out by hand must
// match: index.d.ts's ErrorCode, the Netlify plugin's fix table, and the
// README's error-code tables. A code added in Rust and forgotten in one of
// them (or left behind after a removal) fails here.
//
// Run: node --test tests/js/error-codes.test.mjs (after the addon build)

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";

import { ERROR_CODES, errorCodes } from "tokenrelay";

import { ROOT } from "./support/stand-ins.mjs";

const read = (/** @type {string} */ file) => readFileSync(path.join(ROOT, file), "utf8");

/**
 * The text of `source` from the first match of `start` to the first match
 * of `end` after it; fails naming the file if either is missing.
 * @param {string} file
 * @param {RegExp} start
 * @param {RegExp} end
 */
function section(file, start, end) {
  const text = read(file);
  const from = text.search(start);
  assert.notEqual(from, -1, `${file}: ${start} not found; update this test if the list moved`);
  const rest = text.slice(from);
  const to = rest.slice(1).search(end);
  assert.notEqual(to, -1, `${file}: end of ${start} not found`);
  return rest.slice(0, to + 1);
}

/** @param {string} text @param {RegExp} pattern with one group, the code */
function all(text, pattern) {
  return [...text.matchAll(pattern)].map((m) => m[1]);
}

/** Sorted and without duplicates, for comparing lists as sets. */
const set = (/** @type {string[]} */ codes) => [...new Set(codes)].sort();

const DECLARED = errorCodes();
/** Every code a TokenrelayError can carry. */
const JS = set([...ERROR_CODES]);
/** The relay's own codes (it also answers with the core's token and config codes). */
const RELAY = set(DECLARED.relay);
/** `init`'s codes: only `tokenrelay init` meets them, never the build plugin. */
const INIT = JS.filter((code) => code.startsWith("init_"));

describe("error codes", () => {
  test("come from the addon, as Rust declares them", () => {
    // Guards the lists above: an empty or partial export would make every check below vacuous.
    for (const code of ["config_unreadable", "missing_env", "token_unavailable", "invalid_options", "scan_failed"]) {
      assert.ok(DECLARED.addon.includes(code), code);
    }
    for (const code of ["path_rejected", "rate_limited", "upstream_timeout", "budget_exhausted"]) {
      assert.ok(RELAY.includes(code), code);
    }
    assert.ok(INIT.includes("init_conflict"), "init_conflict");
    assert.equal(new Set(DECLARED.addon).size, DECLARED.addon.length, "each code is declared once");
  });

  test("index.d.ts's ErrorCode is exactly the JS codes", () => {
    const union = section("crates/tokenrelay-node/index.d.ts", /export type ErrorCode =/, /;\n/);
    assert.deepEqual(set(all(union, /\|\s*"([a-z_]+)"/g)), JS);
  });

  test("the Netlify plugin says what to do about every JS code", () => {
    const table = section("netlify/plugins/tokenrelay/index.js", /const FIXES = \{/, /\n\};\n/);
    assert.deepEqual(
      set(all(table, /^ {2}([a-z_]+):/gm)),
      JS.filter((code) => !INIT.includes(code)),
    );
  });

  test("the README's troubleshooting tables list every code", () => {
    const tables = section("README.md", /## Troubleshooting: error codes/, /\n## /);
    const documented = new Set(all(tables, /`([a-z_]+)`/g));
    const missing = set([...JS, ...RELAY]).filter((code) => !documented.has(code));
    assert.deepEqual(missing, [], "codes missing from README.md's Troubleshooting section");
  });
});
