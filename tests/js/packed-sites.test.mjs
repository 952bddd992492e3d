// tokenrelay added to existing sites as a user adds it, from the packed
// tarballs (target/packages, scripts/pack.sh) in directories outside the
// checkout, with no cargo or rustc on the PATH: `npx tokenrelay init`, then
// the platform's own build, then a request relayed through the function that
// build produced to stand-in-api, as the platform would run it.
//
// Netlify: `netlify build --offline` bundles the prebuilt relay the plugin
// placed as the Lambda `bootstrap` of .netlify/functions/relay.zip; the test
// runs that bootstrap under a Lambda Runtime API stand-in
// (lambda-runtime-api.mjs), then serves the same site with `netlify dev`.
// Vercel: `vercel build` offline compiles the api/relay.rs init wrote against
// the packed crate (cargo is needed there, as on Vercel's build image), and
// the built executable relays a request as Vercel runs it; then `vercel dev`
// of each CLI (support/vercel-dev.mjs) builds and serves the same function.
// What init writes and keeps is specified in init.test.mjs; here each site's
// own files are checked to survive init and a second init to change nothing.
//
// Run: bash scripts/build-linux.sh addon && bash scripts/build-linux.sh bin -p tokenrelay-netlify --bin netlify-relay \
//      && bash scripts/pack.sh && node --test tests/js/packed-sites.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { startLambda } from "./support/lambda-runtime-api.mjs";
import {
  CRATE,
  fetchFromServer,
  installTarballs,
  NETLIFY,
  requirePacked,
  run,
  RUN_TIMEOUT_MS,
  siteConfig,
  siteEnv,
  TARBALL,
  VERSION,
} from "./support/packed.mjs";
import {
  freePort,
  ROOT,
  startRedis,
  startStandInApi,
  startUpstashLocal,
  stopAll,
  waitFor,
} from "./support/stand-ins.mjs";
import { assertNoSecret as noSecret } from "./support/secrets.mjs";
import { fetchThroughVercelDev, VERCEL_CLIS } from "./support/vercel-dev.mjs";

// Without the tarballs, every test here fails at once, naming the step that packs them.
before(requirePacked);

const FIXTURES = path.join(ROOT, "tests", "js", "fixtures", "sites");
const TEST = { timeout: RUN_TIMEOUT_MS + 10_000 };
/** npm install of the tarballs, then init twice. */
const SETUP_TIMEOUT_MS = 240_000;
/** A release build of tokenrelay and the function over dependencies already compiled (all of them from cold: ~10 min). */
const VERCEL_BUILD_TIMEOUT_MS = 900_000;
const CLIENT = { clientId: "sites-client-0b7d", clientSecret: "sites-secret-93fa-keep-out-of-logs" };
const key = randomBytes(32).toString("base64");
/** The request a page makes, and what stand-in-api answers it with. */
const SEARCH = { path: "/api/relay/getty/search/images", query: "phrase=cats" };

let work = "";
/** The site's variables, as set in the platform's settings. */
let vars = /** @type {Record<string, string>} */ ({});
let secrets = /** @type {string[]} */ ([]);
let config = "";

before(
  async () => {
    for (const file of [...Object.values(TARBALL), CRATE]) {
      assert.ok(existsSync(file), `${file} is missing: see the Run line at the top of this file`);
    }
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-sites-"));
    const redis = await startRedis(work);
    const [upstash, api] = await Promise.all([startUpstashLocal(redis.port), startStandInApi(CLIENT)]);
    config = siteConfig(api);
    vars = {
      GETTY_API_KEY: CLIENT.clientId,
      GETTY_API_SECRET: CLIENT.clientSecret,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: upstash.token,
      TOKENRELAY_ENCRYPTION_KEY: key,
    };
    secrets = [CLIENT.clientSecret, upstash.token, key];
  },
  { timeout: 30_000 },
);

after(async () => {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
});

/** @param {string} output */
function assertNoSecret(output) {
  noSecret(output, secrets);
}

/**
 * Every file under `dir` but node_modules, by relative path, with its bytes.
 * @param {string} dir
 * @returns {Map<string, string>}
 */
function snapshot(dir, prefix = "") {
  const files = new Map();
  for (const name of readdirSync(path.join(dir, prefix)).sort()) {
    const rel = path.join(prefix, name);
    if (rel === "node_modules") continue;
    if (statSync(path.join(dir, rel)).isDirectory()) for (const [k, v] of snapshot(dir, rel)) files.set(k, v);
    else files.set(rel, readFileSync(path.join(dir, rel), "latin1"));
  }
  return files;
}

/**
 * Whether every line of `before` is in `after`, unchanged and in the same
 * order, but for a trailing comma (JSON gains one where init adds a key after).
 */
function keepsLines(/** @type {string} */ before, /** @type {string} */ after) {
  const bare = (/** @type {string} */ text) => text.split("\n").map((l) => l.replace(/,$/, ""));
  const lines = bare(after);
  let at = 0;
  return bare(before).every((line) => {
    while (at < lines.length && lines[at] !== line) at++;
    return at++ < lines.length;
  });
}

/**
 * Copies fixture `name` outside the checkout, installs the tarballs, and runs
 * `npx tokenrelay init --platform <platform> --yes` twice: every file the site
 * had keeps its bytes (`merged` files keep each of their lines, in order,
 * around what init adds), and the second run changes nothing. Then the
 * site's tokenrelay.toml is pointed at stand-in-api.
 * @param {string} name
 * @param {"netlify" | "vercel"} platform
 * @param {string[]} merged the site's files init adds to
 * @param {Record<string, string>} env
 */
async function setUp(name, platform, merged, env) {
  const site = path.join(work, name);
  cpSync(path.join(FIXTURES, name), site, { recursive: true });
  const install = await installTarballs(site, env);
  assert.equal(install.status, 0, install.output);
  const before = snapshot(site);
  const init = ["--no", "tokenrelay", "init", "--platform", platform, "--yes"];
  const first = await run("npx", init, { cwd: site, env });
  assert.equal(first.status, 0, first.output);
  const written = snapshot(site);
  for (const [file, bytes] of before) {
    if (merged.includes(file))
      assert.ok(
        keepsLines(bytes, written.get(file) ?? ""),
        `init changed ${file}'s own settings:\n${written.get(file)}`,
      );
    else assert.equal(written.get(file), bytes, `init changed ${file}`);
  }
  const second = await run("npx", init, { cwd: site, env });
  assert.equal(second.status, 0, second.output);
  assert.match(second.output, /already set up/);
  assert.deepEqual(snapshot(site), written, "the second init changed a file");
  writeFileSync(path.join(site, "tokenrelay.toml"), config);
  return site;
}

/**
 * An API Gateway v1 event for `GET /api/relay/...` as Netlify sends a function
 * (the fields lambda_runtime's callers read; netlify-cli's server.js builds the same).
 */
function searchEvent() {
  return {
    httpMethod: "GET",
    path: SEARCH.path,
    rawQuery: SEARCH.query,
    queryStringParameters: { phrase: "cats" },
    multiValueQueryStringParameters: { phrase: ["cats"] },
    headers: { host: "site.example", "x-nf-client-connection-ip": "203.0.113.7", "x-nf-request-id": "01SITES" },
    multiValueHeaders: { host: ["site.example"], "x-nf-client-connection-ip": ["203.0.113.7"] },
    body: null,
    isBase64Encoded: false,
  };
}

/** Asserts `body` is stand-in-api's answer to the search. */
function assertSearchResult(/** @type {string} */ body) {
  assert.deepEqual(
    JSON.parse(body).images.map((/** @type {{ title: string }} */ i) => i.title),
    ["cats 1", "cats 2", "cats 3"],
  );
}

/**
 * Runs `netlify dev` on `site` and fetches the search through it.
 * @param {string} site
 * @param {Record<string, string>} env
 * @param {string} publish
 */
async function relayThroughNetlifyDev(site, env, publish) {
  const port = await freePort();
  const args = ["dev", "--offline", "--internal-disable-edge-functions", "--no-open", "--dir", publish];
  return fetchFromServer(NETLIFY, [...args, "--port", String(port)], {
    cwd: site,
    env,
    url: `http://127.0.0.1:${port}${SEARCH.path}?${SEARCH.query}`,
  });
}

for (const { name, publish, settings } of [
  { name: "static", publish: ".", settings: [] },
  { name: "netlify-settings", publish: "public", settings: ["netlify.toml"] },
]) {
  describe(`netlify: the ${name} site, with the plugin from the packages and no Rust`, () => {
    let site = "";
    let env = /** @type {Record<string, string>} */ ({});

    before(
      async () => {
        env = siteEnv({ ...vars, TOKENRELAY_LOCAL_STORE: path.join(work, `${name}-local-store`) });
        site = await setUp(name, "netlify", [...settings, ".gitignore"], env);
      },
      { timeout: SETUP_TIMEOUT_MS },
    );

    test("netlify build bundles the placed relay as the Lambda bootstrap of a Rust function", TEST, async () => {
      const { status, output } = await run(NETLIFY, ["build", "--offline"], { cwd: site, env });
      assert.equal(status, 0, output);
      assert.match(
        output,
        /tokenrelay: relay function placed at \.netlify\/functions-internal\/relay \(the prebuilt relay with tokenrelay\.toml\), routed from \/api\/relay\/\*/,
      );
      if (settings.length > 0) assert.match(output, /hello: the site's own plugin ran/);
      const zip = path.join(site, ".netlify", "functions", "relay.zip");
      assert.deepEqual(execFileSync("unzip", ["-Z1", zip], { encoding: "utf8" }).split("\n").filter(Boolean).sort(), [
        "bootstrap",
        "netlify-toolchain",
      ]);
      assert.deepEqual(JSON.parse(execFileSync("unzip", ["-p", zip, "netlify-toolchain"], { encoding: "utf8" })), {
        runtime: "rs",
      });
      const manifest = JSON.parse(readFileSync(path.join(site, ".netlify", "functions", "manifest.json"), "utf8"));
      assert.deepEqual(
        manifest.functions.map((/** @type {{ name: string, runtime: string }} */ f) => [f.name, f.runtime]),
        [["relay", "rs"]],
      );
      assertNoSecret(output);
    });

    test(
      "the bundled bootstrap relays a request under a Lambda Runtime API, with the site's config inside it",
      TEST,
      async () => {
        // The task root as Lambda unpacks the zip: the bootstrap alone, no tokenrelay.toml beside it.
        const task = path.join(work, `${name}-task`);
        mkdirSync(task);
        execFileSync("unzip", ["-q", path.join(site, ".netlify", "functions", "relay.zip"), "bootstrap", "-d", task]);
        // TOKENRELAY_CONFIG set as Netlify sets a variable by default, for every
        // scope: at run time it names a file of the build machine, which the
        // function does not have. The config appended at build time wins.
        const runtime = { PATH: env.PATH, ...vars, TOKENRELAY_CONFIG: "/opt/build/repo/tokenrelay.toml" };
        const lambda = await startLambda(path.join(task, "bootstrap"), { cwd: task, env: runtime });
        try {
          const answer = await lambda.invoke(searchEvent(), RUN_TIMEOUT_MS);
          assert.equal(answer.statusCode, 200, JSON.stringify(answer));
          assertSearchResult(answer.body);
          assert.match(lambda.output(), /ignored: the config was appended at build time.*TOKENRELAY_CONFIG/);
          assertNoSecret(JSON.stringify(answer) + lambda.output());
        } finally {
          await lambda.stop();
        }
      },
    );

    test("netlify dev serves the same relay from the packages", TEST, async () => {
      const { answer, output } = await relayThroughNetlifyDev(site, env, publish);
      assertSearchResult(answer.body);
      assert.match(output, /tokenrelay: relay function placed at \.netlify\/functions-internal\/relay\.mjs/);
      assertNoSecret(output);
    });

    if (name === "static") {
      test(
        "a site with a relay function of its own (built from source) gets neither the prebuilt one nor a route",
        TEST,
        async () => {
          const own = path.join(site, "netlify", "functions", "relay");
          mkdirSync(path.join(own, "src"), { recursive: true });
          writeFileSync(path.join(own, "Cargo.toml"), '[package]\nname = "relay"\nversion = "0.1.0"\n');
          writeFileSync(path.join(own, "src", "main.rs"), "fn main() {}\n");
          try {
            const { status, output } = await run(NETLIFY, ["build", "--offline"], { cwd: site, env });
            assert.equal(status, 0, output);
            assert.match(
              output,
              /tokenrelay: the site has its own relay function \(netlify\/functions\/relay\); the prebuilt one is not placed/,
            );
            // Nor what the build and netlify dev above placed.
            for (const placed of ["relay", "relay.mjs"])
              assert.ok(!existsSync(path.join(site, ".netlify", "functions-internal", placed)), placed);
            assert.doesNotMatch(output, /routed from \/api\/relay/);
          } finally {
            rmSync(path.join(site, "netlify"), { recursive: true, force: true });
          }
        },
      );
    }
  });
}

/**
 * The packed crate, unpacked once per archive into a directory outside the checkout
 * named by the archive's digest, as cargo keeps a registry's crates: the runs on Node 24
 * and on Node 22 (scripts/test.sh) build the same sources at the same path, so the second
 * finds tokenrelay compiled.
 * @returns {string}
 */
function unpackedCrate() {
  const digest = createHash("sha256").update(readFileSync(CRATE)).digest("hex").slice(0, 16);
  const home = path.join(tmpdir(), "tokenrelay-packed-crates", digest);
  const crate = path.join(home, `tokenrelay-${VERSION}`);
  if (!existsSync(crate)) {
    // Unpacked beside, then renamed: a run that stops midway leaves no half crate.
    mkdirSync(home, { recursive: true });
    const partial = mkdtempSync(path.join(home, "unpacking-"));
    execFileSync("tar", ["-xzf", CRATE, "-C", partial]);
    renameSync(path.join(partial, `tokenrelay-${VERSION}`), crate);
    rmSync(partial, { recursive: true, force: true });
  }
  return crate;
}

/**
 * Rust for Vercel's builder (this is where the user needs it, as on Vercel's
 * build image), building into the checkout's target directory: the builds
 * scripts/test.sh and tests/vercel*.rs made there have the same dependencies at
 * the same versions and features, so only tokenrelay and the function compile.
 */
function withRust() {
  return {
    ...Object.fromEntries(
      Object.entries(process.env).filter(([name]) => /^(CARGO_HOME|RUSTUP_HOME|RUSTUP_TOOLCHAIN)$/.test(name)),
    ),
    PATH: /** @type {string} */ (process.env.PATH),
    CARGO_TARGET_DIR: path.join(ROOT, "target"),
  };
}

describe("vercel: a site with its own vercel.json, the function compiled by Vercel's Rust builder from the packed crate", () => {
  let site = "";
  let env = /** @type {Record<string, string>} */ ({});

  before(
    async () => {
      env = siteEnv(vars);
      site = await setUp("vercel-settings", "vercel", ["vercel.json", ".gitignore"], env);
      // Nothing is published: the crate comes from its packed archive, as crates.io would serve it.
      const manifest = path.join(site, "Cargo.toml");
      writeFileSync(
        manifest,
        `${readFileSync(manifest, "utf8")}\n[patch.crates-io]\ntokenrelay = { path = ${JSON.stringify(unpackedCrate())} }\n`,
      );
      // The workspace's versions, so that the shared target directory below has them compiled.
      cpSync(path.join(ROOT, "Cargo.lock"), path.join(site, "Cargo.lock"));
      // Linked to no real project: the offline link tests/vercel.rs uses.
      mkdirSync(path.join(site, ".vercel"));
      cpSync(
        path.join(ROOT, "tests", "fixtures", "vercel", "project.json"),
        path.join(site, ".vercel", "project.json"),
      );
    },
    { timeout: SETUP_TIMEOUT_MS },
  );

  test("vercel build compiles api/relay.rs, and the built function relays a request", {
    timeout: VERCEL_BUILD_TIMEOUT_MS + 30_000,
  }, async () => {
    const build = await run(path.join(ROOT, "node_modules", ".bin", "vercel"), ["build", "--yes"], {
      cwd: site,
      env: {
        ...env,
        // The release build scripts/test.sh made for tests/vercel.rs (`cargo build --release --bin relay`):
        // the same dependencies at the same versions and features, so only tokenrelay and the function compile.
        ...withRust(),
        VERCEL_TELEMETRY_DISABLED: "1",
        VERCEL_BUILD_IMAGE: "1",
      },
      timeoutMs: VERCEL_BUILD_TIMEOUT_MS,
    });
    assert.equal(build.status, 0, build.output);
    const func = JSON.parse(
      readFileSync(path.join(site, ".vercel", "output", "functions", "api", "relay.func", ".vc-config.json"), "utf8"),
    );
    assert.deepEqual(
      [func.runtime, func.runtimeLanguage, func.filePathMap["tokenrelay.toml"]],
      ["executable", "rust", "tokenrelay.toml"],
    );
    const routes = JSON.parse(readFileSync(path.join(site, ".vercel", "output", "config.json"), "utf8")).routes;
    const relay = routes.findIndex((/** @type {{ dest?: string }} */ r) => r.dest === "/api/relay?path=$1");
    const fallback = routes.findIndex((/** @type {{ dest?: string }} */ r) => r.dest === "/index.html");
    assert.ok(
      relay >= 0 && relay < fallback,
      `the relay's rewrite must come before the site's catch-all: ${JSON.stringify(routes)}`,
    );

    // As Vercel runs it: HTTP on VERCEL_DEV_PORT, tokenrelay.toml beside it (includeFiles).
    const port = await freePort();
    const executable = path.join(site, func.filePathMap.executable);
    const child = spawn(executable, [], {
      cwd: site,
      env: { ...vars, VERCEL_DEV_PORT: String(port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    try {
      let answer = { status: 0, body: "" };
      // The rewrite appends what `/api/relay/:path*` matched as `path`.
      const url = `http://127.0.0.1:${port}${SEARCH.path}?${SEARCH.query}&path=${encodeURIComponent("getty/search/images")}`;
      await waitFor("the Vercel function relays the search", RUN_TIMEOUT_MS, async () => {
        if (child.exitCode !== null) throw new Error(`the function exited with ${child.exitCode}:\n${output}`);
        answer = await fetch(url).then(
          async (r) => ({ status: r.status, body: await r.text() }),
          () => answer,
        );
        return answer.status !== 0;
      });
      assert.equal(answer.status, 200, `${answer.body}\n${output}`);
      assertSearchResult(answer.body);
      assertNoSecret(build.output + output);
    } finally {
      child.kill("SIGKILL");
    }
  });
  for (const cli of VERCEL_CLIS) {
    test(`vercel dev (${cli}) builds api/relay.rs with cargo and relays, with the project's variables`, {
      timeout: VERCEL_BUILD_TIMEOUT_MS + 30_000,
    }, async () => {
      const devEnv = { ...siteEnv({}), ...withRust() };
      // What @vercel/rust runs at each request (with RUSTFLAGS as it sets it), once before:
      // the packed crate compiles here, not while the dev server waits on a request.
      const built = await run("cargo", ["build", "--bin", "relay"], {
        cwd: site,
        env: { ...devEnv, RUSTFLAGS: "" },
        timeoutMs: VERCEL_BUILD_TIMEOUT_MS,
      });
      assert.equal(built.status, 0, built.output);
      // The site's variables only through the API stand-in, as `vercel dev` pulls them.
      const { answer, output } = await fetchThroughVercelDev(cli, site, {
        env: devEnv,
        vars,
        target: `${SEARCH.path}?${SEARCH.query}`,
        timeoutMs: VERCEL_BUILD_TIMEOUT_MS,
      });
      assertSearchResult(answer.body);
      assertNoSecret(output);
    });
  }
});
