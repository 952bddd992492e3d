#!/usr/bin/env bash
# The benchmark (bench/README.md): builds the release binaries, starts
# everything on loopback (redis-server behind upstash-local's Upstash REST
# protocol, a token endpoint and the API it serves, a JWT-verifying Node API,
# nginx, the relay binary, the JS handler over the addon, the Node baseline),
# measures, and prints a markdown table of figures.
#
#   bash scripts/bench.sh                             # the full run: a few minutes
#   bash scripts/bench.sh --quick                     # every scenario briefly: a smoke test
#   bash scripts/bench.sh --readme bench/README.md    # also put the table in the README
#
# Other arguments go to tokenrelay-bench (`target/release/tokenrelay-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The bench starts its own redis-server on a free port; it only needs the binary.
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
# nginx is the bench's physical-limit row (one bare proxy hop); the bench finds it in /usr/sbin.
if [ ! -x /usr/sbin/nginx ]; then
  apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null
fi
# The Node pieces (the JS handler, the baseline, the JWT API, the addon's bench) run on
# Node 24, as the tests do.
. scripts/node24.sh
# The Node baseline and the addon's bench import @upstash/redis and the addon.
# `npm install`, not `npm ci`, for the reason scripts/test.sh gives.
if [ ! -d node_modules ]; then
  npm install --no-audit --no-fund
fi

# The bench with its stand-ins, the Vercel function (`relay`), the addon's cdylib (the
# addon bench's), and the addon as published (the JS handler's) unless scripts/test.sh made it.
cargo build --release --locked --bins -p tokenrelay-bench -p tokenrelay-vercel -p upstash-local -p testkit
cargo build --release --locked --lib -p tokenrelay-node
[ -f crates/tokenrelay-node/tokenrelay.linux-x64-gnu.node ] || bash scripts/build-linux.sh addon

# The response cache (1,000 requests over 10 URLs from 4 processes; hit latencies), the
# lifecycle figures with instances frozen between requests against awake ones, what proving
# the caller adds to a request, then the main table.
target/release/tokenrelay-bench cache --relay-bin target/release/relay
quick=(); [[ " $* " == *" --quick "* ]] && quick=(--quick)
target/release/tokenrelay-bench freeze "${quick[@]}" --relay-bin target/release/relay
target/release/tokenrelay-bench caller "${quick[@]}" --relay-bin target/release/relay
exec target/release/tokenrelay-bench --relay-bin target/release/relay "$@"
