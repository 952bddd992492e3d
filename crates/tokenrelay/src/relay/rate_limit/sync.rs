//! Adding what an instance admitted to the shared counters: on a request's
//! path when it must be decided on the store's count ([`Counting`]), else as
//! a chore of a request once [`SYNC_INTERVAL`](super::SYNC_INTERVAL) has
//! passed ([`SyncChore`]); one store round trip for every key at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Client, RateLimiter, Tally, interval_ms, now_ms};
use crate::store::Count;

/// How long a shared counter outlives its window: covers clocks a few
/// seconds apart and a sync that lands just after the window ends.
const KEY_GRACE: Duration = Duration::from_secs(5);

/// An instance's sync, run as a chore of the request that found it due.
pub(in crate::relay) type SyncChore = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Counts on their way to the store, to be reconciled with its answer.
#[derive(Debug)]
pub(in crate::relay) struct Counting {
    /// The request to decide on its client's total: upstream, client, window.
    pub(super) request: Option<(String, Client, u64)>,
    sent: Vec<Sent>,
    counts: Vec<Count>,
}

impl Counting {
    /// The additions to send.
    pub(in crate::relay) fn counts(&self) -> &[Count] {
        &self.counts
    }
}

/// Counts sent in one sync, to be reconciled with the store's answer.
#[derive(Debug)]
struct Sent {
    upstream: String,
    client: Client,
    window: u64,
    add: u64,
}

/// Clears the `syncing` flag however the sync ends, cancelled included.
struct Syncing(RateLimiter);

impl Drop for Syncing {
    fn drop(&mut self) {
        self.0.shared.syncing.store(false, Ordering::Release);
    }
}

impl RateLimiter {
    /// The sync of this instance's pending counts when the last one is an
    /// interval old and none runs.
    pub(super) fn sync_if_due(&self, now: u64) -> Option<SyncChore> {
        let last = self.shared.synced_at.load(Ordering::Acquire);
        if now.saturating_sub(last) < interval_ms() {
            return None;
        }
        self.sync_now()
    }

    /// The sync of this instance's pending counts, unless one runs.
    pub(super) fn sync_now(&self) -> Option<SyncChore> {
        if self.shared.syncing.swap(true, Ordering::AcqRel) {
            return None;
        }
        let guard = Syncing(self.clone());
        Some(Box::pin(async move { guard.0.sync().await }))
    }

    /// Sends every pending count now and learns the shared totals; on a store
    /// error the counts stay pending for the next sync.
    pub(super) async fn sync(&self) {
        let counting = self.counting(now_ms(), None);
        if counting.sent.is_empty() {
            return;
        }
        let totals = self.shared.broker.store().add_counts(counting.counts()).await;
        self.reconcile(&counting, totals.ok());
    }

    /// Moves every pending count of the current windows to `known`, forgets
    /// the tallies of windows that are over, and says what to add; `request`
    /// is the request whose decision waits for its client's total.
    pub(super) fn counting(&self, now: u64, request: Option<(String, Client, u64)>) -> Counting {
        self.shared.synced_at.store(now, Ordering::Release);
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
        let counts = sent.iter().map(|s| self.count(&s.upstream, s.client, s.window, s.add, now)).collect();
        Counting { request, sent, counts }
    }

    /// Learns the store's `totals` for what `counting` sent, or, without
    /// them, keeps those counts pending for the next sync. Returns the total
    /// of the request's client, when the store gave it.
    pub(super) fn reconcile(&self, counting: &Counting, totals: Option<Vec<u64>>) -> Option<u64> {
        let now = now_ms();
        let Some(totals) = totals.filter(|t| t.len() == counting.sent.len()) else {
            tracing::warn!(
                keys = counting.sent.len(),
                "rate limit counts not stored; this instance enforces the limits alone and retries after an interval"
            );
            for s in &counting.sent {
                self.update(s, |t| {
                    t.known = t.known.saturating_sub(s.add);
                    t.pending += s.add;
                    t.learned_at = now;
                });
            }
            return None;
        };
        let mut request_total = None;
        for (s, total) in counting.sent.iter().zip(totals) {
            self.update(s, |t| {
                t.known = t.known.max(total);
                t.learned_at = now;
            });
            if counting.request.as_ref().is_some_and(|(u, c, w)| *u == s.upstream && *c == s.client && *w == s.window) {
                request_total = Some(total);
            }
        }
        request_total
    }

    /// The addition of `add` requests of `client` to its shared counter of
    /// `window`, which lives until the window ends (plus a grace).
    fn count(&self, upstream: &str, client: Client, window: u64, add: u64, now: u64) -> Count {
        let ends = (window + 1) * self.shared.upstreams[upstream].window_ms();
        Count {
            key: self.shared.broker.store().rate_key(upstream, &client.name(), window),
            add,
            ttl: Duration::from_millis(ends.saturating_sub(now)) + KEY_GRACE,
        }
    }

    /// Applies `update` to the tally `sent` came from, if its window is still
    /// current: a late answer never touches a newer window's tally.
    fn update(&self, sent: &Sent, update: impl FnOnce(&mut Tally)) {
        let mut tallies = self.shared.upstreams[&sent.upstream].lock();
        if let Some(tally) = tallies.get_mut(&sent.client).filter(|t| t.window == sent.window) {
            update(tally);
        }
    }
}
