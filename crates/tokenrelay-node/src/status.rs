//! `status`: what the shared store says of the relayed upstreams, without a
//! secret (the `tokenrelay status` command), and `report`, the usage
//! meter's HTML page (`tokenrelay report`). The reading is the core's
//! [`tokenrelay::operator::status`] and [`tokenrelay::operator::report`];
//! this only converts it for JS.

use std::collections::BTreeMap;

use napi_derive::napi;
use tokenrelay::Broker;
use tokenrelay_site::{Site, SiteOptions, StoreChoice};

use crate::cache::PurgeOptions as SiteOnlyOptions;
use crate::error::AddonError;

/// One upstream's state in the store. Times are milliseconds.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct UpstreamStatus {
    pub upstream: String,
    /// Absent for a static key, or when the store holds no valid token.
    pub token: Option<TokenStatus>,
    /// The upstream's budget, then its routes' own.
    pub budgets: Vec<BudgetStatus>,
    /// Time until the upstream's cooldown ends, while one runs.
    pub cooldown_ms: Option<f64>,
    /// The route patterns cooling down on their own, while they do.
    pub route_cooldowns: Vec<RouteCooldown>,
    /// The rate limit's buckets shared by many clients, this window.
    pub rate_limit: SharedBuckets,
    /// The cache's purged path prefixes, newest first.
    pub purges: Vec<PurgeStatus>,
    /// The usage meter's last hour and last day: the upstream's requests
    /// without a route first (`route` absent), then each route's.
    pub usage: Vec<RouteUsage>,
}

/// What the relay did on one route in the last hour (the 60 minutes up to
/// now) and the last day (this UTC hour and the 23 before it).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct RouteUsage {
    /// The route pattern; absent for requests refused before a route was found.
    pub route: Option<String>,
    pub last_hour: Usage,
    pub last_day: Usage,
}

/// What the relay did over a span, counted by every instance.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct Usage {
    /// Calls sent to the upstream (a 401's retry is a second).
    pub calls: f64,
    /// Answers from the response cache, by kind.
    pub cache: CacheAnswers,
    /// Answers by status class (`"2xx"` → count).
    pub statuses: BTreeMap<String, f64>,
    /// Answers with an error, by code (`"rate_limited"` → count).
    pub refusals: BTreeMap<String, f64>,
    /// Tokens fetched from the token endpoint, and fetches that failed.
    pub token_fetches: f64,
    pub token_failures: f64,
    pub latency: Latency,
    /// Distinct clients (a HyperLogLog's estimate) in the hours the span touches.
    pub clients: f64,
}

/// Answers from the response cache, by kind.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct CacheAnswers {
    pub memory: f64,
    pub store: f64,
    pub collapsed: f64,
    pub stale: f64,
    pub stale_if_error: f64,
}

/// The upstream's latency: a histogram, and the bucket bounds of p50 and p95.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Calls per bucket, fastest first; the last bucket has no bound.
    pub histogram: Vec<LatencyBucket>,
}

/// Calls that took at most `leMs` (more than the previous bucket's).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct LatencyBucket {
    pub le_ms: Option<f64>,
    pub calls: f64,
}

/// Requests counted this window in the rate limit's shared buckets: `crowd`
/// (new clients past what an instance tracks: a spray over many addresses)
/// and `withoutAddress` (the platform gave no client address).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct SharedBuckets {
    pub window_ms: f64,
    pub crowd: f64,
    pub without_address: f64,
}

/// A route pattern's own cooldown (the upstream refused a call on it).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct RouteCooldown {
    pub route: String,
    pub cooldown_ms: f64,
}

/// One recorded cache purge.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct PurgeStatus {
    /// `""` for the whole upstream.
    pub prefix: String,
    pub age_ms: f64,
}

/// The stored token's schedule and the secret that minted it, never the token.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct TokenStatus {
    /// When it was minted (its last rotation), ms since the Unix epoch.
    pub rotated_at_ms: f64,
    pub age_ms: f64,
    /// Time until it expires, when the endpoint said.
    pub expires_in_ms: Option<f64>,
    /// `current`, `previous` (the endpoint refused the current secret: the
    /// previous one is still in use) or `other` (a secret no longer configured).
    pub minted_with: String,
    /// Whether the endpoint refused the current secret when the token was minted.
    pub current_refused: bool,
    /// When the current secret last minted a token, ms since the Unix epoch.
    pub current_accepted_at_ms: Option<f64>,
    /// When the previous secret last did.
    pub previous_accepted_at_ms: Option<f64>,
    /// Whether a previous secret is configured (its variable set).
    pub has_previous_secret: bool,
}

/// One budget in its current window.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct BudgetStatus {
    /// The route pattern, for a route's own budget.
    pub route: Option<String>,
    pub requests: f64,
    pub per_ms: f64,
    pub used: f64,
    pub left: f64,
    pub resets_in_ms: f64,
}

/// Reads the state of `upstream` (every relayed upstream without one).
pub async fn status(upstream: Option<String>, options: SiteOnlyOptions) -> Result<Vec<UpstreamStatus>, AddonError> {
    let site =
        Site::resolve(SiteOptions::of(&options.config_path, &options.cwd, &options.env), StoreChoice::AsConfigured)?;
    let broker = Broker::from_env(&site.env)?;
    let all = tokenrelay::operator::status(&broker, upstream.as_deref()).await?;
    // Counts and milliseconds stay far below 2^53: exact as JS numbers.
    let n = |v: u64| v as f64;
    Ok(all
        .into_iter()
        .map(|s| UpstreamStatus {
            upstream: s.upstream,
            token: s.token.map(|t| TokenStatus {
                rotated_at_ms: n(t.rotated_at_ms),
                age_ms: n(t.age_ms),
                expires_in_ms: t.expires_in_ms.map(n),
                minted_with: t.minted_with,
                current_refused: t.current_refused,
                current_accepted_at_ms: t.current_accepted_at_ms.map(n),
                previous_accepted_at_ms: t.previous_accepted_at_ms.map(n),
                has_previous_secret: t.has_previous_secret,
            }),
            budgets: s
                .budgets
                .into_iter()
                .map(|b| BudgetStatus {
                    route: b.route,
                    requests: n(b.requests),
                    per_ms: n(b.per_ms),
                    used: n(b.used),
                    left: n(b.left),
                    resets_in_ms: n(b.resets_in_ms),
                })
                .collect(),
            cooldown_ms: s.cooldown_ms.map(n),
            route_cooldowns: s
                .route_cooldowns
                .into_iter()
                .map(|c| RouteCooldown { route: c.route, cooldown_ms: n(c.cooldown_ms) })
                .collect(),
            rate_limit: SharedBuckets {
                window_ms: n(s.rate_limit.window_ms),
                crowd: n(s.rate_limit.crowd),
                without_address: n(s.rate_limit.without_address),
            },
            purges: s.purges.into_iter().map(|p| PurgeStatus { prefix: p.prefix, age_ms: n(p.age_ms) }).collect(),
            usage: s
                .usage
                .into_iter()
                .map(|u| RouteUsage { route: u.route, last_hour: usage(u.last_hour), last_day: usage(u.last_day) })
                .collect(),
        })
        .collect())
}

/// The core's usage as a JS object. Counts stay far below 2^53: exact as JS numbers.
fn usage(u: tokenrelay::operator::Usage) -> Usage {
    let n = |v: u64| v as f64;
    let counts = |m: std::collections::BTreeMap<String, u64>| m.into_iter().map(|(k, v)| (k, n(v))).collect();
    let c = u.cache;
    Usage {
        calls: n(u.calls),
        cache: CacheAnswers {
            memory: n(c.memory),
            store: n(c.store),
            collapsed: n(c.collapsed),
            stale: n(c.stale),
            stale_if_error: n(c.stale_if_error),
        },
        statuses: counts(u.statuses),
        refusals: counts(u.refusals),
        token_fetches: n(u.token_fetches),
        token_failures: n(u.token_failures),
        latency: Latency {
            p50_ms: u.latency.p50_ms.map(n),
            p95_ms: u.latency.p95_ms.map(n),
            histogram: u
                .latency
                .histogram
                .into_iter()
                .map(|b| LatencyBucket { le_ms: b.le_ms.map(n), calls: n(b.calls) })
                .collect(),
        },
        clients: n(u.clients),
    }
}

/// The usage report of every relayed upstream, as one self-contained HTML
/// page (the `tokenrelay report` command writes it to a file).
pub async fn report(options: SiteOnlyOptions) -> Result<String, AddonError> {
    let site =
        Site::resolve(SiteOptions::of(&options.config_path, &options.cwd, &options.env), StoreChoice::AsConfigured)?;
    let broker = Broker::from_env(&site.env)?;
    Ok(tokenrelay::operator::report(&broker).await?)
}
