// `vercel dev` on a site outside the checkout (packed-sites.test.mjs,
// packed-frameworks.test.mjs), with both CLIs the project tests, linked to a
// project of stand-in-vercel-api (testkit's VercelApi; tests/vercel_dev.rs
// runs it on the repository's own site).

import { readFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { fetchFromServer } from "./packed.mjs";
import { freePort, ROOT, startVercelApi } from "./stand-ins.mjs";

/**
 * The Vercel CLIs of the root's package.json: `vercel` (pinned, 48: it does
 * not pass the function VERCEL_DEV_PORT) and `vercel-current` (64: it also
 * starts local Queues, Schedules and Runtime Cache servers).
 */
export const VERCEL_CLIS = /** @type {const} */ (["vercel", "vercel-current"]);

/** The token `--token` passes and the stand-in accepts. */
const TOKEN = "vercelDevTokenPacked51c2";
const ORG_ID = "team_tokenrelay_local";

/**
 * The entry script of CLI package `cli`, from its package.json's `bin`.
 * @param {string} cli
 */
function script(cli) {
  const dir = path.join(ROOT, "node_modules", cli);
  const manifest = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
  return path.join(dir, manifest.bin.vercel);
}

/**
 * Links `site` to a stand-in project whose Development variables are `vars`,
 * runs `vercel dev` of `cli` there with `env` (which should hold none of
 * `vars`: they must come through the API), and fetches `target` until it
 * answers 200 (see packed.mjs's fetchFromServer).
 * @param {string} cli one of VERCEL_CLIS
 * @param {string} site
 * @param {{ env: Record<string, string>, vars: Record<string, string>, target: string, framework?: string, timeoutMs?: number }} options
 */
export async function fetchThroughVercelDev(cli, site, { env, vars, target, framework, timeoutMs }) {
  const projectId = `prj_tokenrelay_${path.basename(site).replaceAll("-", "_")}`;
  const api = await startVercelApi({ projectId, orgId: ORG_ID, token: TOKEN, env: vars, framework });
  try {
    const link = path.join(site, ".vercel", "project.json");
    const linked = existsSync(link) ? JSON.parse(readFileSync(link, "utf8")) : {};
    mkdirSync(path.dirname(link), { recursive: true });
    writeFileSync(link, `${JSON.stringify({ ...linked, projectId, orgId: ORG_ID })}\n`);
    const port = await freePort();
    const args = [script(cli), "dev", "--yes", "--listen", `127.0.0.1:${port}`, "--api", api.url, "--token", TOKEN];
    // Its own global config (auth.json, telemetry ids), not the user's ~/.vercel, and not in the site.
    args.push("--global-config", `${site}-vercel-global`);
    // Free ports for CLI 64's local servers, rather than 4782-4784, which parallel runs would share.
    if (cli === "vercel-current") args.push("--queue-port", "0", "--schedules-port", "0", "--runtime-cache-port", "0");
    return await fetchFromServer(process.execPath, args, {
      cwd: site,
      env: {
        ...env,
        // Loopback only: no telemetry, no update check.
        VERCEL_TELEMETRY_DISABLED: "1",
        NO_UPDATE_NOTIFIER: "1",
        // CLI 48 passes no port to a Rust function, whose default (3000) is vercel dev's own.
        VERCEL_DEV_PORT: String(await freePort()),
      },
      url: `http://127.0.0.1:${port}${target}`,
      timeoutMs,
    });
  } finally {
    await api.stop();
  }
}
