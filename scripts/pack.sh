#!/usr/bin/env bash
# Packs what a release publishes, as a user would get it, into target/packages/:
#   tokenrelay-<v>.tgz                   the npm package: JS loader, types, CLI; no binary
#   tokenrelay-linux-x64-gnu-<v>.tgz     its platform package: the one .node binary and
#                                        netlify-relay, the prebuilt Netlify function
#   netlify-plugin-tokenrelay-<v>.tgz    the Netlify build plugin
#   tokenrelay-<v>.crate                 the core crate
# Needs the release addon from `scripts/build-linux.sh addon` and the function from
# `scripts/build-linux.sh bin -p tokenrelay-netlify --bin netlify-relay`. Only linux-x64-gnu is
# built on this machine; the release workflow (.github/workflows/release.yml) packs
# every platform. tests/js/packed-install.test.mjs installs these outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/packages
version=$(node -p 'require("./crates/tokenrelay-node/package.json").version')
rm -rf "$out"
mkdir -p "$out"

# The prebuilt Netlify function goes in the platform package beside the addon
# (listed in its `files`; napi's pre-publish below checks every listed file is there).
# The Netlify plugin places it (netlify/plugins/tokenrelay/relay-function.js).
cp target/glibc-2.17/x86_64-unknown-linux-gnu/release/netlify-relay crates/tokenrelay-node/npm/linux-x64-gnu/

# napi's own copy step fills npm/linux-x64-gnu with the binary. `napi artifacts`
# insists on every target in package.json, so it is given a config naming the one
# built here (the release workflow runs it with all of them).
echo '{ "binaryName": "tokenrelay", "targets": ["x86_64-unknown-linux-gnu"] }' >"$out/napi-linux-x64-gnu.json"
# Then napi's pre-publish checks, without publishing, that the platform package is
# ready (the release publishes through it: the main package's prepublishOnly).
(cd crates/tokenrelay-node &&
  ../../node_modules/.bin/napi artifacts --config-path "../../$out/napi-linux-x64-gnu.json" --output-dir . &&
  ../../node_modules/.bin/napi pre-publish --config-path "../../$out/napi-linux-x64-gnu.json" -t npm --no-gh-release --dry-run)

for dir in crates/tokenrelay-node crates/tokenrelay-node/npm/linux-x64-gnu netlify/plugins/tokenrelay; do
  (cd "$dir" && npm pack --silent --pack-destination "$OLDPWD/$out" >/dev/null)
done

# --no-verify: verifying compiles the packed crate alone, and with its own features
# 30 dependencies differ from the workspace's build: 2 min 13 s on 2 shared cores,
# for sources `cargo build --workspace` already compiles. `cargo publish` in the
# release workflow verifies (it catches a feature the crate relies on only through
# another workspace member); the packed-install test checks the archive's contents.
cargo package -p tokenrelay --locked --no-verify --allow-dirty --quiet
cp "target/package/tokenrelay-$version.crate" "$out/"

ls -l "$out"
