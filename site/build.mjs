// The example site's build step: renders public/ from site/, with photos
// fetched from the API at build time.
//
// The token comes from the build environment (TOKENRELAY_GETTY_TOKEN), put
// there by the tokenrelay Netlify build plugin, or by
// `tokenrelay prefetch -- node site/build.mjs` elsewhere (Vercel, local demo).
// The upstream's base URL comes from the same tokenrelay.toml the relay uses.

import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { check } from "tokenrelay";

const UPSTREAM = "getty";
const TOKEN_VAR = "TOKENRELAY_GETTY_TOKEN";
const FEATURED_PHRASE = "lighthouse";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.resolve(HERE, "..", "public");

const token = process.env[TOKEN_VAR];
if (!token) {
  console.error(
    `site/build.mjs: ${TOKEN_VAR} is not set; run the build through the tokenrelay plugin or \`tokenrelay prefetch -- node site/build.mjs\``,
  );
  process.exit(1);
}

const summary = await check();
const upstream = summary.upstreams.find((u) => u.name === UPSTREAM);
if (!upstream) {
  console.error(`site/build.mjs: no upstream "${UPSTREAM}" in ${summary.file}`);
  process.exit(1);
}

const url = new URL(`${upstream.baseUrl.replace(/\/$/, "")}/search/images`);
url.searchParams.set("phrase", FEATURED_PHRASE);
/** @type {Record<string, string>} */
const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
// Getty wants its API key beside the token.
if (process.env.GETTY_API_KEY) headers["Api-Key"] = process.env.GETTY_API_KEY;
const response = await fetch(url, { headers });
if (!response.ok) {
  console.error(`site/build.mjs: ${url.pathname} answered HTTP ${response.status}`);
  process.exit(1);
}
const { images = [] } = await response.json();

/** @param {string} text */
const escape = (text) =>
  String(text).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );

const featured = images.map((image) => `<li>${escape(image.title)}</li>`).join("\n        ");
const page = readFileSync(path.join(HERE, "index.html"), "utf8")
  .replace("{{featured_phrase}}", escape(FEATURED_PHRASE))
  .replace("{{featured}}", featured || "<li>No photos found.</li>")
  .replace("{{built_at}}", new Date().toISOString());

mkdirSync(OUT, { recursive: true });
writeFileSync(path.join(OUT, "index.html"), page);
for (const asset of ["app.js", "style.css"]) copyFileSync(path.join(HERE, asset), path.join(OUT, asset));
console.log(`site/build.mjs: rendered ${images.length} featured photos into public/index.html`);
