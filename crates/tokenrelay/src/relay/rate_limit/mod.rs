//! Per client and upstream request limits: each relayed upstream's own
//! `rate_limit`, or `[relay] rate_limit`, counted per client ([`Client`]: an
//! IPv4 address, an IPv6 /64, or with `per = "caller"` the proven caller) on
//! the shared counters of `relay::counter`, which say how requests are
//! decided in memory, counted across instances and synced, and bound what a
//! client gets past its limit across instances.
//!
//! An instance tracks at most [`MAX_CLIENTS`] clients per upstream and
//! window: later new ones share the [`Client::Crowd`] bucket, so that the
//! memory and the store keys of one window stay bounded.

mod client;

use std::net::IpAddr;
use std::sync::{Arc, Once};

use super::counter::{Admission, Bound, Bucket, Counter, Counters, Limit};
pub(super) use super::counter::{Counting, Verdict};
use super::error::{Kind, RelayError};
use crate::alerts::Alerts;
use crate::broker::Broker;
use crate::config::relay::Per;
use crate::relay::TrustedKeyMap;
use crate::store::Store;
use crate::store::keys::counter as counter_keys;
use client::Client;

/// Clients an instance keeps a tally for per upstream and window; later new
/// ones share the [`Client::Crowd`] bucket. About 64 bytes each.
pub(crate) const MAX_CLIENTS: usize = 10_000;

/// The rate limits of every relayed upstream. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    counters: Counters,
    /// Each relayed upstream's limit, and whom it counts.
    limits: Arc<TrustedKeyMap<String, (Arc<Counter>, Per)>>,
    ipv6_prefix: u8,
}

impl RateLimiter {
    /// The limits of `broker`'s config, each relayed upstream's own or
    /// `[relay] rate_limit`, registered on `counters`.
    /// A window that meets more clients than an instance tracks is an
    /// alert (`crowd`).
    pub(crate) fn new(broker: &Broker, counters: &Counters, alerts: &Alerts) -> Self {
        let settings = &broker.config().relay;
        let limits = broker
            .config()
            .upstreams
            .iter()
            .filter_map(|(name, u)| Some((name, u.relay.as_ref()?)))
            .map(|(name, relay)| {
                let limit = relay.rate_limit.unwrap_or(settings.rate_limit);
                let counter = counters.register(Limit {
                    requests: u64::from(limit.requests),
                    window: limit.window,
                    key: {
                        let upstream = name.clone();
                        Box::new(move |store, bucket, window| {
                            counter_keys::rate(store.namer(), &upstream, &Client::counted_in(bucket).name(), window)
                        })
                    },
                    refusal: |retry_after| Kind::RateLimited { retry_after }.into(),
                    bound: Some(crowd_bound(name, alerts.clone())),
                    admission: Admission::OnRecentCount,
                    on_added: None,
                });
                (name.clone(), (counter, limit.per))
            })
            .collect();
        Self { counters: counters.clone(), limits: Arc::new(limits), ipv6_prefix: settings.ipv6_prefix }
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
        let Some((counter, per)) = self.limits.get(upstream) else { return Ok(Verdict::Admitted(None)) };
        let by_caller = caller.filter(|_| *per == Per::Caller).and_then(Client::caller);
        let client = by_caller.unwrap_or_else(|| Client::of(ip, self.ipv6_prefix));
        if client == Client::Unknown {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                tracing::warn!(upstream, "the platform gave no client address: such requests share one rate limit");
            });
        }
        self.counters.judge(counter, Bucket::from(client))
    }

    /// The bucket a request from `ip` counts in by its address: the usage
    /// meter's distinct clients are these.
    pub(super) fn client(&self, ip: Option<IpAddr>) -> Bucket {
        Bucket::from(Client::of(ip, self.ipv6_prefix))
    }

    /// The name a client's bucket is keyed by ([`counter_keys::rate`] hashes it).
    pub(super) fn client_name(bucket: Bucket) -> String {
        Client::counted_in(bucket).name()
    }

    /// Whether `upstream` counts a proven caller's requests per caller
    /// (`rate_limit.per = "caller"`) rather than per address.
    pub(super) fn counts_callers(&self, upstream: &str) -> bool {
        self.limits.get(upstream).is_some_and(|(_, per)| *per == Per::Caller)
    }

    /// Refuses (429) a request from `ip` to `upstream` when this instance
    /// already knows the address's window is spent; counts nothing. A proof
    /// counted only once it failed is checked after this, so that an
    /// address whose failed proofs spent its limit gets none checked.
    pub(super) fn has_room(&self, upstream: &str, ip: Option<IpAddr>) -> Result<(), RelayError> {
        let Some((counter, _)) = self.limits.get(upstream) else { return Ok(()) };
        counter.has_room(Bucket::from(Client::of(ip, self.ipv6_prefix)))
    }

    /// Decides a request [`decide`](Self::decide) sent to the store, on the
    /// totals the store answered (or, without them, on this instance's count).
    pub(super) fn settle(&self, counting: Counting, totals: Option<Vec<u64>>) -> Result<(), RelayError> {
        self.counters.settle(counting, totals)
    }
}

/// At most [`MAX_CLIENTS`] clients of `upstream` per window; the others are the crowd.
fn crowd_bound(upstream: &str, alerts: Alerts) -> Bound {
    let upstream = upstream.to_owned();
    Bound {
        buckets: MAX_CLIENTS,
        overflow: Bucket::from(Client::Crowd),
        crowded: Box::new(move || {
            alerts.crowd(&upstream, MAX_CLIENTS as u64);
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                tracing::warn!(
                    upstream,
                    clients = MAX_CLIENTS,
                    "more clients in one rate-limit window than an instance tracks: the others share one limit"
                );
            });
        }),
    }
}

/// The store keys of `upstream`'s shared buckets in window number `window`:
/// the crowd past [`MAX_CLIENTS`], then requests the platform gave no address for.
pub(crate) fn shared_bucket_keys(store: &Store, upstream: &str, window: u64) -> [String; 2] {
    [Client::Crowd, Client::Unknown].map(|c| counter_keys::rate(store.namer(), upstream, &c.name(), window))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::relay::counter::{Tally, testing, tracked};

    const TEST_TIME: Duration = Duration::from_secs(20);

    fn limiter(requests: u32, upstash_url: &str, token: &str) -> RateLimiter {
        let broker = testing::broker(
            &format!("routes = [{{ path = \"/**\" }}]\nrate_limit = {{ requests = {requests}, window = \"1h\" }}"),
            upstash_url,
            token,
        );
        RateLimiter::new(&broker, &Counters::new(broker.clone(), testing::NoReads), &Alerts::default())
    }

    impl RateLimiter {
        async fn sync(&self) {
            self.counters.sync().await;
        }
    }

    /// What the relay does with a request: decide, count in the store when
    /// told to, and run a due sync.
    async fn check(limiter: &RateLimiter, ip: Option<IpAddr>) -> Result<(), RelayError> {
        limiter.counters.carry_out(limiter.decide("api", ip, None)?).await
    }

    fn unreachable() -> String {
        testing::unreachable()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn tally(limiter: &RateLimiter, client: Client) -> Tally {
        limiter.limits["api"].0.tally(Bucket::from(client))
    }

    fn age(limiter: &RateLimiter) {
        limiter.counters.age();
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
        let mut tallies = std::collections::HashMap::new();
        let bound = crowd_bound("api", Alerts::default());
        let tracked = |tallies: &mut _, bucket, window, _upstream| tracked(tallies, bucket, window, Some(&bound));
        let v6 =
            |n: u128| Bucket::from(Client::of(Some(IpAddr::V6((0x2001_0db8_0001_u128 << 80 | n << 64).into())), 64));
        for n in 0..MAX_CLIENTS as u128 {
            let c = tracked(&mut tallies, v6(n), 7, "api");
            assert_eq!(c, v6(n));
            Tally::current(&mut tallies, c, 7);
        }
        assert_eq!(tracked(&mut tallies, v6(0), 7, "api"), v6(0), "a known client keeps its bucket");
        let crowd = Bucket::from(Client::Crowd);
        assert_eq!(tracked(&mut tallies, v6(1 << 20), 7, "api"), crowd, "a new one joins the crowd");
        assert_eq!(tracked(&mut tallies, v6(1 << 20), 8, "api"), v6(1 << 20), "the next window starts over");
        assert!(tallies.is_empty(), "window 7's tallies were dropped");
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
            a.counters.age_sync();
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
}
