//! Adding what an instance admitted to the shared counters: on a request's
//! path when it must be decided on the store's count ([`Counting`]), else as
//! a chore of a request once [`SYNC_INTERVAL`](super::SYNC_INTERVAL) has
//! passed ([`SyncChore`]); one store round trip for every key at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Bucket, Counter, Counters, Tally, interval_ms};
use crate::clock::now_ms;
use crate::store::{Count, Read};

/// How long a shared counter outlives its window: covers clocks a few
/// seconds apart and a sync that lands just after the window ends.
const KEY_GRACE: Duration = Duration::from_secs(5);

/// An instance's sync, run as a chore of the request that found it due.
pub(in crate::relay) type SyncChore = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Counts on their way to the store, to be reconciled with its answer.
#[derive(Debug)]
pub(in crate::relay) struct Counting {
    /// The request (or call) to decide on its bucket's total: counter, bucket, window.
    pub(super) request: Option<(Arc<Counter>, Bucket, u64)>,
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
    counter: Arc<Counter>,
    bucket: Bucket,
    window: u64,
    add: u64,
}

/// Clears the `syncing` flag however the sync ends, cancelled included.
struct Syncing(Counters);

impl Drop for Syncing {
    fn drop(&mut self) {
        self.0.shared.syncing.store(false, Ordering::Release);
    }
}

impl Counters {
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

    /// Sends every pending count now and learns the shared totals, and what
    /// the owner's [`SyncReads`](super::SyncReads) asks for in the same round
    /// trip; on a store error the counts stay pending for the next sync.
    pub(in crate::relay) async fn sync(&self) {
        let counting = self.counting(now_ms(), None);
        let store = self.shared.broker.store();
        let writes = self.shared.writes.get();
        let tallies = writes.and_then(|w| w.take(store));
        if counting.sent.is_empty() && tallies.is_none() {
            return;
        }
        let reads = &self.shared.reads;
        let keys = reads.keys();
        let tally = tallies.unwrap_or_default();
        let read = store.count_and_tally(counting.counts(), &tally, &Read::plain_all(&keys)).await;
        if let Some(writes) = writes.filter(|_| !tally.is_empty()) {
            writes.landed(read.as_ref().is_ok_and(|r| r.tallied));
        }
        let totals = read.ok().map(|read| {
            reads.learn(&keys, &read.values.into_plain());
            read.totals
        });
        self.reconcile(&counting, totals);
    }

    /// Moves every pending count of the current windows to `known`, forgets
    /// the tallies of windows that are over, and says what to add; `request`
    /// is the request whose decision waits for its bucket's total.
    pub(super) fn counting(&self, now: u64, request: Option<(Arc<Counter>, Bucket, u64)>) -> Counting {
        self.shared.synced_at.store(now, Ordering::Release);
        let mut sent = Vec::new();
        for counter in self.list().iter() {
            let current = now / counter.window_ms();
            let mut tallies = counter.lock();
            tallies.retain(|_, t| t.window == current);
            for (bucket, tally) in tallies.iter_mut().filter(|(_, t)| t.pending > 0) {
                let counter = counter.clone();
                sent.push(Sent { counter, bucket: *bucket, window: tally.window, add: tally.pending });
                tally.known += tally.pending;
                tally.pending = 0;
            }
        }
        let counts = sent.iter().map(|s| self.count(s, now)).collect();
        Counting { request, sent, counts }
    }

    /// Learns the store's `totals` for what `counting` sent, or, without
    /// them, keeps those counts pending for the next sync. Returns the total
    /// of the request's bucket, when the store gave it.
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
            let request = counting.request.as_ref();
            if request.is_some_and(|(c, b, w)| Arc::ptr_eq(c, &s.counter) && (*b, *w) == (s.bucket, s.window)) {
                request_total = Some(total);
            }
        }
        request_total
    }

    /// The addition of what `sent` says to its bucket's shared counter of
    /// its window, which lives until the window ends (plus a grace).
    fn count(&self, sent: &Sent, now: u64) -> Count {
        let counter = &sent.counter;
        let ends = (sent.window + 1) * counter.window_ms();
        Count {
            key: (counter.limit.key)(self.shared.broker.store(), sent.bucket, sent.window),
            add: sent.add,
            ttl: Duration::from_millis(ends.saturating_sub(now)) + KEY_GRACE,
        }
    }

    /// Applies `update` to the tally `sent` came from, if its window is still
    /// current: a late answer never touches a newer window's tally.
    fn update(&self, sent: &Sent, update: impl FnOnce(&mut Tally)) {
        let mut tallies = sent.counter.lock();
        if let Some(tally) = tallies.get_mut(&sent.bucket).filter(|t| t.window == sent.window) {
            update(tally);
        }
    }
}
