// The packages as a user gets them: the tarballs scripts/pack.sh writes to
// target/packages (the npm package, its linux-x64-gnu platform package, the
// Netlify plugin, the crate) are checked for what they carry, then installed
// with npm into a fresh site outside the checkout and run there with a PATH
// that has no cargo or rustc: `tokenrelay check`, `tokenrelay prefetch -- <build>`
// and `netlify build --offline` with the plugin loaded from node_modules,
// against stand-in-api's token endpoint and redis-server behind upstash-local.
//
// Run: bash scripts/build-linux.sh addon && bash scripts/build-linux.sh bin -p tokenrelay-netlify --bin netlify-relay \
//      && bash scripts/pack.sh && node --test tests/js/packed-install.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { compareVersions, FLOOR, glibcNeeded } from "../../scripts/glibc-floor.mjs";
import {
  CRATE,
  entries,
  INSTALL_TIMEOUT_MS,
  installTarballs,
  kib,
  member,
  NETLIFY,
  requirePacked,
  run,
  RUN_TIMEOUT_MS,
  siteConfig,
  siteEnv,
  TARBALL,
  VERSION,
} from "./support/packed.mjs";
import { ROOT, startRedis, startStandInApi, startUpstashLocal, stopAll } from "./support/stand-ins.mjs";
import { assertNoSecret as noSecret } from "./support/secrets.mjs";

// Without the tarballs, every test here fails at once, naming the step that packs them.
before(requirePacked);

const FIXTURE = path.join(ROOT, "tests", "js", "fixtures", "packed-site");
const TEST = { timeout: RUN_TIMEOUT_MS + 10_000 };
const CLIENT = { clientId: "packed-client-51c2", clientSecret: "packed-secret-7a3e-keep-out-of-logs" };
const key = randomBytes(32).toString("base64");

describe("the packed packages", () => {
  test("carry no binary in the main package, the addon and the Netlify function in the platform package, nothing from target/", (t) => {
    for (const file of [...Object.values(TARBALL), CRATE]) {
      const list = entries(file);
      t.diagnostic(`${path.basename(file)}: ${kib(statSync(file).size)} packed, ${list.length} files`);
      assert.deepEqual(
        list.filter((e) => e.startsWith("target/") || e.includes("/target/")),
        [],
        path.basename(file),
      );
    }

    const main = entries(TARBALL.main);
    assert.deepEqual(
      main.filter((e) => e.endsWith(".node")),
      [],
    );
    for (const file of ["index.js", "index.d.ts", "binding.js", "binding.d.ts", "bin/tokenrelay.js", "README.md"]) {
      assert.ok(main.includes(file), `the main package lacks ${file}`);
    }
    const pkg = JSON.parse(member(TARBALL.main, "package/package.json"));
    assert.equal(pkg.optionalDependencies["tokenrelay-linux-x64-gnu"], VERSION);
    assert.ok(!pkg.files.some((/** @type {string} */ f) => f.includes(".node")), "files must never include *.node");

    const binaries = entries(TARBALL.platform).filter((e) => e.endsWith(".node"));
    assert.deepEqual(binaries, ["tokenrelay.linux-x64-gnu.node"]);
    assert.ok(
      entries(TARBALL.platform).includes("netlify-relay"),
      "the platform package lacks the Netlify function netlify-relay",
    );
    const platform = JSON.parse(member(TARBALL.platform, "package/package.json"));
    assert.deepEqual(
      [platform.os, platform.cpu, platform.libc, platform.main],
      [["linux"], ["x64"], ["glibc"], binaries[0]],
    );
  });

  test(`hold the Linux binaries to glibc ${FLOOR}`, (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), "tokenrelay-glibc-"));
    try {
      execFileSync("tar", ["-xzf", TARBALL.platform, "-C", dir]);
      for (const name of ["tokenrelay.linux-x64-gnu.node", "netlify-relay"]) {
        const binary = path.join(dir, "package", name);
        const needed = glibcNeeded(binary);
        t.diagnostic(`${name}: ${kib(statSync(binary).size)}, needs glibc ${needed}`);
        assert.ok(needed && compareVersions(needed, FLOOR) <= 0, `${name} needs glibc ${needed}, above ${FLOOR}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // The same check on a binary linked against this machine's newer glibc fails:
    // it reads real symbol versions rather than passing by default.
    const host = glibcNeeded(path.join(ROOT, "target", "debug", "stand-in-api"));
    assert.ok(host && compareVersions(host, FLOOR) > 0, `a host build needs glibc ${host}`);
  });

  test("ship netlify-relay with rust_eh_personality in its symbol table (Netlify drops stripped Rust binaries)", () => {
    // zip-it-and-ship-it takes a prebuilt binary for a Rust function only if
    // its symbol table has rust_eh_personality; a stripped one is silently
    // left out of the deploy (netlify/cli#6168).
    const dir = mkdtempSync(path.join(tmpdir(), "tokenrelay-symbols-"));
    try {
      execFileSync("tar", ["-xzf", TARBALL.platform, "-C", dir]);
      const binary = path.join(dir, "package", "netlify-relay");
      assert.ok(hasSymbol(binary, "rust_eh_personality"), "the shipped netlify-relay lost rust_eh_personality");
      // The check reads the real symbol table: a stripped copy fails it.
      const stripped = path.join(dir, "stripped");
      execFileSync("strip", ["-o", stripped, binary]);
      assert.ok(!hasSymbol(stripped, "rust_eh_personality"), "a stripped binary has no symbol table");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("ship the plugin with the metadata Netlify's plugin directory expects", () => {
    assert.deepEqual(entries(TARBALL.plugin).sort(), [
      "README.md",
      "dev-function.js",
      "index.js",
      "manifest.yml",
      "package.json",
      "relay-function.js",
    ]);
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
    for (const file of ["Cargo.toml", "README.md", "src/lib.rs", "src/relay/mod.rs"])
      assert.ok(list.includes(file), file);
    assert.deepEqual(
      list.filter((e) => e.startsWith("tests/")),
      [],
    );
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

  before(
    async () => {
      work = mkdtempSync(path.join(tmpdir(), "tokenrelay-packed-"));
      const redis = await startRedis(work);
      const [upstash, api] = await Promise.all([startUpstashLocal(redis.port), startStandInApi(CLIENT)]);
      site = path.join(work, "site");
      cpSync(FIXTURE, site, { recursive: true });
      writeFileSync(path.join(site, "tokenrelay.toml"), siteConfig(api));
      env = siteEnv({
        // The site's environment variables on the build machine.
        GETTY_API_KEY: CLIENT.clientId,
        GETTY_API_SECRET: CLIENT.clientSecret,
        STAND_IN_API_URL: api.apiUrl,
        UPSTASH_REDIS_REST_URL: upstash.url,
        UPSTASH_REDIS_REST_TOKEN: upstash.token,
        TOKENRELAY_ENCRYPTION_KEY: key,
        TOKENRELAY_LOCAL_STORE: path.join(work, "local-store"),
      });
      secrets = [CLIENT.clientSecret, upstash.token, key];
    },
    { timeout: 30_000 },
  );

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
    noSecret(output, [...secrets, ...token]);
  }

  test("npm installs the three tarballs; the binary comes from the platform package", {
    timeout: INSTALL_TIMEOUT_MS + 10_000,
  }, async () => {
    const { status, output } = await installTarballs(site, env);
    assert.equal(status, 0, output);
    const modules = path.join(site, "node_modules");
    assert.deepEqual(
      readdirSync(path.join(modules, "tokenrelay")).filter((f) => f.endsWith(".node")),
      [],
    );
    assert.ok(existsSync(path.join(modules, "tokenrelay-linux-x64-gnu", "tokenrelay.linux-x64-gnu.node")));
    assert.ok(existsSync(path.join(modules, "netlify-plugin-tokenrelay", "manifest.yml")));
    const which = await run("sh", ["-c", "command -v cargo || command -v rustc || echo none"], { cwd: site, env });
    assert.equal(which.output.trim(), "none", "the PATH of the commands below must not reach a Rust toolchain");
    // scripts/test.sh runs this file on Node 24, then on Node 22: the site's commands must too.
    const node = await run("node", ["--version"], { cwd: site, env });
    assert.equal(node.stdout.trim(), process.version, "the site's commands must run on the Node that runs this test");
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
    const { status, output } = await run(
      "npx",
      ["--no", "tokenrelay", "prefetch", "--scan", "dist", "--", "npm", "run", "build"],
      { cwd: site, env },
    );
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

  test(
    "without the platform package, the plugin still loads and fails the build naming the platform",
    TEST,
    async () => {
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
    },
  );
});

/**
 * Whether `file`'s symbol table (`.symtab`, what `strip` removes) names `symbol`.
 * @param {string} file
 * @param {string} symbol
 */
function hasSymbol(file, symbol) {
  const table = execFileSync("objdump", ["-t", file], { encoding: "utf8", maxBuffer: 1 << 30 });
  return table.split("\n").some((line) => line.trimEnd().endsWith(` ${symbol}`));
}
