#!/usr/bin/env node
// The `tokenrelay` command, for builds outside Netlify (Vercel, GitHub
// Actions, any CI): a thin argument parser over the addon's functions.

import { spawn } from "node:child_process";
import { closeSync, fchmodSync, openSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

import {
  check,
  describeToken,
  prefetch,
  purgeCache,
  report,
  scanForLeaks,
  sendTestAlert,
  status,
  TokenrelayError,
} from "../index.js";
import { runInit } from "./init.js";

const USAGE = `usage:
  tokenrelay prefetch [options] [--print | --write-env-file PATH | [--scan DIR] -- COMMAND [ARGS...]]
      Fetches (or reuses) the tokens through the shared store, each valid for
      at least the build margin, then runs COMMAND with them in its
      environment, writes them to PATH (mode 600), or, only with --print,
      prints NAME=value lines on stdout (e.g. >> "$GITHUB_ENV"). With none of
      these it only warms the store: CI logs are often public. (Not
      --env-file: Node takes that flag as its own wherever it appears,
      on 22 and 24 alike.)
        --upstream NAME          only this upstream (repeatable; default: all)
        --env-var UPSTREAM=NAME  the variable of UPSTREAM's token (repeatable;
                                 default: TOKENRELAY_<UPSTREAM>_TOKEN for each)
        --build-margin DURATION  minimum remaining validity (default 15m)
        --no-warm-store          keep off the shared store (local file store only)
        --scan DIR               after COMMAND succeeds, fail (exit 1) if DIR holds
                                 a token or secret (see scan)
  tokenrelay init [--platform netlify|vercel] [--framework NAME] [--yes]
      Adds tokenrelay to the site: a starter tokenrelay.toml, .env.example,
      and what the platform needs merged into netlify.toml or vercel.json,
      Cargo.toml, api/relay.rs and .vercelignore (Vercel), and .gitignore,
      keeping everything else as it is. Shows the changes and asks first
      (--yes: don't ask), then lists the variables to set, by name and scope.
      The platform is detected from netlify.toml / vercel.json or the build's
      environment when not given.
      --framework next|astro|sveltekit|netlify-functions: the site's framework
      serves the relay (tokenrelay/fetch) from a route file init writes where
      none is, instead of the platform's Rust function.
      A second run changes nothing and says "already set up".
  tokenrelay check [--json]
      Validates the config and store settings; prints them with secrets redacted.
  tokenrelay cache purge UPSTREAM [PATH-PREFIX]
      Forgets UPSTREAM's cached answers (routes with cache = { ttl = ... })
      whose path is PATH-PREFIX or below it (e.g. /search/images), or all of
      them, in every instance sharing the store (within 1s).
  tokenrelay status [UPSTREAM] [--json]
      Shows what the shared store holds of UPSTREAM (or of every upstream),
      never a secret: the token's age, time left and last rotation, each
      budget's calls used and left in its window, any cooldown the
      upstream asked for (429 with Retry-After), the rate limit's shared
      buckets this window, the cache's purges, and per route the usage
      meter's last hour and last day: upstream calls, cache answers,
      answers by status class, refusals by code, token fetches and
      failures, latency (p50/p95) and distinct clients.
  tokenrelay report --out FILE
      Writes the usage report: one self-contained HTML page (no script or
      font fetched) of charts of calls, cache answers and refusals over the
      last 24 hours and 7 days, each budget's burn-down, token rotations
      and failures, the upstream's latency, and the top refusal codes and routes.
  tokenrelay alert test
      Posts a test event to the [alerts] webhook (Slack or Discord), to check
      that alerts arrive; fails with alert_failed if it is not accepted.
  tokenrelay scan DIR [--token-var NAME...]
      Fails (exit 1) if a file under DIR holds the value of a token variable,
      an upstream credential or a store secret (also escaped, base64-encoded
      or compressed), or if a symbolic link under DIR points outside it;
      names file and variable only.

common options:
  --config PATH   the config file (default: $TOKENRELAY_CONFIG or ./tokenrelay.toml)
  --cwd DIR       the site's directory (default: the current directory)
  -h, --help      this help`;

/** A usage mistake: exit status 2. */
class UsageError extends Error {}

const COMMON = /** @type {const} */ ({
  config: { type: "string" },
  cwd: { type: "string" },
  help: { type: "boolean", short: "h" },
});

/**
 * Runs a `parseArgs` call, turning its errors into usage errors.
 * @template T
 * @param {() => T} parse
 * @returns {T}
 */
function parsing(parse) {
  try {
    return parse();
  } catch (err) {
    throw new UsageError(/** @type {Error} */ (err).message);
  }
}

/** @param {{ config?: string, cwd?: string }} values */
function site(values) {
  return { configPath: values.config, cwd: values.cwd };
}

/** @param {string[]} args */
async function runPrefetch(args) {
  const split = args.indexOf("--");
  const [own, command] = split === -1 ? [args, []] : [args.slice(0, split), args.slice(split + 1)];
  const options = /** @type {const} */ ({
    ...COMMON,
    upstream: { type: "string", multiple: true },
    "env-var": { type: "string", multiple: true },
    "build-margin": { type: "string" },
    "no-warm-store": { type: "boolean" },
    print: { type: "boolean" },
    "write-env-file": { type: "string" },
    scan: { type: "string" },
  });
  const { values } = parsing(() => parseArgs({ args: own, options, strict: true }));
  if (values.help) return usage();
  if (split !== -1 && command.length === 0) throw new UsageError("nothing to run after --");
  const outputs = [
    values.print && "--print",
    values["write-env-file"] && "--write-env-file",
    command.length > 0 && "-- COMMAND",
  ];
  if (outputs.filter(Boolean).length > 1)
    throw new UsageError(`use one of ${outputs.filter(Boolean).join(", ")}, not several`);
  if (values.scan && command.length === 0) throw new UsageError("--scan needs a -- COMMAND whose output it scans");

  /** @type {Record<string, string> | undefined} */
  let envVars;
  for (const pair of values["env-var"] ?? []) {
    const eq = pair.indexOf("=");
    if (eq < 1) throw new UsageError(`--env-var ${JSON.stringify(pair)}: expected UPSTREAM=NAME`);
    envVars = { ...envVars, [pair.slice(0, eq)]: pair.slice(eq + 1) };
  }
  const report = await prefetch({
    ...site(values),
    upstreams: values.upstream,
    envVars,
    buildMargin: values["build-margin"],
    warmStore: !values["no-warm-store"],
  });
  for (const t of report.tokens) process.stderr.write(`tokenrelay: ${describeToken(t)}\n`);
  process.stderr.write(`tokenrelay: store: ${report.store}\n`);

  if (command.length > 0) {
    const status = await runWith(command, report.env);
    if (status !== 0 || !values.scan) return status;
    return scan(values.scan, { ...site(values), env: report.env, tokenVars: Object.keys(report.env) });
  }
  if (!values.print && !values["write-env-file"]) {
    process.stderr.write("tokenrelay: tokens ready, none printed (--print writes NAME=value lines on stdout)\n");
    return 0;
  }
  const lines = Object.entries(report.env).map(([name, value]) => {
    // One variable per line is the whole format of $GITHUB_ENV and .env files.
    if (/[\r\n]/.test(value)) {
      throw new TokenrelayError(
        "token_response_invalid",
        `the token in ${name} contains a line break and cannot be written as NAME=value`,
      );
    }
    return `${name}=${value}\n`;
  });
  const file = values["write-env-file"];
  if (file) {
    // Owner-only before the first byte, also when the file already existed.
    const fd = openSync(file, "w", 0o600);
    try {
      fchmodSync(fd, 0o600);
      writeFileSync(fd, lines.join(""));
    } finally {
      closeSync(fd);
    }
    process.stderr.write(`tokenrelay: wrote ${lines.length} variable(s) to ${file}\n`);
  } else {
    process.stdout.write(lines.join(""));
  }
  return 0;
}

/**
 * Runs `command` with `env` added to this process's environment; resolves
 * with its exit status.
 * @param {string[]} command
 * @param {Record<string, string>} env
 * @returns {Promise<number>}
 */
function runWith([file, ...args], env) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: "inherit", env: { ...process.env, ...env } });
    child.once("error", (/** @type {Error} */ err) => reject(new UsageError(`cannot run ${file}: ${err.message}`)));
    child.once("exit", (/** @type {number | null} */ code) => resolve(code ?? 1));
  });
}

/** @param {string[]} args */
async function runCheck(args) {
  const options = /** @type {const} */ ({ ...COMMON, json: { type: "boolean" } });
  const { values } = parsing(() => parseArgs({ args, options, strict: true }));
  if (values.help) return usage();
  const summary = await check(site(values));
  if (values.json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return 0;
  }
  const lines = [`config: ${summary.file}`, `store: ${summary.store}${summary.sharedStore ? "" : " (not shared)"}`];
  for (const u of summary.upstreams) {
    lines.push(
      `upstream ${u.name}: ${u.baseUrl}`,
      `  token: ${u.tokenSource}${u.tokenUrl ? ` from ${u.tokenUrl}` : ""}`,
    );
    for (const c of u.credentials) lines.push(`  ${c.field} = ${c.value}`);
  }
  process.stdout.write(`${lines.join("\n")}\nok\n`);
  return 0;
}

/** @param {string[]} args */
async function runCache(args) {
  const { values, positionals } = parsing(() =>
    parseArgs({ args, options: COMMON, allowPositionals: true, strict: true }),
  );
  if (values.help) return usage();
  const [action, upstream, prefix, ...rest] = positionals;
  if (action !== "purge")
    throw new UsageError(action ? `unknown cache action ${JSON.stringify(action)}` : "cache needs an action: purge");
  if (!upstream || rest.length > 0) throw new UsageError("cache purge takes an upstream and an optional path prefix");
  await purgeCache(upstream, prefix, site(values));
  process.stderr.write(`tokenrelay: purged ${upstream}${prefix ? ` below ${prefix}` : ""}\n`);
  return 0;
}

/** @param {number} ms */
function duration(ms) {
  const s = Math.ceil(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * Which secret minted the stored token, and when each was last accepted.
 * @param {import("../index.d.ts").TokenStatus} t
 */
function formatSecrets(t) {
  const at = (/** @type {number | null | undefined} */ ms) =>
    ms == null ? "not since this token's record began" : new Date(ms).toISOString();
  /** @type {Record<string, string>} */
  const says = {
    current: "minted with the current secret",
    previous: t.currentRefused
      ? "minted with the PREVIOUS secret: the current one was refused, so the previous one is still in use; fix the current secret before revoking the previous one"
      : "minted with the previous secret before the current one was deployed (the next rotation tries the current one)",
    other: "minted with a secret this config no longer names (the next rotation tries the current one)",
  };
  const minted = says[t.mintedWith];
  const previous = t.hasPreviousSecret ? `; previous last accepted ${at(t.previousAcceptedAtMs)}` : "";
  return `${minted ?? t.mintedWith}; current last accepted ${at(t.currentAcceptedAtMs)}${previous}`;
}

/**
 * The text `tokenrelay status` prints for `all`.
 * @param {import("../index.d.ts").UpstreamStatus[]} all
 */
function formatStatus(all) {
  const lines = [];
  for (const u of all) {
    lines.push(`upstream ${u.upstream}:`);
    const t = u.token;
    lines.push(
      t
        ? `  token: ${duration(t.ageMs)} old, ${t.expiresInMs == null ? "no expiry given" : `expires in ${duration(t.expiresInMs)}`}, rotated ${new Date(t.rotatedAtMs).toISOString()}`
        : "  token: none stored (or a static key)",
    );
    if (t) lines.push(`  secret: ${formatSecrets(t)}`);
    for (const b of u.budgets) {
      lines.push(
        `  budget${b.route ? ` ${b.route}` : ""}: ${b.used} of ${b.requests} used, ${b.left} left; resets in ${duration(b.resetsInMs)}`,
      );
    }
    lines.push(
      u.cooldownMs == null
        ? "  cooldown: none"
        : `  cooldown: ${duration(u.cooldownMs)} left (the upstream asked to wait)`,
    );
    for (const c of u.routeCooldowns) {
      lines.push(`  cooldown ${c.route}: ${duration(c.cooldownMs)} left (the upstream refused a call there)`);
    }
    const { crowd, withoutAddress, windowMs } = u.rateLimit;
    lines.push(
      `  rate limit this window (${duration(windowMs)}): ${crowd} request(s) in the crowd bucket (clients past the 10,000 an instance tracks), ${withoutAddress} without a client address`,
    );
    const purges = u.purges.map(
      (/** @type {import("../index.d.ts").PurgeStatus} */ p) => `${p.prefix || "everything"} ${duration(p.ageMs)} ago`,
    );
    lines.push(`  cache purges: ${purges.length ? purges.join(", ") : "none"}`);
    for (const r of u.usage) {
      const hour = formatUsage(r.lastHour);
      const day = formatUsage(r.lastDay);
      if (hour || day)
        lines.push(
          `  usage ${r.route ?? "(no route)"}:`,
          `    last hour: ${hour || "nothing"}`,
          `    last day: ${day || "nothing"}`,
        );
    }
  }
  return `${lines.join("\n")}\n`;
}

/**
 * One span of the usage meter as a line; "" when nothing was counted.
 * @param {import("../index.d.ts").Usage} u
 */
function formatUsage(u) {
  const c = u.cache;
  const cached = c.memory + c.store + c.collapsed + c.stale + c.staleIfError;
  const answers = Object.values(u.statuses).reduce((a, b) => a + b, 0);
  if (answers === 0 && u.calls === 0) return "";
  const parts = [
    `${answers} answer(s) (${Object.entries(u.statuses)
      .map(([k, n]) => `${n} ${k}`)
      .join(", ")})`,
  ];
  parts.push(`${u.calls} upstream call(s)`);
  if (cached)
    parts.push(
      `${cached} from the cache (${c.memory} memory, ${c.store} store, ${c.collapsed} collapsed, ${c.stale} stale, ${c.staleIfError} stale-if-error)`,
    );
  const refusals = Object.entries(u.refusals).map(([code, n]) => `${n} ${code}`);
  if (refusals.length) parts.push(`errors: ${refusals.join(", ")}`);
  if (u.tokenFetches || u.tokenFailures) parts.push(`${u.tokenFetches} token fetch(es), ${u.tokenFailures} failed`);
  if (u.latency.p50Ms != null) parts.push(`latency p50 ≤${u.latency.p50Ms}ms, p95 ≤${u.latency.p95Ms}ms`);
  parts.push(`${u.clients} client(s)`);
  return parts.join("; ");
}

/** @param {string[]} args */
async function runStatus(args) {
  const options = /** @type {const} */ ({ ...COMMON, json: { type: "boolean" } });
  const { values, positionals } = parsing(() => parseArgs({ args, options, allowPositionals: true, strict: true }));
  if (values.help) return usage();
  if (positionals.length > 1) throw new UsageError("status takes at most one upstream");
  const all = await status(positionals[0], site(values));
  process.stdout.write(values.json ? `${JSON.stringify(all, null, 2)}\n` : formatStatus(all));
  return 0;
}

/** @param {string[]} args */
async function runReport(args) {
  const options = /** @type {const} */ ({ ...COMMON, out: { type: "string" } });
  const { values, positionals } = parsing(() => parseArgs({ args, options, allowPositionals: true, strict: true }));
  if (values.help) return usage();
  if (positionals.length > 0 || !values.out) throw new UsageError("report takes --out FILE and no other argument");
  writeFileSync(values.out, await report(site(values)));
  process.stderr.write(`tokenrelay: wrote the usage report to ${values.out}\n`);
  return 0;
}

/** @param {string[]} args */
async function runAlert(args) {
  const { values, positionals } = parsing(() =>
    parseArgs({ args, options: COMMON, allowPositionals: true, strict: true }),
  );
  if (values.help) return usage();
  if (positionals.length !== 1 || positionals[0] !== "test") throw new UsageError("alert takes one subcommand: test");
  await sendTestAlert(site(values));
  process.stdout.write("tokenrelay: test alert sent\n");
  return 0;
}

/** @param {string[]} args */
async function runInitCommand(args) {
  const options = /** @type {const} */ ({
    cwd: COMMON.cwd,
    help: COMMON.help,
    platform: { type: "string" },
    framework: { type: "string" },
    yes: { type: "boolean", short: "y" },
  });
  const { values } = parsing(() => parseArgs({ args, options, strict: true }));
  if (values.help) return usage();
  return runInit(values, (message) => new UsageError(message));
}

/** @param {string[]} args */
async function runScan(args) {
  const options = /** @type {const} */ ({ ...COMMON, "token-var": { type: "string", multiple: true } });
  const { values, positionals } = parsing(() => parseArgs({ args, options, allowPositionals: true, strict: true }));
  if (values.help) return usage();
  if (positionals.length !== 1) throw new UsageError("scan takes exactly one directory");
  return scan(positionals[0], { ...site(values), tokenVars: values["token-var"] });
}

/**
 * Scans `dir`; 1 when it holds a secret or a link out of it, else 0.
 * @param {string} dir
 * @param {import("../index.d.ts").ScanOptions} options
 */
async function scan(dir, options) {
  const report = await scanForLeaks(dir, options);
  for (const leak of report.leaks) {
    process.stderr.write(`tokenrelay: ${dir}/${leak.file} contains ${leak.secret}\n`);
  }
  for (const link of report.outsideLinks) {
    process.stderr.write(`tokenrelay: ${dir}/${link.file} links outside ${dir}, to ${link.target}\n`);
  }
  if (report.alert) process.stderr.write(`tokenrelay: leak alert: ${report.alert}\n`);
  if (report.tooShort.length > 0) {
    process.stderr.write(`tokenrelay: not searched (under 8 characters): ${report.tooShort.join(", ")}\n`);
  }
  const summary = `scanned ${report.filesScanned} file(s) for ${report.secretsScanned} secret(s)`;
  if (report.leaks.length > 0 || report.outsideLinks.length > 0) {
    const found = `${report.leaks.length} leak(s), ${report.outsideLinks.length} link(s) outside`;
    process.stderr.write(`tokenrelay: ${summary}: ${found}; remove the secrets and links from the output\n`);
    return 1;
  }
  process.stderr.write(`tokenrelay: ${summary}: none found\n`);
  return 0;
}

function usage() {
  process.stdout.write(`${USAGE}\n`);
  return 0;
}

/** @param {string[]} argv */
async function main([command, ...args]) {
  switch (command) {
    case "prefetch":
      return runPrefetch(args);
    case "check":
      return runCheck(args);
    case "init":
      return runInitCommand(args);
    case "scan":
      return runScan(args);
    case "cache":
      return runCache(args);
    case "status":
      return runStatus(args);
    case "report":
      return runReport(args);
    case "alert":
      return runAlert(args);
    case "-h":
    case "--help":
    case "help":
      return usage();
    default:
      throw new UsageError(command ? `unknown command ${JSON.stringify(command)}` : "no command given");
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`tokenrelay: ${err.message}\n\n${USAGE}\n`);
    process.exitCode = 2;
  } else if (err instanceof TokenrelayError) {
    process.stderr.write(`tokenrelay: ${err.message} [${err.code}]\n`);
    process.exitCode = 1;
  } else {
    throw err;
  }
}
