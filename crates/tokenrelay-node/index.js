// tokenrelay for build time: the addon's functions, with errors that carry a
// stable `code`.
//
// The generated loader (binding.js) rejects with napi's own Error, whose
// message the addon writes as `[code] message` (crates/tokenrelay-node/src/error.rs).
// This module turns that into a TokenrelayError with `code` set, and says
// which platform lacks a binary when none loads. Nothing else: the
// functions' behaviour lives in Rust.

import { readFileSync } from "node:fs";

/**
 * Every `code` a TokenrelayError can carry.
 * @type {ReadonlyArray<import("./index.d.ts").ErrorCode>}
 */
export const ERROR_CODES = Object.freeze([
  "config_unreadable",
  "config_invalid",
  "missing_env",
  "invalid_env",
  "unknown_upstream",
  "token_rejected",
  "token_response_invalid",
  "token_unavailable",
  "cache_purge_failed",
  "store_unreadable",
  "invalid_options",
  "scan_failed",
  "scan_too_large",
  "init_conflict",
  "init_platform_unknown",
  "init_failed",
  "unsupported_platform",
]);

/** An error from tokenrelay, with a stable machine-readable `code`. */
export class TokenrelayError extends Error {
  /**
   * @param {import("./index.d.ts").ErrorCode} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "TokenrelayError";
    /** @type {import("./index.d.ts").ErrorCode} */
    this.code = code;
  }
}

const CODED = /^\[([a-z_]+)\] ([\s\S]*)$/;

/** Where napi says a conversion failed, e.g. ` on PrefetchOptions.buildMargin`. */
const CONVERTING = / on \w+\.([\w.]+)\s*$/;

/**
 * The addon's `[code] message` as a TokenrelayError (the addon prefixes
 * every error it returns). Anything else was thrown by napi while converting
 * arguments (a wrong type): `invalid_options`, naming the option but not
 * quoting napi, whose message shows the offending value (it could be a secret).
 * @param {unknown} err
 * @returns {TokenrelayError}
 */
function toTokenrelayError(err) {
  const message = err instanceof Error ? err.message : String(err);
  const coded = CODED.exec(message);
  if (coded) return new TokenrelayError(/** @type {any} */ (coded[1]), coded[2]);
  const option = CONVERTING.exec(message);
  const what = option ? `option ${option[1]} has the wrong type` : "an argument has the wrong type";
  return new TokenrelayError("invalid_options", `${what}: see the types in index.d.ts`);
}

/**
 * @template {unknown[]} A, R
 * @param {(...args: A) => Promise<R>} fn
 * @returns {(...args: A) => Promise<R>}
 */
function coded(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (err) {
      throw toTokenrelayError(err);
    }
  };
}

/**
 * This machine as napi-rs names platforms, e.g. `linux-x64-gnu`, `darwin-arm64`.
 * @returns {string}
 */
function platformName() {
  const name = `${process.platform}-${process.arch}`;
  if (process.platform === "win32") return `${name}-msvc`;
  if (process.platform !== "linux") return name;
  const report = /** @type {any} */ (process.report?.getReport?.());
  return `${name}-${report?.header?.glibcVersionRuntime ? "gnu" : "musl"}`;
}

/**
 * The generated loader, or an `unsupported_platform` error that names this
 * platform and the ones binaries are built for (its own message only says
 * "Cannot find native binding").
 */
async function loadBinding() {
  try {
    return await import("./binding.js");
  } catch (cause) {
    const pkg = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));
    const platform = platformName();
    const published = Object.keys(pkg.optionalDependencies ?? {}).map((name) => name.slice(`${pkg.name}-`.length));
    const fix = published.includes(platform)
      ? `Its binary comes in the optional dependency ${pkg.name}-${platform}: reinstall without omitting optional ` +
        "dependencies (no --no-optional, --omit=optional or --ignore-optional), with the lock file made on any platform."
      : `Binaries are published for: ${published.join(", ")}. On another platform, build one with ` +
        "`npm run build:release` in the package's source directory (crates/tokenrelay-node; needs a Rust toolchain).";
    const err = new TokenrelayError(
      "unsupported_platform",
      `tokenrelay has no native binary that loads on ${platform} (Node ${process.version}). ${fix} ` +
        "NAPI_RS_NATIVE_LIBRARY_PATH may also point at a tokenrelay .node file built for it.",
    );
    err.cause = cause;
    throw err;
  }
}

const binding = await loadBinding();

/** @type {typeof import("./index.d.ts").prefetch} */
export const prefetch = coded(binding.prefetch);
/** @type {typeof import("./index.d.ts").getToken} */
export const getToken = coded(binding.getToken);
/** @type {typeof import("./index.d.ts").check} */
export const check = coded(binding.check);
/** @type {typeof import("./index.d.ts").init} */
export const init = coded(binding.init);
/** @type {typeof import("./index.d.ts").scanForLeaks} */
export const scanForLeaks = coded(binding.scanForLeaks);
/** @type {typeof import("./index.d.ts").purgeCache} */
export const purgeCache = coded(binding.purgeCache);
/** @type {typeof import("./index.d.ts").status} */
export const status = coded(binding.status);
