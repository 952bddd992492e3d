// End to end: `netlify build --offline` and `netlify dev --offline`
// (netlify-cli from npm) on a fixture site that uses the tokenrelay build
// plugin, against stand-in-api's token endpoint and API, and redis-server
// behind upstash-local as the shared store.
//
// The fixture (fixtures/netlify-site) is copied to a temporary directory per
// build, with the stand-ins' URLs and the plugin's path written in.
//
// Tests of the prebuilt relay function use the workspace's debug build of it
// (target/debug/netlify-relay); the released one is tested from the packages
// in packed-sites.test.mjs.
//
// Run: cargo build -p tokenrelay-netlify --bin netlify-relay && node --test tests/js/netlify-plugin.test.mjs

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { Redis } from "@upstash/redis";
import { getToken } from "tokenrelay";

import { placeRelayFunction } from "../../netlify/plugins/tokenrelay/relay-function.js";
import { startLambda } from "./support/lambda-runtime-api.mjs";
import { siteConfig } from "./support/packed.mjs";
import { run } from "./support/process.mjs";
import { assertNoSecret as noSecret } from "./support/secrets.mjs";
import {
  freePort,
  ROOT,
  startRedis,
  startStandInApi,
  startUpstashLocal,
  stopAll,
  waitFor,
} from "./support/stand-ins.mjs";

const NETLIFY = path.join(ROOT, "node_modules", ".bin", "netlify");
const FIXTURE = path.join(ROOT, "tests", "js", "fixtures", "netlify-site");
const PLUGIN = path.join(ROOT, "netlify", "plugins", "tokenrelay");
/** One `netlify build` takes a few seconds; this bounds a hang. */
const BUILD_TIMEOUT_MS = 90_000;
const TEST = { timeout: BUILD_TIMEOUT_MS + 10_000 };
const CLIENT = { clientId: "netlify-client-6a0c", clientSecret: "netlify-secret-1f7e-keep-out-of-logs" };

let work = "";
/** @type {Awaited<ReturnType<typeof startUpstashLocal>>} */
let upstash;
/** @type {Awaited<ReturnType<typeof startStandInApi>>} */
let api;
const key = randomBytes(32).toString("base64");

before(
  async () => {
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-netlify-"));
    const redis = await startRedis(work);
    [upstash, api] = await Promise.all([startUpstashLocal(redis.port), startStandInApi(CLIENT)]);
  },
  { timeout: 30_000 },
);

// Each build starts from a cold store: a token stored by an earlier build
// would be served whatever the credentials (the store key names the client,
// never its secret).
beforeEach(async () => {
  await new Redis({ url: upstash.url, token: upstash.token, enableAutoPipelining: false }).flushdb();
});

after(async () => {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
});

/**
 * The workspace's build of the prebuilt relay function (`cargo build --workspace --all-targets`, scripts/test.sh);
 * packed-sites.test.mjs deploys the released one from the packages.
 */
const BINARY = path.join(ROOT, "target", "debug", "netlify-relay");

/**
 * A directory for NODE_PATH holding the platform package the plugin takes
 * the prebuilt function from (tokenrelay-linux-x64-gnu, not installed in the
 * workspace), with the workspace's build of it.
 */
function platformPackage() {
  assert.ok(existsSync(BINARY), `${BINARY} is missing: cargo build -p tokenrelay-netlify --bin netlify-relay`);
  const dir = path.join(work, "node-path");
  if (!existsSync(dir)) {
    mkdirSync(path.join(dir, "tokenrelay-linux-x64-gnu"), { recursive: true });
    symlinkSync(BINARY, path.join(dir, "tokenrelay-linux-x64-gnu", "netlify-relay"));
  }
  return dir;
}

let sites = 0;
/** A fresh copy of the fixture site, its placeholders filled in. */
function fixtureSite() {
  const dir = path.join(work, `site-${++sites}`);
  cpSync(FIXTURE, dir, { recursive: true });
  const fill = {
    "{{STAND_IN_API_URL}}": api.apiUrl,
    "{{STAND_IN_TOKEN_URL}}": api.tokenUrl,
    // Netlify resolves a local plugin relative to the site.
    "{{PLUGIN_DIR}}": path.relative(dir, PLUGIN),
  };
  for (const file of readdirSync(dir)) {
    const text = readFileSync(path.join(dir, file), "utf8");
    writeFileSync(
      path.join(dir, file),
      Object.entries(fill).reduce((t, [k, v]) => t.replaceAll(k, v), text),
    );
  }
  return dir;
}

/**
 * The site's environment on the build machine.
 * @param {string} dir
 * @param {Record<string, string>} [overrides]
 */
function siteEnv(dir, overrides = {}) {
  return {
    GETTY_API_KEY: CLIENT.clientId,
    GETTY_API_SECRET: CLIENT.clientSecret,
    STAND_IN_API_URL: api.apiUrl,
    UPSTASH_REDIS_REST_URL: upstash.url,
    UPSTASH_REDIS_REST_TOKEN: upstash.token,
    TOKENRELAY_ENCRYPTION_KEY: key,
    TOKENRELAY_LOCAL_STORE: path.join(dir, ".tokenrelay-store"),
    ...overrides,
  };
}

/**
 * Runs `netlify build --offline` in `dir`; resolves with its exit status and
 * combined output.
 * @param {string} dir
 * @param {Record<string, string>} env
 */
function netlifyBuild(dir, env) {
  return buildProcess(NETLIFY, ["build", "--offline"], dir, env);
}

/**
 * Runs a build in `dir` through @netlify/build's programmatic API (the one
 * netlify-cli and Netlify's build servers call), in debug mode and with
 * config saving on, as for a deploy: config mutations are written to
 * `outputConfigPath`, and the uploaded config is printed.
 * @param {string} dir
 * @param {Record<string, string>} env
 * @param {string} outputConfigPath
 */
function netlifyBuildApi(dir, env, outputConfigPath) {
  // @netlify/build as netlify-cli resolves it (a dependency of netlify-cli, not of ours).
  const entry = createRequire(path.join(ROOT, "node_modules", "netlify-cli", "package.json")).resolve("@netlify/build");
  const flags = {
    cwd: dir,
    repositoryRoot: dir,
    offline: true,
    saveConfig: true,
    outputConfigPath,
    debug: true,
    telemetry: false,
    mode: "cli",
  };
  const script =
    `const { default: build } = await import(${JSON.stringify(pathToFileURL(entry).href)});` +
    `const { success } = await build(${JSON.stringify(flags)}); process.exit(success ? 0 : 1);`;
  return buildProcess(process.execPath, ["--input-type=module", "-e", script], dir, env);
}

/**
 * Runs `file args` in `dir` to its end, bounded by BUILD_TIMEOUT_MS;
 * resolves with its exit status and combined output.
 * @param {string} file
 * @param {string[]} args
 * @param {string} dir
 * @param {Record<string, string>} env
 * @returns {Promise<{ status: number | null, output: string }>}
 */
function buildProcess(file, args, dir, env) {
  // CI=true keeps netlify-cli from telemetry and update checks: tests talk to loopback only.
  const all = { ...process.env, ...env, CI: "true", NO_UPDATE_NOTIFIER: "1", NO_COLOR: "1", FORCE_COLOR: "0" };
  return run(file, args, { cwd: dir, env: all, timeoutMs: BUILD_TIMEOUT_MS });
}

/**
 * Runs `netlify dev --offline` in `dir` with dev.mjs as the framework
 * command, until its proxy on `port` answers; then stops it and everything
 * it started. Resolves with the proxy's answer and the output.
 * @param {string} dir
 * @param {Record<string, string>} env
 */
async function netlifyDev(dir, env) {
  const [port, appPort] = await Promise.all([freePort(), freePort()]);
  const args = [
    "dev",
    "--offline",
    "--framework",
    "#custom",
    "--command",
    "node dev.mjs",
    "--port",
    String(port),
    "--target-port",
    String(appPort),
    // Edge functions need a Deno download; the fixture has none.
    "--internal-disable-edge-functions",
  ];
  const child = spawn(NETLIFY, args, {
    cwd: dir,
    env: {
      ...process.env,
      ...env,
      APP_PORT: String(appPort),
      CI: "true",
      NO_UPDATE_NOTIFIER: "1",
      NO_COLOR: "1",
      FORCE_COLOR: "0",
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, so stopping it stops dev.mjs too
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  let answer = "";
  try {
    await waitFor("netlify dev proxies to dev.mjs", BUILD_TIMEOUT_MS, async () => {
      if (child.exitCode !== null) throw new Error(`netlify dev exited with ${child.exitCode}:\n${output}`);
      answer = await fetch(`http://127.0.0.1:${port}/`).then(
        (r) => r.text(),
        () => "",
      );
      return answer.startsWith("token ");
    });
  } finally {
    if (child.exitCode === null) process.kill(-(/** @type {number} */ (child.pid)), "SIGKILL");
    await exited;
  }
  return { answer, output };
}

/**
 * Asserts no secret appears anywhere in `output`.
 * @param {string} output
 * @param {string[]} [more] further secrets, e.g. the token the build used
 */
function assertNoSecret(output, more = []) {
  noSecret(output, [CLIENT.clientSecret, upstash.token, key, ...more], "the build output");
}

/**
 * The token the shared store holds for the site now, i.e. the one the build
 * was given (read through the addon, as a function would).
 * @param {string} dir
 * @param {Record<string, string>} env
 */
function storedToken(dir, env) {
  return getToken("getty", { cwd: dir, env });
}

describe("the tokenrelay Netlify plugin, through netlify-cli", () => {
  test(
    "the build command gets a working token, the store is warmed, and the summary shows no secret",
    TEST,
    async () => {
      const dir = fixtureSite();
      const env = siteEnv(dir);
      const { status, output } = await netlifyBuild(dir, env);
      assert.equal(status, 0, output);

      // The build command called the API with the token from its environment.
      assert.match(output, /build: rendered 3 images/);
      assert.match(readFileSync(path.join(dir, "dist", "index.html"), "utf8"), /<li>cats 1<\/li>/);
      // The summary names upstream, expiry, variable and store; never a value.
      assert.match(
        output,
        /tokenrelay: getty: valid until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(fetched\), as GETTY_TOKEN/,
      );
      assert.match(output, /shared store warmed: upstash http:\/\/127\.0\.0\.1:\d+/);
      // GETTY_TOKEN, GETTY_API_KEY, GETTY_API_SECRET, UPSTASH_REDIS_REST_TOKEN, TOKENRELAY_ENCRYPTION_KEY
      assert.match(output, /dist: 1 file\(s\) scanned for 5 secret\(s\), none found/);
      assert.match(output, /1 token\(s\) ready; no secret in dist/);

      const token = await storedToken(dir, env);
      assertNoSecret(output, [token]);
      const redis = new Redis({ url: upstash.url, token: upstash.token, enableAutoPipelining: false });
      assert.equal(
        (await redis.keys("tokenrelay:v1:getty:*")).length,
        1,
        "the shared store holds the token for functions",
      );
    },
  );

  test(
    "the token reaches the build command but never the config @netlify/build saves for the deploy",
    TEST,
    async () => {
      const dir = fixtureSite();
      const env = siteEnv(dir);
      const saved = path.join(dir, "saved-netlify.toml");
      const { status, output } = await netlifyBuildApi(dir, env, saved);
      assert.equal(status, 0, output);
      assert.match(output, /build: rendered 3 images/);
      const token = await storedToken(dir, env);
      // Mutations would be saved (and printed under "Uploaded config"); the
      // plugin makes none, so nothing is written.
      const config = existsSync(saved) ? readFileSync(saved, "utf8") : "";
      assert.ok(!config.includes(token), `the saved config holds the token:\n${config}`);
      assert.doesNotMatch(config, /environment/);
      assert.doesNotMatch(output, /build\.environment/);
      assertNoSecret(output, [token]);
    },
  );

  test("a bad credential fails the build before the build command, naming what to check", TEST, async () => {
    const dir = fixtureSite();
    const wrong = "wrong-secret-3d9b-also-secret";
    const { status, output } = await netlifyBuild(dir, siteEnv(dir, { GETTY_API_SECRET: wrong }));
    assert.notEqual(status, 0, output);
    assert.match(
      output,
      /tokenrelay could not prepare the build's tokens: upstream "getty": token endpoint rejected the request: invalid_client .*; check the values of \$GETTY_API_KEY, \$GETTY_API_SECRET \[token_rejected\]/,
    );
    assert.match(output, /The token endpoint refused the credentials/);
    assert.match(output, /In "onPreBuild" event/);
    assert.doesNotMatch(output, /build: rendered/);
    assertNoSecret(output, [wrong]);
  });

  test("a missing credential variable fails the build, saying where to set it", TEST, async () => {
    const dir = fixtureSite();
    const { status, output } = await netlifyBuild(dir, siteEnv(dir, { GETTY_API_SECRET: "" }));
    assert.notEqual(status, 0, output);
    assert.match(
      output,
      /missing environment variables: GETTY_API_SECRET \(upstream "getty": token\.client_secret\) \[missing_env\]/,
    );
    assert.match(output, /Set these in the site's environment variables/);
  });

  test("a build that writes the token into its output is failed by the leak scan", TEST, async () => {
    const dir = fixtureSite();
    const env = siteEnv(dir, { LEAK_TOKEN: "1" });
    const { status, output } = await netlifyBuild(dir, env);
    assert.notEqual(status, 0, output);
    assert.match(output, /build: rendered 3 images/);
    assert.match(
      output,
      /tokenrelay: the build output holds secrets, so it must not be deployed:\s+- dist\/assets\/app\.js contains the token in \$GETTY_TOKEN/,
    );
    assert.match(output, /In "onPostBuild" event/);
    assert.ok(existsSync(path.join(dir, "dist", "assets", "app.js")));
    assertNoSecret(output, [await storedToken(dir, env)]);
  });

  test("a token bundled into a function fails the build: the functions output is scanned too", TEST, async () => {
    const dir = fixtureSite();
    const env = siteEnv(dir, { LEAK_FUNCTION: "1" });
    const { status, output } = await netlifyBuild(dir, env);
    assert.notEqual(status, 0, output);
    assert.ok(existsSync(path.join(dir, ".netlify", "functions", "leak.zip")), output);
    assert.match(output, /- \.netlify\/functions\/leak\.zip contains the token in \$GETTY_TOKEN/);
    assert.doesNotMatch(output, /- dist\//);
    assertNoSecret(output, [await storedToken(dir, env)]);
  });

  test(
    "a token in an edge function bundle, a deploy-scoped blob or Next.js's server output fails the build: all are deployed too",
    TEST,
    async () => {
      const dir = fixtureSite();
      const env = siteEnv(dir, { LEAK_DEPLOYED: "1" });
      const { status, output } = await netlifyBuild(dir, env);
      assert.notEqual(status, 0, output);
      assert.match(output, /- \.netlify\/edge-functions-dist\/bundle\.eszip contains the token in \$GETTY_TOKEN/);
      assert.match(output, /- \.netlify\/blobs\/deploy\/pages\/index contains the token in \$GETTY_TOKEN/);
      assert.match(output, /- \.next\/server\/app\/index\.html contains the token in \$GETTY_TOKEN/);
      assert.doesNotMatch(output, /- dist\//);
      assertNoSecret(output, [await storedToken(dir, env)]);
    },
  );

  test("a site rule that merely starts like the mount (/api/relay-status) leaves the relay routed", TEST, async () => {
    const dir = fixtureSite();
    const own = '\n[[redirects]]\nfrom = "/api/relay-status"\nto = "/status.json"\nstatus = 200\n';
    // Not scanned: the workspace's debug build of the function is large, and the scan is tested above.
    const toml = readFileSync(path.join(dir, "netlify.toml"), "utf8").replace(
      "relayFunction = false",
      "relayFunction = true\n  scanPublishDir = false",
    );
    writeFileSync(path.join(dir, "netlify.toml"), toml + own);
    const { status, output } = await netlifyBuild(dir, siteEnv(dir, { NODE_PATH: platformPackage() }));
    assert.equal(status, 0, output);
    assert.match(
      output,
      /tokenrelay: relay function placed at \.netlify\/functions-internal\/relay \(the prebuilt relay with tokenrelay\.toml\), routed from \/api\/relay\/\*/,
    );
  });

  test("a link in the publish directory to a file outside it fails the build, naming both", TEST, async () => {
    const dir = fixtureSite();
    writeFileSync(
      path.join(dir, "build.mjs"),
      readFileSync(path.join(dir, "build.mjs"), "utf8") +
        'import { symlinkSync } from "node:fs";\nsymlinkSync("../../.env", "dist/assets/env.txt");\n',
    );
    writeFileSync(path.join(dir, ".env"), "NOTHING_SECRET=1\n");
    const { status, output } = await netlifyBuild(dir, siteEnv(dir));
    assert.notEqual(status, 0, output);
    assert.match(
      output,
      new RegExp(
        `- dist/assets/env\\.txt links outside dist, to ${realpathSync(path.join(dir, ".env")).replaceAll(".", "\\.")}`,
      ),
    );
  });

  test("netlify dev gets the same token from onPreDev, for local development to match a build", TEST, async () => {
    const dir = fixtureSite();
    const env = siteEnv(dir);
    const { answer, output } = await netlifyDev(dir, env);
    assert.equal(answer, "token accepted by the API\n");
    assert.match(output, /dev: GETTY_TOKEN accepted by the API/);
    assert.match(output, /tokenrelay: getty: valid until \S+Z \(fetched\), as GETTY_TOKEN/);
    assertNoSecret(output, [await storedToken(dir, env)]);
  });
});

describe("the relay function the plugin places", () => {
  test(
    "answers with the config appended at build time though TOKENRELAY_CONFIG names a file of the build machine",
    TEST,
    async () => {
      assert.ok(existsSync(BINARY), `${BINARY} is missing: cargo build -p tokenrelay-netlify --bin netlify-relay`);
      const dir = path.join(work, "placed");
      mkdirSync(dir);
      writeFileSync(path.join(dir, "tokenrelay.toml"), siteConfig(api));
      const placed = await placeRelayFunction(
        BINARY,
        path.join(dir, "tokenrelay.toml"),
        path.join(dir, "functions-internal"),
      );
      // The task root as Lambda unpacks the function: the bootstrap alone.
      const task = path.join(dir, "task");
      mkdirSync(task);
      cpSync(placed, path.join(task, "bootstrap"));
      // Set as Netlify sets a variable by default, for every scope: at run time
      // it names the build machine's checkout, which the function does not have.
      const env = {
        PATH: process.env.PATH ?? "",
        ...siteEnv(dir),
        TOKENRELAY_CONFIG: "/opt/build/repo/tokenrelay.toml",
      };
      const lambda = await startLambda(path.join(task, "bootstrap"), { cwd: task, env });
      try {
        const answer = await lambda.invoke(
          {
            httpMethod: "GET",
            path: "/api/relay/getty/search/images",
            queryStringParameters: { phrase: "cats" },
            headers: { host: "site.example" },
            body: null,
            isBase64Encoded: false,
          },
          BUILD_TIMEOUT_MS,
        );
        assert.equal(answer.statusCode, 200, JSON.stringify(answer));
        assert.equal(JSON.parse(answer.body).images.length, 3);
        assert.match(lambda.output(), /ignored: the config was appended at build time.*TOKENRELAY_CONFIG/);
        assertNoSecret(lambda.output());
      } finally {
        await lambda.stop();
      }
    },
  );
});
