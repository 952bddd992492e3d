//! Finding the programs tests start.

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
