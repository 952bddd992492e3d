//! The environment the config is resolved against.

use std::collections::HashMap;
use std::path::Path;

/// A snapshot of environment variables.
///
/// [`Env::local`] reads the process environment plus a `.env` file in the
/// current directory (local development; variables already set win), while
/// [`Env::process`] uses the platform's environment as is. Tests build one
/// from pairs, so nothing mutates the process environment.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment as is (production).
    pub fn process() -> Self {
        Self::from_pairs(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))))
    }

    /// The process environment plus `./.env` when it exists (local development).
    pub fn local() -> Self {
        Self::process().with_dotenv(Path::new(".env"))
    }

    /// Adds the variables of a dotenv file that are not already set.
    /// A missing file is not an error: production has none.
    pub fn with_dotenv(mut self, path: &Path) -> Self {
        if let Ok(iter) = dotenvy::from_path_iter(path) {
            for (k, v) in iter.flatten() {
                self.vars.entry(k).or_insert(v);
            }
        }
        self
    }

    /// An environment made of the given pairs only.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// The value of `name`, treating an empty value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

impl std::fmt::Debug for Env {
    /// Lists variable names only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_fills_gaps_but_never_overrides_the_platform() {
        let dir = std::env::temp_dir().join(format!("tokenrelay-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(".env");
        std::fs::write(&file, "A=from-file\nB=from-file\n").unwrap();
        let env = Env::from_pairs([("A", "from-platform")]).with_dotenv(&file);
        assert_eq!(env.get("A"), Some("from-platform"));
        assert_eq!(env.get("B"), Some("from-file"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = Env::from_pairs([("SECRET", "hunter2")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("SECRET") && !shown.contains("hunter2"), "{shown}");
    }
}
