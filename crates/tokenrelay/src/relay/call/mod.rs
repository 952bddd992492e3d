//! The upstream call as a service: one [`Call`] answers one [`Outgoing`]
//! request with the upstream's [`Exchange`]. Each concern that guards the
//! call wraps the service it guards, outermost first:
//!
//! - [`RetryOn401`]: a 401 invalidates the token and calls once more, so a
//!   retry is a second call through every layer below;
//! - [`Budgeted`]: the upstream's cooldown and the site's budget admit each
//!   call before its token is sought, so a refused call costs no token fetch;
//! - [`Metered`]: the usage meter counts each call that goes out, its
//!   latency and its token fetches and failures;
//! - [`Authorized`]: the token, injected, and the request sent.
//!
//! The response cache (`relay::cache`) wraps the whole stack, so a hit is no
//! call. No layer knows what wraps it; each is tested with a stand-in inner
//! service.
//!
//! A cold request makes one store round trip anyway (its rate-limit count):
//! every layer adds to it what it would read ([`Call::plan`]) and takes
//! back its part ([`Call::learn`]), so a cold instance reads token, cached
//! answer and cooldown in that one trip, and counts its budget's calls
//! ahead in it.

mod authorized;
mod budget;
mod metered;
mod retry;

use std::future::Future;

use super::chores::Chores;
use super::counter::Counting;
use super::error::RelayError;
use super::outgoing::Outgoing;
use super::timing::Timing;
use crate::store::{CacheKeys, CacheState, Count, Read, Store, StoreError, Tallies, TokenKeys, TokenState};
use crate::token::Token;
pub(super) use authorized::Authorized;
pub(super) use budget::Budgeted;
pub(super) use metered::Metered;
pub(super) use retry::RetryOn401;

/// The upstream's answer to one call, and the token it was sent with (the
/// answer's scrubber redacts it; a 401 invalidates exactly it).
pub(super) struct Exchange {
    pub(super) response: crate::broker::UpstreamResponse,
    pub(super) token: Token,
}

/// What a call records for the request that made it.
pub(super) struct Cx<'r> {
    pub(super) request_id: &'r str,
    /// Token and upstream time, for `Server-Timing` and the log.
    pub(super) timing: &'r mut Timing,
    /// Work a call makes due (a token refresh, a count sync, a cooldown to
    /// share), done before the request's answer ends.
    pub(super) chores: &'r Chores,
}

/// One layer of the upstream call.
pub(super) trait Call: Send + Sync {
    /// Calls the upstream for `out`, or refuses to.
    fn call(&self, out: &Outgoing<'_>, cx: &mut Cx<'_>) -> impl Future<Output = Result<Exchange, RelayError>> + Send;

    /// Adds what this layer would read from the store for `out` to a cold
    /// request's round trip; a wrapper adds its own, then its inner's.
    fn plan<'a>(&'a self, _out: &Outgoing<'_>, _plan: &mut ColdPlan<'a>) {}

    /// Takes this layer's part of what that round trip brought back.
    fn learn(&self, _out: &Outgoing<'_>, _read: &mut ColdRead) {}
}

/// What a cold request reads with its count, gathered from the layers.
#[derive(Default)]
pub(super) struct ColdPlan<'a> {
    pub(super) token: Option<&'a TokenKeys>,
    pub(super) cache: Option<CacheKeys>,
    pub(super) cooldowns: Vec<&'a str>,
    /// A budget's calls to count ahead (`relay::budgets`).
    pub(super) ahead: Option<Counting>,
}

/// What a cold request's one round trip brought back, for each layer to
/// take its part of.
pub(super) struct ColdRead {
    /// The counters' new totals, in order.
    pub(super) totals: Vec<u64>,
    /// Whether the tallies sent along were written.
    pub(super) tallied: bool,
    pub(super) token: Option<TokenState>,
    pub(super) cache: Option<CacheState>,
    /// The values of the cooldown keys asked for, in order.
    pub(super) cooldowns: Vec<Option<String>>,
    /// The budget's count ahead, with the store's totals for it.
    pub(super) ahead: Option<(Counting, Vec<u64>)>,
}

impl ColdPlan<'_> {
    /// Adds `counts` (and the layers' own), writes `tallies` and reads what
    /// the layers asked for, in one round trip.
    pub(super) async fn read(self, store: &Store, counts: &[Count], tallies: &Tallies) -> Result<ColdRead, StoreError> {
        let token = self.token.map(TokenKeys::reads);
        let cache = self.cache.as_ref().map(CacheKeys::reads);
        let reads: Vec<Read<'_>> = (token.iter().flatten().copied())
            .chain(cache.iter().flatten().copied())
            .chain(self.cooldowns.iter().copied().map(Read::plain))
            .collect();
        let ahead = self.ahead.as_ref().map_or(&[][..], Counting::counts);
        // Boxed, as a trip off the warm path: inline, its state machine sat in
        // every future that may count (the rate limit's, a budget's), warm or not.
        let all = [counts, ahead].concat();
        let mut counted = Box::pin(store.count_and_tally(&all, tallies, &reads)).await?;
        let ahead_totals = counted.totals.split_off(counts.len().min(counted.totals.len()));
        let values = &mut counted.values;
        let token = token.map(|_| TokenKeys::state(values));
        let cache = cache.map(|_| CacheKeys::state(values));
        Ok(ColdRead {
            totals: counted.totals,
            tallied: counted.tallied,
            token,
            cache,
            cooldowns: counted.values.into_plain(),
            ahead: self.ahead.map(|counting| (counting, ahead_totals)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::relay::budgets::Budgets;
    use crate::relay::counter::Counters;
    use crate::relay::upstream_limits::Cooldowns;

    #[tokio::test]
    async fn a_cold_read_gives_the_requests_counts_and_the_budgets_count_ahead_their_own_totals() {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            stand_in::broker(dir.path(), "budget = { requests = 20, per = \"1h\" }\nroutes = [{ path = \"/x\" }]");
        let counters = Counters::new(broker.clone(), Cooldowns::new(&broker));
        let ahead = Budgets::new(&broker, &counters).count_ahead("api", "/x").expect("a fresh budget counts ahead");
        let sent_ahead: Vec<u64> = ahead.counts().iter().map(|c| c.add).collect();
        let own: Vec<Count> = ["a", "b"]
            .iter()
            .map(|n| Count { key: format!("test:{n}"), add: 3, ttl: Duration::from_secs(60) })
            .collect();
        let plan = ColdPlan { ahead: Some(ahead), ..ColdPlan::default() };
        let read = plan.read(broker.store(), &own, &Tallies::default()).await.unwrap();
        assert_eq!(read.totals, [3, 3], "the request's own counts, in order");
        let (_, ahead_totals) = read.ahead.expect("the count ahead comes back");
        assert_eq!(ahead_totals, sent_ahead, "the budget's count ahead, on a fresh store: what it added");
    }
}

#[cfg(test)]
pub(super) mod stand_in {
    //! The layers' test world: a stand-in upstream answering from a script
    //! (no network), and a broker over a local store (no Redis).

    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use http::Method;
    use http_body_util::BodyExt;

    use super::*;
    use crate::broker::Broker;
    use crate::config::{Config, Env};

    /// One scripted answer: status, headers, body.
    pub(crate) type Canned = (u16, &'static [(&'static str, &'static str)], &'static str);

    /// Answers each call with the next scripted answer, then repeats the
    /// last; counts its calls.
    #[derive(Clone)]
    pub(crate) struct Upstream {
        script: Arc<Mutex<VecDeque<Canned>>>,
        calls: Arc<AtomicUsize>,
        token: Token,
        delay: Duration,
    }

    impl Upstream {
        pub(crate) fn answering(script: &[Canned]) -> Self {
            Self {
                script: Arc::new(Mutex::new(script.iter().copied().collect())),
                calls: Arc::default(),
                token: Token::new("stand-in-token", None),
                delay: Duration::ZERO,
            }
        }

        /// Sends every call with `token`.
        pub(crate) fn with_token(mut self, token: Token) -> Self {
            self.token = token;
            self
        }

        /// Answers each call only after `delay`.
        pub(crate) fn taking(mut self, delay: Duration) -> Self {
            self.delay = delay;
            self
        }

        pub(crate) fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Call for Upstream {
        async fn call(&self, _out: &Outgoing<'_>, _cx: &mut Cx<'_>) -> Result<Exchange, RelayError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let (status, headers, body) = {
                let mut script = self.script.lock().unwrap_or_else(PoisonError::into_inner);
                let next = if script.len() > 1 { script.pop_front() } else { script.front().copied() };
                next.expect("a scripted answer")
            };
            let mut answer = http::Response::builder().status(status);
            for (name, value) in headers {
                answer = answer.header(*name, *value);
            }
            let body = http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes()));
            let response = answer.body(body.map_err(|never| match never {}).boxed()).expect("a valid scripted answer");
            Ok(Exchange { response, token: self.token.clone() })
        }
    }

    /// A broker for upstream `api` (a static key) with `relay` as its relay
    /// section, over the local store in `dir`: instances of one machine
    /// share it, as instances share Upstash.
    pub(crate) fn broker(dir: &std::path::Path, relay: &str) -> Broker {
        let toml = format!(
            "[upstreams.api]\nbase_url = \"http://127.0.0.1:9\"\ntoken = {{ type = \"static\", key = {{ env = \"API_KEY\" }} }}\n[upstreams.api.relay]\n{relay}\n"
        );
        let env = Env::from_pairs([("API_KEY", "k"), (crate::store::LOCAL_STORE_VAR, dir.to_str().expect("utf-8"))]);
        Broker::new(Config::parse(&toml, "tokenrelay.toml", &env).expect("a valid config"), &env).expect("a broker")
    }

    /// `method /segments` to `api`, as the request rules leave it.
    pub(crate) fn outgoing<'a>(broker: &'a Broker, segments: &'a [&'a str], method: Method) -> Outgoing<'a> {
        let upstream = &broker.config().upstreams["api"];
        let relay = upstream.relay.as_ref().expect("a relay section");
        let route = crate::relay::route::select(relay, "api", segments, &method).expect("a route");
        Outgoing {
            upstream,
            relay,
            route,
            method,
            segments,
            query: None,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            timeout: Duration::from_secs(2),
        }
    }

    /// What calls record, kept by the test.
    #[derive(Default)]
    pub(crate) struct Trace {
        pub(crate) timing: Timing,
        pub(crate) chores: Chores,
    }

    impl Trace {
        pub(crate) fn cx(&mut self) -> Cx<'_> {
            Cx { request_id: "test", timing: &mut self.timing, chores: &self.chores }
        }
    }
}
