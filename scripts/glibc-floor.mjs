// The newest glibc symbol version a Linux binary needs, read from its dynamic
// symbol table (`objdump -T`; $OBJDUMP for another architecture's binaries): a
// binary needing GLIBC_2.28 does not start where only glibc 2.17 is installed
// (ld.so: "version `GLIBC_2.28' not found").
// Netlify's and Vercel's build images and AWS Lambda run older glibc than a
// current desktop, so the packages' Linux binaries are held to FLOOR.
//
//   node scripts/glibc-floor.mjs FILE...   exits 1 if a FILE needs more than FLOOR
//
// scripts/build-linux.sh runs it on everything it builds; the tests import it.

import { execFileSync } from "node:child_process";
import { pathToFileURL } from "node:url";

/** The oldest glibc the Linux binaries must run on (CentOS 7, manylinux2014). */
export const FLOOR = "2.17";

/**
 * Compares dotted versions numerically: negative, zero or positive.
 * @param {string} a
 * @param {string} b
 */
export function compareVersions(a, b) {
  const [x, y] = [a.split(".").map(Number), b.split(".").map(Number)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Every `GLIBC_x.y` version `file`'s dynamic symbols refer to, oldest first.
 * @param {string} file an ELF executable or shared object
 * @returns {string[]}
 */
export function glibcVersions(file) {
  const table = execFileSync(process.env.OBJDUMP || "objdump", ["-T", file], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  const found = new Set([...table.matchAll(/\bGLIBC_(\d+(?:\.\d+)+)\b/g)].map((m) => m[1]));
  return [...found].sort(compareVersions);
}

/**
 * The newest glibc version `file` needs, or undefined if it needs none.
 * @param {string} file
 */
export function glibcNeeded(file) {
  return glibcVersions(file).at(-1);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write("usage: node scripts/glibc-floor.mjs FILE...\n");
    process.exit(2);
  }
  let over = false;
  for (const file of files) {
    const needed = glibcNeeded(file);
    const ok = needed === undefined || compareVersions(needed, FLOOR) <= 0;
    over ||= !ok;
    process.stderr.write(`${file}: needs glibc ${needed ?? "(none)"}; floor ${FLOOR}: ${ok ? "ok" : "TOO NEW"}\n`);
  }
  process.exit(over ? 1 : 0);
}
