// `tokenrelay init` (crates/tokenrelay-node/bin/init.js over the addon, over
// crates/tokenrelay-site/src/init), run as a real process on fixture sites
// under the OS temp directory: what it adds, that everything the user wrote
// survives byte for byte, that a second run changes nothing, that conflicts
// are refused naming file and conflict, and that no variable's value is ever printed.
//
// Run: node --test tests/js/init.test.mjs

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { ROOT } from "./support/stand-ins.mjs";
import { run } from "./support/process.mjs";
import { assertNoSecret } from "./support/secrets.mjs";

const BIN = path.join(ROOT, "crates", "tokenrelay-node", "bin", "tokenrelay.js");
const TEST = { timeout: 20_000 };
const PLUGIN_BLOCK =
  "# tokenrelay: prefetches API tokens for the build, adds the /api/relay/* function\n" +
  "# and its route, and fails the build if its output holds a secret.\n" +
  '[[plugins]]\npackage = "netlify-plugin-tokenrelay"\n';
/** Values in the environment and in the site's .env: none may ever be printed. */
const SECRETS = {
  EXAMPLE_CLIENT_ID: "client-id-5f1e-never-printed",
  EXAMPLE_CLIENT_SECRET: "client-secret-77c2-never-printed",
  TOKENRELAY_ENCRYPTION_KEY: "a2V5LW5ldmVyLXByaW50ZWQtOTk4OC1hYmNkZWZnaGlqa2w=",
  UPSTASH_REDIS_REST_URL: "https://upstash-never-printed.example",
  UPSTASH_REDIS_REST_TOKEN: "upstash-token-31aa-never-printed",
  KV_REST_API_URL: "https://kv-never-printed.example",
  KV_REST_API_TOKEN: "kv-token-8b0d-never-printed",
};
const DOTENV =
  Object.entries(SECRETS)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n") + "\n";

const work = mkdtempSync(path.join(tmpdir(), "tokenrelay-init-"));
after(() => rmSync(work, { recursive: true, force: true }));

/**
 * A fresh site directory holding `files`.
 * @param {string} name
 * @param {Record<string, string>} files
 */
function site(name, files) {
  const dir = path.join(work, name);
  mkdirSync(dir);
  for (const [file, text] of Object.entries({
    "index.html": "<!doctype html><title>site</title>\n",
    ".env": DOTENV,
    ...files,
  })) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

/** A site's files by relative path; `get` fails the test on a file that is not there. */
/** @extends {Map<string, string>} */
class Files extends Map {
  /**
   * @param {string} name
   * @returns {string}
   */
  get(name) {
    const text = super.get(name);
    assert.ok(text !== undefined, `${name} does not exist`);
    return text;
  }
}

/**
 * Every file under `dir`, by relative path, with its bytes (a symbolic link: where it points).
 * @param {string} dir
 * @returns {Files}
 */
function snapshot(dir, prefix = "") {
  const files = new Files();
  for (const name of readdirSync(path.join(dir, prefix)).sort()) {
    const rel = path.join(prefix, name);
    const stat = lstatSync(path.join(dir, rel));
    if (stat.isSymbolicLink()) files.set(rel, `-> ${readlinkSync(path.join(dir, rel))}`);
    else if (stat.isDirectory()) for (const [k, v] of snapshot(dir, rel)) files.set(k, v);
    else files.set(rel, readFileSync(path.join(dir, rel), "latin1"));
  }
  return files;
}

/**
 * Runs `tokenrelay init ...args` in `dir`, never on a terminal; asserts that
 * no secret value appears in its output. With `maxFileKiB`, no file it
 * writes may grow past that size (`ulimit -f`): a write fails midway, as on
 * a full disk.
 * @param {string} dir
 * @param {string[]} args
 * @param {Record<string, string>} [env]
 * @param {{ maxFileKiB?: number }} [limits]
 */
async function init(dir, args, env = {}, { maxFileKiB } = {}) {
  const command = [process.execPath, BIN, "init", ...args];
  const [file, ...argv] =
    maxFileKiB === undefined ? command : ["bash", "-c", `ulimit -f ${maxFileKiB} && exec "$@"`, "bash", ...command];
  const { status, stdout, stderr, output } = await run(file, argv, {
    cwd: dir,
    env: { ...process.env, NETLIFY: "", VERCEL: "", ...SECRETS, ...env },
    timeoutMs: 30_000,
  });
  assertNoSecret(output, Object.values(SECRETS), "init's output");
  return { status, stdout, stderr };
}

/**
 * Runs init twice: the second run must say so and change no byte.
 * @param {string} dir
 * @param {string[]} args
 */
async function initTwice(dir, args) {
  const first = await init(dir, args);
  assert.equal(first.status, 0, first.stderr);
  const written = snapshot(dir);
  const second = await init(dir, args);
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stdout, /already set up/);
  assert.deepEqual(snapshot(dir), written, "the second run changed a file");
  return { first, written };
}

describe("netlify", () => {
  test("a plain static site gets the config, .env.example, .gitignore and the plugin entry", TEST, async () => {
    const dir = site("static-netlify", {});
    const { first, written } = await initTwice(dir, ["--platform", "netlify", "--yes"]);
    assert.equal(written.get("netlify.toml"), PLUGIN_BLOCK);
    assert.match(written.get("tokenrelay.toml"), /type = "oauth2_client_credentials"/);
    assert.match(written.get("tokenrelay.toml"), /routes = \[/);
    for (const name of [
      "EXAMPLE_CLIENT_ID",
      "EXAMPLE_CLIENT_SECRET",
      "TOKENRELAY_ENCRYPTION_KEY",
      "UPSTASH_REDIS_REST_URL",
      "UPSTASH_REDIS_REST_TOKEN",
    ]) {
      assert.match(written.get(".env.example"), new RegExp(`^${name}=$`, "m"));
      assert.match(first.stdout, new RegExp(`${name} +\\[Builds, Functions\\]`));
    }
    assert.match(written.get(".gitignore"), /^\.env$/m);
    assert.match(written.get(".gitignore"), /^\.netlify$/m);
    assert.match(first.stdout, /install the plugin: npm install --save-dev netlify-plugin-tokenrelay/);
    assert.ok(!written.has("netlify/functions"), "a Netlify site needs no function source");
  });

  test("an existing netlify.toml keeps every setting and comment; only the plugin entry is added", TEST, async () => {
    const netlifyToml = [
      "# Our site: built by Astro.",
      "[build]",
      'command = "astro build"   # keep this comment',
      'publish = "dist"',
      "",
      "[[redirects]]",
      'from = "/*"',
      'to = "/index.html"',
      "status = 200",
      "",
      "[[headers]]",
      '  for = "/*"',
      "  [headers.values]",
      '    X-Frame-Options = "DENY"',
      "",
      "# Lighthouse runs after every deploy.",
      "[[plugins]]",
      'package = "@netlify/plugin-lighthouse"',
      "  [plugins.inputs]",
      '  output_path = "reports/lighthouse.html"',
      "",
    ].join("\n");
    const gitignore = "node_modules\ndist/\n";
    const dir = site("existing-netlify", {
      "netlify.toml": netlifyToml,
      ".gitignore": gitignore,
      "package.json": JSON.stringify({ devDependencies: { "netlify-plugin-tokenrelay": "^0.1.0" } }),
    });
    const { first, written } = await initTwice(dir, ["--yes"]);
    assert.match(first.stdout, /for netlify \(from netlify\.toml\)/);
    assert.equal(written.get("netlify.toml"), `${netlifyToml}\n${PLUGIN_BLOCK}`);
    assert.equal(
      written.get(".gitignore"),
      `${gitignore}\n# tokenrelay (added by \`npx tokenrelay init\`)\n.env\n.netlify\n`,
    );
    assert.ok(!first.stdout.includes("install the plugin"), "the plugin is already a dependency");
  });

  test("an existing /api/relay/* rule is refused, naming file and rule, and nothing is written", TEST, async () => {
    const dir = site("conflict-netlify", {
      "netlify.toml": '[[redirects]]\nfrom = "/api/relay/*"\nto = "/.netlify/functions/other/:splat"\nstatus = 200\n',
    });
    const before = snapshot(dir);
    const { status, stderr } = await init(dir, ["--yes"]);
    assert.equal(status, 1);
    assert.match(
      stderr,
      /netlify\.toml: \[\[redirects\]\] from = "\/api\/relay\/\*" already routes \/api\/relay\/\*.*\[init_conflict\]/,
    );
    assert.deepEqual(snapshot(dir), before);
  });

  test("a redirect that merely starts like the mount (/api/relay-status) is no conflict", TEST, async () => {
    const own = '[[redirects]]\nfrom = "/api/relay-status"\nto = "/.netlify/functions/status"\nstatus = 200\n';
    const dir = site("relay-status-netlify", { "netlify.toml": own });
    const { written } = await initTwice(dir, ["--yes"]);
    assert.equal(written.get("netlify.toml"), `${own}\n${PLUGIN_BLOCK}`);
  });
});

describe("writing", () => {
  test("a write that fails midway leaves every file of the site as it was", TEST, async () => {
    // A netlify.toml larger than the file size limit: the starter config,
    // .env.example and .gitignore fit, the merged netlify.toml does not.
    const netlifyToml = `[build]\npublish = "dist"\n${"# a long comment the site keeps\n".repeat(2048)}`;
    const dir = site("fails-midway", { "netlify.toml": netlifyToml, ".gitignore": "node_modules\n" });
    const before = snapshot(dir);
    const { status, stderr } = await init(dir, ["--yes"], {}, { maxFileKiB: 48 });
    assert.equal(status, 1, stderr);
    assert.match(stderr, /netlify\.toml: cannot be written: .*; nothing was changed \[init_failed\]/);
    assert.deepEqual(snapshot(dir), before, "a file changed, or a temporary file was left behind");
  });

  for (const file of ["tokenrelay.toml", ".env.example"]) {
    test(`a dangling ${file} link is refused, and nothing is created where it points`, TEST, async () => {
      const dir = site(`link-${file}`, { "netlify.toml": "" });
      const target = path.join(work, `outside-${file}`);
      symlinkSync(target, path.join(dir, file));
      const before = snapshot(dir);
      const { status, stderr } = await init(dir, ["--yes"]);
      assert.equal(status, 1);
      assert.match(
        stderr,
        new RegExp(
          `${file.replace(".", "\\.")}: is a symbolic link, and init writes no file through one.*\\[init_failed\\]`,
        ),
      );
      assert.ok(!existsSync(target), `init created ${target}`);
      assert.deepEqual(snapshot(dir), before);
    });
  }

  test("a variable name that would inject lines into .env.example is refused, naming it", TEST, async () => {
    const config =
      '[upstreams.x]\nbase_url = "https://api.example"\ntoken = { type = "static", key = { env = "API_KEY\\nINJECTED=1" } }\n';
    const dir = site("bad-variable", { "netlify.toml": "", "tokenrelay.toml": config });
    const before = snapshot(dir);
    const { status, stderr } = await init(dir, ["--yes"]);
    assert.equal(status, 1, stderr);
    assert.match(
      stderr,
      /tokenrelay\.toml: \{ env = "API_KEY\\nINJECTED=1" \} \(.*\) is not an environment variable name \(\[A-Za-z_\]\[A-Za-z0-9_\]\*\).*\[init_failed\]/,
    );
    assert.deepEqual(snapshot(dir), before);
  });
});

describe("vercel", () => {
  const vercelJson = `{
  "buildCommand": "next build",
  "rewrites": [
    { "source": "/blog/:slug", "destination": "/posts/:slug" },
    { "source": "/(.*)", "destination": "/index.html" }
  ],
  "headers": [
    {
      "source": "/(.*)",
      "headers": [{ "key": "X-Frame-Options", "value": "DENY" }]
    }
  ]
}
`;
  const cargoToml = `# Our own Rust functions.
[package]
name = "our-functions"
version = "0.3.0"
edition = "2021"

[[bin]]
name = "hello"
path = "api/hello.rs"

[dependencies]
serde = { version = "1", features = ["derive"] } # for api/hello.rs
`;

  test(
    "existing vercel.json and Cargo.toml keep every setting; the function, rewrite and [[bin]] are added",
    TEST,
    async () => {
      const dir = site("existing-vercel", {
        "vercel.json": vercelJson,
        "Cargo.toml": cargoToml,
        "api/hello.rs": "fn main() {}\n",
      });
      const { first, written } = await initTwice(dir, ["--yes"]);
      assert.match(first.stdout, /for vercel \(from vercel\.json\)/);

      const json = JSON.parse(written.get("vercel.json"));
      assert.deepEqual(json.rewrites[0], { source: "/api/relay/:path*", destination: "/api/relay" });
      assert.deepEqual(json.functions, { "api/relay.rs": { includeFiles: "tokenrelay.toml" } });
      const original = JSON.parse(vercelJson);
      assert.deepEqual(
        { ...json, rewrites: json.rewrites.slice(1), functions: undefined },
        { ...original, functions: undefined },
      );
      // The user's text, untouched: both rewrites on their own lines, the headers block as written.
      assert.ok(
        written
          .get("vercel.json")
          .includes(vercelJson.slice(vercelJson.indexOf('    { "source": "/blog'), vercelJson.indexOf("\n  ],"))),
      );
      assert.ok(
        written
          .get("vercel.json")
          .includes(vercelJson.slice(vercelJson.indexOf('  "headers"'), vercelJson.lastIndexOf("]") + 1)),
      );

      const version = JSON.parse(readFileSync(path.join(ROOT, "crates/tokenrelay-node/package.json"), "utf8")).version;
      assert.equal(
        written.get("Cargo.toml"),
        cargoToml
          // The new [[bin]] goes after the user's, the dependency after theirs.
          .replace(
            'path = "api/hello.rs"\n',
            'path = "api/hello.rs"\n\n# The Vercel function /api/relay (npx tokenrelay init).\n[[bin]]\nname = "relay"\npath = "api/relay.rs"\n',
          )
          .replace(
            "# for api/hello.rs\n",
            `# for api/hello.rs\ntokenrelay = { version = "${version}", features = ["vercel"] }\n`,
          ),
      );
      assert.equal(written.get("api/relay.rs"), readFileSync(path.join(ROOT, "api/relay.rs"), "latin1"));
      assert.equal(written.get("api/hello.rs"), "fn main() {}\n");
      for (const name of ["EXAMPLE_CLIENT_ID", "TOKENRELAY_ENCRYPTION_KEY", "KV_REST_API_URL", "KV_REST_API_TOKEN"]) {
        assert.match(first.stdout, new RegExp(`${name} +\\[Production, Preview, Development\\]`));
      }
      assert.match(first.stdout, /Upstash for Redis from the Vercel Marketplace/);
    },
  );

  test("a plain static site gets a new Cargo.toml and vercel.json", TEST, async () => {
    const dir = site("static-vercel", {});
    const { written } = await initTwice(dir, ["--platform", "vercel", "--yes"]);
    assert.match(written.get("Cargo.toml"), /^\[package\]\nname = "static-vercel-api"/m);
    assert.match(written.get("Cargo.toml"), /^tokenrelay = \{ version = "[^"]+", features = \["vercel"\] \}$/m);
    const json = JSON.parse(written.get("vercel.json"));
    assert.deepEqual(json.rewrites, [{ source: "/api/relay/:path*", destination: "/api/relay" }]);
    assert.match(written.get(".gitignore"), /^\/target$/m);
  });

  test(
    "a fresh site gets a .vercelignore keeping target/, .env and .netlify out of vercel dev and deploy",
    TEST,
    async () => {
      const dir = site("vercelignore-fresh", {});
      const { first, written } = await initTwice(dir, ["--platform", "vercel", "--yes"]);
      assert.match(first.stdout, /create \.vercelignore: ignores \/target, \.env, \.netlify/);
      assert.equal(
        written.get(".vercelignore"),
        "# Never uploaded by `vercel deploy` nor served by `vercel dev` (npx tokenrelay init):\n" +
          "# cargo's output (the relay's binary), local secrets, Netlify's local state.\n" +
          "/target\n.env\n.netlify\n",
      );
    },
  );

  test("an existing .vercelignore keeps every line and gains only the missing entries", TEST, async () => {
    const own = "# Not deployed.\nnode_modules\n/.env\ndocs/";
    const dir = site("vercelignore-merged", { "vercel.json": "{}\n", ".vercelignore": own });
    const { first, written } = await initTwice(dir, ["--yes"]);
    assert.match(first.stdout, /update \.vercelignore: ignores \/target, \.netlify/);
    assert.equal(
      written.get(".vercelignore"),
      `${own}\n\n# tokenrelay (added by \`npx tokenrelay init\`)\n/target\n.netlify\n`,
    );
  });

  test("a rewrite that already claims /api/relay is refused, naming file and rewrite", TEST, async () => {
    const dir = site("conflict-vercel", {
      "vercel.json": '{ "rewrites": [{ "source": "/api/relay/:path*", "destination": "/api/proxy" }] }\n',
    });
    const before = snapshot(dir);
    const { status, stderr } = await init(dir, ["--yes"]);
    assert.equal(status, 1);
    assert.match(
      stderr,
      /vercel\.json: the rewrite "\/api\/relay\/:path\*" → "\/api\/proxy" already claims \/api\/relay.*\[init_conflict\]/,
    );
    assert.deepEqual(snapshot(dir), before);
  });

  test("a rewrite that merely starts like the mount (/api/relay-status) is no conflict", TEST, async () => {
    const dir = site("relay-status-vercel", {
      "vercel.json": '{ "rewrites": [{ "source": "/api/relay-status", "destination": "/api/status" }] }\n',
    });
    const { written } = await initTwice(dir, ["--yes"]);
    assert.deepEqual(JSON.parse(written.get("vercel.json")).rewrites, [
      { source: "/api/relay/:path*", destination: "/api/relay" },
      { source: "/api/relay-status", destination: "/api/status" },
    ]);
  });

  test("an api/relay.rs of the user's own is refused", TEST, async () => {
    const dir = site("conflict-function", {
      "vercel.json": "{}\n",
      "api/relay.rs": 'fn main() { println!("mine"); }\n',
    });
    const { status, stderr } = await init(dir, ["--yes"]);
    assert.equal(status, 1);
    assert.match(stderr, /api\/relay\.rs: exists and does not call tokenrelay::vercel::run/);
  });

  test("this repository's root is already set up the way init sets up a site", TEST, async () => {
    const dir = path.join(work, "repository-root");
    mkdirSync(dir);
    for (const file of [
      "vercel.json",
      "Cargo.toml",
      "api/relay.rs",
      "tokenrelay.toml",
      ".gitignore",
      ".vercelignore",
      ".env.example",
    ]) {
      cpSync(path.join(ROOT, file), path.join(dir, file));
    }
    const { status, stdout, stderr } = await init(dir, ["--platform", "vercel", "--yes"]);
    assert.equal(status, 0, stderr);
    assert.match(stdout, /already set up/, stdout);
  });
});

describe("choosing", () => {
  test("without a platform to detect, init asks for --platform and writes nothing", TEST, async () => {
    const dir = site("unknown", {});
    const before = snapshot(dir);
    const { status, stderr } = await init(dir, ["--yes"]);
    assert.equal(status, 1);
    assert.match(stderr, /--platform netlify or --platform vercel \[init_platform_unknown\]/);
    assert.deepEqual(snapshot(dir), before);
  });

  test("the platform's build environment decides when the site has neither file", TEST, async () => {
    const dir = site("in-netlify-build", {});
    const { status, stdout } = await init(dir, ["--yes"], { NETLIFY: "true" });
    assert.equal(status, 0);
    assert.match(stdout, /for netlify \(from NETLIFY\)/);
  });

  test("without --yes and without a terminal, init shows the changes and writes nothing", TEST, async () => {
    const dir = site("no-terminal", { "netlify.toml": '[build]\npublish = "dist"\n' });
    const before = snapshot(dir);
    const { status, stdout, stderr } = await init(dir, []);
    assert.equal(status, 2);
    assert.match(stdout, /update netlify\.toml: \[\[plugins\]\] package = "netlify-plugin-tokenrelay"/);
    assert.match(stderr, /pass --yes/);
    assert.deepEqual(snapshot(dir), before);
  });
});
