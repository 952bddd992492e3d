#!/usr/bin/env bash
# The project's one test command (README "Running the tests"; .ci/run calls it).
# On a fresh machine it installs what the tests need, then runs every Rust and JS test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests start their own redis-server on a free loopback port; they only need the binary.
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi

npm ci --no-audit --no-fund
cargo build --workspace --bins --locked
# The Node addon for the JS tests (a debug build is enough): crates/tokenrelay-node/tokenrelay.<platform>.node.
npm run build --prefix crates/tokenrelay-node
cargo test --workspace --locked
node --test --test-timeout=120000 tests/js/*.test.mjs
