//! What stands before every upstream call: the upstream's cooldown
//! ([`upstream_limits`](super::upstream_limits)) and the site's budget of
//! calls, counted across instances by the rate limiter's machinery
//! ([`RateLimiter::spend`]). Only calls count: a cache hit never gets here,
//! and a 401's retry is a second call.
//!
//! Like a rate limit, a budget is decided in memory on a count learned less
//! than [`SYNC_INTERVAL`](super::rate_limit::SYNC_INTERVAL) ago, else counted
//! in the store on the call's path (reading the upstream's cooldown in the
//! same round trip); syncs run as chores of the request.

use super::error::RelayError;
use super::forward::Outgoing;
use super::rate_limit::{RateLimiter, Verdict};
use super::upstream_limits::Cooldowns;
use crate::broker::Broker;

/// The check before, and the lesson after, each upstream call. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    limiter: RateLimiter,
    cooldowns: Cooldowns,
}

impl Guard {
    pub(super) fn new(limiter: RateLimiter, cooldowns: Cooldowns) -> Self {
        Self { limiter, cooldowns }
    }

    /// Admits one call of `out` to its upstream, or says why not: the
    /// upstream cools down (503 `upstream_cooling_down`) or the budget is
    /// spent (503 `budget_exhausted`), each with `Retry-After`.
    pub(super) async fn admit(&self, broker: &Broker, out: &Outgoing<'_>) -> Result<(), RelayError> {
        let name = out.upstream.name();
        self.cooldowns.check(name)?;
        match self.limiter.spend(name, out.route.pattern.as_str())? {
            Verdict::Admitted(sync) => {
                if let Some(sync) = sync {
                    out.chores.add(sync);
                }
                Ok(())
            }
            Verdict::Count(counting) => {
                let keys = self.cooldowns.key(name);
                match broker.store().count_and_read(counting.counts(), None, None, &keys).await {
                    Ok(read) => {
                        self.cooldowns.learn(&keys, &read.cooldowns);
                        self.limiter.settle(counting, Some(read.totals))?;
                        self.cooldowns.check(name)
                    }
                    Err(_) => self.limiter.settle(counting, None),
                }
            }
        }
    }

    /// Learns from the upstream's answer whether it asks every caller to
    /// wait; if so, shares the cooldown in the store as a chore of the request.
    pub(super) fn learn(&self, broker: &Broker, out: &Outgoing<'_>, response: &reqwest::Response) {
        let name = out.upstream.name();
        let Some(share) = self.cooldowns.note(name, response.status(), response.headers()) else { return };
        let (broker, upstream) = (broker.clone(), name.to_owned());
        out.chores.add(async move {
            if let Err(error) = broker.store().put_cooldown(&share.key, share.until_ms, share.ttl).await {
                tracing::warn!(upstream, %error, "could not share the upstream's cooldown; other instances learn it themselves");
            }
        });
    }

    /// The upstreams' cooldowns, read with a cold request's round trip.
    pub(super) fn cooldowns(&self) -> &Cooldowns {
        &self.cooldowns
    }
}
