//! `tokenrelay.toml`: named upstreams and cache settings, parsed and
//! validated once, up front, into typed values.
//!
//! Secrets are never literals in the file: they are references such as
//! `client_secret = { env = "GETTY_API_SECRET" }`, resolved against an
//! [`Env`]. Every problem is reported at once, naming the file, the upstream
//! and the field; every missing variable is listed at once.

mod credentials;
mod env;
mod raw;
pub(crate) mod relay;
mod route_pattern;
mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

pub use credentials::SecretVar;
pub use env::Env;
pub use summary::{Summary, UpstreamSummary};

use crate::error::{Error, MissingVar, Result};
use crate::param::Param;
use crate::token::json::{Body, Expiry, JsonEndpoint, Template};
use crate::token::oauth2::{ClientAuth, ClientCredentials};
use crate::token::{Source, retry};
use raw::{BodyFormat, RawConfig, RawParam, RawToken, RawUpstream};

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
        Ok(Config { file, cache, store, relay, upstreams })
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

/// Collects problems and missing variables while building typed values.
struct Builder<'a> {
    env: &'a Env,
    problems: Vec<String>,
    missing: Vec<MissingVar>,
}

impl Builder<'_> {
    fn problem(&mut self, upstream: &str, field: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("upstream \"{upstream}\": {field}: {message}"));
    }

    fn cache(&mut self, raw: &RawConfig) -> CacheSettings {
        let c = &raw.cache;
        let settings = CacheSettings {
            safety_margin: c.safety_margin.unwrap_or(DEFAULT_SAFETY_MARGIN),
            refresh_window: c.refresh_window.unwrap_or(DEFAULT_REFRESH_WINDOW),
            lock_lease: c.lock_lease.unwrap_or(DEFAULT_LOCK_LEASE),
            wait_timeout: c.wait_timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT),
            failure_cooldown: c.failure_cooldown.unwrap_or(DEFAULT_FAILURE_COOLDOWN),
            min_token_age: c.min_token_age.unwrap_or(DEFAULT_MIN_TOKEN_AGE),
            invalidations_per_hour: c.invalidations_per_hour.unwrap_or(DEFAULT_INVALIDATIONS_PER_HOUR),
        };
        let durations = [
            ("safety_margin", settings.safety_margin),
            ("refresh_window", settings.refresh_window),
            ("lock_lease", settings.lock_lease),
            ("wait_timeout", settings.wait_timeout),
            ("failure_cooldown", settings.failure_cooldown),
            ("min_token_age", settings.min_token_age),
        ];
        for (field, d) in durations.into_iter().filter(|(_, d)| *d > MAX_CACHE_DURATION) {
            self.problems.push(format!(
                "cache.{field}: must be at most {} (got {})",
                humantime::format_duration(MAX_CACHE_DURATION),
                humantime::format_duration(d)
            ));
        }
        if settings.invalidations_per_hour == 0 {
            self.problems.push("cache.invalidations_per_hour: must be at least 1".to_owned());
        }
        if settings.lock_lease.is_zero() {
            self.problems.push("cache.lock_lease: must be greater than zero".to_owned());
        }
        if settings.wait_timeout < settings.lock_lease {
            self.problems.push(format!(
                "cache.wait_timeout: must be at least cache.lock_lease ({}) so waiters outlive a crashed lock holder",
                humantime::format_duration(settings.lock_lease)
            ));
        }
        settings
    }

    /// The refresh lock must outlast the longest fetch its holder can make:
    /// else the lease runs out mid-fetch, a second instance fetches too, and
    /// the first one's write is refused (see the fenced write in `store`).
    fn lease_outlives_fetch(&mut self, cache: &CacheSettings, u: &Upstream) {
        let Some(timeout) = u.source.timeout() else { return };
        let worst = retry::worst_case(timeout);
        if cache.lock_lease < worst {
            self.problem(
                &u.name,
                "token.timeout",
                format_args!(
                    "cache.lock_lease ({}) is shorter than the worst-case token fetch, {} attempts × token.timeout ({}) + {} backoff = {}: raise cache.lock_lease or lower token.timeout",
                    humantime::format_duration(cache.lock_lease),
                    retry::ATTEMPTS,
                    humantime::format_duration(timeout),
                    humantime::format_duration(retry::max_backoff()),
                    humantime::format_duration(worst),
                ),
            );
        }
    }

    fn upstream(&mut self, name: &str, raw: RawUpstream) -> Option<Upstream> {
        let name_ok = !name.is_empty()
            && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
        if !name_ok {
            self.problems.push(format!("upstream \"{name}\": name must use only a-z, 0-9, '-' and '_'"));
        }
        let base_url = self.url(name, "base_url", &raw.base_url);
        if base_url.as_ref().is_some_and(|u| u.query().is_some() || u.fragment().is_some()) {
            self.problem(name, "base_url", "must not have a query or fragment: the relay appends the request's own");
        }
        let source = self.source(name, raw.token);
        let relay = match raw.relay {
            None => Some(None),
            Some(r) => self.upstream_relay(name, r).map(Some),
        };
        Some(Upstream { name: name.to_owned(), base_url: base_url?, source: source?, relay: relay? })
            .filter(|_| name_ok)
    }

    fn url(&mut self, upstream: &str, field: &str, text: &str) -> Option<Url> {
        match Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(u) => {
                self.problem(upstream, field, format!("scheme must be http or https, not \"{}\"", u.scheme()));
                None
            }
            Err(e) => {
                self.problem(upstream, field, e);
                None
            }
        }
    }

    /// A literal or an env reference.
    fn param(&mut self, upstream: &str, field: &str, raw: RawParam) -> Option<Param> {
        match raw {
            RawParam::Literal(v) => Some(Param::Literal(v)),
            RawParam::Env { env: name } => match self.env.get(&name) {
                Some(v) => Some(Param::Env { value: SecretString::from(v.to_owned()), name }),
                None => {
                    self.missing.push(MissingVar { name, used_by: format!("upstream \"{upstream}\": {field}") });
                    None
                }
            },
        }
    }

    /// An env reference only: secrets are never literals in the file.
    fn secret(&mut self, upstream: &str, field: &str, raw: RawParam) -> Option<Param> {
        if let RawParam::Literal(_) = raw {
            self.problem(
                upstream,
                field,
                "must reference an environment variable, e.g. { env = \"MY_SECRET\" }, never a literal secret",
            );
            return None;
        }
        self.param(upstream, field, raw)
    }

    fn params(&mut self, upstream: &str, field: &str, raw: BTreeMap<String, RawParam>) -> Option<Vec<(String, Param)>> {
        let out: Vec<_> = raw
            .into_iter()
            .map(|(k, v)| {
                let p = self.param(upstream, &format!("{field}.{k}"), v);
                (k, p)
            })
            .collect();
        out.into_iter().map(|(k, p)| p.map(|p| (k, p))).collect()
    }

    fn source(&mut self, upstream: &str, raw: RawToken) -> Option<Source> {
        match raw {
            RawToken::OAuth2 {
                url,
                client_id,
                client_secret,
                auth,
                scope,
                audience,
                extra,
                default_lifetime,
                timeout,
            } => {
                let url = self.url(upstream, "token.url", &url);
                let client_id = self.param(upstream, "token.client_id", client_id);
                let client_secret = self.secret(upstream, "token.client_secret", client_secret);
                let extra = self.params(upstream, "token.extra", extra);
                Some(Source::OAuth2(ClientCredentials {
                    url: url?,
                    client_id: client_id?,
                    client_secret: client_secret?,
                    auth: auth.unwrap_or(ClientAuth::Basic),
                    scope,
                    audience,
                    extra: extra?,
                    default_lifetime,
                    timeout: timeout.unwrap_or(DEFAULT_TOKEN_TIMEOUT),
                }))
            }
            RawToken::Json {
                url,
                method,
                headers,
                body,
                body_format,
                token_pointer,
                expires_in_pointer,
                expires_at_pointer,
                default_lifetime,
                timeout,
            } => {
                let url = self.url(upstream, "token.url", &url);
                let method = self.method(upstream, method.as_deref().unwrap_or("POST"));
                let headers = self.params(upstream, "token.headers", headers);
                let body = body.map(|t| self.body(upstream, t, body_format.unwrap_or(BodyFormat::Json))).transpose();
                for (field, ptr) in [
                    ("token.token_pointer", Some(&token_pointer)),
                    ("token.expires_in_pointer", expires_in_pointer.as_ref()),
                    ("token.expires_at_pointer", expires_at_pointer.as_ref()),
                ] {
                    if ptr.is_some_and(|p| !p.starts_with('/')) {
                        self.problem(
                            upstream,
                            field,
                            "must be a JSON pointer starting with '/', e.g. \"/access_token\"",
                        );
                    }
                }
                let expiry = match (expires_in_pointer, expires_at_pointer) {
                    (Some(_), Some(_)) => {
                        self.problem(
                            upstream,
                            "token.expires_at_pointer",
                            "set either expires_in_pointer or expires_at_pointer, not both",
                        );
                        None
                    }
                    (Some(p), None) => Some(Expiry::In(p)),
                    (None, Some(p)) => Some(Expiry::At(p)),
                    (None, None) if default_lifetime.is_none() => {
                        self.problem(
                            upstream,
                            "token.default_lifetime",
                            "required when neither expires_in_pointer nor expires_at_pointer is set",
                        );
                        None
                    }
                    (None, None) => Some(Expiry::Unspecified),
                };
                Some(Source::Json(JsonEndpoint {
                    method: method?,
                    url: url?,
                    headers: headers?,
                    body: body.ok()?,
                    token_pointer,
                    expiry: expiry?,
                    default_lifetime,
                    timeout: timeout.unwrap_or(DEFAULT_TOKEN_TIMEOUT),
                }))
            }
            RawToken::Static { key } => self.secret(upstream, "token.key", key).map(Source::Static),
        }
    }

    fn method(&mut self, upstream: &str, text: &str) -> Option<reqwest::Method> {
        match text.to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT") => reqwest::Method::from_bytes(m.as_bytes()).ok(),
            _ => {
                self.problem(upstream, "token.method", format!("\"{text}\" is not one of GET, POST, PUT"));
                None
            }
        }
    }

    fn body(&mut self, upstream: &str, table: toml::Table, format: BodyFormat) -> Result<Body, ()> {
        match format {
            BodyFormat::Json => {
                self.template(upstream, "token.body", toml::Value::Table(table)).map(Body::Json).ok_or(())
            }
            BodyFormat::Form => {
                let mut fields = Vec::new();
                for (k, v) in table {
                    let field = format!("token.body.{k}");
                    match v.try_into::<RawParam>() {
                        Ok(raw) => fields.push((k, self.param(upstream, &field, raw))),
                        Err(_) => self.problem(upstream, &field, "form fields must be strings or { env = \"NAME\" }"),
                    }
                }
                fields.into_iter().map(|(k, p)| p.map(|p| (k, p))).collect::<Option<Vec<_>>>().map(Body::Form).ok_or(())
            }
        }
    }

    fn template(&mut self, upstream: &str, field: &str, v: toml::Value) -> Option<Template> {
        Some(match v {
            toml::Value::Table(t) if t.len() == 1 && t.get("env").is_some_and(toml::Value::is_str) => {
                let name = t["env"].as_str().unwrap_or_default().to_owned();
                Template::Param(self.param(upstream, field, RawParam::Env { env: name })?)
            }
            toml::Value::Table(t) => {
                let fields: Vec<_> = t
                    .into_iter()
                    .map(|(k, v)| {
                        let f = format!("{field}.{k}");
                        (k, self.template(upstream, &f, v))
                    })
                    .collect();
                Template::Object(fields.into_iter().map(|(k, t)| t.map(|t| (k, t))).collect::<Option<_>>()?)
            }
            toml::Value::Array(items) => {
                let items: Vec<_> = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| self.template(upstream, &format!("{field}[{i}]"), v))
                    .collect();
                Template::Array(items.into_iter().collect::<Option<_>>()?)
            }
            toml::Value::String(s) => Template::Literal(serde_json::Value::String(s)),
            toml::Value::Integer(i) => Template::Literal(i.into()),
            toml::Value::Float(f) => {
                Template::Literal(serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into))
            }
            toml::Value::Boolean(b) => Template::Literal(b.into()),
            toml::Value::Datetime(d) => Template::Literal(d.to_string().into()),
        })
    }
}

#[cfg(test)]
mod tests;
