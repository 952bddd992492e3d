#!/usr/bin/env node
// The lint gate's import-cycle check (README, "Running the tests"): fails when
// the modules of a crate depend on each other in a cycle, one file being one
// module. An edge is a path a file names (`use` trees and inline paths from
// `crate::`, `super::` or `self::`), resolved to the file that defines it;
// re-exports are followed to their source, so `use super::Body` depends on
// body.rs, not on the parent that re-exports it. A module's use of its own
// descendants is not an edge: it composes them (relay/mod.rs composes the
// relay's layers); every other reference is, a child's use of its parent's
// own items included. Usage: node scripts/module-cycles.mjs <crate src dir>...

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** @param {string} dir @returns {string[]} every .rs file below dir */
function rustFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return rustFiles(path);
    return name.endsWith(".rs") ? [path] : [];
  });
}

/** Strips comments and string literals, which may hold paths that are not code. @param {string} text */
function code(text) {
  return text
    .replace(/\/\/[^\n]*/g, "")
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/r#*"[\s\S]*?"#*/g, '""')
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/'(?:[^'\\\n]|\\.)'/g, "' '");
}

/** @typedef {{ segments: string[], name: string }} Named */

/**
 * Expands a `use` tree (`a::{b, c::{d, e as f}}`) into paths, each with its local name.
 * @param {string} tree
 * @returns {Named[]}
 */
function expand(tree) {
  tree = tree.replace(/\s+/g, "");
  const brace = tree.indexOf("{");
  if (brace < 0) {
    const [path, alias] = tree.split("as");
    const segments = path.split("::").filter(Boolean);
    return [{ segments, name: alias ?? segments.at(-1) }];
  }
  const prefix = tree.slice(0, brace);
  const inner = tree.slice(brace + 1, tree.lastIndexOf("}"));
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i <= inner.length; i++) {
    const c = inner[i];
    if (c === "{") depth++;
    else if (c === "}") depth--;
    else if ((c === "," && depth === 0) || i === inner.length) {
      if (inner.slice(start, i)) parts.push(inner.slice(start, i));
      start = i + 1;
    }
  }
  return parts.flatMap((part) => (part === "self" ? expand(prefix.replace(/::$/, "")) : expand(prefix + part)));
}

/**
 * The module each position of a file's `text` is in: `module`, or an inline
 * `mod name { … }` inside it (a `mod tests`, whose `super` is the file's module).
 * @param {string} text
 * @param {string} module
 * @returns {(position: number) => string}
 */
function inlineModules(text, module) {
  /** @type {{ start: number, end: number, name: string }[]} */
  const blocks = [];
  for (const m of text.matchAll(/\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{/g)) {
    const start = (m.index ?? 0) + m[0].length;
    let depth = 1;
    let end = start;
    while (end < text.length && depth > 0) {
      if (text[end] === "{") depth++;
      else if (text[end] === "}") depth--;
      end++;
    }
    blocks.push({ start, end, name: m[1] });
  }
  return (position) =>
    blocks
      .filter((b) => b.start <= position && position < b.end)
      .reduce((path, b) => (path ? `${path}::${b.name}` : b.name), module);
}

/**
 * Checks one crate; returns each cycle as the edges that close it.
 * @param {string} src
 * @returns {string[][]}
 */
export function cycles(src) {
  const files = rustFiles(src);
  /** module path ("relay::cache") → file */
  const fileOf = new Map();
  for (const file of files) {
    const rel = relative(src, file).replace(/\.rs$/, "").split("/");
    if (rel.at(-1) === "mod" || rel.at(-1) === "lib" || rel.at(-1) === "main") rel.pop();
    if (relative(src, file).startsWith("bin/")) continue;
    fileOf.set(rel.join("::"), file);
  }
  const moduleOf = new Map([...fileOf].map(([m, f]) => [f, m]));
  /** file → { uses: paths named, reexports: name → absolute path } */
  const parsed = new Map();
  /**
   * `segments` named in `module`, as a path from the crate root; `null` outside the crate.
   * @param {string[]} segments
   * @param {string} module
   * @returns {string[] | null}
   */
  const absolute = (segments, module) => {
    let base = module ? module.split("::") : [];
    let i = 0;
    if (segments[0] === "crate") {
      base = [];
      i = 1;
    } else if (segments[0] === "self") {
      i = 1;
    } else if (segments[0] === "super") {
      while (segments[i] === "super") {
        base = base.slice(0, -1);
        i++;
      }
    } else if (fileOf.has([...base, segments[0]].join("::"))) {
      i = 0; // a child module, named relatively
    } else {
      return null; // an external crate or a local name
    }
    return [...base, ...segments.slice(i)];
  };
  for (const file of moduleOf.keys()) {
    const text = code(readFileSync(file, "utf8"));
    const module = moduleOf.get(file) ?? "";
    const inlineAt = inlineModules(text, module);
    const uses = [];
    const reexports = new Map();
    for (const m of text.matchAll(/(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);/g)) {
      for (const { segments, name } of expand(m[2])) {
        const path = absolute(segments, inlineAt(m.index ?? 0));
        if (!path) continue;
        uses.push(path);
        if (m[1]) reexports.set(name, path);
      }
    }
    const inline = text.replace(/(pub(?:\([^)]*\))?\s+)?use\s+[^;]+;/g, (u) => " ".repeat(u.length));
    for (const m of inline.matchAll(/(?<![\w:])[A-Za-z_][A-Za-z0-9_]*(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))+/g)) {
      const path = absolute(m[0].split("::"), inlineAt(m.index ?? 0));
      if (path) uses.push(path);
    }
    parsed.set(file, { uses, reexports });
  }
  /** The file defining `path`, following re-exports. */
  /**
   * @param {string[]} path
   * @param {Set<string>} seen
   * @returns {string | null}
   */
  const resolve = (path, seen = new Set()) => {
    for (let n = path.length; n >= 0; n--) {
      const module = path.slice(0, n).join("::");
      const file = fileOf.get(module);
      if (!file) continue;
      const item = path[n];
      const target = item !== undefined && parsed.get(file).reexports.get(item);
      if (target && !seen.has(target.join("::"))) {
        seen.add(target.join("::"));
        return resolve([...target, ...path.slice(n + 1)], seen);
      }
      return file;
    }
    return null;
  };
  const edges = new Map();
  /** "from → to" → the path that made the edge, for the report */
  const why = new Map();
  for (const [file, { uses }] of parsed) {
    const to = new Set();
    for (const path of uses) {
      const target = resolve(path);
      why.set(`${file}\0${target}`, path.join("::"));
      // A module composes its own descendants: that is the tree, not a dependency back.
      const owned = moduleOf.get(target)?.startsWith(moduleOf.get(file) ? `${moduleOf.get(file)}::` : "");
      if (target && target !== file && !owned) to.add(target);
    }
    edges.set(file, to);
  }
  // Tarjan's strongly connected components: each of more than one file is a cycle.
  /** @typedef {{ index: number, low: number, onStack: boolean }} Visit */
  /** @type {Map<string, Visit>} */
  const visits = new Map();
  /** @type {string[]} */
  const stack = [];
  /** @type {string[][]} */
  const found = [];
  const named = (/** @type {string} */ f) => relative(process.cwd(), f);
  /** @param {string} v @returns {Visit} */
  const connect = (v) => {
    const visit = { index: visits.size, low: visits.size, onStack: true };
    visits.set(v, visit);
    stack.push(v);
    for (const w of edges.get(v) ?? []) {
      const seen = visits.get(w);
      if (!seen) visit.low = Math.min(visit.low, connect(w).low);
      else if (seen.onStack) visit.low = Math.min(visit.low, seen.index);
    }
    if (visit.low === visit.index) {
      /** @type {string[]} */
      const component = [];
      for (let w = stack.pop(); w !== undefined; w = w === v ? undefined : stack.pop()) {
        const popped = visits.get(w);
        if (popped) popped.onStack = false;
        component.push(w);
      }
      if (component.length > 1) {
        const inside = new Set(component);
        found.push(
          component.flatMap((f) =>
            [...(edges.get(f) ?? [])]
              .filter((t) => inside.has(t))
              .map((t) => `${named(f)} → ${named(t)} (${why.get(`${f}\0${t}`)})`),
          ),
        );
      }
    }
    return visit;
  };
  for (const v of edges.keys()) if (!visits.has(v)) connect(v);
  return found;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dirs = process.argv.slice(2);
  let failed = false;
  for (const dir of dirs) {
    if (!existsSync(dir)) throw new Error(`module-cycles: no such directory ${dir}`);
    for (const cycle of cycles(dir)) {
      failed = true;
      console.error(`module-cycles: these modules of ${dir} import each other in a cycle:\n  ${cycle.join("\n  ")}`);
    }
  }
  if (failed) process.exit(1);
  console.log(`module-cycles: no import cycle in ${dirs.join(", ")}`);
}
