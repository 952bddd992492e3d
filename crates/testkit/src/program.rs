//! Finding the programs tests start, and what they inherit.

use std::path::PathBuf;

use anyhow::Context;

/// The executable `name` on `$PATH`, for a child started with a cleared environment.
pub fn program_on_path(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{name} is not on PATH"))
}

/// What a child that runs cargo (`vercel build`, `vercel dev`, `netlify dev`)
/// needs from this process's environment: the toolchain's variables and the
/// shared target directory. Not the variables `cargo test` sets for a test
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`…): cargo compares them with those a
/// crate's compilation read (ring reads `CARGO_MANIFEST_DIR`), so a build
/// started with them compiles again what `scripts/test.sh` built, and the next
/// build without them compiles it once more. Start the child with a cleared
/// environment and these.
pub fn toolchain_env() -> Vec<(&'static str, std::ffi::OsString)> {
    ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR", "TMPDIR"]
        .into_iter()
        .filter_map(|k| Some((k, std::env::var_os(k)?)))
        .collect()
}
