//! The site's budgets of upstream calls: an upstream's `budget`, and a
//! route's own, each one bucket of the shared counters (`relay::counter`)
//! that every call it covers is counted in. A budget is a ceiling
//! (`counter::Admission::OutOfAllowance`): no call is made that was not
//! counted in the store first, so the instances together never pass it.
//! The `call::Budgeted` layer spends them before each call, and reports
//! each budget's count passing 80% and 100% of its calls ([`Crossing`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::counter::{Added, Admission, Bucket, Counter, Counters, Counting, Limit, Verdict};
use super::error::{Kind, RelayError};
use crate::broker::Broker;
use crate::config::relay::Budget;
use crate::relay::TrustedKeyMap;
use crate::store::keys::counter as counter_keys;

/// The shares of a budget's calls whose passing is reported: [`Crossing`].
pub(crate) const CROSSING_PERCENTS: [u8; 2] = [80, 100];

/// Every budget of the relayed upstreams. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    counters: Counters,
    upstreams: Arc<TrustedKeyMap<String, Upstream>>,
    crossings: Crossings,
}

/// Crossings noticed and not yet taken.
type Crossings = Arc<Mutex<Vec<Crossing>>>;

/// A budget's shared count passing one of [`CROSSING_PERCENTS`] of its
/// calls in a window. Noticed by exactly one instance across all, the one
/// whose store count took that count (see `counter::Added`); the count
/// includes calls counted ahead and not yet made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crossing {
    pub(crate) upstream: String,
    /// The route pattern, for a route's own budget.
    pub(crate) route: Option<String>,
    /// The budget's window number since the epoch (`per` long).
    pub(crate) window: u64,
    /// The share passed: 80 or 100.
    pub(crate) percent: u8,
    /// The budget's calls per window, and the window's length.
    pub(crate) requests: u64,
    pub(crate) per: Duration,
}

/// One upstream's budget and its routes' own.
#[derive(Debug, Default)]
struct Upstream {
    whole: Option<Arc<Counter>>,
    /// By route pattern.
    routes: TrustedKeyMap<String, Arc<Counter>>,
}

impl Budgets {
    /// The budgets of `broker`'s config, registered on `counters`.
    pub(crate) fn new(broker: &Broker, counters: &Counters) -> Self {
        let crossings = Crossings::default();
        let mut upstreams: TrustedKeyMap<String, Upstream> = TrustedKeyMap::default();
        for (name, relay) in broker.config().upstreams.iter().filter_map(|(n, u)| Some((n, u.relay.as_ref()?))) {
            let own = upstreams.entry(name.clone()).or_default();
            if let Some(b) = relay.budget {
                own.whole = Some(register(counters, &crossings, name, None, b));
            }
            for route in &relay.routes {
                if let Some(b) = route.budget {
                    let pattern = route.pattern.as_str().to_owned();
                    own.routes.insert(pattern.clone(), register(counters, &crossings, name, Some(pattern), b));
                }
            }
        }
        Self { counters: counters.clone(), upstreams: Arc::new(upstreams), crossings }
    }

    /// The budget a call to `upstream` on its route `route` (a pattern)
    /// counts against: the route's, or without one the upstream's.
    fn counter(&self, upstream: &str, route: &str) -> Option<&Arc<Counter>> {
        let budgets = self.upstreams.get(upstream)?;
        budgets.routes.get(route).or(budgets.whole.as_ref())
    }

    /// Decides one call to `upstream` on its route `route` against its budget.
    pub(super) fn spend(&self, upstream: &str, route: &str) -> Result<Verdict, RelayError> {
        match self.counter(upstream, route) {
            Some(counter) => self.counters.judge(counter, Bucket::default()),
            None => Ok(Verdict::Admitted(None)),
        }
    }

    /// The calls to count ahead on the budget of a call to `upstream` on
    /// `route`, in a round trip its request makes anyway (a cold request's),
    /// when this instance has none left to spend and does not know it spent.
    pub(super) fn count_ahead(&self, upstream: &str, route: &str) -> Option<Counting> {
        self.counters.count_ahead(self.counter(upstream, route)?, Bucket::default())
    }

    /// Learns the store's `totals` for what [`count_ahead`](Self::count_ahead) sent.
    pub(super) fn counted_ahead(&self, counting: &Counting, totals: Vec<u64>) {
        self.counters.reconcile(counting, Some(totals));
    }

    /// The crossings this instance noticed since the last take.
    pub(super) fn take_crossings(&self) -> Vec<Crossing> {
        std::mem::take(&mut *self.crossings.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Decides a call [`spend`](Self::spend) sent to the store, on the totals
    /// the store answered (or, without them, on this instance's count).
    pub(super) fn settle(&self, counting: Counting, totals: Option<Vec<u64>>) -> Result<(), RelayError> {
        self.counters.settle(counting, totals)
    }
}

/// `upstream`'s budget `budget` (its `route`'s own, if given): one bucket,
/// a ceiling, refused with 503 `budget_exhausted` once spent; its
/// crossings go to `crossings`.
fn register(
    counters: &Counters,
    crossings: &Crossings,
    upstream: &str,
    route: Option<String>,
    budget: Budget,
) -> Arc<Counter> {
    let (key_upstream, key_route) = (upstream.to_owned(), route.clone());
    let (upstream, crossings) = (upstream.to_owned(), crossings.clone());
    let on_added = move |added: Added| {
        let passed = CROSSING_PERCENTS.into_iter().filter(|p| passes(&added, budget.requests, *p));
        let found = passed.map(|percent| Crossing {
            upstream: upstream.clone(),
            route: route.clone(),
            window: added.window,
            percent,
            requests: budget.requests,
            per: budget.per,
        });
        crossings.lock().unwrap_or_else(PoisonError::into_inner).extend(found);
    };
    counters.register(Limit {
        requests: budget.requests,
        window: budget.per,
        key: Box::new(move |store, _, window| {
            counter_keys::budget(store.namer(), &key_upstream, key_route.as_deref(), window)
        }),
        refusal: |retry_after| Kind::BudgetExhausted { retry_after }.into(),
        bound: None,
        admission: Admission::OutOfAllowance,
        on_added: Some(Box::new(on_added)),
    })
}

/// Whether `added` took the count that is `percent` of `requests` (rounded up, at least 1).
fn passes(added: &Added, requests: u64, percent: u8) -> bool {
    let count = (requests * u64::from(percent)).div_ceil(100).max(1);
    added.before < count && count <= added.after
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::relay::counter::testing;

    const TEST_TIME: Duration = Duration::from_secs(20);

    /// The budgets of upstream `api` with `relay` as its relay section.
    fn with_relay(relay: &str, upstash_url: &str, token: &str) -> Budgets {
        let broker = testing::broker(relay, upstash_url, token);
        Budgets::new(&broker, &Counters::new(broker.clone(), testing::NoReads))
    }

    impl Budgets {
        async fn sync(&self) {
            self.counters.sync().await;
        }
    }

    fn age(budgets: &Budgets) {
        budgets.counters.age();
    }

    fn unreachable() -> String {
        testing::unreachable()
    }

    /// What the budget guard does before a call on `route`.
    async fn spend(budgets: &Budgets, route: &str) -> Result<(), RelayError> {
        budgets.counters.carry_out(budgets.spend("api", route)?).await
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

    /// Far from its end, a budget spent at a steady pace is decided in
    /// memory: after a few counts on the path while the instance learns its
    /// pace, the only store calls are the syncs (chores, one an interval),
    /// which count ahead what the next intervals will spend.
    #[tokio::test]
    async fn a_steady_pace_far_from_the_end_makes_no_store_call_on_the_path() {
        const PACE: usize = 10;
        tokio::time::timeout(TEST_TIME, async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let relay = "routes = [{ path = \"/**\" }]\nbudget = { requests = 1000000, per = \"1d\" }";
            let budgets = with_relay(relay, &upstash.url(), upstash.token());
            for interval in 0..6 {
                let (before, mut on_path, mut syncs) = (upstash.requests(), 0, Vec::new());
                for _ in 0..PACE {
                    match budgets.spend("api", "/**").unwrap() {
                        Verdict::Admitted(sync) => syncs.extend(sync),
                        counted => {
                            on_path += 1;
                            budgets.counters.carry_out(counted).await.unwrap();
                        }
                    }
                }
                assert_eq!(upstash.requests() - before, on_path, "interval {interval}: one store call per count");
                if interval >= 2 {
                    assert_eq!(on_path, 0, "interval {interval}: the warm path makes no store call");
                }
                assert!(syncs.len() <= 1, "at most one sync an interval");
                for sync in syncs {
                    sync.await;
                }
                budgets.counters.age_sync();
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn each_crossing_of_80_and_100_percent_is_noticed_by_one_instance() {
        tokio::time::timeout(TEST_TIME, async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let relay = "routes = [{ path = \"/**\" }]\nbudget = { requests = 10, per = \"1h\" }";
            let instances: Vec<Budgets> = (0..3).map(|_| with_relay(relay, &upstash.url(), upstash.token())).collect();
            let mut admitted = 0;
            for i in 0..15 {
                admitted += usize::from(spend(&instances[i % 3], "/**").await.is_ok());
            }
            assert_eq!(admitted, 10);
            let crossings: Vec<Crossing> = instances.iter().flat_map(Budgets::take_crossings).collect();
            let mut percents: Vec<u8> = crossings.iter().map(|c| c.percent).collect();
            percents.sort_unstable();
            assert_eq!(percents, [80, 100], "each once across the instances: {crossings:?}");
            assert!(crossings.iter().all(|c| c.upstream == "api" && c.route.is_none()));
            assert!(instances.iter().all(|b| b.take_crossings().is_empty()), "taken once");
        })
        .await
        .unwrap();
    }

    #[test]
    fn a_crossing_is_the_addition_that_takes_its_count() {
        let added = |before, after| Added { bucket: Bucket::default(), window: 1, before, after };
        assert!(passes(&added(7, 8), 10, 80), "the 8th call of 10");
        assert!(!passes(&added(8, 9), 10, 80), "past it already");
        assert!(passes(&added(5, 12), 10, 100), "one addition may take both");
        assert!(passes(&added(0, 1), 1, 80), "a budget of 1: its first call is 80% of it");
        assert!(passes(&added(16, 17), 21, 80), "80% of 21 rounds up to 17");
    }

    fn limiter_without_budget() -> Budgets {
        with_relay("routes = [{ path = \"/**\" }]\nrate_limit = { requests = 1, window = \"1h\" }", &unreachable(), "t")
    }
}
