// The `tokenrelay` command (crates/tokenrelay-node/bin/tokenrelay.js), run as
// a real process in a site directory, against stand-in-api's token endpoint
// and API, and redis-server behind upstash-local.
//
// Run: node --test tests/js/tokenrelay-cli.test.mjs

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { ROOT, startRedis, startStandInApi, startUpstashLocal, stopAll } from "./support/stand-ins.mjs";
import { run as runBounded } from "./support/process.mjs";
import { assertNoSecret as noSecret } from "./support/secrets.mjs";

const BIN = path.join(ROOT, "crates", "tokenrelay-node", "bin", "tokenrelay.js");
const TEST = { timeout: 20_000 };
const CLIENT = { clientId: "cli-client-93ab", clientSecret: "cli-secret-0d4f-not-for-logs" };

let work = "";
/** @type {Awaited<ReturnType<typeof startUpstashLocal>>} */
let upstash;
/** @type {Awaited<ReturnType<typeof startStandInApi>>} */
let api;
let site = "";
const key = randomBytes(32).toString("base64");

before(
  async () => {
    work = mkdtempSync(path.join(tmpdir(), "tokenrelay-cli-"));
    const redis = await startRedis(work);
    [upstash, api] = await Promise.all([startUpstashLocal(redis.port), startStandInApi(CLIENT)]);
    site = path.join(work, "site");
    mkdirSync(site);
    writeFileSync(
      path.join(site, "tokenrelay.toml"),
      `[upstreams.getty]\nbase_url = "${api.apiUrl}"\n\n[upstreams.getty.token]\ntype = "oauth2_client_credentials"\n` +
        `url = "${api.tokenUrl}"\nclient_id = { env = "GETTY_API_KEY" }\nclient_secret = { env = "GETTY_API_SECRET" }\n`,
    );
  },
  { timeout: 30_000 },
);

after(async () => {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
});

/**
 * Runs `tokenrelay ...args` in the site; resolves with status and output.
 * @param {string[]} args
 * @param {Record<string, string>} [overrides]
 * @returns {Promise<{ status: number | null, stdout: string, stderr: string }>}
 */
function tokenrelay(args, overrides = {}) {
  return run(process.execPath, [BIN, ...args], overrides);
}

/**
 * Runs `file args` in the site with its environment; resolves with status and output.
 * @param {string} file
 * @param {string[]} args
 * @param {Record<string, string>} [overrides]
 * @returns {Promise<{ status: number | null, stdout: string, stderr: string }>}
 */
function run(file, args, overrides = {}) {
  const env = {
    ...process.env,
    GETTY_API_KEY: CLIENT.clientId,
    GETTY_API_SECRET: CLIENT.clientSecret,
    UPSTASH_REDIS_REST_URL: upstash.url,
    UPSTASH_REDIS_REST_TOKEN: upstash.token,
    TOKENRELAY_ENCRYPTION_KEY: key,
    TOKENRELAY_LOCAL_STORE: path.join(work, "local-store"),
    TOKENRELAY_CONFIG: "",
    KV_REST_API_URL: "",
    STAND_IN_API_URL: api.apiUrl,
    ...overrides,
  };
  return runBounded(file, args, { cwd: site, env, timeoutMs: 15_000 });
}

/** @param {string} text @param {string[]} [more] */
function assertNoSecret(text, more = []) {
  noSecret(text, [CLIENT.clientSecret, upstash.token, key, ...more]);
}

/** @param {string} token */
async function apiAccepts(token) {
  const res = await fetch(`${api.apiUrl}/search/images?phrase=cats`, { headers: { authorization: `Bearer ${token}` } });
  return res.status === 200;
}

describe("tokenrelay prefetch", () => {
  test(
    "--print prints NAME=value lines on stdout for $GITHUB_ENV, and a summary without values on stderr",
    TEST,
    async () => {
      const { status, stdout, stderr } = await tokenrelay(["prefetch", "--print", "--env-var", "getty=GETTY_TOKEN"]);
      assert.equal(status, 0, stderr);
      const match = /^GETTY_TOKEN=(\S+)\n$/.exec(stdout);
      assert.ok(match, stdout);
      assert.ok(await apiAccepts(match[1]));
      assert.match(stderr, /^tokenrelay: getty: valid until \S+Z \((fetched|store)\), as GETTY_TOKEN$/m);
      assert.match(stderr, /^tokenrelay: store: upstash http:\/\/127\.0\.0\.1/m);
      assertNoSecret(stderr, [match[1]]);
    },
  );

  test("--write-env-file writes the variables to an owner-only file and prints none", TEST, async () => {
    const file = path.join(work, "tokens.env");
    const { status, stdout, stderr } = await tokenrelay(["prefetch", "--write-env-file", file]);
    assert.equal(status, 0, stderr);
    assert.equal(stdout, "");
    const text = readFileSync(file, "utf8");
    assert.match(text, /^TOKENRELAY_GETTY_TOKEN=\S+\n$/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(stderr, /wrote 1 variable\(s\) to /);
    assertNoSecret(stderr, [text.split("=")[1].trim()]);
  });

  test("-- COMMAND runs the build with the tokens in its environment and passes its exit status on", TEST, async () => {
    const probe = `const r = await fetch(process.env.STAND_IN_API_URL + "/search/images?phrase=x", { headers: { authorization: "Bearer " + process.env.TOKENRELAY_GETTY_TOKEN } }); process.exit(r.status === 200 ? 7 : 1);`;
    const { status, stdout, stderr } = await tokenrelay([
      "prefetch",
      "--",
      process.execPath,
      "--input-type=module",
      "-e",
      probe,
    ]);
    assert.equal(status, 7, stderr);
    assert.equal(stdout, "");
  });

  test("--scan DIR checks the command's output for the tokens it was given", TEST, async () => {
    const write = (/** @type {boolean} */ leak) =>
      `import { mkdirSync, writeFileSync } from "node:fs"; mkdirSync("public", { recursive: true }); ` +
      `writeFileSync("public/index.html", ${leak} ? "<p>" + process.env.TOKENRELAY_GETTY_TOKEN + "</p>" : "<p>ok</p>");`;
    const run = (/** @type {boolean} */ leak) =>
      tokenrelay(["prefetch", "--scan", "public", "--", process.execPath, "--input-type=module", "-e", write(leak)]);
    const clean = await run(false);
    assert.equal(clean.status, 0, clean.stderr);
    assert.match(clean.stderr, /scanned 1 file\(s\) for 5 secret\(s\): none found/);
    const leaky = await run(true);
    assert.equal(leaky.status, 1, leaky.stderr);
    assert.match(leaky.stderr, /^tokenrelay: public\/index\.html contains the token in \$TOKENRELAY_GETTY_TOKEN$/m);
  });

  test("a rejected credential exits 1 with the code and the variables to check", TEST, async () => {
    const wrong = "wrong-cli-secret-11aa";
    // Off the shared store: the token an earlier test stored there would be served whatever the secret.
    const { status, stdout, stderr } = await tokenrelay(["prefetch", "--no-warm-store"], {
      GETTY_API_SECRET: wrong,
      TOKENRELAY_LOCAL_STORE: path.join(work, "cold-store"),
    });
    assert.equal(status, 1);
    assert.equal(stdout, "");
    assert.match(
      stderr,
      /^tokenrelay: upstream "getty": token endpoint rejected the request: .*check the values of \$GETTY_API_KEY, \$GETTY_API_SECRET \[token_rejected\]$/m,
    );
    assertNoSecret(stderr, [wrong]);
  });

  test("without --print no token is printed, though stdout is a pipe (a CI log)", TEST, async () => {
    const { status, stdout, stderr } = await tokenrelay(["prefetch"]);
    assert.equal(status, 0, stderr);
    assert.equal(stdout, "");
    assert.match(stderr, /^tokenrelay: getty: valid until \S+Z \((fetched|store)\), as TOKENRELAY_GETTY_TOKEN$/m);
    assert.match(stderr, /^tokenrelay: tokens ready, none printed \(--print writes NAME=value lines on stdout\)$/m);
    assert.doesNotMatch(stdout + stderr, /TOKENRELAY_GETTY_TOKEN=/);
  });

  // util-linux `script` gives the command a terminal as its stdout.
  const hasScript = spawnSync("script", ["--version"]).status === 0;
  test("without --print no token is printed to a terminal either", {
    ...TEST,
    skip: !hasScript && "needs util-linux script",
  }, async () => {
    const { status, stdout } = await run("script", ["-qec", `${process.execPath} ${BIN} prefetch`, "/dev/null"]);
    assert.equal(status, 0, stdout);
    assert.match(stdout, /tokens ready, none printed/);
    assert.doesNotMatch(stdout, /TOKENRELAY_GETTY_TOKEN=/);
  });

  test("usage mistakes exit 2 with the usage", TEST, async () => {
    const mistakes = [
      ["prefetch", "--env-var", "nope"],
      ["prefetch", "--bogus"],
      ["prefetch", "--"],
      ["prefetch", "--scan", "out"],
      ["prefetch", "--print", "--write-env-file", "x.env"],
      ["prefetch", "--print", "--", "true"],
      ["launch"],
      [],
    ];
    for (const args of mistakes) {
      const { status, stderr } = await tokenrelay(args);
      assert.equal(status, 2, `${args}: ${stderr}`);
      assert.match(stderr, /usage:\n {2}tokenrelay prefetch/);
    }
  });
});

describe("tokenrelay check and scan", () => {
  test("check prints the config with secrets replaced by variable names; --json the same as data", TEST, async () => {
    const human = await tokenrelay(["check"]);
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /^ {2}token\.client_secret = \$GETTY_API_SECRET \(redacted\)$/m);
    assert.match(human.stdout, /\nok\n$/);
    assertNoSecret(human.stdout);
    const json = await tokenrelay(["check", "--json"]);
    assert.equal(JSON.parse(json.stdout).upstreams[0].credentials[1].value, "$GETTY_API_SECRET (redacted)");
  });

  test(
    "check lists every credential of a json source (headers and body) and of the relay's headers",
    TEST,
    async () => {
      const config = path.join(site, "json.toml");
      writeFileSync(
        config,
        `[upstreams.maps]\nbase_url = "${api.apiUrl}"\n\n[upstreams.maps.token]\ntype = "json"\nurl = "${api.tokenUrl}"\n` +
          `headers = { X-Client = { env = "GETTY_API_KEY" } }\nbody = { auth = { secret = { env = "GETTY_API_SECRET" } }, grant = "key" }\n` +
          `token_pointer = "/access_token"\ndefault_lifetime = "10m"\n\n` +
          `[upstreams.maps.relay]\nroutes = [{ path = "/search/**" }]\nheaders = { Api-Key = { env = "MAPS_RELAY_KEY" } }\n`,
      );
      const { status, stdout, stderr } = await tokenrelay(["check", "--config", config], {
        MAPS_RELAY_KEY: "relay-key-7c1d-secret",
      });
      assert.equal(status, 0, stderr);
      const listed = stdout.split("\n").filter((l) => l.startsWith("  token.") || l.startsWith("  relay."));
      assert.deepEqual(listed, [
        "  token.headers.X-Client = $GETTY_API_KEY (redacted)",
        "  token.body.auth.secret = $GETTY_API_SECRET (redacted)",
        "  relay.headers.api-key = $MAPS_RELAY_KEY (redacted)",
      ]);
      assertNoSecret(stdout, ["relay-key-7c1d-secret"]);
    },
  );

  test(
    "check refuses a later route that opens a caller route's paths to other methods, naming both routes",
    TEST,
    async () => {
      const config = path.join(site, "bypass.toml");
      const jwt = `caller = { jwt = { jwks_url = "https://id.example.com/jwks", issuer = "i", audience = "a" } }`;
      const upstream = `[upstreams.api]\nbase_url = "${api.apiUrl}"\ntoken = { type = "static", key = { env = "GETTY_API_KEY" } }\n\n`;
      writeFileSync(
        config,
        `${upstream}[upstreams.api.relay]\nroutes = [\n  { path = "/v1/me/**", ${jwt} },\n` +
          `  { path = "/v1/**", methods = ["GET", "POST", "HEAD"] },\n]\n`,
      );
      const refused = await tokenrelay(["check", "--config", config]);
      assert.equal(refused.status, 1, refused.stdout);
      assert.match(refused.stderr, /\[config_invalid\]/);
      assert.match(
        refused.stderr,
        /upstream "api": relay\.routes\[1\]: matches paths of relay\.routes\[0\] \("\/v1\/me\/\*\*", which has caller\) for POST, HEAD, which relay\.routes\[0\] does not allow/,
      );
      writeFileSync(
        config,
        `${upstream}[upstreams.api.relay]\nroutes = [\n  { path = "/v1/me/**", methods = ["GET", "POST", "HEAD"], ${jwt} },\n` +
          `  { path = "/v1/**", methods = ["GET", "POST", "HEAD"] },\n]\n`,
      );
      const guarded = await tokenrelay(["check", "--config", config]);
      assert.equal(guarded.status, 0, guarded.stderr);
    },
  );

  test("scan exits 1 naming file and variable when the output holds a secret, 0 when clean", TEST, async () => {
    const out = path.join(site, "out");
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, "index.html"), "<p>clean</p>");
    const clean = await tokenrelay(["scan", "out", "--token-var", "BUILD_TOKEN"], {
      BUILD_TOKEN: "tok_cli_0123456789",
    });
    assert.equal(clean.status, 0, clean.stderr);
    assert.match(clean.stderr, /scanned 1 file\(s\) for 5 secret\(s\): none found/);

    writeFileSync(path.join(out, "bundle.js"), "const t = 'tok_cli_0123456789';");
    const leaky = await tokenrelay(["scan", "out", "--token-var", "BUILD_TOKEN"], {
      BUILD_TOKEN: "tok_cli_0123456789",
    });
    assert.equal(leaky.status, 1);
    assert.match(leaky.stderr, /^tokenrelay: out\/bundle\.js contains the token in \$BUILD_TOKEN$/m);
    assertNoSecret(leaky.stderr, ["tok_cli_0123456789"]);

    rmSync(path.join(out, "bundle.js"));
    symlinkSync(path.join(site, "tokenrelay.toml"), path.join(out, "config.toml"));
    const linked = await tokenrelay(["scan", "out"]);
    assert.equal(linked.status, 1, linked.stderr);
    assert.match(linked.stderr, /^tokenrelay: out\/config\.toml links outside out, to \/.*tokenrelay\.toml$/m);
    assert.match(linked.stderr, /0 leak\(s\), 1 link\(s\) outside; remove the secrets and links from the output$/m);
  });

  test(
    "scan finds what a store integration sets beside tokenrelay's own: the read-only token, the redis:// URL and its password",
    TEST,
    async () => {
      const out = path.join(site, "out-store");
      mkdirSync(out, { recursive: true });
      const password = "redis-pw-4e2a-never-published";
      const url = `rediss://default:${password}@eu1-kv.upstash.io:6379`;
      // Upstash for Redis on the Vercel Marketplace sets the same URL under both names.
      const env = { KV_URL: url, REDIS_URL: url, KV_REST_API_READ_ONLY_TOKEN: "kv-read-only-8d1f-never-published" };
      writeFileSync(
        path.join(out, "readonly.js"),
        `fetch(u, { headers: { authorization: "Bearer ${env.KV_REST_API_READ_ONLY_TOKEN}" } });`,
      );
      writeFileSync(path.join(out, "url.json"), JSON.stringify({ redis: url }));
      writeFileSync(path.join(out, "password.txt"), encodeURIComponent(password));
      const { status, stderr } = await tokenrelay(["scan", "out-store"], env);
      assert.equal(status, 1, stderr);
      const leaks = stderr
        .split("\n")
        .filter((l) => l.includes(" contains "))
        .sort();
      assert.deepEqual(leaks, [
        "tokenrelay: out-store/password.txt contains the password in $KV_URL (shared store)",
        "tokenrelay: out-store/readonly.js contains $KV_REST_API_READ_ONLY_TOKEN (shared store)",
        "tokenrelay: out-store/url.json contains $KV_URL (shared store)",
        "tokenrelay: out-store/url.json contains the password in $KV_URL (shared store)",
      ]);
      assertNoSecret(stderr, [password, env.KV_REST_API_READ_ONLY_TOKEN]);
    },
  );
});

describe("tokenrelay cache purge", () => {
  /** One Upstash REST command against the test's store. @param {string[]} command */
  async function redis(command) {
    const res = await fetch(upstash.url, {
      method: "POST",
      headers: { authorization: `Bearer ${upstash.token}` },
      body: JSON.stringify(command),
    });
    return (await res.json()).result;
  }

  /** A config whose getty routes cache their answers. */
  function cachedConfig() {
    const file = path.join(work, "cached.toml");
    writeFileSync(
      file,
      readFileSync(path.join(site, "tokenrelay.toml"), "utf8") +
        `\n[upstreams.getty.relay]\nroutes = [{ path = "/search/**", cache = { ttl = "5m" } }]\n`,
    );
    return file;
  }

  test("records a purge of a path prefix in the shared store, for every instance to read", TEST, async () => {
    const { status, stderr } = await tokenrelay([
      "cache",
      "purge",
      "getty",
      "/search/images",
      "--config",
      cachedConfig(),
    ]);
    assert.equal(status, 0, stderr);
    assert.match(stderr, /^tokenrelay: purged getty below \/search\/images$/m);
    const record = JSON.parse(await redis(["GET", "tokenrelay:v1:cache:getty:purges"]));
    assert.ok(Math.abs(record["/search/images"] - Date.now()) < 10_000, JSON.stringify(record));
    const ttl = await redis(["PTTL", "tokenrelay:v1:cache:getty:purges"]);
    // As long as any entry can live (60 days), whatever this purger's own routes say.
    const sixtyDays = 60 * 24 * 3600 * 1000;
    assert.ok(ttl > sixtyDays - 60_000 && ttl <= sixtyDays, `the record lives as long as an entry can: ${ttl}`);
  });

  test("a whole-upstream purge, and clear errors for what cannot be purged", TEST, async () => {
    const config = cachedConfig();
    assert.equal((await tokenrelay(["cache", "purge", "getty", "--config", config])).status, 0);
    const record = JSON.parse(await redis(["GET", "tokenrelay:v1:cache:getty:purges"]));
    assert.ok("" in record && "/search/images" in record, JSON.stringify(record));

    const uncached = await tokenrelay(["cache", "purge", "getty"]);
    assert.equal(uncached.status, 1);
    assert.match(uncached.stderr, /no route of this upstream has a cache \[cache_purge_failed\]/);
    const unknown = await tokenrelay(["cache", "purge", "nope", "--config", config]);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /\[unknown_upstream\]/);
    const relative = await tokenrelay(["cache", "purge", "getty", "search", "--config", config]);
    assert.match(relative.stderr, /must start with '\/' \[cache_purge_failed\]/);
    assert.equal((await tokenrelay(["cache", "flush", "getty"])).status, 2);
  });
});

describe("tokenrelay status", () => {
  /** One Upstash REST command against the test's store. @param {string[]} command */
  async function redis(command) {
    const res = await fetch(upstash.url, {
      method: "POST",
      headers: { authorization: `Bearer ${upstash.token}` },
      body: JSON.stringify(command),
    });
    return (await res.json()).result;
  }

  test(
    "shows the token's times, the budget used and left, the upstream's cooldown, the shared rate buckets and the purges, never a secret; --json the same as data",
    TEST,
    async () => {
      const config = path.join(work, "budgeted.toml");
      writeFileSync(
        config,
        readFileSync(path.join(site, "tokenrelay.toml"), "utf8") +
          `\n[upstreams.getty.relay]\nbudget = { requests = 100, per = "1d" }\nrate_limit = { requests = 50, window = "1m" }\nroutes = [{ path = "/search/**" }]\n`,
      );
      const printed = await tokenrelay(["prefetch", "--print", "--config", config]);
      assert.equal(printed.status, 0, printed.stderr);
      const token = printed.stdout.slice(printed.stdout.indexOf("=") + 1).trim();
      const day = Math.floor(Date.now() / 86_400_000);
      await redis(["SET", `tokenrelay:v1:budget:getty:*:${day}`, "7", "PX", "60000"]);
      await redis(["SET", "tokenrelay:v1:cooldown:getty", String(Date.now() + 30_000), "PX", "30000"]);
      const purged = JSON.stringify({ "/search": Date.now() - 5_000 });
      await redis(["SET", "tokenrelay:v1:cache:getty:purges", purged, "PX", "60000"]);

      const json = await tokenrelay(["status", "getty", "--json", "--config", config]);
      assert.equal(json.status, 0, json.stderr);
      const [getty, ...others] = JSON.parse(json.stdout);
      assert.deepEqual(others, []);
      assert.equal(getty.upstream, "getty");
      assert.ok(getty.token.ageMs < 60_000 && getty.token.expiresInMs > 0, JSON.stringify(getty.token));
      assert.ok(Math.abs(getty.token.rotatedAtMs - Date.now()) < 60_000, JSON.stringify(getty.token));
      assert.deepEqual(
        [getty.token.mintedWith, getty.token.currentRefused, getty.token.hasPreviousSecret],
        ["current", false, false],
      );
      assert.equal(getty.token.currentAcceptedAtMs, getty.token.rotatedAtMs);
      assert.equal(getty.token.previousAcceptedAtMs, undefined, "no previous secret: the key is absent");
      const [budget] = getty.budgets;
      assert.deepEqual(
        [budget.route, budget.requests, budget.used, budget.left, budget.perMs],
        // The upstream's own budget has no route: the key is absent from the JSON.
        [undefined, 100, 7, 93, 86_400_000],
      );
      assert.ok(budget.resetsInMs > 0 && budget.resetsInMs <= 86_400_000, String(budget.resetsInMs));
      assert.ok(getty.cooldownMs > 20_000 && getty.cooldownMs <= 30_000, String(getty.cooldownMs));
      assert.deepEqual(getty.rateLimit, { windowMs: 60_000, crowd: 0, withoutAddress: 0 });
      assert.deepEqual(
        getty.purges.map((/** @type {{ prefix: string, ageMs: number }} */ p) => [p.prefix, p.ageMs >= 5_000]),
        [["/search", true]],
      );

      const text = await tokenrelay(["status", "--config", config]);
      assert.equal(text.status, 0, text.stderr);
      assert.match(text.stdout, /^upstream getty:$/m);
      assert.match(text.stdout, /^ {2}token: \d+s old, expires in \S+, rotated \S+Z$/m);
      assert.match(text.stdout, /^ {2}secret: minted with the current secret; current last accepted \S+Z$/m);
      assert.match(text.stdout, /^ {2}budget: 7 of 100 used, 93 left; resets in \S+$/m);
      assert.match(text.stdout, /^ {2}cooldown: \d+s left/m);
      assert.match(
        text.stdout,
        /^ {2}rate limit this window \(60s\): 0 request\(s\) in the crowd bucket .*, 0 without a client address$/m,
      );
      assert.match(text.stdout, /^ {2}cache purges: \/search \d+s ago$/m);
      for (const output of [json, text]) assertNoSecret(output.stdout + output.stderr, [token]);

      const unknown = await tokenrelay(["status", "nope", "--config", config]);
      assert.equal(unknown.status, 1);
      assert.match(unknown.stderr, /\[unknown_upstream\]/);
      assert.equal((await tokenrelay(["status", "a", "b"])).status, 2);
    },
  );
});
