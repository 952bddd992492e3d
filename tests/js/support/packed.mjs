// What the packed-package tests share (packed-install.test.mjs, packed-sites.test.mjs):
// the tarballs scripts/pack.sh writes to target/packages, reading them, installing
// them into a site outside the checkout, and running commands there with a PATH
// that has no Rust toolchain.

import { execFileSync, spawn } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { run as runBounded } from "./process.mjs";
import { ROOT, waitFor } from "./stand-ins.mjs";

export const PACKAGES = path.join(ROOT, "target", "packages");
export const VERSION = JSON.parse(
  readFileSync(path.join(ROOT, "crates", "tokenrelay-node", "package.json"), "utf8"),
).version;
export const TARBALL = {
  main: path.join(PACKAGES, `tokenrelay-${VERSION}.tgz`),
  platform: path.join(PACKAGES, `tokenrelay-linux-x64-gnu-${VERSION}.tgz`),
  plugin: path.join(PACKAGES, `netlify-plugin-tokenrelay-${VERSION}.tgz`),
};
export const CRATE = path.join(PACKAGES, `tokenrelay-${VERSION}.crate`);
/** Fails at once, naming the step that makes them, when the packed files are missing. */
export function requirePacked() {
  for (const file of [...Object.values(TARBALL), CRATE]) {
    try {
      accessSync(file, constants.R_OK);
    } catch {
      throw new Error(
        `${file} is missing: the test command's build phase packs it (bash scripts/pack.sh, in scripts/test.sh)`,
      );
    }
  }
}
export const NETLIFY = path.join(ROOT, "node_modules", ".bin", "netlify");
/** npm install resolves the other platforms' optional packages on the registry (and skips them). */
export const INSTALL_TIMEOUT_MS = 180_000;
export const RUN_TIMEOUT_MS = 90_000;
/** The site's upstream: stand-in-api's token endpoint and API (tokenrelay.toml's {{...}} placeholders). */
export const SITE_CONFIG = path.join(ROOT, "tests", "js", "fixtures", "packed-site", "tokenrelay.toml");

/** Entries of a .tgz / .crate (both gzipped tar), without the leading directory. */
export function entries(/** @type {string} */ archive) {
  return execFileSync("tar", ["-tzf", archive], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map((e) => e.slice(e.indexOf("/") + 1));
}

/** One file of a gzipped tar, as text. */
export function member(/** @type {string} */ archive, /** @type {string} */ name) {
  return execFileSync("tar", ["-xzOf", archive, name], { encoding: "utf8" });
}

export const kib = (/** @type {number} */ bytes) => `${(bytes / 1024).toFixed(0)} KiB`;

/** This PATH without the directories that hold cargo or rustc. */
export function pathWithoutRust() {
  return (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((dir) =>
      ["cargo", "rustc"].every((tool) => {
        try {
          accessSync(path.join(dir, tool), constants.X_OK);
          return false;
        } catch {
          return true;
        }
      }),
    )
    .join(path.delimiter);
}

/**
 * The environment of a site's build machine: from this process only what
 * reaches the npm registry (HOME holds npm's cache and config), the headers
 * node-gyp builds against (npm_config_nodedir: the Node running this test's),
 * a PATH with no Rust, the site's variables (`vars`), and netlify-cli kept
 * quiet and offline.
 * @param {Record<string, string>} vars
 * @returns {Record<string, string>}
 */
export function siteEnv(vars) {
  const registry = Object.entries(process.env).filter(
    ([name, value]) =>
      value !== undefined && /^(https?_proxy|no_proxy|npm_config_(registry|cache|userconfig|nodedir))$/i.test(name),
  );
  return {
    ...Object.fromEntries(/** @type {[string, string][]} */ (registry)),
    HOME: process.env.HOME ?? tmpdir(),
    PATH: pathWithoutRust(),
    ...vars,
    // netlify-cli: no telemetry or update checks (tests talk to loopback only), plain output.
    CI: "true",
    NO_UPDATE_NOTIFIER: "1",
    NO_COLOR: "1",
    FORCE_COLOR: "0",
  };
}

/**
 * Runs `file args` in a site, bounded by the packed tests' default time.
 * @param {string} file
 * @param {string[]} args
 * @param {{ cwd: string, env: NodeJS.ProcessEnv, timeoutMs?: number }} options
 */
export function run(file, args, { cwd, env, timeoutMs = RUN_TIMEOUT_MS }) {
  return runBounded(file, args, { cwd, env, timeoutMs });
}

/**
 * `npm install`s the three tarballs into `site` as dev dependencies.
 * @param {string} site
 * @param {Record<string, string>} env
 */
export function installTarballs(site, env) {
  return run(
    "npm",
    ["install", "--no-audit", "--no-fund", "--save-dev", TARBALL.main, TARBALL.platform, TARBALL.plugin],
    {
      cwd: site,
      env,
      timeoutMs: INSTALL_TIMEOUT_MS,
    },
  );
}

/**
 * The site's tokenrelay.toml, pointing at stand-in-api.
 * @param {{ apiUrl: string, tokenUrl: string }} api
 */
export function siteConfig(api) {
  return readFileSync(SITE_CONFIG, "utf8")
    .replaceAll("{{STAND_IN_API_URL}}", api.apiUrl)
    .replaceAll("{{STAND_IN_TOKEN_URL}}", api.tokenUrl);
}

/**
 * Starts the server `file args` (netlify dev, next start, next dev) in a process
 * group of its own, fetches `url` until it answers 200 (or `timeoutMs` passes,
 * or the server exits), then stops the whole group. Resolves with the last
 * answer and what the server printed.
 * @param {string} file
 * @param {string[]} args
 * @param {{ cwd: string, env: Record<string, string>, url: string, timeoutMs?: number }} options
 */
export async function fetchFromServer(file, args, { cwd, env, url, timeoutMs = RUN_TIMEOUT_MS }) {
  const child = spawn(file, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  let answer = { status: 0, body: "", headers: new Headers() };
  try {
    await waitFor(`${path.basename(file)} ${args[0]} answers ${url}`, timeoutMs, async () => {
      if (child.exitCode !== null) throw new Error(`${file} ${args[0]} exited with ${child.exitCode}:\n${output}`);
      answer = await fetch(url).then(
        async (r) => ({ status: r.status, body: await r.text(), headers: r.headers }),
        () => answer,
      );
      return answer.status === 200;
    });
  } catch (err) {
    throw new Error(
      `${err instanceof Error ? err.message : err}\nlast answer: ${answer.status} ${answer.body}\n${output}`,
    );
  } finally {
    if (child.exitCode === null) process.kill(-(/** @type {number} */ (child.pid)), "SIGKILL");
    await exited;
  }
  return { answer, output };
}
