#!/usr/bin/env bash
# Release builds of tokenrelay's Linux binaries that run on glibc 2.17 and later
# (Netlify's and Vercel's build images and AWS Lambda run older glibc than this
# machine; a binary linked here against the system glibc would not start there).
#
#   scripts/build-linux.sh addon               the napi addon: crates/tokenrelay-node/tokenrelay.<platform>.node
#   scripts/build-linux.sh bin CARGO_ARGS...   e.g. `bin -p tokenrelay-netlify`: target/glibc-2.17/<triple>/release/<bin>
#
# Both link with the same toolchain: napi-rs's prebuilt gcc cross toolchain with a
# glibc 2.17 sysroot (rust-cross/manylinux-cross, published on npm as
# @napi-rs/cross-toolchain-<host>-target-<arch>), fetched once with `npm pack` into
# target/cross-toolchain/. Both use one target directory (target/glibc-2.17), so a
# binary reuses the dependencies the addon compiled with the same features (the
# Netlify function after the addon: 43 crates compiled, 155 for the addon from cold).
# Every binary built is then checked by scripts/glibc-floor.mjs.
#
# Why not `napi build --use-napi-cross`, which uses the same toolchain? Its
# download step asks for the toolchain package at @napi-rs/cross-toolchain's own
# version (1.0.5), which the x86_64 toolchain package was never published at (its
# latest is 1.0.0), and unpacks it with @napi-rs/lzma, a native binary that needs
# Node 22 or later. Fetching and unpacking the toolchain here (system tar and xz) and
# setting the same variables `--use-napi-cross` would set avoids both, and serves
# plain cargo too.
#
# TARGET (default x86_64-unknown-linux-gnu) may also be aarch64-unknown-linux-gnu
# (needs `rustup target add aarch64-unknown-linux-gnu`; not built on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${TARGET:-x86_64-unknown-linux-gnu}

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) host=x64 ;;
  *) echo "build-linux.sh: needs a Linux x86_64 host (the toolchains it uses run there)" >&2; exit 1 ;;
esac
# The toolchain package of each target, at the newest version published.
case "$TARGET" in
  x86_64-unknown-linux-gnu) toolchain_pkg="@napi-rs/cross-toolchain-$host-target-x86_64@1.0.0" ;;
  aarch64-unknown-linux-gnu) toolchain_pkg="@napi-rs/cross-toolchain-$host-target-aarch64@1.0.3" ;;
  *) echo "build-linux.sh: TARGET $TARGET: only x86_64-unknown-linux-gnu and aarch64-unknown-linux-gnu" >&2; exit 1 ;;
esac

# Fetch and unpack the toolchain once (~50 MB download, ~260 MB unpacked).
toolchain="$PWD/target/cross-toolchain/${toolchain_pkg#@napi-rs/}"
if [ ! -x "$toolchain/bin/$TARGET-gcc" ]; then
  echo "build-linux.sh: fetching $toolchain_pkg" >&2
  rm -rf "$toolchain" "$toolchain.tmp"
  mkdir -p "$toolchain.tmp"
  tarball=$(cd "$toolchain.tmp" && npm pack --silent "$toolchain_pkg")
  tar -xzf "$toolchain.tmp/$tarball" -C "$toolchain.tmp"
  tar -xJf "$toolchain.tmp/package/$TARGET.tar.xz" -C "$toolchain.tmp"
  rm -rf "$toolchain.tmp/package" "$toolchain.tmp/$tarball"
  mv "$toolchain.tmp" "$toolchain"
fi

# What `napi build --use-napi-cross` sets (napiCrossToolchainEnvs in @napi-rs/cli):
# cargo's linker for the target, and cc-rs's compiler and archiver (ring's C and
# assembly) under the target-scoped names cc-rs reads whether or not the target is
# the host's own triple.
triple_env=${TARGET//-/_}
upper_env=$(echo "$triple_env" | tr '[:lower:]' '[:upper:]')
export "CARGO_TARGET_${upper_env}_LINKER=$toolchain/bin/$TARGET-gcc"
export "CC_${triple_env}=$toolchain/bin/$TARGET-gcc"
export "CXX_${triple_env}=$toolchain/bin/$TARGET-g++"
export "AR_${triple_env}=$toolchain/bin/$TARGET-ar"
export "RANLIB_${triple_env}=$toolchain/bin/$TARGET-ranlib"
export PATH="$toolchain/bin:$PATH"
# scripts/glibc-floor.mjs reads the binaries with the toolchain's objdump, which knows the target's ELF.
export OBJDUMP="$toolchain/bin/$TARGET-objdump"

# The executables a `cargo build --message-format json` run linked, one per line.
executables() {
  node -e 'for (const line of require("fs").readFileSync(0, "utf8").split("\n")) {
    const m = line ? JSON.parse(line) : {};
    if (m.reason === "compiler-artifact" && m.executable) console.log(m.executable);
  }'
}

# Absolute: napi-derive writes the type definitions under it from rustc, whose
# working directory is the workspace root, not the addon's.
target_dir="$PWD/target/glibc-2.17"
case "${1:-}" in
  addon)
    (cd crates/tokenrelay-node &&
      ../../node_modules/.bin/napi build --platform --release --esm --js binding.js --dts binding.d.ts \
        --target "$TARGET" --target-dir "$target_dir")
    built=(crates/tokenrelay-node/tokenrelay.*.node)
    ;;
  bin)
    shift
    [ $# -gt 0 ] || { echo "build-linux.sh bin: name the package, e.g. bin -p tokenrelay-netlify" >&2; exit 2; }
    mkdir -p "$target_dir"
    cargo build --release --locked --target "$TARGET" --target-dir "$target_dir" \
      --message-format json-render-diagnostics "$@" >"$target_dir/build-linux.json"
    mapfile -t built < <(executables <"$target_dir/build-linux.json")
    ;;
  *)
    echo "usage: scripts/build-linux.sh addon | bin CARGO_BUILD_ARGS..." >&2
    exit 2
    ;;
esac
node scripts/glibc-floor.mjs "${built[@]}"
