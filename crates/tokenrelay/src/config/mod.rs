//! `tokenrelay.toml`: named upstreams and cache settings, parsed and
//! validated once, up front, into typed values.
//!
//! Secrets are never literals in the file: they are references such as
//! `client_secret = { env = "GETTY_API_SECRET" }`, resolved against an
//! [`Env`]. Every problem is reported at once, naming the file, the upstream
//! and the field; every missing variable is listed at once.
//!
//! This file holds the typed values and the entry points ([`Config::load`],
//! [`Config::parse`]). `raw` holds the file's serde shapes; `builder`
//! validates them into typed values, `token_source` the `token` tables,
//! `relay` the relay's rules (`route_pattern` its path patterns,
//! `route_cache` its routes' response caches), `alerts` the `[alerts]`
//! table; `env` is
//! the environment they are resolved against; `credentials` lists an
//! upstream's credentials once and `summary` reports the config redacted.

pub(crate) mod alerts;
mod builder;
mod credentials;
mod env;
mod origin;
mod raw;
pub(crate) mod relay;
mod route_cache;
mod route_pattern;
mod summary;
mod token_source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use credentials::SecretVar;
pub use env::Env;
pub use summary::{Summary, UpstreamSummary};

use crate::error::{Error, Result};
use crate::token::Source;
use builder::Builder;
pub(crate) use origin::Origin;
use raw::RawConfig;

/// The config file used when `TOKENRELAY_CONFIG` is not set.
pub const DEFAULT_CONFIG_FILE: &str = "tokenrelay.toml";
/// The variable that overrides the config file's path.
pub const CONFIG_PATH_VAR: &str = "TOKENRELAY_CONFIG";

/// Subtracted from a token's lifetime before it is stored, so an expired
/// token is never served (capped at half the lifetime for short tokens).
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(60);
/// How long before that point a token is refreshed in the background
/// (capped at half of what remains for short tokens).
pub const DEFAULT_REFRESH_WINDOW: Duration = Duration::from_secs(300);
/// How long the distributed refresh lock is held at most; a crashed holder
/// blocks rotation no longer than this.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(20);
/// How long a caller without any valid token waits for another instance's refresh.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(25);
/// After a failed refresh, callers fail fast for this long instead of
/// hammering the token endpoint.
pub const DEFAULT_FAILURE_COOLDOWN: Duration = Duration::from_secs(5);
/// Upper bound of every `[cache]` duration: far beyond any sensible value,
/// and small enough that deadlines computed from it never overflow.
const MAX_CACHE_DURATION: Duration = Duration::from_secs(31_557_600); // 1 year, as humantime counts it
/// A token the upstream refuses younger than this is kept, not invalidated:
/// a fresh token that is refused too points at the request, not the token.
pub const DEFAULT_MIN_TOKEN_AGE: Duration = Duration::from_secs(60);
/// Invalidations per upstream and hour, counted across instances in the store.
pub const DEFAULT_INVALIDATIONS_PER_HOUR: u32 = 10;
/// Timeout of one shared-store call; past it the broker degrades.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Timeout of one token endpoint request.
pub const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub(crate) file: PathBuf,
    pub(crate) cache: CacheSettings,
    pub(crate) store: StoreSettings,
    pub(crate) relay: relay::RelaySettings,
    /// `[alerts]`: none without a webhook.
    pub(crate) alerts: Option<alerts::AlertSettings>,
    pub(crate) upstreams: BTreeMap<String, Upstream>,
}

/// Token cache timings (`[cache]`).
#[derive(Debug, Clone)]
pub(crate) struct CacheSettings {
    pub(crate) safety_margin: Duration,
    pub(crate) refresh_window: Duration,
    pub(crate) lock_lease: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) failure_cooldown: Duration,
    pub(crate) min_token_age: Duration,
    pub(crate) invalidations_per_hour: u32,
}

/// Shared-store options (`[store]`).
#[derive(Debug, Clone)]
pub(crate) struct StoreSettings {
    pub(crate) allow_unencrypted: bool,
    pub(crate) timeout: Duration,
}

/// One named upstream API.
#[derive(Debug)]
pub struct Upstream {
    pub(crate) name: String,
    pub(crate) base_url: Url,
    /// What each relayed request is built from, worked out from `base_url`.
    pub(crate) origin: Origin,
    pub(crate) source: Source,
    /// What the relay exposes; `None` keeps the upstream server-side only.
    pub(crate) relay: Option<relay::UpstreamRelay>,
}

impl Upstream {
    /// The upstream's name, as used in `/api/relay/<name>/...`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base URL requests are relayed to.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }
}

impl Config {
    /// The config file's path: `$TOKENRELAY_CONFIG`, else `./tokenrelay.toml`.
    pub fn path(env: &Env) -> PathBuf {
        env.get(CONFIG_PATH_VAR).map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), PathBuf::from)
    }

    /// Reads and validates the config file named by [`Config::path`].
    pub fn load(env: &Env) -> Result<Config> {
        let file = Self::path(env);
        let text = std::fs::read_to_string(&file)
            .map_err(|source| Error::ConfigUnreadable { file: file.clone(), source: source.into() })?;
        Self::parse(&text, file, env)
    }

    /// Validates config text; `file` only names it in errors.
    pub fn parse(text: &str, file: impl Into<PathBuf>, env: &Env) -> Result<Config> {
        let file = file.into();
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| Error::ConfigInvalid { problems: vec![describe_toml_error(text, &e)], file: file.clone() })?;
        let mut b = Builder { env, problems: Vec::new(), missing: Vec::new() };
        let cache = b.cache(&raw);
        let relay = b.relay_settings(raw.relay);
        let alerts = b.alerts(raw.alerts);
        if raw.upstreams.is_empty() {
            b.problems.push("no upstreams configured: add an [upstreams.<name>] table".to_owned());
        }
        let upstreams: BTreeMap<_, _> =
            raw.upstreams.into_iter().filter_map(|(name, u)| b.upstream(&name, u).map(|u| (name, u))).collect();
        for u in upstreams.values() {
            b.lease_outlives_fetch(&cache, u);
        }
        if !b.problems.is_empty() {
            return Err(Error::ConfigInvalid { file, problems: b.problems });
        }
        if !b.missing.is_empty() {
            return Err(Error::MissingEnv { file, missing: b.missing });
        }
        let store = StoreSettings {
            allow_unencrypted: raw.store.allow_unencrypted,
            timeout: raw.store.timeout.unwrap_or(DEFAULT_STORE_TIMEOUT),
        };
        Ok(Config { file, cache, store, relay, alerts, upstreams })
    }

    /// The file this config came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The configured upstreams, by name.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.upstreams.values()
    }
}

/// The parser's message with a line number, but never the offending line:
/// it could hold a pasted secret.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message().trim())
        }
        None => e.message().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests;
