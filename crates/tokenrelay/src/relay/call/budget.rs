//! What stands before every upstream call: the upstream's cooldown
//! ([`upstream_limits`](crate::relay::upstream_limits)) and the site's
//! budget of calls, counted across instances on the shared counters
//! ([`Budgets::spend`]). Only calls count: a cache hit never gets here, and
//! a 401's retry is a second call.
//!
//! A budget is a ceiling: a call is admitted in memory only out of calls
//! this instance counted in the store ahead, else counted in the store
//! before it is made: in a cold request's round trip ([`Call::plan`]), or on
//! the call's path (reading the upstream's cooldown in the same round
//! trip). Syncs, which count ahead at the instance's pace, run as chores of
//! the request. After the call, the answer says whether the upstream asks
//! every caller to wait.

use super::{Call, ColdPlan, ColdRead, Cx, Exchange};
use crate::alerts::{Alerts, Window};
use crate::broker::Broker;
use crate::relay::budgets::Budgets;
use crate::relay::counter::Verdict;
use crate::relay::error::RelayError;
use crate::relay::outgoing::Outgoing;
use crate::relay::upstream_limits::Cooldowns;
use crate::store::Write;

/// Admits each call of `inner` first, and learns from its answer.
#[derive(Clone)]
pub(in crate::relay) struct Budgeted<S> {
    inner: S,
    broker: Broker,
    budgets: Budgets,
    cooldowns: Cooldowns,
    alerts: Alerts,
}

impl<S> Budgeted<S> {
    pub(in crate::relay) fn new(
        inner: S,
        broker: Broker,
        budgets: Budgets,
        cooldowns: Cooldowns,
        alerts: Alerts,
    ) -> Self {
        Self { inner, broker, budgets, cooldowns, alerts }
    }

    /// Admits one call of `out` to its upstream, or says why not: the
    /// upstream cools down (503 `upstream_cooling_down`) or the budget is
    /// spent (503 `budget_exhausted`), each with `Retry-After`.
    async fn admit(&self, out: &Outgoing<'_>, cx: &mut Cx<'_>) -> Result<(), RelayError> {
        let (name, route) = (out.upstream.name(), out.route.pattern.as_str());
        self.cooldowns.check(name, route)?;
        let verdict = self.budgets.spend(name, route);
        self.report_crossings();
        match verdict? {
            Verdict::Admitted(sync) => {
                if let Some(sync) = sync {
                    cx.chores.add(sync);
                }
                Ok(())
            }
            Verdict::Count(mut counting) => {
                let keys = self.cooldowns.key(name, route);
                let plan = ColdPlan { cooldowns: keys.clone(), ..ColdPlan::default() };
                match plan.read(self.broker.store(), counting.counts(), counting.tallies()).await {
                    Ok(read) => {
                        counting.tallied(read.tallied);
                        self.cooldowns.learn(&keys, &read.cooldowns);
                        let settled = self.budgets.settle(counting, Some(read.totals));
                        self.report_crossings();
                        settled?;
                        self.cooldowns.check(name, route)
                    }
                    Err(_) => self.budgets.settle(counting, None),
                }
            }
        }
    }

    /// Logs and alerts the budgets' crossings of 80% and 100% this instance
    /// noticed (in this call's count, or a sync before it): each is noticed
    /// once across instances.
    fn report_crossings(&self) {
        for crossing in self.budgets.take_crossings() {
            let route = crossing.route.as_deref();
            tracing::warn!(
                upstream = crossing.upstream,
                route = route.unwrap_or("*"),
                window = crossing.window,
                percent = crossing.percent,
                "a budget's calls passed a share of its window"
            );
            let window = Window { number: crossing.window, length: crossing.per };
            self.alerts.budget(&crossing.upstream, route, crossing.percent, crossing.requests, window);
        }
    }

    /// Learns from the upstream's answer whether it asks every caller to
    /// wait (on this route, or anywhere); if so, shares the cooldown in the
    /// store as a chore of the request.
    fn heed(&self, out: &Outgoing<'_>, response: &crate::broker::UpstreamResponse, cx: &mut Cx<'_>) {
        let (name, route) = (out.upstream.name(), out.route.pattern.as_str());
        let Some(share) = self.cooldowns.note(name, route, response.status(), response.headers()) else { return };
        self.alerts.upstream_wait(name, share.on_route.then_some(route), share.ttl);
        let (broker, upstream) = (self.broker.clone(), name.to_owned());
        cx.chores.add(async move {
            if let Err(error) = broker.store().put(&share.key, Write::Plain(&share.until_ms.to_string()), share.ttl).await {
                tracing::warn!(upstream, %error, "could not share the upstream's cooldown; other instances learn it themselves");
            }
        });
    }
}

impl<S: Call> Call for Budgeted<S> {
    async fn call(&self, out: &Outgoing<'_>, cx: &mut Cx<'_>) -> Result<Exchange, RelayError> {
        // Admitted before its token is sought: a refused call costs nothing upstream.
        self.admit(out, cx).await?;
        let exchange = self.inner.call(out, cx).await?;
        self.heed(out, &exchange.response, cx);
        Ok(exchange)
    }

    fn plan<'a>(&'a self, out: &Outgoing<'_>, plan: &mut ColdPlan<'a>) {
        let (name, route) = (out.upstream.name(), out.route.pattern.as_str());
        plan.cooldowns.extend(self.cooldowns.key(name, route));
        plan.ahead = self.budgets.count_ahead(name, route);
        self.inner.plan(out, plan);
    }

    fn learn(&self, out: &Outgoing<'_>, read: &mut ColdRead) {
        self.cooldowns.learn(&self.cooldowns.key(out.upstream.name(), out.route.pattern.as_str()), &read.cooldowns);
        if let Some((counting, totals)) = read.ahead.take() {
            self.budgets.counted_ahead(&counting, totals);
        }
        self.inner.learn(out, read);
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::relay::call::stand_in::{self, Canned, Trace, Upstream};
    use crate::relay::counter::Counters;
    use crate::relay::upstream_limits::Cooldowns;

    const OK: Canned = (200, &[], "ok");
    const WAIT: Canned = (429, &[("retry-after", "30")], "slow down");

    fn budgeted(broker: &Broker, upstream: &Upstream) -> Budgeted<Upstream> {
        let cooldowns = Cooldowns::new(broker);
        let counters = Counters::new(broker.clone(), cooldowns.clone());
        Budgeted::new(upstream.clone(), broker.clone(), Budgets::new(broker, &counters), cooldowns, Alerts::default())
    }

    #[tokio::test]
    async fn calls_are_admitted_until_the_budget_is_spent_then_refused_without_calling() {
        let dir = tempfile::tempdir().unwrap();
        let broker = stand_in::broker(
            dir.path(),
            r#"budget = { requests = 2, per = "1h" }
routes = [{ path = "/x" }]"#,
        );
        let upstream = Upstream::answering(&[OK]);
        let layer = budgeted(&broker, &upstream);
        let out = stand_in::outgoing(&broker, &["x"], Method::GET);
        let mut trace = Trace::default();
        for call in 0..2 {
            let exchange = layer.call(&out, &mut trace.cx()).await.unwrap_or_else(|e| panic!("call {call}: {e}"));
            assert_eq!(exchange.response.status(), 200);
        }
        let refused = layer.call(&out, &mut trace.cx()).await.err().expect("the budget is spent");
        assert_eq!((refused.code(), refused.status().as_u16()), ("budget_exhausted", 503));
        assert!(refused.to_response::<bytes::Bytes>().headers().contains_key(http::header::RETRY_AFTER));
        assert_eq!(upstream.calls(), 2, "a refused call never reaches the upstream");
    }

    /// Issue 27's measure, in one process: instances sharing a store, each
    /// warm (it learned the shared count a moment ago), met by a burst all
    /// at once. Deciding in memory on a recent count, each would admit the
    /// whole budget; out of an allowance counted ahead, they admit it once
    /// between them.
    #[tokio::test]
    async fn warm_instances_sharing_a_store_never_pass_the_budget_in_a_burst() {
        const BUDGET: usize = 20;
        const INSTANCES: usize = 4;
        let dir = tempfile::tempdir().unwrap();
        let relay = format!("budget = {{ requests = {BUDGET}, per = \"1h\" }}\nroutes = [{{ path = \"/x\" }}]");
        let upstream = Upstream::answering(&[OK]);
        let brokers: Vec<Broker> = (0..INSTANCES).map(|_| stand_in::broker(dir.path(), &relay)).collect();
        let layers: Vec<_> = brokers.iter().map(|b| budgeted(b, &upstream)).collect();
        let mut trace = Trace::default();
        for (layer, broker) in layers.iter().zip(&brokers) {
            layer.call(&stand_in::outgoing(broker, &["x"], Method::GET), &mut trace.cx()).await.expect("a first call");
        }
        let burst = (0..3 * BUDGET).map(|i| {
            let (layer, broker) = (&layers[i % INSTANCES], &brokers[i % INSTANCES]);
            async move {
                let mut trace = Trace::default();
                let out = stand_in::outgoing(broker, &["x"], Method::GET);
                let result = layer.call(&out, &mut trace.cx()).await.map(|_| ());
                if let Some(chores) = std::mem::take(&mut trace.chores).finish(std::time::Duration::from_secs(5)) {
                    chores.await;
                }
                result
            }
        });
        let results = futures_util::future::join_all(burst).await;
        assert_eq!(upstream.calls(), BUDGET, "the upstream got the budget's calls, none more");
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(refused.code(), "budget_exhausted");
            assert!(refused.to_response::<bytes::Bytes>().headers().contains_key(http::header::RETRY_AFTER));
        }
    }

    #[tokio::test]
    async fn a_cold_request_counts_its_call_ahead_in_the_round_trip_it_makes_anyway() {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            stand_in::broker(dir.path(), "budget = { requests = 5, per = \"1h\" }\nroutes = [{ path = \"/x\" }]");
        let upstream = Upstream::answering(&[OK]);
        let layer = budgeted(&broker, &upstream);
        let out = stand_in::outgoing(&broker, &["x"], Method::GET);
        assert!(matches!(layer.budgets.spend("api", "/x"), Ok(Verdict::Count(_))), "no allowance: to the store");
        let mut plan = ColdPlan::default();
        layer.plan(&out, &mut plan);
        assert!(plan.ahead.is_some(), "the cold round trip counts the budget's call");
        let mut read = plan.read(broker.store(), &[], &crate::store::Tallies::default()).await.unwrap();
        layer.learn(&out, &mut read);
        let Ok(Verdict::Admitted(_)) = layer.budgets.spend("api", "/x") else {
            panic!("the call is admitted out of what the round trip counted, with no store call of its own");
        };
    }

    /// An upstream whose refusals cover it all (`cooldown = "upstream"`).
    const WHOLE: &str = r#"cooldown = "upstream"
routes = [{ path = "/x" }, { path = "/y" }]"#;

    #[tokio::test]
    async fn an_upstream_asking_to_wait_is_not_called_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let broker = stand_in::broker(dir.path(), WHOLE);
        let upstream = Upstream::answering(&[WAIT, OK]);
        let layer = budgeted(&broker, &upstream);
        let mut trace = Trace::default();
        let asked = layer.call(&stand_in::outgoing(&broker, &["x"], Method::GET), &mut trace.cx()).await.unwrap();
        assert_eq!(asked.response.status(), 429, "the upstream's own answer is passed on");
        let other = stand_in::outgoing(&broker, &["y"], Method::GET);
        let refused = layer.call(&other, &mut trace.cx()).await.err().expect("cooling down");
        assert_eq!((refused.code(), refused.status().as_u16()), ("upstream_cooling_down", 503));
        assert_eq!(upstream.calls(), 1);
        // The cooldown is shared with the other instances as a chore of the request.
        std::mem::take(&mut trace.chores).finish(std::time::Duration::from_secs(5)).expect("a chore").await;
        // Another instance learns it with a cold request's count, and calls nothing.
        let broker = stand_in::broker(dir.path(), WHOLE);
        let instance = budgeted(&broker, &upstream);
        let other = stand_in::outgoing(&broker, &["y"], Method::GET);
        let mut plan = ColdPlan::default();
        instance.plan(&other, &mut plan);
        let mut read = plan.read(broker.store(), &[], &crate::store::Tallies::default()).await.unwrap();
        instance.learn(&other, &mut read);
        let refused = instance.call(&other, &mut trace.cx()).await.err().expect("cooling down");
        assert_eq!(refused.code(), "upstream_cooling_down");
        assert_eq!(upstream.calls(), 1);
    }

    #[tokio::test]
    async fn a_refusal_cools_down_its_route_and_a_spent_quota_the_upstream() {
        const SPENT: Canned =
            (429, &[("retry-after", "30"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "30")], "");
        let dir = tempfile::tempdir().unwrap();
        let broker = stand_in::broker(dir.path(), r#"routes = [{ path = "/x" }, { path = "/y" }, { path = "/z" }]"#);
        let upstream = Upstream::answering(&[WAIT, OK, SPENT, OK]);
        let layer = budgeted(&broker, &upstream);
        let mut trace = Trace::default();
        let on = |segment: &'static [&'static str]| stand_in::outgoing(&broker, segment, Method::GET);
        assert_eq!(layer.call(&on(&["x"]), &mut trace.cx()).await.unwrap().response.status(), 429);
        let refused = layer.call(&on(&["x"]), &mut trace.cx()).await.err().expect("the route cools down");
        assert_eq!(refused.code(), "upstream_cooling_down");
        let other = layer.call(&on(&["y"]), &mut trace.cx()).await.expect("another route is still called");
        assert_eq!(other.response.status(), 200);
        assert_eq!(upstream.calls(), 2);
        assert_eq!(layer.call(&on(&["y"]), &mut trace.cx()).await.unwrap().response.status(), 429);
        let refused = layer.call(&on(&["z"]), &mut trace.cx()).await.err().expect("the quota is spent everywhere");
        assert_eq!(refused.code(), "upstream_cooling_down");
        assert_eq!(upstream.calls(), 3);
    }
}
