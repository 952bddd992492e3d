#!/usr/bin/env bash
# The project's one test command (README "Running the tests"; .ci/run calls it).
# On a fresh machine it installs what the tests need, runs the lint gate, then builds and
# runs every Rust and JS test; each phase prints its time.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each phase prints how long it took, so a slow CI run shows where the time went.
phase_name=""
phase_start=$SECONDS
phase_outcome=""
phase() {
  [ -z "$phase_name" ] || echo "=== $phase_name: $((SECONDS - phase_start)) s$phase_outcome"
  phase_name="$1"
  phase_start=$SECONDS
  [ -z "$phase_name" ] || echo "=== $phase_name"
}
trap '[ $? -eq 0 ] || phase_outcome=" (failed)"; phase ""' EXIT

phase install

# System packages: tests start their own redis-server on a free loopback port
# (they only need the binary), the browser test drives Debian's Chromium
# (Playwright's own browser download cannot work offline).
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# scripts/build-linux.sh unpacks its toolchain with xz; scripts/glibc-floor.mjs reads binaries with objdump.
command -v xz >/dev/null || missing+=(xz-utils)
command -v objdump >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# `npm install`, not `npm ci`: npm 11 on Node 20 leaves the other platforms' optional
# binaries of a Node-22-only dependency out of the lock file, and `npm ci` then refuses
# the lock it wrote. With the lock present, `npm install` installs exactly what it pins.
# The lock file is committed as this install leaves it, so the install must not change it:
# a change means package.json moved without its lock (or npm resolves differently), and
# the run would test dependencies no one committed.
lock_before=$(cksum package-lock.json)
npm install --no-audit --no-fund
if [ "$(cksum package-lock.json)" != "$lock_before" ]; then
  echo "scripts/test.sh: npm install changed package-lock.json: review and commit the lock it wrote" \
    "(git diff package-lock.json), then run again" >&2
  exit 1
fi

# The lint gate: seconds to fail on what reviewers should not have to point out,
# before anything compiles for minutes. Configs: rustfmt.toml, tsconfig.json, biome.json.
phase lint
cargo fmt --all --check
npx biome format .
# The addon's functions are typed `any` here: their types (binding.d.ts) are generated
# by the addon build, after which the type check runs again. A binding.d.ts left by an
# earlier build describes an older addon, so it goes first (the build writes it anew).
rm -f crates/tokenrelay-node/binding.d.ts
npx tsc -p tsconfig.json
# --workspace unifies tokenrelay's features, so the Vercel and Netlify crates make clippy
# see the `vercel`, `netlify` and `shell` code; each crate's own deny lints apply.
cargo clippy --workspace --all-targets --locked -- -D warnings

phase build
cargo build --workspace --bins --locked
# The relay functions as their platforms build them, so that their tests find the builds warm:
# `vercel build` (tests/vercel.rs) runs `cargo build --release --bin relay`, and `netlify dev`
# (netlify/functions/relay/tests/netlify_dev.rs) builds into its site's .netlify/functions-serve/relay.
cargo build --release --bin relay --locked
cargo build -p tokenrelay-netlify --locked --target-dir target/netlify-e2e/site/.netlify/functions-serve/relay
# The Node addon, built once as it is published: release, linked against a glibc 2.17
# sysroot (scripts/build-linux.sh fetches the toolchain from npm the first time). The JS
# tests load it from crates/tokenrelay-node/tokenrelay.linux-x64-gnu.node, and
# scripts/pack.sh packs it with the npm packages and the crate into target/packages/
# for tests/js/packed-install.test.mjs. The prebuilt Netlify function (netlify-relay,
# shipped in the platform package) follows with the same toolchain and target
# directory, reusing what the addon compiled; tests/js/packed-sites.test.mjs
# deploys it on fixture sites through `netlify build`.
bash scripts/build-linux.sh addon
npx tsc -p tsconfig.json
bash scripts/build-linux.sh bin -p tokenrelay-netlify --bin netlify-relay
bash scripts/pack.sh

# The test phases run to the end even when one fails, so one run shows every failure.
failed=()
phase "Rust tests"
cargo test --workspace --locked --no-fail-fast || failed+=("Rust tests")

phase "JS tests"
node --test --test-timeout=600000 tests/js/*.test.mjs || failed+=("JS tests")

phase "bench smoke"
# The benchmark's quick mode as a smoke test: it fails only on correctness figures
# (a second token fetch per rotation, an expired token served, a store call for a warm token).
target/debug/tokenrelay-bench --quick || failed+=("bench smoke")

phase ""
if [ ${#failed[@]} -gt 0 ]; then
  echo "scripts/test.sh: failed: ${failed[*]}" >&2
  exit 1
fi
