//! `status`: what the shared store says of the relayed upstreams, without a
//! secret (the `tokenrelay status` command). The reading is the core's
//! [`tokenrelay::operator::status`]; this only converts it for JS.

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
        })
        .collect())
}
