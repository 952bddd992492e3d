// tokenrelay/fetch served by JavaScript frameworks, from the packed tarballs
// (target/packages, scripts/pack.sh) in directories outside the checkout, with
// no cargo or rustc on the PATH. `npx tokenrelay init --framework ...` writes
// the route; then the framework's own commands build and serve it, and a
// request is relayed through it to stand-in-api.
//
// Next.js (from the registry): `next build` then `next start`, `next dev`,
// `vercel dev` of each CLI (support/vercel-dev.mjs), and `vercel build` offline, whose function for the route must carry the platform
// package's .node. Netlify Functions v2: `netlify build --offline` bundles
// netlify/functions/relay.mts into a zip that must hold the addon; the bundle
// is then run as Lambda's Node.js runtime runs it (support/lambda-node.mjs,
// frozen between invocations), and the same site is served by `netlify dev`.
//
// Run: bash scripts/build-linux.sh addon && bash scripts/build-linux.sh bin -p tokenrelay-netlify --bin netlify-relay \
//      && bash scripts/pack.sh && node --test tests/js/packed-frameworks.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { startBundle } from "./support/lambda-node.mjs";
import {
  fetchFromServer,
  INSTALL_TIMEOUT_MS,
  NETLIFY,
  requirePacked,
  run,
  RUN_TIMEOUT_MS,
  siteConfig,
  siteEnv,
  TARBALL,
} from "./support/packed.mjs";
import { assertNoSecret } from "./support/secrets.mjs";
import { freePort, ROOT, startRedis, startStandInApi, startUpstashLocal, stopAll } from "./support/stand-ins.mjs";
import { fetchThroughVercelDev, VERCEL_CLIS } from "./support/vercel-dev.mjs";

before(requirePacked);

/** The framework's packages, pinned: what a new app gets from the registry today. */
const NEXT_PACKAGES = [
  "next@16.5.0",
  "react@19.3.1",
  "react-dom@19.3.1",
  "typescript@5.9.3",
  "@types/react@19.3.3",
  "@types/node@22.20.7",
];
/** `next build` and `vercel build` of a one-page app on two cores. */
const BUILD_TIMEOUT_MS = 300_000;
const CLIENT = { clientId: "frameworks-client-7c1e", clientSecret: "frameworks-secret-2f9b-never-shown" };
/** The request a page makes, and what stand-in-api answers it with. */
const SEARCH = "/api/relay/getty/search/images?phrase=cats";

let work = "";
/** @type {Record<string, string>} */
let vars = {};
/** @type {string[]} */
let secrets = [];
let config = "";

before(
  async () => {
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-frameworks-"));
    const redis = await startRedis(work);
    const [upstash, api] = await Promise.all([startUpstashLocal(redis.port), startStandInApi(CLIENT)]);
    config = siteConfig(api);
    vars = {
      GETTY_API_KEY: CLIENT.clientId,
      GETTY_API_SECRET: CLIENT.clientSecret,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: upstash.token,
      TOKENRELAY_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    };
    secrets = [CLIENT.clientSecret, upstash.token, vars.TOKENRELAY_ENCRYPTION_KEY];
  },
  { timeout: 30_000 },
);

after(async () => {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
});

/**
 * The search relayed, as stand-in-api answers it.
 * @param {{ status: number, body: string }} answer
 * @param {string} output what the server printed
 */
function assertRelayed(answer, output) {
  assert.equal(answer.status, 200, `${answer.body}\n${output}`);
  assert.deepEqual(
    JSON.parse(answer.body).images.map((/** @type {{ title: string }} */ i) => i.title),
    ["cats 1", "cats 2", "cats 3"],
  );
  assertNoSecret(answer.body, secrets);
  assertNoSecret(output, secrets);
}

/**
 * `npx tokenrelay init` in `site`, twice: the second run must change nothing.
 * @param {string} site
 * @param {Record<string, string>} env
 * @param {string[]} args
 */
async function init(site, env, args) {
  const first = await run("npx", ["tokenrelay", "init", ...args, "--yes"], { cwd: site, env });
  assert.equal(first.status, 0, first.output);
  const second = await run("npx", ["tokenrelay", "init", ...args, "--yes"], { cwd: site, env });
  assert.match(second.stdout, /already set up/, second.output);
  writeFileSync(path.join(site, "tokenrelay.toml"), config);
  return first.stdout;
}

/**
 * Every file under `dir` whose name ends with `suffix`, relative to it.
 * @param {string} dir
 * @param {string} suffix
 * @returns {string[]}
 */
function filesEndingWith(dir, suffix) {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(suffix));
}

describe("Next.js: the App Router route init writes, from the packages and no Rust", () => {
  let site = "";
  /** @type {Record<string, string>} */
  let env = {};

  before(
    async () => {
      site = path.join(work, "next-app");
      mkdirSync(path.join(site, "app"), { recursive: true });
      writeFileSync(path.join(site, "package.json"), `${JSON.stringify({ name: "next-app", private: true })}\n`);
      writeFileSync(
        path.join(site, "app", "layout.tsx"),
        "export default function Layout({ children }: { children: React.ReactNode }) {\n" +
          '  return <html lang="en"><body>{children}</body></html>;\n}\n',
      );
      writeFileSync(
        path.join(site, "app", "page.tsx"),
        "export default function Page() {\n  return <main>photos</main>;\n}\n",
      );
      env = siteEnv({ ...vars, NEXT_TELEMETRY_DISABLED: "1" });
      const install = await run(
        "npm",
        ["install", "--no-audit", "--no-fund", ...NEXT_PACKAGES, TARBALL.main, TARBALL.platform],
        { cwd: site, env, timeoutMs: INSTALL_TIMEOUT_MS },
      );
      assert.equal(install.status, 0, install.output);
      const said = await init(site, env, ["--platform", "vercel", "--framework", "next"]);
      assert.match(said, /create app\/api\/relay\/\[\.\.\.path\]\/route\.ts/);
      assert.match(said, /create next\.config\.mjs/);
    },
    { timeout: INSTALL_TIMEOUT_MS + 60_000 },
  );

  test("next build, then next start relays the search", { timeout: BUILD_TIMEOUT_MS + RUN_TIMEOUT_MS }, async () => {
    const build = await run("npx", ["next", "build"], { cwd: site, env, timeoutMs: BUILD_TIMEOUT_MS });
    assert.equal(build.status, 0, build.output);
    assertNoSecret(build.output, secrets);
    // The route is a function, never a prerendered file.
    assert.match(build.output, /ƒ \/api\/relay\/\[\.\.\.path\]/, build.output);
    const port = await freePort();
    const { answer, output } = await fetchFromServer("npx", ["next", "start", "-p", String(port)], {
      cwd: site,
      env,
      url: `http://127.0.0.1:${port}${SEARCH}`,
    });
    assertRelayed(answer, output);
    // The relay's own rules and error bodies, through the framework.
    assert.match(answer.headers.get("server-timing") ?? "", /upstream;dur=/);
  });

  test("next dev relays the search", { timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
    const port = await freePort();
    const { answer, output } = await fetchFromServer("npx", ["next", "dev", "-p", String(port)], {
      cwd: site,
      env,
      url: `http://127.0.0.1:${port}${SEARCH}`,
    });
    assertRelayed(answer, output);
  });

  for (const cli of VERCEL_CLIS) {
    test(`vercel dev (${cli}) runs next dev and relays the search, with the project's variables`, {
      timeout: RUN_TIMEOUT_MS + 10_000,
    }, async () => {
      // The site's variables only through the API stand-in, as `vercel dev` pulls them.
      const { answer, output } = await fetchThroughVercelDev(cli, site, {
        env: siteEnv({ NEXT_TELEMETRY_DISABLED: "1" }),
        vars,
        target: SEARCH,
        framework: "nextjs",
      });
      assertRelayed(answer, output);
    });
  }

  test("vercel build puts the platform package's .node and tokenrelay.toml in the route's function", {
    timeout: BUILD_TIMEOUT_MS + 10_000,
  }, async () => {
    mkdirSync(path.join(site, ".vercel"), { recursive: true });
    writeFileSync(
      path.join(site, ".vercel", "project.json"),
      `${JSON.stringify({ projectId: "prj_tokenrelay_next", orgId: "team_tokenrelay_local", settings: { framework: "nextjs" } })}\n`,
    );
    const build = await run(path.join(ROOT, "node_modules", ".bin", "vercel"), ["build", "--yes"], {
      cwd: site,
      env: { ...env, VERCEL_TELEMETRY_DISABLED: "1" },
      timeoutMs: BUILD_TIMEOUT_MS,
    });
    assert.equal(build.status, 0, build.output);
    assertNoSecret(build.output, secrets);
    const functions = path.join(site, ".vercel", "output", "functions");
    const func = filesEndingWith(functions, ".func").find((f) => f.startsWith(path.join("api", "relay")));
    assert.ok(func, `no function for the relay's route in ${filesEndingWith(functions, ".func").join(", ")}`);
    // What the relay needs at run time: the addon (traced by Next.js) and tokenrelay.toml
    // (traced in by init's outputFileTracingIncludes). Vercel deploys the files filePathMap names.
    const vc = JSON.parse(readFileSync(path.join(functions, func, ".vc-config.json"), "utf8"));
    const carried = Object.keys(vc.filePathMap ?? {});
    for (const needed of ["tokenrelay.toml", "node_modules/tokenrelay-linux-x64-gnu/tokenrelay.linux-x64-gnu.node"]) {
      assert.ok(
        carried.includes(needed),
        `${func} lacks ${needed}:\n${carried.filter((f) => f.includes("tokenrelay")).join("\n")}`,
      );
    }
  });
});

describe("Netlify Functions v2: the function init writes, from the packages and no Rust", () => {
  let site = "";
  /** @type {Record<string, string>} */
  let env = {};

  before(
    async () => {
      site = path.join(work, "netlify-functions");
      mkdirSync(path.join(site, "public"), { recursive: true });
      writeFileSync(path.join(site, "public", "index.html"), "<!doctype html><title>photos</title>\n");
      writeFileSync(path.join(site, "netlify.toml"), '[build]\npublish = "public"\n');
      writeFileSync(
        path.join(site, "package.json"),
        `${JSON.stringify({ name: "netlify-functions", private: true })}\n`,
      );
      env = siteEnv(vars);
      const install = await run(
        "npm",
        ["install", "--no-audit", "--no-fund", TARBALL.main, TARBALL.platform, "--save-dev", TARBALL.plugin],
        { cwd: site, env, timeoutMs: INSTALL_TIMEOUT_MS },
      );
      assert.equal(install.status, 0, install.output);
      const said = await init(site, env, ["--platform", "netlify", "--framework", "netlify-functions"]);
      assert.match(said, /create netlify\/functions\/relay\.mts/);
      // The plugin prefetches and scans, and leaves the route to the function, whose bundle must
      // carry the config and the addon (Netlify's tracer does not follow the loader's createRequire).
      const netlifyToml = readFileSync(path.join(site, "netlify.toml"), "utf8");
      assert.match(netlifyToml, /relayFunction = false/);
      assert.match(
        netlifyToml,
        /\[functions\.relay\]\nincluded_files = \["tokenrelay\.toml", .*tokenrelay-linux-x64-gnu\/\*\.node/,
      );
    },
    { timeout: INSTALL_TIMEOUT_MS + 60_000 },
  );

  test("netlify build zips the addon with the function, and the bundle relays as Lambda runs it", {
    timeout: BUILD_TIMEOUT_MS + RUN_TIMEOUT_MS,
  }, async () => {
    const build = await run(NETLIFY, ["build", "--offline"], { cwd: site, env, timeoutMs: BUILD_TIMEOUT_MS });
    assert.equal(build.status, 0, build.output);
    assertNoSecret(build.output, secrets);
    const zip = path.join(site, ".netlify", "functions", "relay.zip");
    assert.ok(existsSync(zip), `no relay.zip:\n${build.output}`);
    const listing = execFileSync("unzip", ["-Z1", zip], { encoding: "utf8" }).split("\n");
    for (const needed of ["tokenrelay.toml", "node_modules/tokenrelay-linux-x64-gnu/tokenrelay.linux-x64-gnu.node"]) {
      assert.ok(listing.includes(needed), `the zip lacks ${needed}:\n${listing.join("\n")}`);
    }

    // As Lambda does: the zip unpacked as the task root, the function's variables, nothing else.
    const root = path.join(work, "lambda-task");
    rmSync(root, { recursive: true, force: true });
    execFileSync("unzip", ["-q", zip, "-d", root]);
    const entry = path.join(root, "___netlify-entry-point.mjs");
    const bundle = await startBundle(entry, { cwd: root, env: { ...vars, LAMBDA_TASK_ROOT: root, PATH: env.PATH } });
    try {
      for (const visitor of ["203.0.113.5", "203.0.113.6"]) {
        const answer = await bundle.invoke({
          rawUrl: `https://site.example${SEARCH}`,
          httpMethod: "GET",
          headers: { host: "site.example", "x-nf-client-connection-ip": visitor },
          body: "",
          isBase64Encoded: false,
          flags: {},
        });
        assertRelayed({ status: answer.statusCode, body: answer.body }, bundle.output());
        assert.deepEqual(answer.headers["x-request-id"]?.length, 1);
      }
    } finally {
      bundle.stop();
    }
  });

  test("netlify dev relays the search through the same function", { timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
    const port = await freePort();
    const args = ["dev", "--offline", "--internal-disable-edge-functions", "--no-open", "--port", String(port)];
    const { answer, output } = await fetchFromServer(NETLIFY, args, {
      cwd: site,
      env,
      url: `http://127.0.0.1:${port}${SEARCH}`,
    });
    assertRelayed(answer, output);
  });
});
