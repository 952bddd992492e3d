//! Reading the meter's tallies back, for the operator's views (`tokenrelay
//! status`, `tokenrelay report`) and anything that watches usage (alerts):
//! off the request path, one round trip for every upstream and route asked.

use std::collections::HashMap;
use std::ops::Range;

use crate::store::keys::meter as keys;
use crate::store::{Store, StoreError};

/// One period's counts (an hour's, a day's, or a sum of them): by field
/// name (`calls`, `cache.memory`, `refused.rate_limited`…; `relay::meter`
/// names them); an hour's also holds each minute's as `name@mm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals(pub(crate) HashMap<String, u64>);

impl Totals {
    /// The count of `field` (0 when never counted).
    pub(crate) fn get(&self, field: &str) -> u64 {
        self.0.get(field).copied().unwrap_or(0)
    }

    /// Every field's period total (minutes' fields left out), by name.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().filter(|(k, _)| !k.contains('@')).map(|(k, v)| (k.as_str(), *v))
    }

    /// Adds `other`'s period totals (not its minutes').
    pub(crate) fn add(&mut self, other: &Totals) {
        for (field, n) in other.fields() {
            *self.0.entry(field.to_owned()).or_default() += n;
        }
    }

    /// Adds `hour`'s counts of its minutes `minutes` (of the hour, `0..60`).
    pub(crate) fn add_minutes(&mut self, hour: &Totals, minutes: Range<u64>) {
        for (key, n) in &hour.0 {
            let Some((field, mm)) = key.split_once('@') else { continue };
            if mm.parse().is_ok_and(|mm: u64| minutes.contains(&mm)) {
                *self.0.entry(field.to_owned()).or_default() += n;
            }
        }
    }
}

/// One upstream's (and route's) tallies over a span of hours and days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Span {
    /// Each hour's totals, oldest first (hour numbers since the epoch as asked).
    pub(crate) hours: Vec<Totals>,
    /// Each hour's distinct clients.
    pub(crate) hourly_clients: Vec<u64>,
    /// Each day's totals, oldest first.
    pub(crate) days: Vec<Totals>,
}

/// Whose tallies to read: an upstream (or [`keys::UNKNOWN`]) and one of its
/// route patterns, or `None` for its requests without a route.
pub(crate) type Scope<'a> = (&'a str, Option<&'a str>);

/// The tallies of each of `scopes` in the hours `hours` and the days `days`
/// (numbered since the epoch, UTC), in one round trip.
pub(crate) async fn spans(
    store: &Store,
    scopes: &[Scope<'_>],
    hours: Range<u64>,
    days: Range<u64>,
) -> Result<Vec<Span>, StoreError> {
    let namer = store.namer();
    let mut hashes = Vec::new();
    let mut clients = Vec::new();
    for &(upstream, route) in scopes {
        hashes.extend(hours.clone().map(|h| keys::hour(namer, upstream, route, h)));
        hashes.extend(days.clone().map(|d| keys::day(namer, upstream, route, d)));
        clients.extend(hours.clone().map(|h| keys::clients(namer, upstream, route, h)));
    }
    let hash_refs: Vec<&str> = hashes.iter().map(String::as_str).collect();
    let unions: Vec<[&str; 1]> = clients.iter().map(|c| [c.as_str()]).collect();
    let union_refs: Vec<&[&str]> = unions.iter().map(|u| &u[..]).collect();
    let read = store.read_tallies(&hash_refs, &union_refs).await?;
    let (n_hours, n_days) = (hours.end.saturating_sub(hours.start), days.end.saturating_sub(days.start));
    let (mut hashes, mut clients) = (read.hashes.into_iter().map(Totals), read.distinct.into_iter());
    Ok(scopes
        .iter()
        .map(|_| Span {
            hours: (&mut hashes).take(to_usize(n_hours)).collect(),
            days: (&mut hashes).take(to_usize(n_days)).collect(),
            hourly_clients: (&mut clients).take(to_usize(n_hours)).collect(),
        })
        .collect())
}

/// For each scope and span of hours asked, the distinct clients over the
/// span (the union of its hours' estimates), in one round trip.
pub(crate) async fn clients(store: &Store, asked: &[(Scope<'_>, Range<u64>)]) -> Result<Vec<u64>, StoreError> {
    let namer = store.namer();
    let keys: Vec<Vec<String>> = asked
        .iter()
        .map(|((upstream, route), hours)| hours.clone().map(|h| keys::clients(namer, upstream, *route, h)).collect())
        .collect();
    let refs: Vec<Vec<&str>> = keys.iter().map(|k| k.iter().map(String::as_str).collect()).collect();
    let unions: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
    Ok(store.read_tallies(&[], &unions).await?.distinct)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_sum_apart_from_the_hours_totals() {
        let hour = Totals(
            [
                ("calls", 5),
                ("calls@00", 2),
                ("calls@59", 3),
                ("refused.rate_limited@30", 1),
                ("refused.rate_limited", 1),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        );
        let mut last = Totals::default();
        last.add_minutes(&hour, 30..60);
        assert_eq!((last.get("calls"), last.get("refused.rate_limited")), (3, 1));
        let mut sum = Totals::default();
        sum.add(&hour);
        sum.add(&hour);
        assert_eq!(sum.get("calls"), 10);
        assert_eq!(sum.get("calls@00"), 0, "a sum holds no minutes");
    }
}
