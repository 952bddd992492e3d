//! Per client and upstream request limits: decided in memory, counted
//! across instances on the requests' own path, the way @upstash/ratelimit's
//! cached fixed window works.
//!
//! Windows are fixed and aligned to the Unix epoch (window `n` of length
//! `w` is `[n·w, (n+1)·w)`), so every instance agrees on them without
//! talking. For each client ([`Client`]: an IPv4 address, an IPv6 /64…) an
//! instance keeps, for the current window, what it last learned of the
//! shared count plus what it admitted since.
//!
//! A request is decided in memory while the instance learned the client's
//! shared count less than [`SYNC_INTERVAL`] ago (or is learning it right
//! now). Otherwise (the client's first request in the window here, as on a
//! serverless cold start or `netlify dev`'s fresh process per request, or
//! an instance that slept) the request is counted in the store before it is
//! decided: one round trip that adds everything this instance admitted
//! since its last sync and brings back every instance's totals; a cold
//! instance's first request reads its token and cached answer in the same
//! round trip. A request admitted in memory once the interval has passed
//! also syncs, as a chore of that request (alongside its upstream call, done
//! before its answer ends), and so does the request that uses up a
//! client's window on an instance, so that every instance learns at once
//! that the client is done. Nothing runs after an answer, so a frozen
//! instance loses nothing: it syncs on its next request.
//!
//! # Over-admission bound
//! An instance never admits more than `requests` per client and window by
//! itself: its own admissions are part of the sum it checks, and it decides
//! in memory only on a shared count at most [`SYNC_INTERVAL`] old. So with
//! `N` instances a client gets at most `requests` plus what the other
//! instances admitted to it in memory within one interval before their
//! sync reached the store. Without a store (unreachable), each instance
//! enforces the limit alone: at most `N × requests`. Windows are fixed, so
//! as before a client can send up to twice the limit around a window
//! boundary.
//!
//! # Budgets
//! An upstream's (or a route's) `budget` is counted by the same machinery:
//! a counter whose one bucket is every upstream call it covers, decided by
//! [`RateLimiter::spend`] before each call, with the same over-admission
//! bound: at most `requests` plus what the other instances admitted in
//! memory within one interval before their sync reached the store.
//!
//! # Store outage
//! A failed count or sync keeps the counts for the next one (logged as a
//! warning), tried again after an interval; every instance keeps enforcing
//! the limit on what it knows.

mod client;
mod sync;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use super::error::{Kind, RelayError};
use super::upstream_limits::Cooldowns;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::config::relay::Per;
use crate::store::Store;
use client::Client;
pub(super) use sync::{Counting, SyncChore};

/// How old a shared count may be for a request to be decided on it in
/// memory; at most one sync per interval on a busy instance.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// Clients an instance keeps a tally for per upstream and window; later new
/// ones share the [`Client::Crowd`] bucket. About 64 bytes each.
pub(crate) const MAX_CLIENTS: usize = 10_000;

/// The limits and budgets of every relayed upstream, with this instance's
/// counts. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    /// The store the counts are synced to.
    broker: Broker,
    ipv6_prefix: u8,
    /// Every rate limit and budget, fixed at start.
    counters: Vec<Counter>,
    /// Each relayed upstream's rate limit, as an index into `counters`.
    rate_limits: HashMap<String, (usize, Per)>,
    /// Each upstream's budgets, as indexes into `counters`.
    budgets: HashMap<String, Budgets>,
    /// The upstreams' cooldowns, read from the store with every sync.
    cooldowns: Cooldowns,
    /// Whether a sync runs.
    syncing: AtomicBool,
    /// When the last sync was sent (ms since the epoch).
    synced_at: AtomicU64,
}

/// One upstream's budget and its routes' own.
#[derive(Default)]
struct Budgets {
    upstream: Option<usize>,
    /// By route pattern.
    routes: HashMap<String, usize>,
}

/// One limit and this instance's tallies per bucket.
struct Counter {
    upstream: String,
    /// A budget's route pattern, when it is not the whole upstream's.
    route: Option<String>,
    requests: u64,
    window: Duration,
    tallies: Mutex<HashMap<Bucket, Tally>>,
}

/// Whose count a tally is: what a counter's tallies are kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket {
    /// One client's requests, against a rate limit.
    Client(Client),
    /// Every upstream call a budget covers.
    Calls,
}

/// One client's count in one window, as this instance knows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// Window number since the epoch.
    window: u64,
    /// The shared count when last learned, plus what this instance has sent
    /// since (optimistically, until the store confirms or fails).
    known: u64,
    /// Admitted here and not yet sent.
    pending: u64,
    /// When `known` was last learned from the store (ms since the epoch).
    learned_at: u64,
    /// Whether a count of this client is on its way to the store.
    counting: bool,
}

/// How a request fared against its limit.
pub(super) enum Verdict {
    /// Admitted in memory; `Some` when the instance's sync is due (an
    /// interval passed, or the client's window is used up here), to run as a
    /// chore of the request.
    Admitted(Option<SyncChore>),
    /// To be counted in the store before it is decided: send
    /// [`Counting::counts`], then [`RateLimiter::settle`].
    Count(Counting),
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("counters", &self.shared.counters.len()).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// The limits of `broker`'s config: each relayed upstream's own, or
    /// `[relay] rate_limit`, and every budget.
    pub(crate) fn new(broker: Broker, cooldowns: Cooldowns) -> Self {
        let settings = &broker.config().relay;
        let mut counters = Vec::new();
        let mut rate_limits = HashMap::new();
        let mut budgets: HashMap<String, Budgets> = HashMap::new();
        let mut add = |upstream: &str, route, requests: u64, window| {
            let tallies = Mutex::default();
            counters.push(Counter { upstream: upstream.to_owned(), route, requests, window, tallies });
            counters.len() - 1
        };
        for (name, relay) in broker.config().upstreams.iter().filter_map(|(n, u)| Some((n, u.relay.as_ref()?))) {
            let limit = relay.rate_limit.unwrap_or(settings.rate_limit);
            rate_limits.insert(name.clone(), (add(name, None, u64::from(limit.requests), limit.window), limit.per));
            let own = budgets.entry(name.clone()).or_default();
            if let Some(b) = relay.budget {
                own.upstream = Some(add(name, None, b.requests, b.per));
            }
            for route in &relay.routes {
                if let Some(b) = route.budget {
                    let pattern = route.pattern.as_str().to_owned();
                    let index = add(name, Some(pattern.clone()), b.requests, b.per);
                    own.routes.insert(pattern, index);
                }
            }
        }
        let ipv6_prefix = settings.ipv6_prefix;
        Self {
            shared: Arc::new(Shared {
                broker,
                ipv6_prefix,
                counters,
                rate_limits,
                budgets,
                cooldowns,
                syncing: AtomicBool::new(false),
                synced_at: AtomicU64::new(0),
            }),
        }
    }

    /// Decides this request against `upstream`'s limit for `ip` (or, on an
    /// upstream counting per caller, for `caller`, the proven caller's keyed
    /// hash) in memory when this instance's knowledge of the client is
    /// recent, else says what to count in the store first.
    pub(super) fn decide(
        &self,
        upstream: &str,
        ip: Option<IpAddr>,
        caller: Option<&str>,
    ) -> Result<Verdict, RelayError> {
        let Some(&(counter, per)) = self.shared.rate_limits.get(upstream) else { return Ok(Verdict::Admitted(None)) };
        let by_caller = caller.filter(|_| per == Per::Caller).and_then(Client::caller);
        let client = by_caller.unwrap_or_else(|| Client::of(ip, self.shared.ipv6_prefix));
        if client == Client::Unknown {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                tracing::warn!(upstream, "the platform gave no client address: such requests share one rate limit");
            });
        }
        self.judge(counter, Bucket::Client(client))
    }

    /// Whether `upstream` counts a proven caller's requests per caller
    /// (`rate_limit.per = "caller"`) rather than per address.
    pub(super) fn counts_callers(&self, upstream: &str) -> bool {
        self.shared.rate_limits.get(upstream).is_some_and(|&(_, per)| per == Per::Caller)
    }

    /// Refuses (429) a request from `ip` to `upstream` when this instance
    /// already knows the address's window is spent; counts nothing. A proof
    /// counted only once it failed is checked after this, so that an
    /// address whose failed proofs spent its limit gets none checked.
    pub(super) fn has_room(&self, upstream: &str, ip: Option<IpAddr>) -> Result<(), RelayError> {
        let Some(&(index, _)) = self.shared.rate_limits.get(upstream) else { return Ok(()) };
        let counter = &self.shared.counters[index];
        let now = now_ms();
        let bucket = Bucket::Client(Client::of(ip, self.shared.ipv6_prefix));
        let tallies = counter.lock();
        match tallies.get(&bucket).filter(|t| t.window == now / counter.window_ms()) {
            Some(t) if t.known + t.pending >= counter.requests => Err(counter.refusal(bucket, now)),
            _ => Ok(()),
        }
    }

    /// Decides one call to `upstream` on its route `route` (a pattern)
    /// against the route's budget, or without one the upstream's, like
    /// [`decide`](Self::decide) decides a request.
    pub(super) fn spend(&self, upstream: &str, route: &str) -> Result<Verdict, RelayError> {
        let Some(budgets) = self.shared.budgets.get(upstream) else { return Ok(Verdict::Admitted(None)) };
        match budgets.routes.get(route).copied().or(budgets.upstream) {
            Some(counter) => self.judge(counter, Bucket::Calls),
            None => Ok(Verdict::Admitted(None)),
        }
    }

    /// Decides one more in `bucket` of counter number `index`.
    fn judge(&self, index: usize, bucket: Bucket) -> Result<Verdict, RelayError> {
        let counter = &self.shared.counters[index];
        let now = now_ms();
        let window = now / counter.window_ms();
        let limit = counter.requests;
        let (bucket, used_up) = {
            let mut tallies = counter.lock();
            let bucket = tracked(&mut tallies, bucket, window, &counter.upstream);
            let tally = Tally::current(&mut tallies, bucket, window);
            if tally.known + tally.pending >= limit {
                return Err(counter.refusal(bucket, now));
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
            // This instance used up the client's window: every instance should learn it now.
            Some(true) => Ok(Verdict::Admitted(self.sync_now())),
            Some(false) => Ok(Verdict::Admitted(self.sync_if_due(now))),
            None => Ok(Verdict::Count(self.counting(now, Some((index, bucket, window))))),
        }
    }

    /// Decides a request [`decide`](Self::decide) sent to the store, on the
    /// totals the store answered (or, without them, on this instance's count).
    pub(super) fn settle(&self, counting: Counting, totals: Option<Vec<u64>>) -> Result<(), RelayError> {
        let Some((index, bucket, window)) = counting.request else { return Ok(()) };
        let total = self.reconcile(&counting, totals);
        let counter = &self.shared.counters[index];
        let mut tallies = counter.lock();
        let Some(tally) = tallies.get_mut(&bucket).filter(|t| t.window == window) else { return Ok(()) };
        tally.counting = false;
        let limit = counter.requests;
        // Without the store, this instance's own count decides (the request is in it).
        let admitted = total.map_or(tally.known + tally.pending <= limit, |total| total <= limit);
        if admitted { Ok(()) } else { Err(counter.refusal(bucket, now_ms())) }
    }
}

/// The store keys of `upstream`'s shared buckets in window number `window`:
/// the crowd past [`MAX_CLIENTS`], then requests the platform gave no address for.
pub(super) fn shared_bucket_keys(store: &Store, upstream: &str, window: u64) -> [String; 2] {
    [Client::Crowd, Client::Unknown].map(|c| store.rate_key(upstream, &c.name(), window))
}

/// The bucket a request in `bucket` is counted in: a client's own, unless
/// this window already holds [`MAX_CLIENTS`] others (those of older windows
/// are dropped first).
fn tracked(tallies: &mut HashMap<Bucket, Tally>, bucket: Bucket, window: u64, upstream: &str) -> Bucket {
    if tallies.len() < MAX_CLIENTS || tallies.contains_key(&bucket) {
        return bucket;
    }
    tallies.retain(|_, t| t.window == window);
    if tallies.len() < MAX_CLIENTS {
        return bucket;
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            upstream,
            clients = MAX_CLIENTS,
            "more clients in one rate-limit window than an instance tracks: the others share one limit"
        );
    });
    Bucket::Client(Client::Crowd)
}

impl Counter {
    fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// The shared counter of `bucket` in window number `window`.
    fn key(&self, store: &Store, bucket: Bucket, window: u64) -> String {
        match bucket {
            Bucket::Client(client) => store.rate_key(&self.upstream, &client.name(), window),
            Bucket::Calls => store.budget_key(&self.upstream, self.route.as_deref(), window),
        }
    }

    /// The tallies; a panic elsewhere while holding them leaves plain counts, still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bucket, Tally>> {
        self.tallies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// 429 (a client's rate limit) or 503 (a budget) until the end of the window `now` is in.
    fn refusal(&self, bucket: Bucket, now: u64) -> RelayError {
        let window_ms = self.window_ms();
        let retry_after = Duration::from_millis((now / window_ms + 1) * window_ms - now);
        match bucket {
            Bucket::Client(_) => Kind::RateLimited { retry_after }.into(),
            Bucket::Calls => Kind::BudgetExhausted { retry_after }.into(),
        }
    }
}

impl Tally {
    /// `bucket`'s tally of `window`, started from nothing if it held an older one.
    fn current(tallies: &mut HashMap<Bucket, Tally>, bucket: Bucket, window: u64) -> &mut Tally {
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
mod tests {
    use super::*;
    use crate::config::{Config, Env};
    use crate::store::UPSTASH_VARS;

    const TEST_TIME: Duration = Duration::from_secs(20);

    fn limiter(requests: u32, upstash_url: &str, token: &str) -> RateLimiter {
        with_relay(
            &format!("routes = [{{ path = \"/**\" }}]\nrate_limit = {{ requests = {requests}, window = \"1h\" }}"),
            upstash_url,
            token,
        )
    }

    /// A limiter of upstream `api` with `relay` as its relay section.
    fn with_relay(relay: &str, upstash_url: &str, token: &str) -> RateLimiter {
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
        let broker = Broker::new(Config::parse(&config, "t.toml", &env).unwrap(), &env).unwrap();
        RateLimiter::new(broker, Cooldowns::default())
    }

    /// What the relay does with a request: decide, count in the store when
    /// told to, and run a due sync.
    async fn check(limiter: &RateLimiter, ip: Option<IpAddr>) -> Result<(), RelayError> {
        carry_out(limiter, limiter.decide("api", ip, None)?).await
    }

    /// Carries out `verdict` as the relay would: counts in the store when told
    /// to, else runs a due sync (here before returning, as the request's chore
    /// would run before its answer ends).
    async fn carry_out(limiter: &RateLimiter, verdict: Verdict) -> Result<(), RelayError> {
        match verdict {
            Verdict::Admitted(sync) => {
                if let Some(sync) = sync {
                    sync.await;
                }
                Ok(())
            }
            Verdict::Count(counting) => {
                let totals = limiter.shared.broker.store().add_counts(counting.counts()).await.ok();
                limiter.settle(counting, totals)
            }
        }
    }

    /// A store URL nothing listens on.
    fn unreachable() -> String {
        format!("http://127.0.0.1:{}", testkit::free_port().unwrap())
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn tally(limiter: &RateLimiter, client: Client) -> Tally {
        limiter.shared.counters[0].lock()[&Bucket::Client(client)]
    }

    /// Makes every tally and the last sync look an interval old, as after a
    /// frozen instance thaws.
    fn age(limiter: &RateLimiter) {
        let back = interval_ms() + 1;
        limiter.shared.synced_at.fetch_sub(back, std::sync::atomic::Ordering::AcqRel);
        for counter in &limiter.shared.counters {
            for t in counter.lock().values_mut() {
                t.learned_at -= back;
            }
        }
    }

    #[tokio::test]
    async fn blocks_locally_once_the_limit_is_reached() {
        let limiter = limiter(3, &unreachable(), "t");
        for _ in 0..3 {
            check(&limiter, ip("203.0.113.7")).await.unwrap();
        }
        let err = check(&limiter, ip("203.0.113.7")).await.unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        check(&limiter, ip("203.0.113.8")).await.expect("another address has its own limit");
    }

    #[tokio::test]
    async fn ipv6_clients_are_limited_by_slash_64() {
        let limiter = limiter(2, &unreachable(), "t");
        check(&limiter, ip("2001:db8:1:2::1")).await.unwrap();
        check(&limiter, ip("2001:db8:1:2:ffff::9")).await.unwrap();
        assert!(check(&limiter, ip("2001:db8:1:2::77")).await.is_err(), "a fresh address in the same /64");
        check(&limiter, ip("2001:db8:1:3::1")).await.expect("the next /64 is another client");
    }

    #[tokio::test]
    async fn address_less_requests_share_one_limit() {
        let limiter = limiter(1, &unreachable(), "t");
        check(&limiter, None).await.unwrap();
        assert!(check(&limiter, None).await.is_err());
        check(&limiter, ip("203.0.113.7")).await.expect("apart from clients with an address");
    }

    #[test]
    fn clients_past_the_bound_share_one_bucket_and_old_windows_make_room() {
        let mut tallies = HashMap::new();
        let v6 =
            |n: u128| Bucket::Client(Client::of(Some(IpAddr::V6((0x2001_0db8_0001_u128 << 80 | n << 64).into())), 64));
        for n in 0..MAX_CLIENTS as u128 {
            let c = tracked(&mut tallies, v6(n), 7, "api");
            assert_eq!(c, v6(n));
            Tally::current(&mut tallies, c, 7);
        }
        assert_eq!(tracked(&mut tallies, v6(0), 7, "api"), v6(0), "a known client keeps its bucket");
        let crowd = Bucket::Client(Client::Crowd);
        assert_eq!(tracked(&mut tallies, v6(1 << 20), 7, "api"), crowd, "a new one joins the crowd");
        assert_eq!(tracked(&mut tallies, v6(1 << 20), 8, "api"), v6(1 << 20), "the next window starts over");
        assert!(tallies.is_empty(), "window 7's tallies were dropped");
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let mut tallies = HashMap::new();
        Tally::current(&mut tallies, Bucket::Calls, 7).known = 5;
        assert_eq!(Tally::current(&mut tallies, Bucket::Calls, 7).known, 5);
        assert_eq!(Tally::current(&mut tallies, Bucket::Calls, 8).known, 0, "window 8 starts from nothing");
    }

    #[tokio::test]
    async fn store_outage_keeps_the_local_limit_and_the_counts() {
        tokio::time::timeout(TEST_TIME, async {
            let limiter = limiter(2, &unreachable(), "t");
            let client = Client::of(ip("203.0.113.7"), 64);
            check(&limiter, ip("203.0.113.7")).await.unwrap();
            assert_eq!(tally(&limiter, client).pending, 1, "kept for the next sync");
            limiter.sync().await;
            assert_eq!(tally(&limiter, client).pending, 1, "still kept");
            assert_eq!(tally(&limiter, client).known, 0);
            check(&limiter, ip("203.0.113.7")).await.unwrap();
            assert!(check(&limiter, ip("203.0.113.7")).await.is_err(), "the limit holds without the store");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn instances_learn_each_others_counts_in_one_round_trip_per_sync() {
        tokio::time::timeout(TEST_TIME, async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let (a, b) = (limiter(5, &upstash.url(), upstash.token()), limiter(5, &upstash.url(), upstash.token()));
            let visitor = ip("203.0.113.7");
            for _ in 0..3 {
                check(&a, visitor).await.unwrap();
                check(&a, ip("203.0.113.9")).await.unwrap();
            }
            check(&b, visitor).await.unwrap();
            assert_eq!(upstash.requests(), 3, "one store call per client's first request on each instance");
            assert_eq!(tally(&b, Client::of(visitor, 64)).known, 2, "b's first request saw a's first");

            a.sync().await;
            assert_eq!(upstash.requests(), 4, "one round trip for every key");
            assert_eq!(upstash.commands(), 5, "one command per key");
            check(&b, visitor).await.unwrap();
            b.sync().await;
            assert_eq!(tally(&b, Client::of(visitor, 64)).known, 5, "b learned a's other two with its own");
            assert!(check(&b, visitor).await.is_err(), "b blocks at 5 with a's counts, in memory");
            assert_eq!(upstash.requests(), 5, "deciding a known client makes no store call");
            a.sync().await; // nothing pending: no call
            assert_eq!(upstash.requests(), 5);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn an_instance_that_slept_counts_in_the_store_before_deciding() {
        tokio::time::timeout(TEST_TIME, async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let (a, b) = (limiter(4, &upstash.url(), upstash.token()), limiter(4, &upstash.url(), upstash.token()));
            let visitor = ip("203.0.113.7");
            check(&a, visitor).await.unwrap();
            check(&b, visitor).await.unwrap();
            check(&b, visitor).await.unwrap(); // in b's memory
            check(&b, visitor).await.unwrap();
            b.sync().await;
            // a was frozen for longer than an interval, then thaws: what it knew (1) is stale.
            age(&a);
            assert!(check(&a, visitor).await.is_err(), "a counts in the store and sees b's admissions");
            assert_eq!(upstash.requests(), 4, "a's first, b's first, b's sync, a's count on thawing");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_due_sync_runs_as_the_admitted_requests_chore() {
        tokio::time::timeout(TEST_TIME, async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let a = limiter(10, &upstash.url(), upstash.token());
            let visitor = ip("203.0.113.7");
            check(&a, visitor).await.unwrap();
            let learned = tally(&a, Client::of(visitor, 64)).learned_at;
            match a.decide("api", visitor, None).unwrap() {
                Verdict::Admitted(None) => {}
                _ => panic!("decided in memory, no sync due within the interval"),
            }
            a.shared.synced_at.fetch_sub(interval_ms() + 1, std::sync::atomic::Ordering::AcqRel);
            let Verdict::Admitted(Some(sync)) = a.decide("api", visitor, None).unwrap() else {
                panic!("admitted in memory with a sync due")
            };
            assert!(
                a.decide("api", visitor, None).is_ok_and(|v| matches!(v, Verdict::Admitted(None))),
                "one sync at a time"
            );
            sync.await;
            let t = tally(&a, Client::of(visitor, 64));
            assert_eq!((t.known, t.pending), (4, 0), "the sync sent what was pending and learned the total");
            assert!(t.learned_at >= learned);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn concurrent_first_requests_are_counted_against_each_other() {
        tokio::time::timeout(TEST_TIME, async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let a = limiter(10, &upstash.url(), upstash.token());
            let visitor = ip("203.0.113.7");
            let all = (0..120).map(|_| check(&a, visitor));
            let admitted = futures_util::future::join_all(all).await.into_iter().filter(Result::is_ok).count();
            assert_eq!(admitted, 10, "exactly the limit, though all arrived before the store answered");
        })
        .await
        .unwrap();
    }

    /// What the budget guard does before a call on `route`.
    async fn spend(limiter: &RateLimiter, route: &str) -> Result<(), RelayError> {
        carry_out(limiter, limiter.spend("api", route)?).await
    }

    #[tokio::test]
    async fn a_budget_is_shared_by_instances_and_refuses_with_budget_exhausted_until_the_window_ends() {
        tokio::time::timeout(TEST_TIME, async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let relay = "routes = [{ path = \"/**\" }]\nbudget = { requests = 5, per = \"1d\" }";
            let (a, b) = (
                with_relay(relay, &upstash.url(), upstash.token()),
                with_relay(relay, &upstash.url(), upstash.token()),
            );
            for _ in 0..3 {
                spend(&a, "/**").await.unwrap();
            }
            a.sync().await;
            spend(&b, "/**").await.unwrap();
            spend(&b, "/**").await.unwrap();
            let err = spend(&b, "/**").await.unwrap_err();
            assert_eq!((err.code(), err.status().as_u16()), ("budget_exhausted", 503), "b learned a's three calls");
            b.sync().await;
            age(&a);
            let err = spend(&a, "/**").await.unwrap_err();
            assert_eq!(err.code(), "budget_exhausted", "a counts in the store after a pause and sees b's");
            let left = err.to_response::<bytes::Bytes>().headers()[http::header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap();
            assert!(left > 0 && left <= 86_400, "Retry-After at the day's end: {left}");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_routes_budget_is_its_own_and_routes_without_one_share_the_upstreams() {
        let relay = "routes = [{ path = \"/search/**\", budget = { requests = 1, per = \"1h\" } }, { path = \"/**\" }]\nbudget = { requests = 2, per = \"1h\" }";
        let limiter = with_relay(relay, &unreachable(), "t");
        spend(&limiter, "/search/**").await.unwrap();
        assert!(spend(&limiter, "/search/**").await.is_err(), "the route's own budget of 1");
        spend(&limiter, "/**").await.unwrap();
        spend(&limiter, "/**").await.unwrap();
        assert!(spend(&limiter, "/**").await.is_err(), "the upstream's budget of 2, untouched by the route's");
        let unlimited = limiter_without_budget();
        for _ in 0..10 {
            spend(&unlimited, "/**").await.expect("no budget: every call is admitted");
        }
    }

    fn limiter_without_budget() -> RateLimiter {
        limiter(1, &unreachable(), "t")
    }

    #[tokio::test]
    async fn a_late_store_answer_never_touches_a_newer_window() {
        let limiter = limiter(10, &unreachable(), "t");
        let client = Client::of(ip("203.0.113.7"), 64);
        let counter = &limiter.shared.counters[0];
        let window = now_ms() / counter.window_ms();
        Tally::current(&mut counter.lock(), Bucket::Client(client), window).pending = 3;
        let counting = limiter.counting(now_ms(), None);
        // The window turns before the store answers; the new window has its own count.
        *Tally::current(&mut counter.lock(), Bucket::Client(client), window + 1) =
            Tally { window: window + 1, known: 1, ..Tally::default() };
        limiter.reconcile(&counting, Some(vec![9]));
        assert_eq!(tally(&limiter, client).known, 1, "window {}'s total is not window {}'s", window, window + 1);
    }
}
