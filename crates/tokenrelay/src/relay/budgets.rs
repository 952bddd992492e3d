//! The site's budgets of upstream calls: an upstream's `budget`, and a
//! route's own, each one bucket of the shared counters (`relay::counter`)
//! that every call it covers is counted in, with their over-admission
//! bound: at most `requests` plus what the other instances admitted in
//! memory within one interval before their sync reached the store. The
//! `call::Budgeted` layer spends them before each call.

use std::collections::HashMap;
use std::sync::Arc;

use super::counter::{Bucket, Counter, Counters, Counting, Limit, Verdict};
use super::error::{Kind, RelayError};
use crate::alerts::Alerts;
use crate::broker::Broker;
use crate::config::relay::Budget;
use crate::store::keys::counter as counter_keys;

/// Every budget of the relayed upstreams. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    counters: Counters,
    upstreams: Arc<HashMap<String, Upstream>>,
}

/// One upstream's budget and its routes' own.
#[derive(Debug, Default)]
struct Upstream {
    whole: Option<Arc<Counter>>,
    /// By route pattern.
    routes: HashMap<String, Arc<Counter>>,
}

impl Budgets {
    /// The budgets of `broker`'s config, registered on `counters`.
    pub(crate) fn new(broker: &Broker, counters: &Counters) -> Self {
        let mut upstreams: HashMap<String, Upstream> = HashMap::new();
        for (name, relay) in broker.config().upstreams.iter().filter_map(|(n, u)| Some((n, u.relay.as_ref()?))) {
            let own = upstreams.entry(name.clone()).or_default();
            if let Some(b) = relay.budget {
                own.whole = Some(register(counters, name, None, b));
            }
            for route in &relay.routes {
                if let Some(b) = route.budget {
                    let pattern = route.pattern.as_str().to_owned();
                    own.routes.insert(pattern.clone(), register(counters, name, Some(pattern), b));
                }
            }
        }
        Self { counters: counters.clone(), upstreams: Arc::new(upstreams) }
    }

    /// Decides one call to `upstream` on its route `route` (a pattern)
    /// against the route's budget, or without one the upstream's.
    pub(super) fn spend(&self, upstream: &str, route: &str) -> Result<Verdict, RelayError> {
        let Some(budgets) = self.upstreams.get(upstream) else { return Ok(Verdict::Admitted(None)) };
        match budgets.routes.get(route).or(budgets.whole.as_ref()) {
            Some(counter) => self.counters.judge(counter, Bucket::default()),
            None => Ok(Verdict::Admitted(None)),
        }
    }

    /// Tells `alerts` how far the budget a call to `upstream` on `route`
    /// spends from has gone in its window (80% and 100% are events).
    pub(super) fn report(&self, upstream: &str, route: &str, alerts: &Alerts) {
        let Some(budgets) = self.upstreams.get(upstream) else { return };
        let (counter, route) = match budgets.routes.get_key_value(route) {
            Some((pattern, counter)) => (counter, Some(pattern.as_str())),
            None => match &budgets.whole {
                Some(counter) => (counter, None),
                None => return,
            },
        };
        let (used, requests, window) = counter.used(Bucket::default());
        alerts.budget(upstream, route, used, requests, window);
    }

    /// Decides a call [`spend`](Self::spend) sent to the store, on the totals
    /// the store answered (or, without them, on this instance's count).
    pub(super) fn settle(&self, counting: Counting, totals: Option<Vec<u64>>) -> Result<(), RelayError> {
        self.counters.settle(counting, totals)
    }
}

/// `upstream`'s budget `budget` (its `route`'s own, if given): one bucket,
/// refused with 503 `budget_exhausted` once spent.
fn register(counters: &Counters, upstream: &str, route: Option<String>, budget: Budget) -> Arc<Counter> {
    let upstream = upstream.to_owned();
    counters.register(Limit {
        requests: budget.requests,
        window: budget.per,
        key: Box::new(move |store, _, window| counter_keys::budget(store.namer(), &upstream, route.as_deref(), window)),
        refusal: |retry_after| Kind::BudgetExhausted { retry_after }.into(),
        bound: None,
    })
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

    fn limiter_without_budget() -> Budgets {
        with_relay("routes = [{ path = \"/**\" }]\nrate_limit = { requests = 1, window = \"1h\" }", &unreachable(), "t")
    }
}
