// The /api/relay/* function for sites with no Rust: the prebuilt binary from
// the platform package (tokenrelay-linux-x64-gnu, file `netlify-relay`),
// carrying the site's tokenrelay.toml, placed where Netlify bundles the
// functions plugins generate, and its route.
//
// Netlify's bundler (@netlify/zip-it-and-ship-it, runtimes/rust/index.js)
// recognises a prebuilt Linux x86-64 Rust ELF file in a functions directory
// and zips it alone as the Lambda `bootstrap` (zip_binary.js): no file can
// travel beside it. So the addon appends the config to the copy with a
// trailer the binary reads at start (crates/tokenrelay/src/appended.rs); the
// mount and which rules claim it come from the addon too, as Rust defines them.
// The addon is imported when first needed, as in index.js: where it cannot
// load, the build fails with its message rather than the plugin crashing.

import { readdirSync } from "node:fs";
import { chmod, copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The function's name: `/.netlify/functions/relay`, as a site building it from source names it. */
export const FUNCTION_NAME = "relay";
/** The prebuilt binary, in the platform package Netlify's functions run on. */
const BINARY = "tokenrelay-linux-x64-gnu/netlify-relay";

/**
 * The site's own relay function in its functions directory (e.g. built from
 * source: netlify/functions/relay/Cargo.toml), if any.
 * @param {string | undefined} functionsSrc
 * @returns {string | undefined}
 */
export function ownRelayFunction(functionsSrc) {
  if (!functionsSrc) return undefined;
  let entries;
  try {
    entries = readdirSync(functionsSrc);
  } catch {
    return undefined;
  }
  const own = entries.find((e) => path.parse(e).name === FUNCTION_NAME);
  return own && path.join(functionsSrc, own);
}

/**
 * The prebuilt binary's path, resolved from the tokenrelay package (which
 * depends on the platform package), or undefined where it is not installed
 * (a build machine other than Linux x86-64 glibc, optional dependencies left out).
 * @returns {string | undefined}
 */
export function prebuiltBinary() {
  try {
    const require = createRequire(import.meta.url);
    return createRequire(require.resolve("tokenrelay")).resolve(BINARY);
  } catch {
    return undefined;
  }
}

/**
 * Removes what an earlier build or `netlify dev` placed in `dir`: the binary
 * and the dev function would otherwise both be a function named `relay`.
 * @param {string} dir
 */
export async function removePlaced(dir) {
  await Promise.all(
    [FUNCTION_NAME, `${FUNCTION_NAME}.mjs`].map((f) => rm(path.join(dir, f), { force: true, recursive: true })),
  );
}

/**
 * Writes `binary` with `config` appended to `dir/relay` (executable).
 * @param {string} binary
 * @param {string} configPath
 * @param {string} dir
 * @returns {Promise<string>} the function file written
 */
export async function placeRelayFunction(binary, configPath, dir) {
  const dest = path.join(dir, FUNCTION_NAME);
  await mkdir(dir, { recursive: true });
  await copyFile(binary, dest);
  const { appendConfig } = await import("tokenrelay");
  await appendConfig(dest, configPath);
  await chmod(dest, 0o755);
  return dest;
}

/**
 * For `netlify dev`, which runs no prebuilt binary: writes `dir/relay.mjs`, a
 * JavaScript function running `binary` once per request (dev-function.js) in
 * `siteDir`, where it reads the current tokenrelay.toml and .env.
 * @param {string} binary
 * @param {string} dir
 * @param {string} siteDir
 * @returns {Promise<string>} the function file written
 */
export async function placeDevFunction(binary, dir, siteDir) {
  // A path, not a file: URL: netlify dev bundles the function with esbuild, which resolves paths only.
  const runner = fileURLToPath(new URL("./dev-function.js", import.meta.url));
  const dest = path.join(dir, `${FUNCTION_NAME}.mjs`);
  await mkdir(dir, { recursive: true });
  await writeFile(
    dest,
    [
      "// Written by netlify-plugin-tokenrelay for `netlify dev`: the prebuilt relay, run once per request.",
      `import { invokeOnce } from ${JSON.stringify(runner)};`,
      `export const handler = (event) => invokeOnce(${JSON.stringify(binary)}, event, { cwd: ${JSON.stringify(siteDir)} });`,
      "",
    ].join("\n"),
  );
  return dest;
}

/**
 * Routes /api/relay/* to the function, first so that a site's catch-all rule
 * (`/* /index.html 200`) cannot shadow it, unless the site routes it (or a
 * path under it: not `/api/relay-status`, see the addon's claimsMount) itself.
 * A route holds no secret, so it may be saved into the deployed config.
 * @param {{ redirects: Array<{ from?: string, to?: string, status?: number, force?: boolean }> }} netlifyConfig
 * @returns {Promise<boolean>} whether the route was added
 */
export async function addRoute(netlifyConfig) {
  const { claimsMount, relayMount } = await import("tokenrelay");
  if (netlifyConfig.redirects.some((r) => r.from !== undefined && claimsMount(r.from))) return false;
  netlifyConfig.redirects = [
    { from: `${relayMount()}/*`, to: `/.netlify/functions/${FUNCTION_NAME}/:splat`, status: 200, force: true },
    ...netlifyConfig.redirects,
  ];
  return true;
}
