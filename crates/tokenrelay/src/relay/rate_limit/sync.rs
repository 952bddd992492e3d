//! Adding what an instance admitted to the shared counters, in the
//! background: one store round trip for every key at a time, at most one per
//! [`SYNC_INTERVAL`](super::SYNC_INTERVAL).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Client, RateLimiter, now_ms};
use crate::store::Count;

/// How long a shared counter outlives its window: covers clocks a few
/// seconds apart and a sync that lands just after the window ends.
const KEY_GRACE: Duration = Duration::from_secs(5);

/// Counts sent in one sync, to be reconciled with the store's answer.
struct Sent {
    upstream: String,
    client: Client,
    window: u64,
    add: u64,
}

impl RateLimiter {
    /// Schedules a sync in one interval unless one is already due.
    pub(super) fn schedule_sync(&self) {
        if !self.shared.sync_due.swap(true, Ordering::AcqRel) {
            tokio::spawn(later(self.clone()));
        }
    }

    /// Sends every pending count now and learns the shared totals; on a store
    /// error the counts stay pending for the next sync.
    pub(super) async fn sync(&self) {
        let now = now_ms();
        let sent = self.take_pending(now);
        if sent.is_empty() {
            return;
        }
        let store = self.shared.broker.store();
        let counts: Vec<Count> = sent.iter().map(|s| self.count(&s.upstream, s.client, s.window, s.add, now)).collect();
        match store.add_counts(&counts).await {
            Ok(totals) => {
                for (s, total) in sent.iter().zip(totals) {
                    self.reconcile(s, |t| t.known = t.known.max(total));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, keys = sent.len(), "rate limit counts not synced; this instance keeps enforcing the limits alone and retries");
                for s in &sent {
                    self.reconcile(s, |t| {
                        t.known = t.known.saturating_sub(s.add);
                        t.pending += s.add;
                    });
                }
                self.schedule_sync();
            }
        }
    }

    /// The addition of `add` requests of `client` to its shared counter of
    /// `window`, which lives until the window ends (plus a grace).
    pub(super) fn count(&self, upstream: &str, client: Client, window: u64, add: u64, now: u64) -> Count {
        let ends = (window + 1) * self.shared.upstreams[upstream].window_ms();
        Count {
            key: self.shared.broker.store().rate_key(upstream, &client.name(), window),
            add,
            ttl: Duration::from_millis(ends.saturating_sub(now)) + KEY_GRACE,
        }
    }

    /// Moves every pending count of the current windows to `known`, and
    /// forgets the tallies of windows that are over.
    fn take_pending(&self, now: u64) -> Vec<Sent> {
        let mut sent = Vec::new();
        for (upstream, counter) in &self.shared.upstreams {
            let current = now / counter.window_ms();
            let mut tallies = counter.lock();
            tallies.retain(|_, t| t.window == current);
            for (client, tally) in tallies.iter_mut().filter(|(_, t)| t.pending > 0) {
                sent.push(Sent {
                    upstream: upstream.clone(),
                    client: *client,
                    window: tally.window,
                    add: tally.pending,
                });
                tally.known += tally.pending;
                tally.pending = 0;
            }
        }
        sent
    }

    /// Applies `update` to the tally `sent` came from, if its window is still current.
    fn reconcile(&self, sent: &Sent, update: impl FnOnce(&mut super::Tally)) {
        let mut tallies = self.shared.upstreams[&sent.upstream].lock();
        if let Some(tally) = tallies.get_mut(&sent.client).filter(|t| t.window == sent.window) {
            update(tally);
        }
    }
}

/// Waits one interval, then syncs. The flag is cleared first, so a request
/// admitted during the sync schedules the next one.
async fn later(limiter: RateLimiter) {
    tokio::time::sleep(limiter.shared.sync_interval).await;
    limiter.shared.sync_due.store(false, Ordering::Release);
    limiter.sync().await;
}
