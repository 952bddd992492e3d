// Netlify build plugin for tokenrelay: a valid token in the build's
// environment, a warm shared store for browse-time functions, and a build
// that fails rather than publish a secret.
//
// Adaptation only: the addon (package "tokenrelay") does the work; this file
// maps Netlify's events, inputs and utils onto it. Inputs: manifest.yml.
// Runs on Node 22 (Netlify's build image default) and 24: plain ESM.

import { existsSync } from "node:fs";
import path from "node:path";

import {
  addRoute,
  ownRelayFunction,
  placeDevFunction,
  placeRelayFunction,
  prebuiltBinary,
  removePlaced,
} from "./relay-function.js";

/**
 * @typedef {object} Inputs
 * @property {string[]} [upstreams]
 * @property {Record<string, string>} [envVars]
 * @property {boolean} [warmStore]
 * @property {string | number} [buildMargin]
 * @property {string} [configPath]
 * @property {boolean} [scanPublishDir]
 * @property {boolean} [relayFunction]
 *
 * @typedef {object} Utils
 * @property {{ failBuild(message: string, options?: { error?: Error }): never }} build
 * @property {{ show(status: { title?: string, summary: string, text?: string }): void }} status
 *
 * @typedef {object} EventOptions
 * @property {Inputs} inputs
 * @property {{ build: { environment: Record<string, string> }, redirects: Array<{ from?: string, to?: string, status?: number, force?: boolean }> }} netlifyConfig
 * @property {{ PUBLISH_DIR: string, FUNCTIONS_SRC?: string, FUNCTIONS_DIST?: string, EDGE_FUNCTIONS_DIST?: string, INTERNAL_FUNCTIONS_SRC: string, PACKAGE_PATH?: string }} constants
 * @property {Utils} utils
 */

/** What to do about each error code, in Netlify's terms. */
const FIXES = {
  config_unreadable:
    "Add tokenrelay.toml to the base directory, or point the configPath input or TOKENRELAY_CONFIG at it.",
  config_invalid: "Fix the config file as listed.",
  missing_env:
    "Set these in the site's environment variables (Site configuration > Environment variables, or `netlify env:set`), or in .env for `netlify dev`.",
  invalid_env: "Fix that environment variable's value.",
  unknown_upstream: "Fix the plugin's inputs in netlify.toml, or add the upstream to tokenrelay.toml.",
  invalid_options: "Fix the plugin's inputs in netlify.toml ([[plugins]] package tokenrelay, [plugins.inputs]).",
  token_rejected:
    "The token endpoint refused the credentials: check the upstream's credential variables (`npx tokenrelay check` lists them) against the API provider's dashboard.",
  token_response_invalid:
    "The token endpoint's answer does not match the upstream's [token] settings in tokenrelay.toml: check them.",
  token_unavailable:
    "Check the token endpoint's URL in tokenrelay.toml and that it is up, then retry the deploy. If its tokens are shorter than the build, lower the buildMargin input.",
  scan_failed: "Check that the publish directory exists and is readable.",
  unsupported_platform:
    "Install tokenrelay with its optional dependencies (not `npm install --no-optional` or `--omit=optional`), on a platform it has a binary for.",
  scan_too_large:
    "Keep large files (videos, archives, disk images) out of the published output: the scan stops at the byte limit the message names.",
  function_not_placed:
    "Check that the build can write the functions directory named in the message (Netlify's .netlify/functions-internal), then retry the deploy.",
  cache_purge_failed:
    "Purge only upstreams that have a route with `cache` in tokenrelay.toml, with a path prefix starting with '/', and check that the store is reachable; then purge again.",
  store_unreadable:
    "Check that the store (UPSTASH_REDIS_REST_URL and its token, or the local store's directory) is reachable and readable, then run the command again.",
  alert_failed:
    "Check that tokenrelay.toml has an [alerts] webhook and that its variable holds an incoming webhook URL the channel still accepts.",
};

/** Variables holding this build's tokens, for the leak scan (plugin events share one process). */
let exposed = /** @type {string[]} */ ([]);
/** The summary of onPreBuild/onPreDev, shown again with the scan's result. */
let prepared = { summary: "no token prefetched", lines: /** @type {string[]} */ ([]) };

/**
 * @param {unknown} err
 * @param {string} doing
 */
function failure(err, doing) {
  const e = /** @type {{ code?: string, message?: string }} */ (err);
  const fix = (e.code && FIXES[/** @type {keyof typeof FIXES} */ (e.code)]) ?? "";
  return `tokenrelay could not ${doing}: ${e.message} [${e.code ?? "internal"}]${fix ? `\n${fix}` : ""}`;
}

/**
 * The tokenrelay package, imported on first use rather than when Netlify loads
 * the plugin: where its native binary is missing (an unsupported platform,
 * optional dependencies left out), the build then fails with the package's
 * `unsupported_platform` message, which names the platform, instead of
 * crashing while the plugin loads.
 * @param {Utils} utils
 * @returns {Promise<typeof import("tokenrelay")>}
 */
async function tokenrelay(utils) {
  try {
    return await import("tokenrelay");
  } catch (err) {
    return utils.build.failBuild(failure(err, "load its native addon"));
  }
}

/**
 * Prefetches the tokens and exposes those asked for to the rest of the build
 * through `process.env`: @netlify/build hands a plugin's environment changes
 * to the build command and later plugins. Never through
 * `netlifyConfig.build.environment`: that is a config mutation, which
 * @netlify/build saves into the deployed `netlify.toml` (and prints with
 * `--debug`).
 * @param {EventOptions} options
 */
async function provideTokens({ inputs, utils }) {
  const { prefetch, describeToken } = await tokenrelay(utils);
  let report;
  try {
    report = await prefetch({
      configPath: inputs.configPath,
      upstreams: inputs.upstreams,
      envVars: inputs.envVars,
      buildMargin: inputs.buildMargin,
      warmStore: inputs.warmStore,
    });
  } catch (err) {
    return utils.build.failBuild(failure(err, "prepare the build's tokens"));
  }
  for (const [name, value] of Object.entries(report.env)) process.env[name] = value;
  exposed = Object.keys(report.env);
  const store = report.sharedStore
    ? `shared store warmed: ${report.store}`
    : `store: ${report.store}; not shared, so functions fetch their own (set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN to share)`;
  prepared = { summary: `${report.tokens.length} token(s) ready`, lines: [...report.tokens.map(describeToken), store] };
  for (const line of prepared.lines) console.log(`tokenrelay: ${line}`);
  utils.status.show({ title: "tokenrelay", summary: prepared.summary, text: prepared.lines.join("\n") });
}

/**
 * Places the prebuilt relay function with the site's config in Netlify's
 * generated-functions directory and routes /api/relay/* to it, unless the
 * input `relayFunction` is false or the site has its own `relay` function
 * (built from source). Runs after `provideTokens`, which has validated the config.
 * `dev`: for `netlify dev`, a JavaScript function running the binary instead.
 * @param {EventOptions} options
 * @param {boolean} dev
 */
async function provideRelayFunction({ inputs, constants, netlifyConfig, utils }, dev) {
  await removePlaced(constants.INTERNAL_FUNCTIONS_SRC);
  if (inputs.relayFunction === false) return;
  const own = ownRelayFunction(constants.FUNCTIONS_SRC);
  if (own) {
    console.log(
      `tokenrelay: the site has its own relay function (${path.relative(process.cwd(), own)}); the prebuilt one is not placed`,
    );
    return;
  }
  const binary = prebuiltBinary();
  if (!binary) {
    return utils.build.failBuild(
      `tokenrelay could not find its prebuilt relay function (package tokenrelay-linux-x64-gnu, file netlify-relay) [unsupported_platform]\n` +
        `Netlify's functions run on Linux x86-64: build there (Netlify's build image does), install with optional dependencies, ` +
        `or set the plugin input relayFunction = false and build the function from source.`,
    );
  }
  const configPath = path.resolve(inputs.configPath ?? process.env.TOKENRELAY_CONFIG ?? "tokenrelay.toml");
  let placed;
  try {
    placed = dev
      ? await placeDevFunction(binary, constants.INTERNAL_FUNCTIONS_SRC, process.cwd())
      : await placeRelayFunction(binary, configPath, constants.INTERNAL_FUNCTIONS_SRC);
  } catch (err) {
    // The addon's errors carry their code; copying the binary's do not.
    const coded = /** @type {{ code?: string }} */ (err).code?.match(/^[a-z_]+$/);
    const cause = coded ? err : { code: "function_not_placed", message: /** @type {Error} */ (err).message };
    return utils.build.failBuild(failure(cause, "place the relay function"));
  }
  const routed = (await addRoute(netlifyConfig)) ? ", routed from /api/relay/*" : "";
  const config = path.relative(process.cwd(), configPath);
  const how = dev ? `runs the prebuilt relay per request, reading ${config}` : `the prebuilt relay with ${config}`;
  console.log(`tokenrelay: relay function placed at ${path.relative(process.cwd(), placed)} (${how})${routed}`);
}

/** @param {EventOptions} options */
export async function onPreBuild(options) {
  await provideTokens(options);
  await provideRelayFunction(options, false);
}

/**
 * `provideTokens` for `netlify dev`, whose framework server gets only
 * `netlifyConfig.build.environment`, not the plugin's `process.env`
 * (netlify-cli, `devCommand` in dist/utils/run-build.js). The mutation is
 * safe there: the dev timeline has no step that saves the config, and
 * @netlify/build never prints `build.environment` values.
 * @param {EventOptions} options
 */
export async function onPreDev(options) {
  await provideTokens(options);
  await provideRelayFunction(options, true);
  for (const name of exposed) options.netlifyConfig.build.environment[name] = /** @type {string} */ (process.env[name]);
}

/**
 * Deploy-scoped blobs, uploaded with the deploy, where each version of
 * @netlify/build looks for them (lib/utils/blobs.js: the Frameworks API's,
 * the deploy configuration API's, and the original one), under the site's
 * base directory (its package's, in a monorepo).
 */
const BLOBS_DIRS = [".netlify/v1/blobs/deploy", ".netlify/deploy/v1/blobs/deploy", ".netlify/blobs/deploy"];

/**
 * Server output of the frameworks whose adapters deploy it as functions
 * (Next.js's prerendered pages and route handlers, SvelteKit's and Nitro's
 * server builds): a token baked in at build time is served from there.
 */
const FRAMEWORK_SERVER_DIRS = [".next/server", ".svelte-kit/output/server", ".output/server"];

/**
 * Every directory the deploy publishes from: the publish directory, then
 * those of the bundled functions, edge functions, deploy-scoped blobs and
 * framework server output that the build produced (each exists only when
 * the site has some).
 * @param {EventOptions["constants"]} constants
 * @returns {string[]}
 */
function deployedDirs(constants) {
  const base = constants.PACKAGE_PATH ?? "";
  const optional = [
    constants.FUNCTIONS_DIST,
    constants.EDGE_FUNCTIONS_DIST,
    ...[...BLOBS_DIRS, ...FRAMEWORK_SERVER_DIRS].map((d) => path.join(base, d)),
  ];
  return [constants.PUBLISH_DIR, ...optional.filter((d) => d !== undefined).filter((d) => existsSync(d))];
}

/**
 * Fails the build if anything the deploy publishes (the publish directory,
 * bundled functions and edge functions, deploy-scoped blobs, framework
 * server output) holds any
 * token or secret, or a symbolic link out of its directory.
 * @param {EventOptions} options
 */
export async function onPostBuild({ inputs, constants, utils }) {
  if (inputs.scanPublishDir === false) return;
  const dirs = deployedDirs(constants);
  const { scanForLeaks } = await tokenrelay(utils);
  const problems = [];
  const scanned = [];
  const short = new Set();
  for (const dir of dirs) {
    const absolute = path.resolve(dir);
    const shown = path.relative(process.cwd(), absolute) || ".";
    let report;
    try {
      report = await scanForLeaks(absolute, { configPath: inputs.configPath, tokenVars: exposed });
    } catch (err) {
      return utils.build.failBuild(failure(err, `scan ${shown} for secrets`));
    }
    problems.push(
      ...report.leaks.map(
        (/** @type {import("tokenrelay").Leak} */ l) => `  - ${path.posix.join(shown, l.file)} contains ${l.secret}`,
      ),
      ...report.outsideLinks.map(
        (/** @type {import("tokenrelay").OutsideLink} */ l) =>
          `  - ${path.posix.join(shown, l.file)} links outside ${shown}, to ${l.target}`,
      ),
    );
    if (report.alert) problems.push(`  (leak alert: ${report.alert})`);
    scanned.push(`${shown}: ${report.filesScanned} file(s) scanned for ${report.secretsScanned} secret(s)`);
    for (const name of report.tooShort) short.add(name);
  }
  if (problems.length > 0) {
    return utils.build.failBuild(
      [
        `tokenrelay: the build output holds secrets, so it must not be deployed:`,
        ...problems,
        "Keep tokens and credentials out of the output: use them at build time or in functions, never write them into pages or bundles; and publish no link to files outside the output.",
      ].join("\n"),
    );
  }
  const lines = scanned.map((s) => `${s}, none found`);
  const notSearched = short.size > 0 ? [`not searched (under 8 characters): ${[...short].join(", ")}`] : [];
  for (const line of lines) console.log(`tokenrelay: ${line}`);
  const shownPublish = path.relative(process.cwd(), path.resolve(constants.PUBLISH_DIR)) || ".";
  utils.status.show({
    title: "tokenrelay",
    summary: `${prepared.summary}; no secret in ${shownPublish}`,
    text: [...prepared.lines, ...lines, ...notSearched].join("\n"),
  });
}
