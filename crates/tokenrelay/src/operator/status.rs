//! `tokenrelay status`: what the shared store says of each relayed
//! upstream, never a secret: the token's age, time left and last rotation,
//! the budgets used and left in their current windows, any cooldown the
//! upstream asked for, the rate limit's shared buckets (a spray past the
//! clients an instance tracks shows there) and the cache's purges. Per-client
//! counters are not listed: their keys are keyed hashes, and the store is
//! never scanned.

#![deny(clippy::arithmetic_side_effects)]

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::broker::Broker;
use crate::clock::millis;
use crate::config::relay::Budget;
use crate::error::{Error, Result};
use crate::relay::{Purges, shared_bucket_keys};
use crate::store::keys::{cooldown, counter};
use crate::store::{CacheKeys, Read, Values};

/// One upstream's state in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamStatus {
    pub upstream: String,
    /// `None` for a static key, or when the store holds no valid token.
    pub token: Option<TokenStatus>,
    /// The upstream's budget, then its routes' own.
    pub budgets: Vec<BudgetStatus>,
    /// Milliseconds until the upstream's cooldown ends, while one runs.
    pub cooldown_ms: Option<u64>,
    /// The route patterns cooling down on their own, while they do.
    pub route_cooldowns: Vec<RouteCooldown>,
    /// The rate limit's shared buckets this window.
    pub rate_limit: SharedBuckets,
    /// The path prefixes whose cached answers were purged, newest first.
    pub purges: Vec<PurgeStatus>,
}

/// Requests counted this window in the rate limit's buckets shared by many
/// clients: a crowd means more new clients than an instance tracks (a spray
/// over many addresses); address-less requests mean the platform gave none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedBuckets {
    pub window_ms: u64,
    pub crowd: u64,
    pub without_address: u64,
}

/// A route pattern's own cooldown (the upstream refused a call on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteCooldown {
    pub route: String,
    /// Milliseconds until it ends.
    pub cooldown_ms: u64,
}

/// One purge in the upstream's purge record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeStatus {
    /// `""` for the whole upstream.
    pub prefix: String,
    /// Milliseconds since the purge.
    pub age_ms: u64,
}

/// The stored token's schedule and the secret that minted it, without the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    /// When it was minted (its last rotation), ms since the Unix epoch.
    pub rotated_at_ms: u64,
    /// Milliseconds since then.
    pub age_ms: u64,
    /// Milliseconds until it expires, when the endpoint said.
    pub expires_in_ms: Option<u64>,
    /// Which secret minted it ([`MintedWith::as_str`](crate::MintedWith::as_str)): `previous` means the
    /// endpoint refused the current secret and the previous one is still in
    /// use; `other`, a secret this config no longer names (or not recorded).
    pub minted_with: String,
    /// Whether the endpoint refused the current secret when the token was
    /// minted: with `minted_with` `previous`, the previous secret is still
    /// the one in use (without, the token predates the deploy that made its
    /// secret the previous one, and the next rotation tries the current one).
    pub current_refused: bool,
    /// When the current secret last minted a token, ms since the Unix epoch,
    /// as far as the stored token's record goes back.
    pub current_accepted_at_ms: Option<u64>,
    /// The same for the previous secret; `None` also when none is configured.
    pub previous_accepted_at_ms: Option<u64>,
    /// Whether the config names a previous secret (its variable is set).
    pub has_previous_secret: bool,
}

/// One budget in its current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// The route pattern, for a route's own budget.
    pub route: Option<String>,
    pub requests: u64,
    pub per_ms: u64,
    /// Calls counted in the store this window (instances add theirs within
    /// the sync interval).
    pub used: u64,
    pub left: u64,
    /// Milliseconds until the window ends.
    pub resets_in_ms: u64,
}

/// The state of `upstream`, or of every relayed upstream, read from `broker`'s store.
pub async fn status(broker: &Broker, upstream: Option<&str>) -> Result<Vec<UpstreamStatus>> {
    let config = broker.config();
    if let Some(name) = upstream.filter(|n| !config.upstreams.contains_key(*n)) {
        return Err(Error::UnknownUpstream(name.to_owned()));
    }
    let now = SystemTime::now();
    let now_ms = millis(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let mut all = Vec::new();
    for u in config.upstreams().filter(|u| upstream.is_none_or(|n| n == u.name())) {
        let since_epoch = |t: SystemTime| millis(t.duration_since(UNIX_EPOCH).unwrap_or_default());
        let token = broker.stored_token(u.name()).await?.map(|t| TokenStatus {
            rotated_at_ms: since_epoch(t.minted_at),
            age_ms: millis(now.duration_since(t.minted_at).unwrap_or_default()),
            expires_in_ms: t.expires_at.map(|e| millis(e.duration_since(now).unwrap_or_default())),
            minted_with: t.secrets.minted_with.as_str().to_owned(),
            current_refused: t.secrets.current_refused,
            current_accepted_at_ms: t.secrets.current_accepted.map(since_epoch),
            previous_accepted_at_ms: t.secrets.previous_accepted.map(since_epoch),
            has_previous_secret: t.has_previous,
        });
        let budgets: Vec<(Option<&str>, Budget)> = u.relay.as_ref().map_or_else(Vec::new, |r| {
            let routes = r.routes.iter().filter_map(|route| Some((Some(route.pattern.as_str()), route.budget?)));
            r.budget.map(|b| (None, b)).into_iter().chain(routes).collect()
        });
        let store = broker.store();
        let window = |b: &Budget| now_ms.checked_div(millis(b.per)).unwrap_or(0);
        let mut keys: Vec<String> =
            budgets.iter().map(|(route, b)| counter::budget(store.namer(), u.name(), *route, window(b))).collect();
        let rate_limit = u.relay.as_ref().and_then(|r| r.rate_limit).unwrap_or(config.relay.rate_limit);
        let rate_window_ms = millis(rate_limit.window).max(1);
        keys.extend(shared_bucket_keys(store, u.name(), now_ms.checked_div(rate_window_ms).unwrap_or(0)));
        keys.push(cooldown::key(store.namer(), u.name(), None));
        keys.push(CacheKeys::new(store.namer(), u.name(), "").purges);
        let routes: Vec<&str> = u.relay.iter().flat_map(|r| &r.routes).map(|r| r.pattern.as_str()).collect();
        let routes_at = keys.len();
        keys.extend(routes.iter().map(|route| cooldown::key(store.namer(), u.name(), Some(route))));
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut values = store
            .get(&Read::plain_all(&key_refs))
            .await
            .map(Values::into_plain)
            .map_err(|e| Error::StoreUnreadable { reason: e.to_string() })?;
        let left = |v: Option<String>| {
            v.and_then(|v| v.parse::<u64>().ok()).and_then(|until| until.checked_sub(now_ms)).filter(|left| *left > 0)
        };
        let route_cooldowns = routes
            .iter()
            .zip(values.split_off(routes_at.min(values.len())))
            .filter_map(|(route, v)| Some(RouteCooldown { route: (*route).to_owned(), cooldown_ms: left(v)? }))
            .collect();
        let count = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let purges = Purges::parse(values.pop().flatten().as_deref());
        let cooldown = left(values.pop().flatten());
        let without_address = count(values.pop().flatten());
        let crowd = count(values.pop().flatten());
        let mut purges: Vec<PurgeStatus> = purges
            .entries()
            .map(|(prefix, at)| PurgeStatus { prefix: prefix.to_owned(), age_ms: now_ms.saturating_sub(at) })
            .collect();
        purges.sort_by_key(|p| p.age_ms);
        let budgets = budgets
            .iter()
            .zip(values)
            .map(|((route, b), used)| {
                let used = count(used);
                let per_ms = millis(b.per).max(1);
                BudgetStatus {
                    route: route.map(str::to_owned),
                    requests: b.requests,
                    per_ms,
                    used,
                    left: b.requests.saturating_sub(used),
                    resets_in_ms: window(b).saturating_add(1).saturating_mul(per_ms).saturating_sub(now_ms),
                }
            })
            .collect();
        all.push(UpstreamStatus {
            upstream: u.name().to_owned(),
            token,
            budgets,
            cooldown_ms: cooldown,
            route_cooldowns,
            rate_limit: SharedBuckets { window_ms: rate_window_ms, crowd, without_address },
            purges,
        });
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Env};
    use crate::store::{UPSTASH_VARS, Write};
    use std::time::Duration;

    #[tokio::test]
    async fn status_reads_token_times_budget_cooldown_shared_buckets_and_purges_without_the_token() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let tokens = testkit::TokenServer::start(testkit::TokenServerConfig::new("id", "secret")).await.unwrap();
            let config = format!(
                r#"
[store]
allow_unencrypted = true

[upstreams.api]
base_url = "https://api.example.com"
token = {{ type = "oauth2_client_credentials", url = "{}", client_id = "id", client_secret = {{ env = "SECRET" }} }}

[upstreams.api.relay]
budget = {{ requests = 100, per = "1d" }}
rate_limit = {{ requests = 10, window = "1h" }}
routes = [{{ path = "/**", cache = {{ ttl = "1m" }} }}]
"#,
                tokens.url()
            );
            let env = Env::from_pairs([
                (UPSTASH_VARS.0, upstash.url()),
                (UPSTASH_VARS.1, upstash.token().to_owned()),
                ("SECRET", "secret".to_owned()),
            ]);
            let broker = Broker::new(Config::parse(&config, "t.toml", &env).unwrap(), &env).unwrap();
            let before = status(&broker, Some("api")).await.unwrap();
            assert_eq!(before[0].token, None, "nothing stored yet");
            assert_eq!((before[0].budgets[0].used, before[0].budgets[0].left), (0, 100));
            assert_eq!(before[0].rate_limit, SharedBuckets { window_ms: 3_600_000, crowd: 0, without_address: 0 });
            assert_eq!(before[0].purges, []);
            assert_eq!(before[0].route_cooldowns, []);

            let token = broker.token("api").await.unwrap();
            let store = broker.store();
            let window = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 / 86_400_000;
            let key = counter::budget(store.namer(), "api", None, window);
            store.count(&[crate::store::Count { key, add: 7, ttl: Duration::from_secs(60) }], &[]).await.unwrap();
            let until = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 + 30_000;
            store
                .put(
                    &cooldown::key(store.namer(), "api", None),
                    Write::Plain(&until.to_string()),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
            let route_key = cooldown::key(store.namer(), "api", Some("/**"));
            store.put(&route_key, Write::Plain(&(until + 10_000).to_string()), Duration::from_secs(40)).await.unwrap();
            let [crowd, _] = shared_bucket_keys(store, "api", crate::clock::now_ms() / 3_600_000);
            let ttl = Duration::from_secs(60);
            store.count(&[crate::store::Count { key: crowd, add: 5, ttl }], &[]).await.unwrap();
            crate::operator::purge_cache(&broker, "api", "/search").await.unwrap();

            let after = status(&broker, None).await.unwrap();
            let api = &after[0];
            let t = api.token.as_ref().expect("the stored token's times");
            assert!(t.age_ms < 10_000 && t.expires_in_ms.is_some_and(|left| left > 0), "{t:?}");
            assert_eq!((t.minted_with.as_str(), t.current_refused, t.has_previous_secret), ("current", false, false));
            assert_eq!((t.current_accepted_at_ms, t.previous_accepted_at_ms), (Some(t.rotated_at_ms), None));
            assert_eq!((api.budgets[0].used, api.budgets[0].left, api.budgets[0].requests), (7, 93, 100));
            assert!(api.cooldown_ms.is_some_and(|left| left > 25_000 && left <= 30_000), "{:?}", api.cooldown_ms);
            let [route] = &api.route_cooldowns[..] else { panic!("one route cooling down: {:?}", api.route_cooldowns) };
            assert!(route.route == "/**" && route.cooldown_ms > 35_000 && route.cooldown_ms <= 40_000, "{route:?}");
            assert_eq!((api.rate_limit.crowd, api.rate_limit.without_address), (5, 0));
            assert_eq!(api.purges.len(), 1);
            assert!(api.purges[0].prefix == "/search" && api.purges[0].age_ms < 10_000, "{:?}", api.purges);
            let json = serde_json::to_string(&after).unwrap();
            assert!(!json.contains(token.expose()) && !json.contains("secret"), "{json}");
            assert_eq!(status(&broker, Some("nope")).await.unwrap_err().code(), "unknown_upstream");
        })
        .await
        .unwrap();
    }
}
