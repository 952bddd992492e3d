//! The usage meter's counts (`relay::meter`) as the operator reads them:
//! per upstream and route, the last hour (the 60 minutes up to now) and the
//! last day (the current hour and the 23 before it, UTC).

#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use serde::Serialize;

use crate::relay::meter::read::{self, Scope, Totals};
use crate::relay::meter::{
    CACHE_KINDS, CALLS, LATENCY_BOUNDS_MS, LATENCY_FIELDS, REFUSED, STATUS_CLASSES, TOKEN_FAILURES, TOKEN_FETCHES,
    quantile_ms,
};
use crate::store::keys::meter::HOUR_MS;
use crate::store::{Store, StoreError};

/// Hours in the last day.
pub(super) const DAY_HOURS: u64 = 24;
const MINUTE_MS: u64 = 60_000;

/// What the relay did on one route of an upstream (or on the upstream's
/// requests without a route) in the last hour and the last day.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteUsage {
    /// The route pattern; `None` for requests refused before a route was found.
    pub route: Option<String>,
    pub last_hour: Usage,
    pub last_day: Usage,
}

/// What the relay did over a span, counted by every instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Calls sent to the upstream (a 401's retry is a second).
    pub calls: u64,
    /// Answers the response cache gave, by kind.
    pub cache: CacheAnswers,
    /// Answers by status class (`"2xx"` → count).
    pub statuses: BTreeMap<String, u64>,
    /// Answers with an error, by its code (`"rate_limited"` → count).
    pub refusals: BTreeMap<String, u64>,
    /// Tokens fetched from the token endpoint (rotations), and fetches that failed.
    pub token_fetches: u64,
    pub token_failures: u64,
    pub latency: Latency,
    /// Distinct clients (by the rate limits' keyed hash) in the hours the
    /// span touches; a HyperLogLog's estimate, exact for small counts.
    pub clients: u64,
}

/// Answers from the response cache, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheAnswers {
    /// From the instance's memory.
    pub memory: u64,
    /// From the shared store.
    pub store: u64,
    /// Another instance's fill, waited for.
    pub collapsed: u64,
    /// Stale while one refresh ran.
    pub stale: u64,
    /// Stale because the upstream failed.
    pub stale_if_error: u64,
}

/// The upstream's latency: a histogram, and the bounds its p50 and p95 fall under.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    /// Calls per bucket, fastest first.
    pub histogram: Vec<LatencyBucket>,
}

/// Calls that took at most `le_ms` (and more than the previous bucket's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyBucket {
    /// `None` for the slowest calls, past the last bound.
    pub le_ms: Option<u64>,
    pub calls: u64,
}

impl Usage {
    /// The usage `totals` (a period's sum) say, with `clients`.
    pub(super) fn of(totals: &Totals, clients: u64) -> Self {
        let [memory, store, collapsed, stale, stale_if_error] = CACHE_KINDS.map(|(_, field)| totals.get(field));
        let buckets: Vec<u64> = LATENCY_FIELDS.iter().map(|f| totals.get(f)).collect();
        let histogram = buckets
            .iter()
            .enumerate()
            .map(|(i, calls)| LatencyBucket { le_ms: LATENCY_BOUNDS_MS.get(i).copied(), calls: *calls })
            .collect();
        let class = |field: &str| field.trim_start_matches("status.").to_owned();
        Usage {
            calls: totals.get(CALLS),
            cache: CacheAnswers { memory, store, collapsed, stale, stale_if_error },
            statuses: STATUS_CLASSES.iter().filter(|f| totals.get(f) > 0).map(|f| (class(f), totals.get(f))).collect(),
            refusals: totals
                .fields()
                .filter_map(|(field, n)| Some((field.strip_prefix(REFUSED)?.to_owned(), n)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            token_fetches: totals.get(TOKEN_FETCHES),
            token_failures: totals.get(TOKEN_FAILURES),
            latency: Latency { p50_ms: quantile_ms(&buckets, 0.5), p95_ms: quantile_ms(&buckets, 0.95), histogram },
            clients,
        }
    }

    /// Answers the cache gave, of every kind.
    pub fn cache_answers(&self) -> u64 {
        let c = &self.cache;
        [c.memory, c.store, c.collapsed, c.stale, c.stale_if_error].iter().fold(0, |a, b| a.saturating_add(*b))
    }

    /// Answers with an error, of every code.
    pub fn refused(&self) -> u64 {
        self.refusals.values().fold(0, |a, b| a.saturating_add(*b))
    }
}

/// The hour number of `now_ms`, and the minute of that hour.
pub(super) fn hour_and_minute(now_ms: u64) -> (u64, u64) {
    (now_ms / HOUR_MS, (now_ms / MINUTE_MS) % 60)
}

/// The last hour's and the last day's usage of each of `scopes` at `now_ms`,
/// in two round trips.
pub(super) async fn last_hour_and_day(
    store: &Store,
    scopes: &[Scope<'_>],
    now_ms: u64,
) -> Result<Vec<(Usage, Usage)>, StoreError> {
    let (hour, minute) = hour_and_minute(now_ms);
    let first = hour.saturating_sub(DAY_HOURS.saturating_sub(1));
    let end = hour.saturating_add(1);
    let spans = read::spans(store, scopes, first..end, 0..0).await?;
    let asked: Vec<(Scope<'_>, std::ops::Range<u64>)> = (scopes.iter().map(|s| (*s, hour.saturating_sub(1)..end)))
        .chain(scopes.iter().map(|s| (*s, first..end)))
        .collect();
    let clients = read::clients(store, &asked).await?;
    Ok(spans
        .iter()
        .zip(scopes.iter().enumerate())
        .map(|(span, (i, _))| {
            let mut last_hour = Totals::default();
            if let [.., previous, current] = &span.hours[..] {
                last_hour.add_minutes(previous, minute.saturating_add(1)..60);
                last_hour.add_minutes(current, 0..minute.saturating_add(1));
            }
            let mut last_day = Totals::default();
            span.hours.iter().for_each(|h| last_day.add(h));
            let at = |j: usize| clients.get(j).copied().unwrap_or(0);
            (Usage::of(&last_hour, at(i)), Usage::of(&last_day, at(i.saturating_add(scopes.len()))))
        })
        .collect())
}
