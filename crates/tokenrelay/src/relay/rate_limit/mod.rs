//! Per client and upstream request limits: decided in memory, counted
//! across instances in the background, the way @upstash/ratelimit's cached
//! fixed window works.
//!
//! Windows are fixed and aligned to the Unix epoch (window `n` of length
//! `w` is `[n·w, (n+1)·w)`), so every instance agrees on them without
//! talking. For each client ([`Client`]: an IPv4 address, an IPv6 /64…) an
//! instance keeps, for the current window, what it last learned of the
//! shared count plus what it admitted since.
//!
//! A client's first request in a window on an instance is counted in the
//! store before it is decided (one round trip, which also brings back what
//! every other instance counted): an instance that knows nothing of the
//! client, such as a serverless cold start or `netlify dev`'s fresh process
//! per request, would otherwise admit it blindly. Every later request of that
//! client in that window is decided in memory, with no store call: admitted
//! while the sum is below the limit. Those admissions are added to the shared
//! counter by [`sync`], in one store round trip per [`SYNC_INTERVAL`] for all
//! keys, never awaited by a request; the reply brings back the total of every
//! instance.
//!
//! # Over-admission bound
//! An instance never admits more than `requests` per client and window by
//! itself: its own admissions are part of the sum it checks, and it starts
//! from the shared count. So with `N` instances a client gets at most
//! `requests` plus what the other instances admitted to it in memory since
//! they last synced: at most `requests` per instance and
//! `SYNC_INTERVAL + store timeout`. Without a store (unreachable), each
//! instance enforces the limit alone: at most `N × requests`. Windows are
//! fixed, so as before a client can send up to twice the limit around a
//! window boundary.
//!
//! # Store outage
//! A failed count or sync keeps the counts for the next sync (logged as a
//! warning); every instance keeps enforcing the limit on what it knows.

mod client;
mod sync;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{Kind, RelayError};
use crate::broker::Broker;
use crate::config::relay::RateLimit;
use client::Client;

/// How often an instance adds its admitted requests to the shared counters:
/// at most one store round trip per interval, whatever the traffic.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The limits of every relayed upstream, with this instance's counts. Cheap
/// to clone.
#[derive(Clone)]
pub(crate) struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    /// The store the counts are synced to.
    broker: Broker,
    ipv6_prefix: u8,
    /// [`SYNC_INTERVAL`], except in tests that sync by hand.
    sync_interval: Duration,
    /// One per relayed upstream, fixed at start.
    upstreams: HashMap<String, Counter>,
    /// Whether a sync is scheduled.
    sync_due: AtomicBool,
}

/// One upstream's limit and this instance's tallies per client.
struct Counter {
    limit: RateLimit,
    tallies: Mutex<HashMap<Client, Tally>>,
}

/// One client's count in one window, as this instance knows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// Window number since the epoch.
    window: u64,
    /// The shared count when last synced, plus what this instance has sent
    /// since (optimistically, until the store confirms or fails).
    known: u64,
    /// Admitted here and not yet sent.
    pending: u64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("upstreams", &self.shared.upstreams.len()).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// The limits of `broker`'s config: each relayed upstream's own, or `[relay] rate_limit`.
    pub(crate) fn new(broker: Broker) -> Self {
        let settings = &broker.config().relay;
        let upstreams = broker
            .config()
            .upstreams
            .iter()
            .filter_map(|(name, u)| {
                let limit = u.relay.as_ref()?.rate_limit.unwrap_or(settings.rate_limit);
                Some((name.clone(), Counter { limit, tallies: Mutex::default() }))
            })
            .collect();
        let ipv6_prefix = settings.ipv6_prefix;
        Self {
            shared: Arc::new(Shared {
                broker,
                ipv6_prefix,
                sync_interval: SYNC_INTERVAL,
                upstreams,
                sync_due: AtomicBool::new(false),
            }),
        }
    }

    /// Counts this request against `upstream`'s limit for `ip`, or refuses it
    /// once the limit is reached. Waits for the store only on the client's
    /// first request in the window on this instance.
    pub(crate) async fn check(&self, upstream: &str, ip: Option<IpAddr>) -> Result<(), RelayError> {
        let Some(counter) = self.shared.upstreams.get(upstream) else { return Ok(()) };
        let client = Client::of(ip, self.shared.ipv6_prefix);
        if client == Client::Unknown {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                tracing::warn!(upstream, "the platform gave no client address: such requests share one rate limit");
            });
        }
        let now = now_ms();
        let window_ms = counter.window_ms();
        let window = now / window_ms;
        let admitted = match counter.admit(client, window) {
            Some(admitted) => admitted,
            None => self.count_first(upstream, counter, client, window, now).await,
        };
        if !admitted {
            let retry_after = Duration::from_millis((window + 1) * window_ms - now);
            return Err(RelayError::from(Kind::RateLimited { retry_after }));
        }
        self.schedule_sync();
        Ok(())
    }

    /// Counts the first request of `client` in `window` in the store and
    /// decides on the shared total; without the store, on this instance's
    /// count alone (kept pending for the next sync).
    async fn count_first(&self, upstream: &str, counter: &Counter, client: Client, window: u64, now: u64) -> bool {
        let store = self.shared.broker.store();
        let count = self.count(upstream, client, window, 1, now);
        match store.add_counts(std::slice::from_ref(&count)).await.map(|totals| totals.first().copied()) {
            Ok(Some(total)) => {
                let mut tallies = counter.lock();
                let tally = Tally::of(&mut tallies, client, window);
                tally.known = tally.known.max(total);
                total <= u64::from(counter.limit.requests)
            }
            Ok(None) | Err(_) => {
                tracing::warn!(upstream, "rate limit count not stored; this instance enforces the limit alone");
                counter.admit_unsynced(client, window)
            }
        }
    }
}

impl Counter {
    fn window_ms(&self) -> u64 {
        u64::try_from(self.limit.window.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// The tallies; a panic elsewhere while holding them leaves plain counts, still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Client, Tally>> {
        self.tallies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides one request of `client` in `window` in memory: `None` when
    /// this instance has not counted the client in that window yet.
    fn admit(&self, client: Client, window: u64) -> Option<bool> {
        let mut tallies = self.lock();
        let tally = tallies.get_mut(&client).filter(|t| t.window == window)?;
        Some(tally.take(self.limit.requests))
    }

    /// Decides in memory even with nothing known of the window yet.
    fn admit_unsynced(&self, client: Client, window: u64) -> bool {
        Tally::of(&mut self.lock(), client, window).take(self.limit.requests)
    }
}

impl Tally {
    /// `client`'s tally of `window`, started from nothing if it held an older one.
    fn of(tallies: &mut HashMap<Client, Tally>, client: Client, window: u64) -> &mut Tally {
        let tally = tallies.entry(client).or_default();
        if tally.window != window {
            *tally = Tally { window, ..Tally::default() };
        }
        tally
    }

    /// Counts one more request as pending, unless that would pass `limit`.
    fn take(&mut self, limit: u32) -> bool {
        if self.known + self.pending >= u64::from(limit) {
            return false;
        }
        self.pending += 1;
        true
    }
}

/// Milliseconds since the Unix epoch: windows must line up across machines.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Env};
    use crate::store::UPSTASH_VARS;

    const TEST_TIME: Duration = Duration::from_secs(20);

    fn limiter(requests: u32, upstash_url: &str, token: &str) -> RateLimiter {
        let config = format!(
            r#"
[store]
allow_unencrypted = true
timeout = "500ms"

[relay]
rate_limit = {{ requests = {requests}, window = "1h", ipv6_prefix = 64 }}

[upstreams.api]
base_url = "https://api.example.com"
token = {{ type = "static", key = {{ env = "API_KEY" }} }}

[upstreams.api.relay]
routes = [{{ path = "/**" }}]
"#
        );
        let env = Env::from_pairs([(UPSTASH_VARS.0, upstash_url), (UPSTASH_VARS.1, token), ("API_KEY", "k")]);
        let mut limiter = RateLimiter::new(Broker::new(Config::parse(&config, "t.toml", &env).unwrap(), &env).unwrap());
        // These tests sync by hand.
        Arc::get_mut(&mut limiter.shared).unwrap().sync_interval = Duration::from_secs(3600);
        limiter
    }

    /// A store URL nothing listens on.
    fn unreachable() -> String {
        format!("http://127.0.0.1:{}", testkit::free_port().unwrap())
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn tally(limiter: &RateLimiter, client: Client) -> Tally {
        limiter.shared.upstreams["api"].lock()[&client]
    }

    #[tokio::test]
    async fn blocks_locally_once_the_limit_is_reached() {
        let limiter = limiter(3, &unreachable(), "t");
        for _ in 0..3 {
            limiter.check("api", ip("203.0.113.7")).await.unwrap();
        }
        let err = limiter.check("api", ip("203.0.113.7")).await.unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        limiter.check("api", ip("203.0.113.8")).await.expect("another address has its own limit");
    }

    #[tokio::test]
    async fn ipv6_clients_are_limited_by_slash_64() {
        let limiter = limiter(2, &unreachable(), "t");
        limiter.check("api", ip("2001:db8:1:2::1")).await.unwrap();
        limiter.check("api", ip("2001:db8:1:2:ffff::9")).await.unwrap();
        assert!(limiter.check("api", ip("2001:db8:1:2::77")).await.is_err(), "a fresh address in the same /64");
        limiter.check("api", ip("2001:db8:1:3::1")).await.expect("the next /64 is another client");
    }

    #[tokio::test]
    async fn address_less_requests_share_one_limit() {
        let limiter = limiter(1, &unreachable(), "t");
        limiter.check("api", None).await.unwrap();
        assert!(limiter.check("api", None).await.is_err());
        limiter.check("api", ip("203.0.113.7")).await.expect("apart from clients with an address");
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let counter =
            Counter { limit: RateLimit { requests: 1, window: Duration::from_secs(60) }, tallies: Mutex::default() };
        assert_eq!(counter.admit(Client::Unknown, 7), None, "nothing counted yet in window 7");
        assert!(counter.admit_unsynced(Client::Unknown, 7));
        assert_eq!(counter.admit(Client::Unknown, 7), Some(false));
        assert_eq!(counter.admit(Client::Unknown, 8), None, "window 8 starts from nothing");
    }

    #[tokio::test]
    async fn store_outage_keeps_the_local_limit_and_the_counts() {
        tokio::time::timeout(TEST_TIME, async {
            let limiter = limiter(2, &unreachable(), "t");
            let client = Client::of(ip("203.0.113.7"), 64);
            limiter.check("api", ip("203.0.113.7")).await.unwrap();
            limiter.sync().await;
            assert_eq!(tally(&limiter, client).pending, 1, "kept for the next sync");
            assert_eq!(tally(&limiter, client).known, 0);
            limiter.check("api", ip("203.0.113.7")).await.unwrap();
            assert!(limiter.check("api", ip("203.0.113.7")).await.is_err(), "the limit holds without the store");
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
                a.check("api", visitor).await.unwrap();
                a.check("api", ip("203.0.113.9")).await.unwrap();
            }
            b.check("api", visitor).await.unwrap();
            assert_eq!(upstash.requests(), 3, "one store call per client's first request on each instance");
            assert_eq!(tally(&b, Client::of(visitor, 64)).known, 2, "b's first request saw a's first");

            a.sync().await;
            assert_eq!(upstash.requests(), 4, "one round trip for every key");
            assert_eq!(upstash.commands(), 5, "one command per key");
            b.check("api", visitor).await.unwrap();
            b.sync().await;
            assert_eq!(tally(&b, Client::of(visitor, 64)).known, 5, "b learned a's other two with its own");
            assert!(b.check("api", visitor).await.is_err(), "b blocks at 5 with a's counts, in memory");
            assert_eq!(upstash.requests(), 5, "deciding a known client makes no store call");
            a.sync().await; // nothing pending: no call
            assert_eq!(upstash.requests(), 5);
        })
        .await
        .unwrap();
    }
}
