// The lint gate's import-cycle check (scripts/module-cycles.mjs) on small crates written here.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";

import { cycles } from "../../scripts/module-cycles.mjs";

/** A crate `src` directory holding `files` (path → Rust source). @param {Record<string, string>} files */
function crate(files) {
  const src = mkdtempSync(join(tmpdir(), "module-cycles-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(src, path)), { recursive: true });
    writeFileSync(join(src, path), text);
  }
  return src;
}

test("siblings that import each other are a cycle, named by the paths that close it", () => {
  const src = crate({
    "lib.rs": "mod relay;",
    "relay/mod.rs": "mod forward;\nmod budget;\nuse forward::exchange;",
    "relay/forward.rs": "use super::budget::Guard;\npub fn exchange() {}",
    "relay/budget.rs": "pub struct Guard;\nfn admit(out: &crate::relay::forward::Outgoing) {}",
  });
  const [cycle, ...rest] = cycles(src);
  assert.deepEqual(rest, []);
  assert.equal(cycle.length, 2);
  assert.match(cycle.join("\n"), /forward\.rs → .*budget\.rs \(relay::budget::Guard\)/);
  assert.match(cycle.join("\n"), /budget\.rs → .*forward\.rs \(relay::forward::Outgoing\)/);
});

test("a child using its parent's own item closes a cycle through a sibling", () => {
  const src = crate({
    "lib.rs": "mod relay;",
    "relay/mod.rs": "mod cache;\nmod timing;\npub struct Relay;",
    "relay/cache.rs": "use super::{Relay, timing::Timing};",
    "relay/timing.rs": "pub struct Timing(super::cache::Status);",
  });
  assert.equal(cycles(src).length, 1);
});

test("re-exports are followed, comments and strings ignored, and a parent composes its children", () => {
  const src = crate({
    "lib.rs": "mod relay;\npub use relay::Body;",
    "relay/mod.rs": "mod body;\nmod error;\npub use body::Body;\nuse error::RelayError;",
    "relay/body.rs": "use super::error::RelayError;\npub struct Body;",
    "relay/error.rs":
      '// see super::body::Body\nconst S: &str = "crate::relay::body";\nuse crate::Body as _Unused;\npub struct RelayError;',
  });
  const found = cycles(src);
  assert.equal(found.length, 1, "crate::Body is body.rs, which error.rs then depends on");
  const clean = crate({
    "lib.rs": "mod relay;",
    "relay/mod.rs": "mod body;\nmod error;\npub use body::Body;\nuse error::RelayError;",
    "relay/body.rs": "use super::error::RelayError;\npub struct Body;",
    "relay/error.rs": '// see super::body::Body\nconst S: &str = "crate::relay::body";\npub struct RelayError;',
  });
  assert.deepEqual(cycles(clean), []);
});

test("an inline test module's super is its own file", () => {
  const src = crate({
    "lib.rs": "mod config;",
    "config/mod.rs": "mod raw;\nmod relay;",
    "config/raw.rs": "pub struct RawRoute(super::relay::caller::RawCaller);",
    "config/relay.rs": "mod caller;\nuse super::raw::RawRoute;",
    "config/relay/caller.rs": "pub struct RawCaller;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}",
  });
  assert.deepEqual(cycles(src), []);
});
