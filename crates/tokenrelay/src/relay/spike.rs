//! The usage spike check: reads the usage meter's hourly calls of every
//! relayed upstream (`meter::read`, one round trip) and tells the alerts
//! whether this hour is a spike. A chore of a request, at most once per
//! `[alerts] spike_check` per instance; it delivers what it noticed in the
//! same chore.

use super::meter::{self, read};
use crate::alerts::Alerts;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::store::keys::meter::HOUR_MS;

/// Hours before this one whose mean a spike is measured against.
const TRAILING_HOURS: u64 = 24;

/// Checks every relayed upstream's calls this hour against the 24 hours before.
pub(super) async fn check(broker: Broker, alerts: Alerts) {
    let hour = now_ms() / HOUR_MS;
    let config = broker.config();
    // Every route pattern of each upstream, and its calls without one: the upstream's total.
    let upstreams: Vec<(&str, Vec<read::Scope<'_>>)> = config
        .upstreams
        .iter()
        .filter_map(|(name, u)| Some((name.as_str(), u.relay.as_ref()?)))
        .map(|(name, relay)| {
            let routes = relay.routes.iter().map(|r| (name, Some(r.pattern.as_str())));
            (name, std::iter::once((name, None)).chain(routes).collect())
        })
        .collect();
    let scopes: Vec<read::Scope<'_>> = upstreams.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let spans = match read::spans(broker.store(), &scopes, hour - TRAILING_HOURS..hour + 1, 0..0).await {
        Ok(spans) => spans,
        Err(error) => {
            tracing::warn!(%error, "usage spike not checked: the store is unreachable");
            return;
        }
    };
    let mut spans = spans.into_iter();
    for (upstream, own) in &upstreams {
        let (mut calls, mut trailing) = (0, 0);
        for span in (&mut spans).take(own.len()) {
            let mut hours = span.hours.iter().map(|h| h.get(meter::CALLS));
            trailing += (&mut hours).take(TRAILING_HOURS as usize).sum::<u64>();
            calls += hours.sum::<u64>();
        }
        alerts.usage(upstream, calls, trailing, crate::alerts::Window::at(hour * HOUR_MS, crate::alerts::HOUR));
    }
    if let Some(deliver) = alerts.chore() {
        deliver.await;
    }
}
