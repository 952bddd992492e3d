//! The usage meter: per upstream and route, what the relay did each minute
//! (upstream calls, cache answers by kind, answers by status class,
//! refusals by code, token fetches and failures, the upstream's latency as a
//! histogram) and the distinct clients of each hour, rolled up in the store
//! into hours (kept [`HOURS_KEPT`]) and days (kept [`DAYS_KEPT`]); the key
//! scheme is `store::keys::meter`'s.
//!
//! Counted in memory, on no request's path: the counts ride the shared
//! counters' round trips (`relay::counter`: a sync, or a count a request
//! makes anyway) as one more command ([`SyncWrites`]), at most once per
//! [`FLUSH_INTERVAL`] per instance. When
//! no rate limit or budget synced for two intervals (traffic refused before
//! the rate limit, a quiet instance), the request that finds the counts
//! waiting starts a sync as its chore (done before its answer ends, like
//! every sync). A failed write keeps the counts for the next one.
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
use crate::relay::TrustedKeyMap;
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
    index: TrustedKeyMap<String, (usize, TrustedKeyMap<String, usize>)>,
    counts: Mutex<Counts>,
    /// Counts on their way to the store, by id, given back if the write fails.
    sending: Mutex<HashMap<u64, Counts>>,
    /// The id of the next write.
    next_id: AtomicU64,
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
    minutes: TrustedKeyMap<(usize, u64), BTreeMap<Field, u64>>,
    clients: TrustedKeyMap<(usize, u64), HashSet<Bucket>>,
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
    pub(in crate::relay) fn new(
        config: &Config,
        counters: &Counters,
        client_name: fn(Bucket) -> String,
        clock: Clock,
    ) -> Self {
        let mut scopes = vec![(keys::UNKNOWN.to_owned(), None)];
        let mut index = TrustedKeyMap::default();
        for (name, relay) in config.upstreams.iter().filter_map(|(n, u)| Some((n, u.relay.as_ref()?))) {
            scopes.push((name.clone(), None));
            let whole = scopes.len() - 1;
            let mut routes = TrustedKeyMap::default();
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
                next_id: AtomicU64::new(0),
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
    pub(in crate::relay) fn add(
        &self,
        upstream: Option<&str>,
        route: Option<&str>,
        fields: &[Field],
        client: Option<Bucket>,
    ) {
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

    /// A sync of its own for the counts, as the chore of the request that
    /// counted last, when no limit's sync carried them for two intervals
    /// (traffic that meets no rate limit: refusals before it, or a quiet
    /// instance); otherwise they ride the next limit sync.
    pub(in crate::relay) fn flush_if_due(&self, counters: &Counters) -> Option<SyncChore> {
        self.waited(2 * FLUSH_INTERVAL).then(|| counters.sync_soon()).flatten()
    }

    /// Whether `interval` passed since the last write.
    fn waited(&self, interval: Duration) -> bool {
        let last = self.shared.flushed_at.load(Ordering::Acquire);
        (self.shared.clock)().saturating_sub(last) >= crate::clock::millis(interval)
    }
}

impl SyncWrites for Meter {
    fn take(&self, store: &Store) -> Option<(u64, Tallies)> {
        if !self.waited(FLUSH_INTERVAL) {
            return None;
        }
        let now = (self.shared.clock)();
        self.shared.flushed_at.store(now, Ordering::Release);
        let taken = std::mem::take(&mut *self.shared.counts.lock().unwrap_or_else(PoisonError::into_inner));
        if taken.minutes.is_empty() && taken.clients.is_empty() {
            return None;
        }
        let tallies = self.tallies(store, &taken, now);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared.sending.lock().unwrap_or_else(PoisonError::into_inner).insert(id, taken);
        Some((id, tallies))
    }

    fn landed(&self, id: u64, written: bool) {
        let Some(sent) = self.shared.sending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id) else {
            return;
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::counter::testing::{NoReads, broker, unreachable};

    const START: u64 = 1_800_000_000_000;

    fn meter(clock: &testing::TestClock) -> (Meter, crate::broker::Broker) {
        let broker = broker("routes = [{ path = \"/search/**\" }]", &unreachable(), "t");
        let counters = Counters::new(broker.clone(), NoReads);
        (Meter::new(broker.config(), &counters, |_| "203.0.113.7".to_owned(), clock.clock()), broker)
    }

    #[test]
    fn counts_wait_an_interval_and_a_failed_write_gives_them_back() {
        let clock = testing::TestClock::default();
        clock.set(START);
        let (meter, broker) = meter(&clock);
        let store = broker.store();
        meter.add(Some("api"), Some("/search/**"), &[Field::Named(CALLS), Field::Refused("rate_limited")], None);
        assert!(meter.take(store).is_none(), "not before an interval");
        clock.set(START + 10_000);
        let (id, first) = meter.take(store).expect("due");
        assert!(meter.take(store).is_none(), "taken");
        meter.landed(id, false);
        clock.set(START + 20_000);
        let (id, again) = meter.take(store).expect("given back");
        let fields = |t: &Tallies| t.fields.iter().map(|f| (f.key.clone(), f.fields.clone())).collect::<Vec<_>>();
        assert_eq!(fields(&again), fields(&first), "the same counts, sent again");
        meter.landed(id, true);
        clock.set(START + 30_000);
        assert!(meter.take(store).is_none(), "written: nothing left");
    }

    #[test]
    fn a_write_holds_each_hour_with_its_minutes_each_day_and_each_hours_clients() {
        let clock = testing::TestClock::default();
        clock.set(START);
        let (meter, broker) = meter(&clock);
        let client = Bucket { kind: 1, detail: 32, bits: 7 };
        meter.add(Some("api"), Some("/search/**"), &[Field::Named(CALLS)], Some(client));
        meter.add(Some("nowhere"), None, &[Field::Refused("unknown_upstream")], Some(client));
        clock.set(START + 10_000);
        let (_, tallies) = meter.take(broker.store()).unwrap();
        let minute = START / MINUTE_MS;
        let hour_key = keys::hour(broker.store().namer(), "api", Some("/search/**"), minute / 60);
        let hour = tallies.fields.iter().find(|f| f.key == hour_key).expect("the route's hour");
        let mm = keys::minute_field(CALLS, minute % 60);
        assert_eq!(hour.fields, [(CALLS.to_owned(), 1), (mm, 1)]);
        assert!(hour.ttl > HOURS_KEPT && hour.ttl <= HOURS_KEPT + Duration::from_secs(3600));
        let unknown = keys::day(broker.store().namer(), keys::UNKNOWN, None, START / DAY_MS);
        let day = tallies.fields.iter().find(|f| f.key == unknown).expect("an unknown upstream's day");
        assert_eq!(day.fields, [("refused.unknown_upstream".to_owned(), 1)]);
        assert_eq!(tallies.fields.len(), 4, "an hour and a day for each scope");
        assert_eq!(tallies.distinct.len(), 2);
        let hashed = keys::client(broker.store().namer(), "203.0.113.7");
        assert!(tallies.distinct.iter().all(|d| d.members == [hashed.clone()]), "the client's keyed hash only");
    }
}
