//! The usage meter: per upstream and route, what the relay did each minute
//! (upstream calls, cache answers by kind, answers by status class,
//! refusals by code, token fetches and failures, the upstream's latency as a
//! histogram) and the distinct clients of each hour, rolled up in the store
//! into hours (kept [`HOURS_KEPT`]) and days (kept [`DAYS_KEPT`]); the key
//! scheme is `store::keys::meter`'s.
//!
//! Counted in memory, on no request's path: the counts ride the shared
//! counters' syncs (`relay::counter`) as one more command
//! ([`SyncWrites`]), at most once per [`FLUSH_INTERVAL`] per instance. When
//! no rate limit or budget syncs, the request that finds the meter's flush
//! due starts a sync as its chore (done before its answer ends, like every
//! sync). A failed write keeps the counts for the next one.
//!
//! What a process holds when it is frozen for good (never woken again) is
//! lost: at most one interval of its counts.

mod metric;
pub(crate) mod read;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::counter::{Bucket, Counters, SyncChore, SyncWrites};
use super::error::RelayError;
use super::record::Record;
use crate::config::Config;
use crate::store::keys::meter::{self as keys, DAY_MS, DAYS_KEPT, HOUR_MS, HOURS_KEPT};
use crate::store::{Distinct, FieldAdds, Store, Tallies};
pub(crate) use metric::Field;
pub(crate) use metric::{
    CACHE_KINDS, CALLS, LATENCY_BOUNDS_MS, LATENCY_FIELDS, REFUSED, STATUS_CLASSES, TOKEN_FAILURES, TOKEN_FETCHES,
    quantile_ms,
};

/// How often an instance writes its counts at most: one command per interval.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Distinct clients an instance remembers per upstream, route and hour
/// between two writes; more are not counted until the next write.
const MAX_CLIENTS_PER_FLUSH: usize = 1000;
const MINUTE_MS: u64 = 60_000;

/// The meter of one process. Cheap to clone.
#[derive(Clone)]
pub(in crate::relay) struct Meter {
    shared: Arc<Shared>,
}

/// A time source in ms since the epoch: the wall clock, or a test's.
pub(crate) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

struct Shared {
    /// Every (upstream, route) counted, by index; index 0 is no known upstream's.
    scopes: Vec<(String, Option<String>)>,
    /// Upstream name → (index without a route, index by route pattern).
    index: HashMap<String, (usize, HashMap<String, usize>)>,
    counts: Mutex<Counts>,
    /// Counts on their way to the store, given back if the write fails.
    sending: Mutex<Option<Counts>>,
    /// When the counts were last handed to a sync (ms since the epoch).
    flushed_at: AtomicU64,
    /// What keys the rate limits name a client by, for the distinct clients.
    client_name: fn(Bucket) -> String,
    clock: Clock,
}

/// Counts not yet written: per scope and minute (since the epoch), and the
/// clients seen per scope and hour.
#[derive(Debug, Default)]
struct Counts {
    minutes: HashMap<(usize, u64), BTreeMap<Field, u64>>,
    clients: HashMap<(usize, u64), HashSet<Bucket>>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").field("scopes", &self.shared.scopes.len()).finish_non_exhaustive()
    }
}

impl Meter {
    /// A meter of every relayed upstream and route of `config` on `clock`
    /// (`clock::now_ms`, but in tests), whose counts ride `counters`' syncs;
    /// `client_name` names a rate limit's client.
    pub(in crate::relay) fn new(config: &Config, counters: &Counters, client_name: fn(Bucket) -> String, clock: Clock) -> Self {
        let mut scopes = vec![(keys::UNKNOWN.to_owned(), None)];
        let mut index = HashMap::new();
        for (name, relay) in config.upstreams.iter().filter_map(|(n, u)| Some((n, u.relay.as_ref()?))) {
            scopes.push((name.clone(), None));
            let whole = scopes.len() - 1;
            let mut routes = HashMap::new();
            for route in &relay.routes {
                let pattern = route.pattern.as_str().to_owned();
                scopes.push((name.clone(), Some(pattern.clone())));
                routes.insert(pattern, scopes.len() - 1);
            }
            index.insert(name.clone(), (whole, routes));
        }
        let meter = Self {
            shared: Arc::new(Shared {
                scopes,
                index,
                counts: Mutex::default(),
                sending: Mutex::default(),
                flushed_at: AtomicU64::new(clock()),
                client_name,
                clock,
            }),
        };
        counters.carry(meter.clone());
        meter
    }

    /// The scope of `upstream` and `route`, as far as they are known and configured.
    fn scope(&self, upstream: Option<&str>, route: Option<&str>) -> usize {
        let Some((whole, routes)) = upstream.and_then(|u| self.shared.index.get(u)) else { return 0 };
        route.and_then(|r| routes.get(r)).copied().unwrap_or(*whole)
    }

    /// Adds `fields` (each one more) to the counts of `upstream` and `route`
    /// this minute, and `client` to the hour's clients.
    pub(in crate::relay) fn add(&self, upstream: Option<&str>, route: Option<&str>, fields: &[Field], client: Option<Bucket>) {
        let scope = self.scope(upstream, route);
        let minute = (self.shared.clock)() / MINUTE_MS;
        let mut counts = self.shared.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = counts.minutes.entry((scope, minute)).or_default();
        for field in fields {
            *tally.entry(*field).or_default() += 1;
        }
        if let Some(client) = client {
            let seen = counts.clients.entry((scope, minute / 60)).or_default();
            if seen.len() < MAX_CLIENTS_PER_FLUSH {
                seen.insert(client);
            }
        }
    }

    /// Counts one answer of the relay: its status class, its error's code,
    /// how the cache answered, and its `client` among the hour's.
    pub(in crate::relay) fn answer(
        &self,
        record: &Record<'_>,
        status: http::StatusCode,
        error: Option<&RelayError>,
        client: Bucket,
    ) {
        let mut fields = Vec::with_capacity(3);
        fields.push(Field::status(status));
        fields.extend(error.map(|e| Field::Refused(e.code())));
        fields.extend(record.timing.cache.and_then(|(_, kind)| Field::cache(kind)));
        self.add(record.upstream.as_deref(), record.route, &fields, Some(client));
    }

    /// The sync that writes the counts, when the flush is due and no limit's
    /// sync would carry them: for the request that counted last, as its chore.
    pub(in crate::relay) fn flush_if_due(&self, counters: &Counters) -> Option<SyncChore> {
        self.due().then(|| counters.sync_soon()).flatten()
    }

    /// Whether a [`FLUSH_INTERVAL`] passed since the last write.
    fn due(&self) -> bool {
        let last = self.shared.flushed_at.load(Ordering::Acquire);
        (self.shared.clock)().saturating_sub(last) >= crate::clock::millis(FLUSH_INTERVAL)
    }
}

impl SyncWrites for Meter {
    fn take(&self, store: &Store) -> Option<Tallies> {
        if !self.due() {
            return None;
        }
        let now = (self.shared.clock)();
        self.shared.flushed_at.store(now, Ordering::Release);
        let taken = std::mem::take(&mut *self.shared.counts.lock().unwrap_or_else(PoisonError::into_inner));
        if taken.minutes.is_empty() && taken.clients.is_empty() {
            return None;
        }
        let tallies = self.tallies(store, &taken, now);
        *self.shared.sending.lock().unwrap_or_else(PoisonError::into_inner) = Some(taken);
        Some(tallies)
    }

    fn landed(&self, written: bool) {
        let Some(sent) = self.shared.sending.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        if written {
            return;
        }
        let mut counts = self.shared.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, fields) in sent.minutes {
            let tally = counts.minutes.entry(key).or_default();
            for (field, n) in fields {
                *tally.entry(field).or_default() += n;
            }
        }
        for (key, clients) in sent.clients {
            counts.clients.entry(key).or_default().extend(clients);
        }
    }
}

impl Meter {
    /// The store's writes of `counts`: per scope, each hour's hash (its
    /// totals and its minutes'), each day's, and each hour's clients.
    fn tallies(&self, store: &Store, counts: &Counts, now: u64) -> Tallies {
        let namer = store.namer();
        let mut hours: BTreeMap<(usize, u64), BTreeMap<String, u64>> = BTreeMap::new();
        let mut days: BTreeMap<(usize, u64), BTreeMap<String, u64>> = BTreeMap::new();
        for (&(scope, minute), fields) in &counts.minutes {
            let (hour, day) = (minute / 60, minute * MINUTE_MS / DAY_MS);
            for (field, &n) in fields {
                let name = field.name();
                let hourly = hours.entry((scope, hour)).or_default();
                *hourly.entry(keys::minute_field(&name, minute % 60)).or_default() += n;
                *hourly.entry(name.clone()).or_default() += n;
                *days.entry((scope, day)).or_default().entry(name).or_default() += n;
            }
        }
        let scope = |i: usize| {
            let (upstream, route) = &self.shared.scopes[i];
            (upstream.as_str(), route.as_deref())
        };
        let ttl = |period_ms: u64, period: u64, kept: Duration| {
            Duration::from_millis(((period + 1) * period_ms).saturating_sub(now)) + kept
        };
        let fields = hours
            .into_iter()
            .map(|((i, hour), fields)| {
                let (upstream, route) = scope(i);
                FieldAdds {
                    key: keys::hour(namer, upstream, route, hour),
                    fields: fields.into_iter().collect(),
                    ttl: ttl(HOUR_MS, hour, HOURS_KEPT),
                }
            })
            .chain(days.into_iter().map(|((i, day), fields)| {
                let (upstream, route) = scope(i);
                FieldAdds {
                    key: keys::day(namer, upstream, route, day),
                    fields: fields.into_iter().collect(),
                    ttl: ttl(DAY_MS, day, DAYS_KEPT),
                }
            }))
            .collect();
        let distinct = counts
            .clients
            .iter()
            .map(|(&(i, hour), clients)| {
                let (upstream, route) = scope(i);
                Distinct {
                    key: keys::clients(namer, upstream, route, hour),
                    members: clients.iter().map(|c| keys::client(namer, &(self.shared.client_name)(*c))).collect(),
                    ttl: ttl(HOUR_MS, hour, HOURS_KEPT),
                }
            })
            .collect();
        Tallies { fields, distinct }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A clock the test moves.

    use super::*;

    /// A clock a test sets (ms since the epoch).
    #[derive(Clone, Default)]
    pub(crate) struct TestClock(Arc<AtomicU64>);

    impl TestClock {
        pub(crate) fn set(&self, ms: u64) {
            self.0.store(ms, Ordering::SeqCst);
        }

        /// The clock as the meter reads it.
        pub(crate) fn clock(&self) -> Clock {
            let at = self.0.clone();
            Arc::new(move || at.load(Ordering::SeqCst))
        }
    }
}
