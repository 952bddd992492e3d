# Sourced (`. scripts/node24.sh`, from the repository's root) by scripts/test.sh and
# scripts/bench.sh: Node 24, the active LTS, runs everything after it. Where the machine's
# node is older, scripts/node-bin.sh fetches Node 24 from the npm registry into
# target/node/24 (once) and it leads the PATH. The machine's npm runs on it (the package
# ships no npm; npm 11 supports Node 24; scripts/node-bin.sh says how npm keeps the
# machine's global npmrc); npm_config_nodedir points node-gyp at its headers, where it
# would otherwise build a native dependency against the machine's own Node's.
if [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 24 ]; then
  node24=$(bash scripts/node-bin.sh 24)
  export PATH="$node24:$PATH" npm_config_nodedir="${node24%/bin}"
fi
