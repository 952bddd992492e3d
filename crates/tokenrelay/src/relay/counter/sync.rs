//! Adding what an instance admitted to the shared counters: on a request's
//! path when it must be decided on the store's count ([`Counting`]), else as
//! a chore of a request once [`SYNC_INTERVAL`](super::SYNC_INTERVAL) has
//! passed ([`SyncChore`]); one store round trip for every key at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::allowance::{self, Admission};
use super::{Added, Bucket, Counter, Counters, Tally, interval_ms};
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

    /// What the request's own addition counted ahead (a ceiling's: the
    /// request's call first), or 0.
    pub(super) fn request_reserved(&self) -> u64 {
        let Some((counter, bucket, window)) = &self.request else { return 0 };
        let own = |s: &&Sent| Arc::ptr_eq(&s.counter, counter) && (s.bucket, s.window) == (*bucket, *window);
        self.sent.iter().find(own).map_or(0, |s| s.reserved)
    }
}

/// Counts sent in one sync, to be reconciled with the store's answer.
#[derive(Debug)]
struct Sent {
    counter: Arc<Counter>,
    bucket: Bucket,
    window: u64,
    /// What was admitted and not yet sent, plus `reserved`.
    add: u64,
    /// Of `add`, the calls a ceiling counts ahead (its last ones): granted
    /// into the allowance as far as they fit under the limit.
    reserved: u64,
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
        if counting.sent.is_empty() {
            return;
        }
        let reads = &self.shared.reads;
        let keys = reads.keys();
        let read = self.shared.broker.store().count(counting.counts(), &Read::plain_all(&keys)).await;
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
            let ceiling = counter.limit.admission == Admission::OutOfAllowance;
            let asking = request.as_ref().filter(|(c, _, w)| Arc::ptr_eq(c, counter) && *w == current);
            let mut tallies = counter.lock();
            tallies.retain(|_, t| t.window == current);
            for (bucket, tally) in tallies.iter_mut() {
                let asks = asking.is_some_and(|(_, b, _)| b == bucket);
                let reserved = if ceiling { allowance::ahead(counter.limit.requests, tally, asks) } else { 0 };
                if tally.pending + reserved == 0 {
                    continue;
                }
                let counter = counter.clone();
                let add = tally.pending + reserved;
                sent.push(Sent { counter, bucket: *bucket, window: tally.window, add, reserved });
                tally.known += tally.pending;
                tally.pending = 0;
                tally.spent = 0;
            }
        }
        self.sending(sent, now, request)
    }

    /// The count of calls ahead for `counter`'s `bucket` when this instance
    /// has no allowance and does not know it spent: for a round trip the
    /// request makes anyway, reconciled with [`reconcile`](Counters::reconcile).
    pub(in crate::relay) fn count_ahead(&self, counter: &Arc<Counter>, bucket: Bucket) -> Option<Counting> {
        let now = now_ms();
        let window = now / counter.window_ms();
        let limit = counter.limit.requests;
        let mut tallies = counter.lock();
        let tally = Tally::current(&mut tallies, bucket, window);
        if tally.allowance > 0 || tally.known + tally.pending >= limit {
            return None;
        }
        let reserved = allowance::ahead(limit, tally, true);
        tally.spent = 0;
        let sent = Sent { counter: counter.clone(), bucket, window, add: reserved, reserved };
        Some(self.sending(vec![sent], now, None))
    }

    /// The additions of `sent`, to decide `request` on.
    fn sending(&self, sent: Vec<Sent>, now: u64, request: Option<(Arc<Counter>, Bucket, u64)>) -> Counting {
        let counts = sent.iter().map(|s| self.count(s, now)).collect();
        Counting { request, sent, counts }
    }

    /// Learns the store's `totals` for what `counting` sent, or, without
    /// them, keeps those counts pending for the next sync. Returns the total
    /// of the request's bucket, when the store gave it.
    pub(in crate::relay) fn reconcile(&self, counting: &Counting, totals: Option<Vec<u64>>) -> Option<u64> {
        let now = now_ms();
        let Some(totals) = totals.filter(|t| t.len() == counting.sent.len()) else {
            tracing::warn!(
                keys = counting.sent.len(),
                "rate limit counts not stored; this instance enforces the limits alone and retries after an interval"
            );
            for s in &counting.sent {
                // What was admitted goes with the next sync; what was to be counted ahead is not.
                let admitted = s.add - s.reserved;
                self.update(s, |t| {
                    t.known = t.known.saturating_sub(admitted);
                    t.pending += admitted;
                    t.learned_at = now;
                    t.alone = true;
                });
            }
            return None;
        };
        let mut request_total = None;
        for (s, total) in counting.sent.iter().zip(totals) {
            let limit = &s.counter.limit;
            self.update(s, |t| {
                t.known = t.known.max(total);
                t.learned_at = now;
                t.alone = false;
                t.allowance += allowance::granted(limit.requests, s.reserved, total);
            });
            if let Some(on_added) = &limit.on_added {
                let (bucket, window, before) = (s.bucket, s.window, total.saturating_sub(s.add));
                on_added(Added { bucket, window, before, after: total });
            }
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
