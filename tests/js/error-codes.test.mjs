// One list of error codes: the Rust sources are the truth (the core's
// `Error::code`, the relay's `RelayError::code`, the addon's and `init`'s
// `codes` modules),
// and every list written out by hand elsewhere must match them exactly:
// index.js's ERROR_CODES, index.d.ts's ErrorCode, the Netlify plugin's fix
// table, and the README's error-code tables. A code added in Rust and
// forgotten in one of them (or left behind after a removal) fails here.
//
// Run: node --test tests/js/error-codes.test.mjs

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";

import { ROOT } from "./stand-ins.mjs";

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
  assert.notEqual(from, -1, `${file}: ${start} not found; update this test if the code moved`);
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

/** The codes each Rust `fn code(&self)` match returns. */
function rustCodes(/** @type {string} */ file) {
  return set(all(section(file, /pub fn code\(&self\)/, /\n {4}\}\n/), /=>\s*"([a-z_]+)"/g));
}

const CORE = rustCodes("crates/tokenrelay/src/error.rs");
const RELAY = rustCodes("crates/tokenrelay/src/relay/error.rs");
const ADDON_CODES = section("crates/tokenrelay-node/src/error.rs", /pub mod codes \{/, /\n\}\n/);
const ADDON = set(all(ADDON_CODES, /: &str = "([a-z_]+)";/g));
/** `init`'s codes: only `tokenrelay init` meets them, never the build plugin. */
const INIT = set(all(ADDON_CODES, /INIT_[A-Z_]+: &str = "([a-z_]+)";/g));
/** Thrown by index.js itself when no native binary loads (the addon cannot say it). */
const LOADER = ["unsupported_platform"];
/** Every code a TokenrelayError can carry. */
const JS = set([...CORE, ...ADDON, ...LOADER]);

describe("error codes", () => {
  test("are read from the Rust sources", () => {
    // Guards the parsing above: an empty or partial read would make every check below vacuous.
    for (const code of ["config_unreadable", "missing_env", "token_unavailable"]) assert.ok(CORE.includes(code), code);
    for (const code of ["path_rejected", "rate_limited", "upstream_timeout"]) assert.ok(RELAY.includes(code), code);
    for (const code of ["invalid_options", "scan_failed"]) assert.ok(ADDON.includes(code), code);
    assert.ok(INIT.includes("init_conflict"), "init_conflict");
  });

  test("index.js's ERROR_CODES lists exactly the JS codes", () => {
    const list = section("crates/tokenrelay-node/index.js", /export const ERROR_CODES = /, /\]\);/);
    assert.deepEqual(set(all(list, /"([a-z_]+)"/g)), JS);
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
