//! Validates the file's values into typed ones, collecting every problem
//! and every missing variable instead of stopping at the first: `[cache]`,
//! each upstream, and the literals and environment references they use.

use std::collections::BTreeMap;

use secrecy::SecretString;
use url::Url;

use super::raw::{RawConfig, RawParam, RawUpstream};
use super::{
    CacheSettings, DEFAULT_FAILURE_COOLDOWN, DEFAULT_INVALIDATIONS_PER_HOUR, DEFAULT_LOCK_LEASE, DEFAULT_MIN_TOKEN_AGE,
    DEFAULT_REFRESH_WINDOW, DEFAULT_SAFETY_MARGIN, DEFAULT_WAIT_TIMEOUT, Env, MAX_CACHE_DURATION, Upstream,
};
use crate::error::MissingVar;
use crate::param::Param;
use crate::token::retry;

/// Collects problems and missing variables while building typed values.
pub(super) struct Builder<'a> {
    pub(super) env: &'a Env,
    pub(super) problems: Vec<String>,
    pub(super) missing: Vec<MissingVar>,
}

impl Builder<'_> {
    pub(super) fn problem(&mut self, upstream: &str, field: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("upstream \"{upstream}\": {field}: {message}"));
    }

    pub(super) fn cache(&mut self, raw: &RawConfig) -> CacheSettings {
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
    pub(super) fn lease_outlives_fetch(&mut self, cache: &CacheSettings, u: &Upstream) {
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

    pub(super) fn upstream(&mut self, name: &str, raw: RawUpstream) -> Option<Upstream> {
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
        let base_url = base_url?;
        let origin = super::Origin::of(&base_url).map_err(|why| self.problem(name, "base_url", why)).ok()?;
        Some(Upstream { name: name.to_owned(), base_url, origin, source: source?, relay: relay? }).filter(|_| name_ok)
    }

    pub(super) fn url(&mut self, upstream: &str, field: &str, text: &str) -> Option<Url> {
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
    pub(super) fn param(&mut self, upstream: &str, field: &str, raw: RawParam) -> Option<Param> {
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
    pub(super) fn secret(&mut self, upstream: &str, field: &str, raw: RawParam) -> Option<Param> {
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

    /// A secret that may be absent: `None`, and no problem, while its
    /// variable is unset or empty (a previous secret exists only during a
    /// rotation). A literal is refused as for [`Builder::secret`].
    pub(super) fn optional_secret(&mut self, upstream: &str, field: &str, raw: RawParam) -> Option<Param> {
        if let RawParam::Env { env } = &raw
            && self.env.get(env).is_none_or(str::is_empty)
        {
            return None;
        }
        self.secret(upstream, field, raw)
    }

    pub(super) fn params(
        &mut self,
        upstream: &str,
        field: &str,
        raw: BTreeMap<String, RawParam>,
    ) -> Option<Vec<(String, Param)>> {
        let out: Vec<_> = raw
            .into_iter()
            .map(|(k, v)| {
                let p = self.param(upstream, &format!("{field}.{k}"), v);
                (k, p)
            })
            .collect();
        out.into_iter().map(|(k, p)| p.map(|p| (k, p))).collect()
    }
}
