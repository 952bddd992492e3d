//! Where a site lives and what its environment holds: the options every
//! build-time function of the addon takes (`configPath`, `cwd`, `env`),
//! resolved once into the core's [`Env`] the same way `Env::local` does for a
//! server (process environment, then the site's `.env` for what is still unset).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokenrelay::{CONFIG_PATH_VAR, DEFAULT_CONFIG_FILE, Env, UPSTASH_VARS, VERCEL_KV_VARS};

use crate::Error;

/// The dotenv file read from the site's directory (local development).
const DOTENV_FILE: &str = ".env";

/// The common options, borrowed from whichever options object carried them.
/// `Debug` names the overridden variables, never their values.
#[derive(Default, Clone, Copy)]
pub struct SiteOptions<'a> {
    /// The config file, relative to `cwd`.
    pub config_path: Option<&'a str>,
    /// The site's directory, relative to the process's current directory.
    pub cwd: Option<&'a str>,
    /// Overrides of the process environment; `""` unsets a variable.
    pub env: Option<&'a HashMap<String, String>>,
}

impl<'a> SiteOptions<'a> {
    /// The common fields of any options object.
    pub fn of(
        config_path: &'a Option<String>,
        cwd: &'a Option<String>,
        env: &'a Option<HashMap<String, String>>,
    ) -> Self {
        SiteOptions { config_path: config_path.as_deref(), cwd: cwd.as_deref(), env: env.as_ref() }
    }
}

impl std::fmt::Debug for SiteOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut env: Vec<&str> = self.env.into_iter().flat_map(HashMap::keys).map(String::as_str).collect();
        env.sort_unstable();
        f.debug_struct("SiteOptions")
            .field("config_path", &self.config_path)
            .field("cwd", &self.cwd)
            .field("env", &env)
            .finish()
    }
}

/// A site resolved from [`SiteOptions`].
pub struct Site {
    /// The site's directory (absolute).
    pub dir: PathBuf,
    /// The environment the config is resolved against; its
    /// `TOKENRELAY_CONFIG` holds the config file's absolute path.
    pub env: Env,
}

/// Which store a broker built on this site may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChoice {
    /// Whatever the environment selects (Upstash when configured).
    AsConfigured,
    /// The local file store even when Upstash is configured: the shared
    /// store is neither read nor written.
    LocalOnly,
}

impl Site {
    /// Resolves the options against the process environment and current directory.
    pub fn resolve(options: SiteOptions<'_>, store: StoreChoice) -> Result<Site, Error> {
        let here = std::env::current_dir()
            .map_err(|e| Error::invalid_option("cwd", format!("the process's current directory is unusable: {e}")))?;
        let process = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::resolve_in(&here, process.collect(), options, store)
    }

    /// [`Site::resolve`] from an explicit starting directory and environment.
    pub(crate) fn resolve_in(
        here: &Path,
        mut vars: HashMap<String, String>,
        options: SiteOptions<'_>,
        store: StoreChoice,
    ) -> Result<Site, Error> {
        let dir = options.cwd.map_or_else(|| here.to_owned(), |c| here.join(c));
        if !dir.is_dir() {
            return Err(Error::invalid_option("cwd", format!("{} is not a directory", dir.display())));
        }
        if let Some(overrides) = options.env {
            vars.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if store == StoreChoice::LocalOnly {
            for url_var in [UPSTASH_VARS.0, VERCEL_KV_VARS.0] {
                vars.insert(url_var.to_owned(), String::new());
            }
        }
        let dotenv = dir.join(DOTENV_FILE);
        // The config path may itself come from the site's .env, so look it up
        // in the finished environment, then pin it as an absolute path.
        let config = match options.config_path {
            Some(path) => path.to_owned(),
            None => Env::from_pairs(vars.clone())
                .with_dotenv(&dotenv)
                .get(CONFIG_PATH_VAR)
                .unwrap_or(DEFAULT_CONFIG_FILE)
                .to_owned(),
        };
        vars.insert(CONFIG_PATH_VAR.to_owned(), dir.join(config).to_string_lossy().into_owned());
        Ok(Site { env: Env::from_pairs(vars).with_dotenv(&dotenv), dir })
    }
}

/// Whether `name` can be an environment variable in every shell and CI
/// (POSIX portable names: letters, digits and `_`, not starting with a digit).
pub fn is_env_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(dir: &Path, vars: &[(&str, &str)], options: SiteOptions<'_>, store: StoreChoice) -> Result<Site, Error> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Site::resolve_in(dir, vars, options, store)
    }

    #[test]
    fn config_defaults_to_tokenrelay_toml_in_the_site_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("site")).unwrap();
        let options = SiteOptions { cwd: Some("site"), ..SiteOptions::default() };
        let s = site(tmp.path(), &[], options, StoreChoice::AsConfigured).unwrap();
        assert_eq!(s.dir, tmp.path().join("site"));
        assert_eq!(s.env.get(CONFIG_PATH_VAR), tmp.path().join("site/tokenrelay.toml").to_str());
    }

    #[test]
    fn config_path_option_beats_the_variable_which_beats_dotenv() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".env"), "TOKENRELAY_CONFIG=from-dotenv.toml\nFROM_DOTENV=yes\n").unwrap();
        let from_dotenv = site(tmp.path(), &[], SiteOptions::default(), StoreChoice::AsConfigured).unwrap();
        assert_eq!(from_dotenv.env.get(CONFIG_PATH_VAR), tmp.path().join("from-dotenv.toml").to_str());
        assert_eq!(from_dotenv.env.get("FROM_DOTENV"), Some("yes"));

        let vars = [(CONFIG_PATH_VAR, "from-var.toml")];
        let from_var = site(tmp.path(), &vars, SiteOptions::default(), StoreChoice::AsConfigured).unwrap();
        assert_eq!(from_var.env.get(CONFIG_PATH_VAR), tmp.path().join("from-var.toml").to_str());

        let options = SiteOptions { config_path: Some("/etc/tr.toml"), ..SiteOptions::default() };
        let from_option = site(tmp.path(), &vars, options, StoreChoice::AsConfigured).unwrap();
        assert_eq!(from_option.env.get(CONFIG_PATH_VAR), Some("/etc/tr.toml"));
    }

    #[test]
    fn env_overrides_win_and_an_empty_value_unsets_even_what_dotenv_sets() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".env"), "A=dotenv\nB=dotenv\n").unwrap();
        let overrides = HashMap::from([("A".to_owned(), "override".to_owned()), ("B".to_owned(), String::new())]);
        let options = SiteOptions { env: Some(&overrides), ..SiteOptions::default() };
        let s = site(tmp.path(), &[("A", "process")], options, StoreChoice::AsConfigured).unwrap();
        assert_eq!(s.env.get("A"), Some("override"));
        assert_eq!(s.env.get("B"), None);
    }

    #[test]
    fn local_only_hides_the_shared_store_even_from_dotenv() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".env"), "KV_REST_API_URL=http://127.0.0.1:1\n").unwrap();
        let vars = [("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:2"), ("UPSTASH_REDIS_REST_TOKEN", "t")];
        let s = site(tmp.path(), &vars, SiteOptions::default(), StoreChoice::LocalOnly).unwrap();
        assert_eq!((s.env.get("UPSTASH_REDIS_REST_URL"), s.env.get("KV_REST_API_URL")), (None, None));
    }

    #[test]
    fn debug_names_the_overridden_variables_not_their_values() {
        let overrides = HashMap::from([("API_SECRET".to_owned(), "s3cret-value".to_owned())]);
        let shown = format!("{:?}", SiteOptions { env: Some(&overrides), ..SiteOptions::default() });
        assert_eq!(shown, "SiteOptions { config_path: None, cwd: None, env: [\"API_SECRET\"] }");
    }

    #[test]
    fn a_missing_site_directory_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let options = SiteOptions { cwd: Some("nope"), ..SiteOptions::default() };
        let err = site(tmp.path(), &[], options, StoreChoice::AsConfigured).err().unwrap();
        assert_eq!(err.code(), "invalid_options");
        assert_eq!(err.to_string(), format!("option cwd: {} is not a directory", tmp.path().join("nope").display()));
    }

    #[test]
    fn env_var_names_are_posix_portable() {
        for ok in ["A", "_A", "GETTY_TOKEN", "a1"] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É", "A\nINJECTED=1"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }
}
