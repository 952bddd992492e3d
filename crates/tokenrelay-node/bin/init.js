// `tokenrelay init`: shows what adding tokenrelay to the site would change,
// asks (unless --yes), writes it, and says what to set in the platform's
// settings, by name and scope, never a value. The planning and merging live
// in crates/tokenrelay-site/src/init, which the addon wraps: this module only
// talks to the user.

import { createInterface } from "node:readline/promises";

import { init, TokenrelayError } from "../index.js";

/** Where each platform keeps the variables, and what its scopes are called. */
const WHERE = {
  netlify: "Netlify: Site configuration → Environment variables (scopes",
  vercel: "Vercel: Project → Settings → Environment Variables (environments",
};

/**
 * Runs `init`; resolves with the exit status.
 * @param {{ cwd?: string, platform?: string, framework?: string, yes?: boolean }} options
 * @param {(message: string) => Error} usageError builds the CLI's usage error
 * @returns {Promise<number>}
 */
export async function runInit({ cwd, platform, framework, yes = false }, usageError) {
  const interactive = !yes && Boolean(process.stdin.isTTY);
  let chosen = platform;
  let plan;
  try {
    plan = await init({ cwd, platform: chosen, framework, write: false });
  } catch (err) {
    if (!(interactive && err instanceof TokenrelayError && err.code === "init_platform_unknown")) throw err;
    chosen = await ask(`${err.message}\nPlatform (netlify/vercel): `);
    plan = await init({ cwd, platform: chosen, framework, write: false });
  }

  const out = [];
  if (plan.changes.length === 0) {
    out.push(`tokenrelay: already set up for ${plan.platform}: nothing changed`);
  } else {
    out.push(`tokenrelay init for ${plan.platform} (from ${plan.detectedFrom}):`);
    for (const c of plan.changes) out.push(`  ${c.action} ${c.file}: ${c.summary}`);
    process.stdout.write(`${out.join("\n")}\n`);
    out.length = 0;
    if (!yes) {
      if (!interactive) throw usageError("not a terminal: pass --yes to make these changes");
      const answer = await ask("Make these changes? [y/N] ");
      if (!/^y(es)?$/i.test(answer.trim())) {
        process.stdout.write("tokenrelay: nothing changed\n");
        return 1;
      }
    }
    await init({ cwd, platform: chosen, framework, write: true });
    out.push(`tokenrelay: ${plan.changes.length} file(s) written`);
  }

  // Typed by hand: the lint phase checks this file before the addon build generates binding.d.ts.
  /** @type {import("../index.d.ts").Setting[]} */
  const settings = plan.settings;
  const scopes = [...new Set(settings.flatMap((s) => s.scopes))];
  out.push(
    "",
    `Set these variables in ${WHERE[/** @type {"netlify" | "vercel"} */ (plan.platform)]} ${scopes.join(", ")}):`,
  );
  const width = Math.max(...settings.map((s) => s.name.length));
  for (const s of settings) out.push(`  ${s.name.padEnd(width)}  [${s.scopes.join(", ")}]  ${s.purpose}`);
  out.push("For local runs, copy .env.example to .env and fill it in (never commit .env).");
  if (plan.nextSteps.length > 0) out.push("", "Then:", ...plan.nextSteps.map((/** @type {string} */ s) => `  - ${s}`));
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}

/**
 * One line from the terminal.
 * @param {string} question
 */
async function ask(question) {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}
