//! Per client and upstream request limits: decided in memory, counted
//! across instances in the background, the way @upstash/ratelimit's cached
//! fixed window works.
//!
//! Windows are fixed and aligned to the Unix epoch (window `n` of length
//! `w` is `[n·w, (n+1)·w)`), so every instance agrees on them without
//! talking. For each client ([`Client`]: an IPv4 address, an IPv6 /64…) an
//! instance keeps, for the current window, what it last learned of the
//! shared count plus what it admitted since. A request is admitted while that
//! sum is below the limit; no store call is made on the way. The admitted
//! requests are added to the shared counter by [`sync`], in one store round
//! trip per [`SYNC_INTERVAL`] for all keys, never awaited by a request; the
//! reply brings back the total of every instance.
//!
//! # Over-admission bound
//! An instance never admits more than `requests` per client and window by
//! itself: its own admissions are part of the sum it checks. So with `N`
//! instances a client gets at most `N × requests` per window, even when the
//! store is unreachable or the instances never sync (e.g. a serverless
//! instance frozen between invocations runs its sync when it thaws). While
//! the instances sync, each learns the others' counts within one interval
//! plus a round trip, so a client gets at most `requests` plus what the
//! other `N − 1` instances admitted to it in the last
//! `SYNC_INTERVAL + store timeout` before they learned the limit was
//! reached. Windows are fixed, so as before a client can send up to twice
//! the limit around a window boundary.
//!
//! # Store outage
//! A failed sync keeps its counts for the next one (logged as a warning);
//! every instance keeps enforcing the limit on what it knows.

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
    /// once the limit is known to be reached. Never waits for the store.
    pub(crate) fn check(&self, upstream: &str, ip: Option<IpAddr>) -> Result<(), RelayError> {
        let Some(counter) = self.shared.upstreams.get(upstream) else { return Ok(()) };
        let client = Client::of(ip, self.shared.ipv6_prefix);
        if client == Client::Unknown {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                tracing::warn!(upstream, "the platform gave no client address: such requests share one rate limit");
            });
        }
        let now = now_ms();
        let window = counter.window_ms();
        counter.admit(client, now / window).map_err(|()| {
            let retry_after = Duration::from_millis((now / window + 1) * window - now);
            RelayError::from(Kind::RateLimited { retry_after })
        })?;
        self.schedule_sync();
        Ok(())
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

    /// Admits one request of `client` in `window`, unless the limit is reached.
    fn admit(&self, client: Client, window: u64) -> Result<(), ()> {
        let mut tallies = self.lock();
        let tally = tallies.entry(client).or_default();
        if tally.window != window {
            *tally = Tally { window, ..Tally::default() };
        }
        if tally.known + tally.pending >= u64::from(self.limit.requests) {
            return Err(());
        }
        tally.pending += 1;
        Ok(())
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
            limiter.check("api", ip("203.0.113.7")).unwrap();
        }
        let err = limiter.check("api", ip("203.0.113.7")).unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        limiter.check("api", ip("203.0.113.8")).expect("another address has its own limit");
    }

    #[tokio::test]
    async fn ipv6_clients_are_limited_by_slash_64() {
        let limiter = limiter(2, &unreachable(), "t");
        limiter.check("api", ip("2001:db8:1:2::1")).unwrap();
        limiter.check("api", ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(limiter.check("api", ip("2001:db8:1:2::77")).is_err(), "a fresh address in the same /64");
        limiter.check("api", ip("2001:db8:1:3::1")).expect("the next /64 is another client");
    }

    #[tokio::test]
    async fn address_less_requests_share_one_limit() {
        let limiter = limiter(1, &unreachable(), "t");
        limiter.check("api", None).unwrap();
        assert!(limiter.check("api", None).is_err());
        limiter.check("api", ip("203.0.113.7")).expect("apart from clients with an address");
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let counter =
            Counter { limit: RateLimit { requests: 1, window: Duration::from_secs(60) }, tallies: Mutex::default() };
        counter.admit(Client::Unknown, 7).unwrap();
        assert!(counter.admit(Client::Unknown, 7).is_err());
        counter.admit(Client::Unknown, 8).unwrap();
    }

    #[tokio::test]
    async fn store_outage_keeps_the_local_limit_and_the_counts() {
        tokio::time::timeout(TEST_TIME, async {
            let limiter = limiter(2, &unreachable(), "t");
            let client = Client::of(ip("203.0.113.7"), 64);
            limiter.check("api", ip("203.0.113.7")).unwrap();
            limiter.sync().await;
            assert_eq!(tally(&limiter, client).pending, 1, "kept for the next sync");
            assert_eq!(tally(&limiter, client).known, 0);
            limiter.check("api", ip("203.0.113.7")).unwrap();
            assert!(limiter.check("api", ip("203.0.113.7")).is_err(), "the limit holds without the store");
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
                a.check("api", visitor).unwrap();
                a.check("api", ip("203.0.113.9")).unwrap();
            }
            b.check("api", visitor).unwrap();
            assert_eq!(upstash.requests(), 0, "deciding makes no store call");

            a.sync().await;
            assert_eq!(upstash.requests(), 1, "one round trip for every key");
            assert_eq!(upstash.commands(), 2, "one command per key");
            b.sync().await;
            assert_eq!(tally(&b, Client::of(visitor, 64)).known, 4, "b learned a's three");
            b.check("api", visitor).unwrap();
            assert!(b.check("api", visitor).is_err(), "b blocks at 5 with a's counts");
            a.sync().await; // nothing pending: no call
            assert_eq!(upstash.requests(), 2);
        })
        .await
        .unwrap();
    }
}
