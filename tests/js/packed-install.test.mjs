// The packages as a user gets them: the tarballs scripts/pack.sh writes to
// target/packages (the npm package, its linux-x64-gnu platform package, the
// Netlify plugin, the crate) are checked for what they carry, then installed
// with npm into a fresh site outside the checkout and run there with a PATH
// that has no cargo or rustc: `tokenrelay check`, `tokenrelay prefetch -- <build>`
// and `netlify build --offline` with the plugin loaded from node_modules,
// against stand-in-api's token endpoint and redis-server behind upstash-local.
//
// Run: bash scripts/build-linux.sh addon && bash scripts/pack.sh && node --test tests/js/packed-install.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { compareVersions, FLOOR, glibcNeeded } from "../../scripts/glibc-floor.mjs";
import { ROOT, startRedis, startStandInApi, startUpstashLocal, stopAll } from "./stand-ins.mjs";

const PACKAGES = path.join(ROOT, "target", "packages");
const VERSION = JSON.parse(readFileSync(path.join(ROOT, "crates", "tokenrelay-node", "package.json"), "utf8")).version;
const TARBALL = {
  main: path.join(PACKAGES, `tokenrelay-${VERSION}.tgz`),
  platform: path.join(PACKAGES, `tokenrelay-linux-x64-gnu-${VERSION}.tgz`),
  plugin: path.join(PACKAGES, `netlify-plugin-tokenrelay-${VERSION}.tgz`),
};
const CRATE = path.join(PACKAGES, `tokenrelay-${VERSION}.crate`);
const FIXTURE = path.join(ROOT, "tests", "js", "fixtures", "packed-site");
const NETLIFY = path.join(ROOT, "node_modules", ".bin", "netlify");
/** npm install resolves the other platforms' optional packages on the registry (and skips them). */
const INSTALL_TIMEOUT_MS = 180_000;
const RUN_TIMEOUT_MS = 90_000;
const TEST = { timeout: RUN_TIMEOUT_MS + 10_000 };
const CLIENT = { clientId: "packed-client-51c2", clientSecret: "packed-secret-7a3e-keep-out-of-logs" };
const key = randomBytes(32).toString("base64");

/** Entries of a .tgz / .crate (both gzipped tar), without the leading directory. */
function entries(/** @type {string} */ archive) {
  return execFileSync("tar", ["-tzf", archive], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map((e) => e.slice(e.indexOf("/") + 1));
}

/** One file of a gzipped tar, as text. */
function member(/** @type {string} */ archive, /** @type {string} */ name) {
  return execFileSync("tar", ["-xzOf", archive, name], { encoding: "utf8" });
}

const kib = (/** @type {number} */ bytes) => `${(bytes / 1024).toFixed(0)} KiB`;

/** This PATH without the directories that hold cargo or rustc. */
function pathWithoutRust() {
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
 * Runs `file args` and resolves with its exit status and combined output,
 * failing after `timeoutMs`.
 * @param {string} file
 * @param {string[]} args
 * @param {{ cwd: string, env: NodeJS.ProcessEnv, timeoutMs?: number }} options
 * @returns {Promise<{ status: number | null, output: string }>}
 */
function run(file, args, { cwd, env, timeoutMs = RUN_TIMEOUT_MS }) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${file} ${args.join(" ")} did not finish in ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.once("error", reject);
    child.once("exit", (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}

describe("the packed packages", () => {
  before(() => {
    for (const file of [...Object.values(TARBALL), CRATE]) {
      assert.ok(existsSync(file), `${file} is missing: run bash scripts/build-linux.sh addon && bash scripts/pack.sh`);
    }
  });

  test("carry no binary in the main package, exactly one in the platform package, and nothing from target/", (t) => {
    for (const file of [...Object.values(TARBALL), CRATE]) {
      const list = entries(file);
      t.diagnostic(`${path.basename(file)}: ${kib(statSync(file).size)} packed, ${list.length} files`);
      assert.deepEqual(list.filter((e) => e.startsWith("target/") || e.includes("/target/")), [], path.basename(file));
    }

    const main = entries(TARBALL.main);
    assert.deepEqual(main.filter((e) => e.endsWith(".node")), []);
    for (const file of ["index.js", "index.d.ts", "binding.js", "binding.d.ts", "bin/tokenrelay.js", "README.md"]) {
      assert.ok(main.includes(file), `the main package lacks ${file}`);
    }
    const pkg = JSON.parse(member(TARBALL.main, "package/package.json"));
    assert.equal(pkg.optionalDependencies["tokenrelay-linux-x64-gnu"], VERSION);
    assert.ok(!pkg.files.some((/** @type {string} */ f) => f.includes(".node")), "files must never include *.node");

    const binaries = entries(TARBALL.platform).filter((e) => e.endsWith(".node"));
    assert.deepEqual(binaries, ["tokenrelay.linux-x64-gnu.node"]);
    const platform = JSON.parse(member(TARBALL.platform, "package/package.json"));
    assert.deepEqual([platform.os, platform.cpu, platform.libc, platform.main], [["linux"], ["x64"], ["glibc"], binaries[0]]);
  });

  test(`hold the Linux binary to glibc ${FLOOR}`, (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), "tokenrelay-glibc-"));
    try {
      execFileSync("tar", ["-xzf", TARBALL.platform, "-C", dir]);
      const binary = path.join(dir, "package", "tokenrelay.linux-x64-gnu.node");
      const needed = glibcNeeded(binary);
      t.diagnostic(`tokenrelay.linux-x64-gnu.node: ${kib(statSync(binary).size)}, needs glibc ${needed}`);
      assert.ok(needed && compareVersions(needed, FLOOR) <= 0, `the addon needs glibc ${needed}, above ${FLOOR}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // The same check on a binary linked against this machine's newer glibc fails:
    // it reads real symbol versions rather than passing by default.
    const host = glibcNeeded(path.join(ROOT, "target", "debug", "stand-in-api"));
    assert.ok(host && compareVersions(host, FLOOR) > 0, `a host build needs glibc ${host}`);
  });

  test("ship the plugin with the metadata Netlify's plugin directory expects", () => {
    assert.deepEqual(entries(TARBALL.plugin).sort(), ["README.md", "index.js", "manifest.yml", "package.json"]);
    const pkg = JSON.parse(member(TARBALL.plugin, "package/package.json"));
    const manifest = member(TARBALL.plugin, "package/manifest.yml");
    assert.equal(pkg.name, "netlify-plugin-tokenrelay");
    assert.match(manifest, new RegExp(`^name: ${pkg.name}$`, "m"));
    assert.ok(!pkg.private);
    for (const keyword of ["netlify", "netlify-plugin"]) assert.ok(pkg.keywords.includes(keyword), keyword);
    assert.ok(pkg.repository?.url && pkg.bugs?.url);
    assert.equal(pkg.dependencies.tokenrelay, `^${VERSION}`);
  });

  test("publish the crate with its sources and README, and no path dependency", () => {
    const list = entries(CRATE);
    for (const file of ["Cargo.toml", "README.md", "src/lib.rs", "src/relay/mod.rs"]) assert.ok(list.includes(file), file);
    assert.deepEqual(list.filter((e) => e.startsWith("tests/")), []);
    const manifest = member(CRATE, `tokenrelay-${VERSION}/Cargo.toml`);
    // Only the lib's own `path = "src/lib.rs"`: no dependency by path.
    assert.deepEqual(manifest.match(/^path = .*$/gm), ['path = "src/lib.rs"']);
    assert.doesNotMatch(manifest, /testkit/);
    for (const field of ["license", "description", "repository", "readme", "rust-version"]) {
      assert.match(manifest, new RegExp(`^${field} = `, "m"), field);
    }
    assert.match(manifest, /^version = "(.+)"$/m);
    assert.equal(/^version = "(.+)"$/m.exec(manifest)?.[1], VERSION, "the crate and the npm package share one version");
  });
});

describe("installed from the tarballs into a site outside the checkout, with no Rust", () => {
  let work = "";
  let site = "";
  /** @type {Record<string, string>} */
  let env = {};
  /** @type {string[]} */
  let secrets = [];

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-packed-"));
    const redis = await startRedis(work);
    const [upstash, api] = await Promise.all([startUpstashLocal(redis.port), startStandInApi(CLIENT)]);
    site = path.join(work, "site");
    cpSync(FIXTURE, site, { recursive: true });
    const config = path.join(site, "tokenrelay.toml");
    writeFileSync(
      config,
      readFileSync(config, "utf8").replaceAll("{{STAND_IN_API_URL}}", api.apiUrl).replaceAll("{{STAND_IN_TOKEN_URL}}", api.tokenUrl),
    );
    // From this process only what reaches the npm registry (HOME holds npm's cache and
    // config): nothing else of the checkout's environment.
    const registry = Object.entries(process.env).filter(
      ([name, value]) => value !== undefined && /^(https?_proxy|no_proxy|npm_config_(registry|cache|userconfig))$/i.test(name),
    );
    env = {
      ...Object.fromEntries(/** @type {[string, string][]} */ (registry)),
      HOME: process.env.HOME ?? tmpdir(),
      PATH: pathWithoutRust(),
      // The site's environment variables on the build machine.
      GETTY_API_KEY: CLIENT.clientId,
      GETTY_API_SECRET: CLIENT.clientSecret,
      STAND_IN_API_URL: api.apiUrl,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: upstash.token,
      TOKENRELAY_ENCRYPTION_KEY: key,
      TOKENRELAY_LOCAL_STORE: path.join(work, "local-store"),
      // netlify-cli: no telemetry or update checks (tests talk to loopback only), plain output.
      CI: "true",
      NO_UPDATE_NOTIFIER: "1",
      NO_COLOR: "1",
      FORCE_COLOR: "0",
    };
    secrets = [CLIENT.clientSecret, upstash.token, key];
  }, { timeout: 30_000 });

  after(async () => {
    await stopAll();
    rmSync(work, { recursive: true, force: true });
  });

  /**
   * Asserts no secret is in `output`, nor (`withToken`) the token the store
   * holds, read through the installed package's JS API.
   */
  async function assertNoSecret(/** @type {string} */ output, withToken = true) {
    const { getToken } = await import(pathToFileURL(path.join(site, "node_modules", "tokenrelay", "index.js")).href);
    const token = withToken ? [await getToken("getty", { cwd: site, env })] : [];
    for (const secret of [...secrets, ...token]) {
      assert.ok(!output.includes(secret), `a secret is in the output:\n${output}`);
    }
  }

  test("npm installs the three tarballs; the binary comes from the platform package", { timeout: INSTALL_TIMEOUT_MS + 10_000 }, async () => {
    const { status, output } = await run(
      "npm",
      ["install", "--no-audit", "--no-fund", "--save-dev", TARBALL.main, TARBALL.platform, TARBALL.plugin],
      { cwd: site, env, timeoutMs: INSTALL_TIMEOUT_MS },
    );
    assert.equal(status, 0, output);
    const modules = path.join(site, "node_modules");
    assert.deepEqual(readdirSync(path.join(modules, "tokenrelay")).filter((f) => f.endsWith(".node")), []);
    assert.ok(existsSync(path.join(modules, "tokenrelay-linux-x64-gnu", "tokenrelay.linux-x64-gnu.node")));
    assert.ok(existsSync(path.join(modules, "netlify-plugin-tokenrelay", "manifest.yml")));
    const which = await run("sh", ["-c", "command -v cargo || command -v rustc || echo none"], { cwd: site, env });
    assert.equal(which.output.trim(), "none", "the PATH of the commands below must not reach a Rust toolchain");
  });

  test("npx tokenrelay check validates the site's config, secrets redacted", TEST, async () => {
    const { status, output } = await run("npx", ["--no", "tokenrelay", "check"], { cwd: site, env });
    assert.equal(status, 0, output);
    assert.match(output, /upstream getty: http:\/\/127\.0\.0\.1:\d+\/v3/);
    assert.match(output, /client_secret = \$GETTY_API_SECRET/);
    assert.match(output, /^ok$/m);
    await assertNoSecret(output, false);
  });

  test("npx tokenrelay prefetch runs the site's build with a working token and scans its output", TEST, async () => {
    const { status, output } = await run("npx", ["--no", "tokenrelay", "prefetch", "--scan", "dist", "--", "npm", "run", "build"], { cwd: site, env });
    assert.equal(status, 0, output);
    assert.match(output, /tokenrelay: getty: valid until \S+Z \(fetched\), as TOKENRELAY_GETTY_TOKEN/);
    assert.match(output, /build: rendered 3 images/);
    assert.match(output, /scanned 1 file\(s\) for \d+ secret\(s\): none found/);
    assert.match(readFileSync(path.join(site, "dist", "index.html"), "utf8"), /<li>cats 1<\/li>/);
    await assertNoSecret(output);
  });

  test("netlify build --offline loads the plugin from node_modules: prefetch, build, leak scan", TEST, async () => {
    rmSync(path.join(site, "dist"), { recursive: true, force: true });
    const { status, output } = await run(NETLIFY, ["build", "--offline"], { cwd: site, env });
    assert.equal(status, 0, output);
    assert.match(output, /netlify-plugin-tokenrelay@\d+\.\d+\.\d+ from netlify\.toml and package\.json/);
    // The token the prefetch above stored, from the shared store.
    assert.match(output, /tokenrelay: getty: valid until \S+Z \(store\), as TOKENRELAY_GETTY_TOKEN/);
    assert.match(output, /shared store warmed: upstash http:\/\/127\.0\.0\.1:\d+/);
    assert.match(output, /build: rendered 3 images/);
    assert.match(output, /tokenrelay: dist: 1 file\(s\) scanned for \d+ secret\(s\), none found/);
    await assertNoSecret(output);
  });

  test("without the platform package, the plugin still loads and fails the build naming the platform", TEST, async () => {
    // As if installed with --omit=optional: the main package is there, its binary is not.
    rmSync(path.join(site, "node_modules", "tokenrelay-linux-x64-gnu"), { recursive: true });
    const { status, output } = await run(NETLIFY, ["build", "--offline"], { cwd: site, env });
    assert.notEqual(status, 0, output);
    assert.match(output, /In "onPreBuild" event in "netlify-plugin-tokenrelay" from netlify\.toml and package\.json/);
    assert.match(
      output,
      /tokenrelay could not load its native addon: tokenrelay has no native binary that loads on linux-x64-gnu \(Node v[\d.]+\)\. Its binary comes in the optional dependency tokenrelay-linux-x64-gnu/,
    );
    assert.match(output, /\[unsupported_platform\]/);
    assert.doesNotMatch(output, /build: rendered/);
  });
});
