//! Counters shared across instances: decided in memory, counted in the store
//! on the requests' own path, the way @upstash/ratelimit's cached fixed
//! window works. The per-client rate limit (`rate_limit`) and the budgets of
//! upstream calls (`budgets`) each register their limits here; this engine
//! knows only limits, buckets and windows.
//!
//! Windows are fixed and aligned to the Unix epoch (window `n` of length
//! `w` is `[n·w, (n+1)·w)`), so every instance agrees on them without
//! talking. For each [`Bucket`] of a limit (one client's requests, every
//! call a budget covers) an instance keeps, for the current window, what it
//! last learned of the shared count plus what it admitted since.
//!
//! One more in a bucket is decided in memory while the instance learned the
//! bucket's shared count less than [`SYNC_INTERVAL`] ago (or is learning it
//! right now). Otherwise (the bucket's first one in the window here, as on a
//! serverless cold start or `netlify dev`'s fresh process per request, or
//! an instance that slept) it is counted in the store before it is decided:
//! one round trip that adds everything this instance admitted since its
//! last sync and brings back every instance's totals; the owner may read
//! more in the same round trip (a cold instance's token and cached answer).
//! One admitted in memory once the interval has passed also syncs, as a
//! chore of its request (alongside its upstream call, done before its
//! answer ends), and so does the one that uses up a bucket's window on an
//! instance, so that every instance learns at once that the bucket is done.
//! Each sync also reads the keys its owner's [`SyncReads`] asks for (the
//! upstreams' cooldowns). Nothing runs after an answer, so a frozen instance
//! loses nothing: it syncs on its next request.
//!
//! # Over-admission bound
//! A limit says how an instance may admit in memory ([`Admission`]).
//! - On a recent count (rate limits): an instance never admits more than
//!   `requests` per bucket and window by itself: its own admissions are part
//!   of the sum it checks, and it decides in memory only on a shared count
//!   at most [`SYNC_INTERVAL`] old. So with `N` instances a bucket gets at
//!   most `requests` plus what the other instances admitted to it in memory
//!   within one interval before their sync reached the store.
//! - Out of an allowance (budgets, `allowance`): none over `requests`,
//!   whatever `N` and the pace, since every admission was counted in the
//!   store first.
//!
//! Without a store (unreachable), each instance enforces the limit alone:
//! at most `N × requests`. Windows are fixed, so a bucket can take up to
//! twice the limit around a window boundary.
//!
//! # Store outage
//! A failed count or sync keeps the counts for the next one (logged as a
//! warning), tried again after an interval; every instance keeps enforcing
//! the limits on what it knows.

mod allowance;
mod sync;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use super::error::RelayError;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::store::Store;
pub(crate) use allowance::Admission;
pub(in crate::relay) use sync::{Counting, SyncChore};

/// How old a shared count may be for one more to be decided on it in
/// memory; at most one sync per interval on a busy instance.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// Every limit registered on this instance, with its counts. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Counters {
    shared: Arc<Shared>,
}

struct Shared {
    /// The store the counts are synced to.
    broker: Broker,
    /// Every limit, registered at start.
    counters: RwLock<Vec<Arc<Counter>>>,
    /// What each sync reads besides the counts, for the engine's owner.
    reads: Box<dyn SyncReads>,
    /// Whether a sync runs.
    syncing: AtomicBool,
    /// When the last sync was sent (ms since the epoch).
    synced_at: AtomicU64,
}

/// Keys a sync reads in its round trip besides the counts, and who learns
/// their values: so a warm instance learns what other instances share (an
/// upstream's cooldown) without a store call of its own.
pub(crate) trait SyncReads: Send + Sync + 'static {
    /// The keys to read with the next sync.
    fn keys(&self) -> Vec<&str>;
    /// Learns the stored `values` of `keys`.
    fn learn(&self, keys: &[&str], values: &[Option<String>]);
}

/// The store key of a bucket's shared count in window number `n`, as the limit's owner names it.
pub(crate) type KeyScheme = Box<dyn Fn(&Store, Bucket, u64) -> String + Send + Sync>;

/// One limit, as its owner registers it.
pub(crate) struct Limit {
    /// How many per bucket and window.
    pub(crate) requests: u64,
    pub(crate) window: Duration,
    pub(crate) key: KeyScheme,
    /// The refusal once a bucket's window is used up, given the time until it ends.
    pub(crate) refusal: fn(Duration) -> RelayError,
    /// How many buckets an instance keeps per window, when they are many.
    pub(crate) bound: Option<Bound>,
    /// How an instance may admit one more without asking the store.
    pub(crate) admission: Admission,
    /// Told of each addition of this instance to a bucket's shared count.
    pub(crate) on_added: Option<OnAdded>,
}

/// What an owner is told of each of its instance's additions to a shared count.
pub(crate) type OnAdded = Box<dyn Fn(Added) + Send + Sync>;

/// The part `(before, after]` of a bucket's shared count in window number
/// `window` that one addition of this instance took. The store adds in turn,
/// so each count of a window (the 16th call of a budget of 20, say) falls in
/// exactly one instance's addition: that instance alone can tell that the
/// count passed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Added {
    pub(crate) bucket: Bucket,
    pub(crate) window: u64,
    pub(crate) before: u64,
    pub(crate) after: u64,
}

/// At most `buckets` buckets per window on an instance: later new ones
/// share `overflow`, so that the memory and the store keys of one window
/// stay bounded.
pub(crate) struct Bound {
    pub(crate) buckets: usize,
    pub(crate) overflow: Bucket,
    /// Called each time a new bucket is turned away (to warn, once).
    pub(crate) crowded: Box<dyn Fn() + Send + Sync>,
}

/// One limit and this instance's tallies per bucket.
pub(crate) struct Counter {
    limit: Limit,
    tallies: Mutex<HashMap<Bucket, Tally>>,
}

/// Whose count a tally is, as the limit's owner names it (one client, or
/// every call a budget covers): the engine only hashes and compares it, and
/// hands it back to the owner's key scheme when it syncs. `Copy`, so the
/// decision on the request path never allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Bucket {
    /// What kind of owner's bucket (`0`: the only one).
    pub(crate) kind: u8,
    /// A detail of the kind (an IPv6 prefix length).
    pub(crate) detail: u8,
    /// The owner's identity within the kind (an address, a keyed hash).
    pub(crate) bits: u128,
}

/// One bucket's count in one window, as this instance knows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(in crate::relay) struct Tally {
    /// Window number since the epoch.
    pub(in crate::relay) window: u64,
    /// The shared count when last learned, plus what this instance has sent
    /// since (optimistically, until the store confirms or fails).
    pub(in crate::relay) known: u64,
    /// Admitted here and not yet sent.
    pub(in crate::relay) pending: u64,
    /// When `known` was last learned from the store (ms since the epoch).
    pub(in crate::relay) learned_at: u64,
    /// Whether a count of this bucket is on its way to the store.
    counting: bool,
    /// For a ceiling: calls counted in the store ahead and not spent yet.
    pub(in crate::relay) allowance: u64,
    /// For a ceiling: calls admitted since its last addition was sent (its pace).
    pub(in crate::relay) spent: u64,
    /// Whether the last store count failed: a ceiling then decides on this
    /// instance's own count until an interval after `learned_at`.
    pub(in crate::relay) alone: bool,
}

/// How one more fared against its limit.
pub(in crate::relay) enum Verdict {
    /// Admitted in memory; `Some` when the instance's sync is due (an
    /// interval passed, or the bucket's window is used up here), to run as a
    /// chore of the request.
    Admitted(Option<SyncChore>),
    /// To be counted in the store before it is decided: send
    /// [`Counting::counts`], then [`Counters::settle`].
    Count(Counting),
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").field("counters", &self.list().len()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Limit { requests, window, .. } = &self.limit;
        f.debug_struct("Counter").field("requests", requests).field("window", window).finish_non_exhaustive()
    }
}

impl Counters {
    /// No limits yet, synced to `broker`'s store; each sync also reads what `reads` asks for.
    pub(crate) fn new(broker: Broker, reads: impl SyncReads) -> Self {
        Self {
            shared: Arc::new(Shared {
                broker,
                counters: RwLock::default(),
                reads: Box::new(reads),
                syncing: AtomicBool::new(false),
                synced_at: AtomicU64::new(0),
            }),
        }
    }

    /// Adds `limit`, at start; its owner decides against the counter it gets back.
    pub(crate) fn register(&self, limit: Limit) -> Arc<Counter> {
        let counter = Arc::new(Counter { limit, tallies: Mutex::default() });
        self.shared.counters.write().unwrap_or_else(PoisonError::into_inner).push(counter.clone());
        counter
    }

    /// Every registered counter.
    fn list(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Counter>>> {
        self.shared.counters.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides one more in `bucket` of `counter` in memory when this
    /// instance's knowledge of the bucket is recent, else says what to count
    /// in the store first.
    pub(crate) fn judge(&self, counter: &Arc<Counter>, bucket: Bucket) -> Result<Verdict, RelayError> {
        let now = now_ms();
        if counter.limit.admission == Admission::OutOfAllowance {
            return self.judge_out_of_allowance(counter, bucket, now);
        }
        let window = now / counter.window_ms();
        let limit = counter.limit.requests;
        let (bucket, used_up) = {
            let mut tallies = counter.lock();
            let bucket = tracked(&mut tallies, bucket, window, counter.limit.bound.as_ref());
            let tally = Tally::current(&mut tallies, bucket, window);
            if tally.known + tally.pending >= limit {
                return Err(counter.refusal(now));
            }
            tally.pending += 1;
            let recent = now.saturating_sub(tally.learned_at) < interval_ms();
            if !(tally.counting || recent) {
                tally.counting = true;
                (bucket, None)
            } else {
                (bucket, Some(tally.known + tally.pending >= limit))
            }
        };
        match used_up {
            // This instance used up the bucket's window: every instance should learn it now.
            Some(true) => Ok(Verdict::Admitted(self.sync_now())),
            Some(false) => Ok(Verdict::Admitted(self.sync_if_due(now))),
            None => Ok(Verdict::Count(self.counting(now, Some((counter.clone(), bucket, window))))),
        }
    }

    /// Decides one more that [`judge`](Self::judge) sent to the store, on the
    /// totals the store answered (or, without them, on this instance's count).
    pub(in crate::relay) fn settle(&self, counting: Counting, totals: Option<Vec<u64>>) -> Result<(), RelayError> {
        let Some((counter, bucket, window)) = counting.request.clone() else { return Ok(()) };
        let total = self.reconcile(&counting, totals);
        let limit = counter.limit.requests;
        let mut tallies = counter.lock();
        let Some(tally) = tallies.get_mut(&bucket).filter(|t| t.window == window) else {
            // The window turned during the count: a ceiling's call goes only if its own addition fit.
            let fitted = |total| allowance::granted(limit, counting.request_reserved(), total) > 0;
            let ceiling = counter.limit.admission == Admission::OutOfAllowance;
            return if ceiling && !total.is_some_and(fitted) { Err(counter.refusal(now_ms())) } else { Ok(()) };
        };
        tally.counting = false;
        let admitted = match (counter.limit.admission, total) {
            (Admission::OnRecentCount, Some(total)) => total <= limit,
            // Without the store, this instance's own count decides (the request is in it).
            (Admission::OnRecentCount, None) => tally.known + tally.pending <= limit,
            (Admission::OutOfAllowance, total) => tally.spend(limit, total.is_none()),
        };
        if admitted { Ok(()) } else { Err(counter.refusal(now_ms())) }
    }
}

/// The bucket one more in `bucket` is counted in: its own, unless this
/// window already holds as many others as `bound` allows (those of older
/// windows are dropped first).
pub(in crate::relay) fn tracked(
    tallies: &mut HashMap<Bucket, Tally>,
    bucket: Bucket,
    window: u64,
    bound: Option<&Bound>,
) -> Bucket {
    let Some(bound) = bound else { return bucket };
    if tallies.len() < bound.buckets || tallies.contains_key(&bucket) {
        return bucket;
    }
    tallies.retain(|_, t| t.window == window);
    if tallies.len() < bound.buckets {
        return bucket;
    }
    (bound.crowded)();
    bound.overflow
}

impl Counter {
    fn window_ms(&self) -> u64 {
        u64::try_from(self.limit.window.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// The tallies; a panic elsewhere while holding them leaves plain counts, still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bucket, Tally>> {
        self.tallies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The owner's refusal, until the end of the window `now` is in.
    fn refusal(&self, now: u64) -> RelayError {
        let window_ms = self.window_ms();
        (self.limit.refusal)(Duration::from_millis((now / window_ms + 1) * window_ms - now))
    }

    /// Refuses when this instance already knows `bucket`'s current window
    /// is spent; counts nothing.
    pub(crate) fn has_room(&self, bucket: Bucket) -> Result<(), RelayError> {
        let now = now_ms();
        let tallies = self.lock();
        match tallies.get(&bucket).filter(|t| t.window == now / self.window_ms()) {
            Some(t) if t.known + t.pending >= self.limit.requests => Err(self.refusal(now)),
            _ => Ok(()),
        }
    }

    /// This instance's tally of `bucket`.
    #[cfg(test)]
    pub(in crate::relay) fn tally(&self, bucket: Bucket) -> Tally {
        self.lock()[&bucket]
    }
}

impl Tally {
    /// `bucket`'s tally of `window`, started from nothing if it held an older one.
    pub(in crate::relay) fn current(tallies: &mut HashMap<Bucket, Tally>, bucket: Bucket, window: u64) -> &mut Tally {
        let tally = tallies.entry(bucket).or_default();
        if tally.window != window {
            *tally = Tally { window, ..Tally::default() };
        }
        tally
    }
}

/// [`SYNC_INTERVAL`] in milliseconds.
fn interval_ms() -> u64 {
    u64::try_from(SYNC_INTERVAL.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(in crate::relay) mod testing {
    //! The owners' test world: a broker over Upstash (or an address nothing
    //! listens on), and the relay's handling of a verdict.

    use std::sync::atomic::Ordering;

    use super::*;
    use crate::config::{Config, Env};
    use crate::store::UPSTASH_VARS;

    /// A broker of upstream `api` with `relay` as its relay section.
    pub(in crate::relay) fn broker(relay: &str, upstash_url: &str, token: &str) -> Broker {
        let config = format!(
            r#"
[store]
allow_unencrypted = true
timeout = "500ms"

[upstreams.api]
base_url = "https://api.example.com"
token = {{ type = "static", key = {{ env = "API_KEY" }} }}

[upstreams.api.relay]
{relay}
"#
        );
        let env = Env::from_pairs([(UPSTASH_VARS.0, upstash_url), (UPSTASH_VARS.1, token), ("API_KEY", "k")]);
        Broker::new(Config::parse(&config, "t.toml", &env).unwrap(), &env).unwrap()
    }

    /// Reads nothing with a sync.
    pub(in crate::relay) struct NoReads;

    impl SyncReads for NoReads {
        fn keys(&self) -> Vec<&str> {
            Vec::new()
        }

        fn learn(&self, _: &[&str], _: &[Option<String>]) {}
    }

    /// A store URL nothing listens on.
    pub(in crate::relay) fn unreachable() -> String {
        format!("http://127.0.0.1:{}", testkit::free_port().unwrap())
    }

    impl Counters {
        /// Carries out `verdict` as the relay would: counts in the store when
        /// told to, else runs a due sync (here before returning, as the
        /// request's chore would run before its answer ends).
        pub(in crate::relay) async fn carry_out(&self, verdict: Verdict) -> Result<(), RelayError> {
            match verdict {
                Verdict::Admitted(sync) => {
                    if let Some(sync) = sync {
                        sync.await;
                    }
                    Ok(())
                }
                Verdict::Count(counting) => {
                    let totals = self.shared.broker.store().count(counting.counts(), &[]).await.ok().map(|c| c.totals);
                    self.settle(counting, totals)
                }
            }
        }

        /// Makes the last sync look an interval old.
        pub(in crate::relay) fn age_sync(&self) {
            self.shared.synced_at.fetch_sub(interval_ms() + 1, Ordering::AcqRel);
        }

        /// Makes every tally and the last sync look an interval old, as after
        /// a frozen instance thaws.
        pub(in crate::relay) fn age(&self) {
            let back = interval_ms() + 1;
            self.shared.synced_at.fetch_sub(back, Ordering::AcqRel);
            for counter in self.list().iter() {
                for t in counter.lock().values_mut() {
                    t.learned_at -= back;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::counter as counter_keys;

    #[test]
    fn a_new_window_starts_from_zero() {
        let mut tallies = HashMap::new();
        Tally::current(&mut tallies, Bucket::default(), 7).known = 5;
        assert_eq!(Tally::current(&mut tallies, Bucket::default(), 7).known, 5);
        assert_eq!(Tally::current(&mut tallies, Bucket::default(), 8).known, 0, "window 8 starts from nothing");
    }

    #[tokio::test]
    async fn a_late_store_answer_never_touches_a_newer_window() {
        let broker = testing::broker("routes = [{ path = \"/**\" }]", &testing::unreachable(), "t");
        let counters = Counters::new(broker, testing::NoReads);
        let limit = Limit {
            requests: 10,
            window: Duration::from_secs(3600),
            key: Box::new(|store, _, window| counter_keys::budget(store.namer(), "api", None, window)),
            refusal: |retry_after| crate::relay::error::Kind::BudgetExhausted { retry_after }.into(),
            bound: None,
            admission: Admission::OnRecentCount,
            on_added: None,
        };
        let counter = &counters.register(limit);
        let client = Bucket { kind: 1, detail: 32, bits: 0xcb00_7107 };
        let window = now_ms() / counter.window_ms();
        Tally::current(&mut counter.lock(), client, window).pending = 3;
        let counting = counters.counting(now_ms(), None);
        // The window turns before the store answers; the new window has its own count.
        *Tally::current(&mut counter.lock(), client, window + 1) =
            Tally { window: window + 1, known: 1, ..Tally::default() };
        counters.reconcile(&counting, Some(vec![9]));
        assert_eq!(counter.tally(client).known, 1, "window {}'s total is not window {}'s", window, window + 1);
    }
}
