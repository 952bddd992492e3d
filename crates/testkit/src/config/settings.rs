//! The site-wide tables (`[cache]`, `[store]`, `[relay]`) and the limits an
//! upstream or route shares with them.

use std::time::Duration;

use super::render::{Table, strings};

/// Setters for optional fields: `name(value)` sets `value`, and
/// `name(None)` keeps the relay's default (a rig passes its own `Option`).
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: impl Into<Option<$ty>>) -> Self {
                self.$name = value.into();
                self
            }
        )*
    };
}
pub(super) use setters;

/// `[cache]`: when tokens are refreshed and how instances share the work.
#[derive(Clone, Debug, Default)]
pub struct CacheSettings {
    safety_margin: Option<Duration>,
    refresh_window: Option<Duration>,
    lock_lease: Option<Duration>,
    wait_timeout: Option<Duration>,
    failure_cooldown: Option<Duration>,
    min_token_age: Option<Duration>,
    invalidations_per_hour: Option<u32>,
}

impl CacheSettings {
    setters! {
        safety_margin: Duration,
        refresh_window: Duration,
        lock_lease: Duration,
        wait_timeout: Duration,
        failure_cooldown: Duration,
        min_token_age: Duration,
        invalidations_per_hour: u32,
    }

    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.duration("safety_margin", self.safety_margin)
            .duration("refresh_window", self.refresh_window)
            .duration("lock_lease", self.lock_lease)
            .duration("wait_timeout", self.wait_timeout)
            .duration("failure_cooldown", self.failure_cooldown)
            .duration("min_token_age", self.min_token_age)
            .opt("invalidations_per_hour", self.invalidations_per_hour.map(i64::from));
        t
    }
}

/// `[store]`: the shared store's options.
#[derive(Clone, Debug, Default)]
pub struct StoreSettings {
    allow_unencrypted: bool,
    timeout: Option<Duration>,
}

impl StoreSettings {
    setters! { timeout: Duration }

    /// Stores tokens without `TOKENRELAY_ENCRYPTION_KEY`.
    pub fn allow_unencrypted(mut self) -> Self {
        self.allow_unencrypted = true;
        self
    }

    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.flag("allow_unencrypted", self.allow_unencrypted).duration("timeout", self.timeout);
        t
    }
}

/// `[relay]`: the relay's site-wide limits.
#[derive(Clone, Debug, Default)]
pub struct RelaySettings {
    allowed_origins: Vec<String>,
    rate_limit: Option<RateLimit>,
    max_request_bytes: Option<u64>,
    max_response_bytes: Option<u64>,
    max_cached_body_bytes: Option<u64>,
    timeout: Option<Duration>,
}

impl RelaySettings {
    setters! {
        /// The per-client limit every upstream starts from.
        rate_limit: RateLimit,
        max_request_bytes: u64,
        max_response_bytes: u64,
        max_cached_body_bytes: u64,
        timeout: Duration,
    }

    /// The origins allowed to call the relay cross-origin.
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(mut self, origins: I) -> Self {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::default();
        if !self.allowed_origins.is_empty() {
            t.set("allowed_origins", strings(&self.allowed_origins));
        }
        t.opt("rate_limit", self.rate_limit.as_ref().map(RateLimit::to_table))
            .opt("max_request_bytes", self.max_request_bytes.map(count))
            .opt("max_response_bytes", self.max_response_bytes.map(count))
            .opt("max_cached_body_bytes", self.max_cached_body_bytes.map(count))
            .duration("timeout", self.timeout);
        t
    }
}

/// Whom a rate limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    /// Each client IP (the default).
    Ip,
    /// Each caller a route's `caller` proof names.
    Caller,
}

/// `rate_limit = { requests = 100, window = "1m" }`.
#[derive(Clone, Debug)]
pub struct RateLimit {
    requests: u32,
    window: Duration,
    ipv6_prefix: Option<u8>,
    per: Option<Per>,
}

impl RateLimit {
    /// `requests` per client in each `window`.
    pub fn new(requests: u32, window: Duration) -> Self {
        Self { requests, window, ipv6_prefix: None, per: None }
    }

    setters! {
        /// Site-wide only: how much of an IPv6 address is one client.
        ipv6_prefix: u8,
        /// Per upstream only: whom the limit counts.
        per: Per,
    }

    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.set("requests", i64::from(self.requests))
            .duration("window", Some(self.window))
            .opt("ipv6_prefix", self.ipv6_prefix.map(i64::from))
            .opt(
                "per",
                self.per.map(|p| match p {
                    Per::Ip => "ip",
                    Per::Caller => "caller",
                }),
            );
        t
    }
}

/// `budget = { requests = 10000, per = "1d" }`: upstream calls per window.
#[derive(Clone, Debug)]
pub struct Budget {
    requests: u64,
    per: Duration,
}

impl Budget {
    pub fn new(requests: u64, per: Duration) -> Self {
        Self { requests, per }
    }

    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.set("requests", count(self.requests)).duration("per", Some(self.per));
        t
    }
}

/// A count as TOML's signed integer (every count a test sets fits).
pub(super) fn count(n: u64) -> i64 {
    i64::try_from(n).expect("a count below 2^63")
}

/// `[alerts]`: where events are sent and their thresholds.
#[derive(Clone, Debug, Default)]
pub struct AlertSettings {
    webhook: Option<String>,
    spike_factor: Option<f64>,
    spike_min_calls: Option<u64>,
    spike_check: Option<Duration>,
    probing_refusals: Option<u64>,
}

impl AlertSettings {
    setters! { spike_factor: f64, spike_min_calls: u64, spike_check: Duration, probing_refusals: u64 }

    /// The webhook's URL, read from the environment variable `var`.
    pub fn webhook_env(mut self, var: impl Into<String>) -> Self {
        self.webhook = Some(var.into());
        self
    }

    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::default();
        if let Some(var) = &self.webhook {
            let mut env = Table::default();
            env.set("env", var.as_str());
            t.table("webhook", env);
        }
        t.opt("spike_factor", self.spike_factor)
            .opt("spike_min_calls", self.spike_min_calls.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
            .duration("spike_check", self.spike_check)
            .opt("probing_refusals", self.probing_refusals.map(|n| i64::try_from(n).unwrap_or(i64::MAX)));
        t
    }
}
