//! The shared response cache of routes with `cache = { ttl = … }`.
//!
//! Two levels, like tokens: a small in-process level ([`memory`]) and the
//! shared store, where entries are sealed like tokens and named by
//! `store::keys`. [`entry`] says what is cacheable, the key, the format and
//! freshness, [`reply`] what the cache answers and its `Cache-Status`, and
//! [`refresh`] runs a stale entry's refresh; this module decides what to serve:
//!
//! - fresh: served from memory or the store, the upstream is not asked;
//! - within `stale_while_revalidate`: served at once, and one refresh runs
//!   as a chore of that request (single flight in the process, and across
//!   instances through the fill lock), so it ends before the answer does and
//!   no freeze of the instance loses it;
//! - otherwise one instance takes the fill lock (the token rotation's lock
//!   machinery: `SET NX PX` and a fenced write) and asks the upstream; the
//!   others poll the store for its answer for at most [`FILL_WAIT`], then ask
//!   the upstream themselves (without storing);
//! - within `stale_if_error`, a 5xx, timeout or unreachable upstream (or no
//!   token) serves the stored answer instead.
//!
//! Every answer says how it was served in `Cache-Status` (RFC 9211).
//!
//! [`Cached`] wraps the upstream call ([`Call`]): a hit makes no call, a miss
//! and a refresh call the same inner service. It answers a [`Reply`], which
//! `relay::answer` shapes like any other answer.

mod entry;
mod memory;
mod refresh;
mod reply;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http_body_util::BodyExt;

use super::body;
use super::call::{Call, ColdPlan, ColdRead, Cx, Exchange};
use super::error::{Kind, RelayError};
use super::headers;
use super::inject::Scrubbers;
use super::outgoing::Outgoing;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::config::relay::RouteCache;
use crate::store::{Backoff, CacheKeys, CacheState, Lease, Write};
pub(crate) use entry::Purges;
use entry::{CachedAnswer, Deployments, Freshness};
use memory::Memory;
pub(in crate::relay) use reply::{Answer, CacheStatus, Reply, Stored};
use reply::{hit, stored_reply};

/// How long a miss waits for another instance's fill before asking the upstream itself.
const FILL_WAIT: Duration = Duration::from_secs(3);
/// About how often a waiting miss looks for the filled entry.
const FILL_POLL: Duration = Duration::from_millis(20);
/// Added to `relay.timeout` for the fill lock's lease: time to store the answer.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// The response cache around the upstream call `inner`; its levels and
/// refreshes in flight are shared by its clones.
#[derive(Clone)]
pub(super) struct Cached<S> {
    inner: S,
    broker: Broker,
    scrubbers: Scrubbers,
    deployments: Arc<Deployments>,
    memory: Arc<Memory>,
    refreshing: Arc<Mutex<HashSet<String>>>,
}

impl<S> std::fmt::Debug for Cached<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cached")
    }
}

/// One cacheable request that memory did not answer.
struct Ask<'a> {
    out: &'a Outgoing<'a>,
    policy: RouteCache,
    /// Its answer's name in this process's memory level (see [`Cached::identity`]).
    identity: String,
    keys: CacheKeys,
    path: String,
}

impl<S> Cached<S> {
    pub(super) fn new(inner: S, broker: Broker, scrubbers: Scrubbers) -> Self {
        let deployments = Arc::new(Deployments::new(broker.config()));
        Self { inner, broker, scrubbers, deployments, memory: Arc::default(), refreshing: Arc::default() }
    }

    /// What names `out`'s answer: the memory level's key as it is, the
    /// store's through its keyed hash ([`Cached::keys`]). Memory stays in
    /// the process, so a hit costs no hash of it: the hash is what hides the
    /// identity's secrets from the store, and it cost a hit a third of its
    /// instructions.
    fn identity(&self, out: &Outgoing<'_>, path: &str) -> String {
        self.deployments.identity(out, path)
    }

    /// The store keys of the answer named `identity`.
    fn keys(&self, out: &Outgoing<'_>, identity: &str) -> CacheKeys {
        CacheKeys::new(self.broker.store().namer(), out.upstream.name(), identity)
    }

    /// The fill lock's lease: the upstream's whole answer, and time to store it.
    fn fill_lease(&self) -> Duration {
        self.broker.config().relay.timeout + LEASE_MARGIN
    }
}

impl<S: Call + Clone + 'static> Cached<S> {
    /// Answers `out`: on a route with a cache, from the cache when it can,
    /// else from the upstream, storing what may be stored; `read` is the
    /// cached state a cold request's round trip brought ([`Cached::learn`]).
    pub(super) async fn serve(
        &self,
        out: &Outgoing<'_>,
        cx: &mut Cx<'_>,
        read: Option<CacheState>,
    ) -> Result<Reply, RelayError> {
        let Some(policy) = out.route.cache else {
            return Ok(Reply { answer: Answer::Upstream(self.inner.call(out, cx).await?), cache_status: None });
        };
        let started = Instant::now();
        if !entry::request_applies(&out.method, &out.headers) {
            cx.timing.cache = Some((Duration::ZERO, CacheStatus::Bypass.as_str()));
            let exchange = self.inner.call(out, cx).await?;
            let fwd =
                if out.method == http::Method::GET || out.method == http::Method::HEAD { "request" } else { "method" };
            return Ok(Reply { answer: Answer::Upstream(exchange), cache_status: Some(format!("fwd={fwd}")) });
        }
        let path = out.path();
        let identity = self.identity(out, &path);
        let (reply, outcome) = match self.memory.get(&identity) {
            Some(e) => hit(&e, out, &policy, CacheStatus::HitMemory, None),
            None => {
                let ask = Ask { out, policy, keys: self.keys(out, &identity), identity, path };
                self.lookup(&ask, cx, read).await?
            }
        };
        let called = cx.timing.upstream.unwrap_or_default() + cx.timing.token.map_or(Duration::ZERO, |(d, _)| d);
        cx.timing.cache = Some((started.elapsed().saturating_sub(called), outcome.as_str()));
        Ok(reply)
    }

    /// Adds the keys of `out`'s answer to a cold request's round trip when
    /// it may come from the cache and this instance's memory does not hold it.
    pub(super) fn plan<'a>(&'a self, out: &Outgoing<'_>, plan: &mut ColdPlan<'a>) {
        if out.route.cache.is_some() && entry::request_applies(&out.method, &out.headers) {
            let identity = self.identity(out, &out.path());
            plan.cache = self.memory.get(&identity).is_none().then(|| self.keys(out, &identity));
        }
        self.inner.plan(out, plan);
    }

    /// The inner layers' part of a cold read, and the cached state, for [`Cached::serve`].
    pub(super) fn learn(&self, out: &Outgoing<'_>, read: &mut ColdRead) -> Option<CacheState> {
        self.inner.learn(out, read);
        read.cache.take()
    }

    async fn lookup(
        &self,
        ask: &Ask<'_>,
        cx: &mut Cx<'_>,
        read: Option<CacheState>,
    ) -> Result<(Reply, CacheStatus), RelayError> {
        let store = self.broker.store();
        let state = match read {
            Some(state) => state,
            None => match ask.keys.read(store).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(request_id = cx.request_id, upstream = ask.out.upstream.name(), error = %e, "cache store unreachable; asking the upstream without caching");
                    return self.answer_from_upstream(ask, None, None, cx).await;
                }
            },
        };
        let now = now_ms();
        let stored = usable(state.entry.as_deref(), state.purges.as_deref());
        let freshness = stored.as_ref().map(|e| e.freshness(now, &ask.policy));
        match (&stored, freshness) {
            (Some(e), Some(Freshness::Fresh)) => {
                self.remember(ask, e.clone(), now);
                return Ok(hit(e, ask.out, &ask.policy, CacheStatus::Hit, None));
            }
            (Some(e), Some(Freshness::Revalidate)) => {
                if !state.filling
                    && let Some(refresh) = self.refresh(ask, cx.request_id)
                {
                    cx.chores.add(refresh);
                }
                return Ok(hit(e, ask.out, &ask.policy, CacheStatus::Stale, None));
            }
            _ => {}
        }
        let stale = stored.filter(|_| matches!(freshness, Some(Freshness::Revalidate | Freshness::IfError)));
        let lease = if state.filling {
            None
        } else {
            match ask.keys.take(store, self.fill_lease()).await {
                Ok((Some(lease), after)) => {
                    // Another instance may have stored it between our read and our lock.
                    if let Some(e) = usable(after.entry.as_deref(), after.purges.as_deref())
                        .filter(|e| e.freshness(now_ms(), &ask.policy) == Freshness::Fresh)
                    {
                        lease.release().await;
                        self.remember(ask, e.clone(), now_ms());
                        return Ok(hit(&e, ask.out, &ask.policy, CacheStatus::Hit, None));
                    }
                    Some(lease)
                }
                Ok((None, _)) => None,
                Err(_) => return self.answer_from_upstream(ask, None, stale, cx).await,
            }
        };
        if lease.is_some() {
            return self.answer_from_upstream(ask, lease, stale, cx).await;
        }
        if let Some(e) = self.wait_for_fill(ask).await {
            self.remember(ask, e.clone(), now_ms());
            return Ok(hit(&e, ask.out, &ask.policy, CacheStatus::Collapsed, None));
        }
        self.answer_from_upstream(ask, None, stale, cx).await
    }

    /// Polls the store until another instance's fill is stored, it gave up
    /// (uncacheable answer, failure), or [`FILL_WAIT`] passed.
    async fn wait_for_fill(&self, ask: &Ask<'_>) -> Option<Arc<CachedAnswer>> {
        let mut backoff = Backoff::new(FILL_POLL, FILL_POLL, FILL_WAIT.min(self.broker.config().relay.timeout));
        while backoff.wait().await {
            let state = ask.keys.read(self.broker.store()).await.ok()?;
            let fresh = usable(state.entry.as_deref(), state.purges.as_deref())
                .filter(|e| e.freshness(now_ms(), &ask.policy) == Freshness::Fresh);
            if fresh.is_some() || !state.filling {
                return fresh;
            }
        }
        None
    }

    fn remember(&self, ask: &Ask<'_>, e: Arc<CachedAnswer>, now: u64) {
        let fresh_for = u64::try_from(e.ttl_secs(now, &ask.policy)).map_or(Duration::ZERO, Duration::from_secs);
        self.memory.put(&ask.identity, e, fresh_for);
    }

    /// Asks the upstream; stores a cacheable answer while `lease` holds the fill
    /// lock. The lease is let go in every case before this returns: by the
    /// fenced write, or released when nothing is stored (and by its drop if the
    /// request is cancelled meanwhile). With no lease, stores nothing.
    async fn fill(&self, ask: &Ask<'_>, lease: Option<Lease>, cx: &mut Cx<'_>) -> Result<Filled, RelayError> {
        let asked = self.ask_upstream(ask, cx).await;
        let fits = |e: &CachedAnswer| e.body.len() as u64 <= self.broker.config().relay.max_cached_body_bytes;
        let (entry, lease) = match (asked, lease) {
            (Ok(Filled::Answer { entry, .. }), Some(lease)) if fits(&entry) => (entry, lease),
            (asked, lease) => {
                if let Some(lease) = lease {
                    lease.release().await;
                }
                return asked;
            }
        };
        let store = self.broker.store();
        let put = store.put_fenced(&ask.keys.entry, Write::Sealed(&entry.encode()), ask.policy.lifetime(), lease).await;
        let stored = put.unwrap_or_else(|e| {
            tracing::warn!(request_id = cx.request_id, upstream = ask.out.upstream.name(), error = %e, "could not store a cached answer");
            false
        });
        Ok(Filled::Answer { entry, stored })
    }

    /// The upstream's answer: buffered and scrubbed when it may be stored, else
    /// as it comes, to stream.
    async fn ask_upstream(&self, ask: &Ask<'_>, cx: &mut Cx<'_>) -> Result<Filled, RelayError> {
        let sent_ms = now_ms();
        let exchange = self.inner.call(ask.out, cx).await?;
        let settings = &self.broker.config().relay;
        let response = &exchange.response;
        let too_big = crate::broker::declared_length(response).is_some_and(|n| n > settings.max_cached_body_bytes);
        let refusal = entry::refusal(response.status(), response.headers(), &ask.policy).or(too_big.then_some("size"));
        if let Some(reason) = refusal {
            return Ok(Filled::Pass { exchange, reason });
        }
        let Exchange { response, token } = exchange;
        let status = response.status();
        let scrubber = self.scrubbers.get(ask.out.upstream.name(), ask.out.relay, &token);
        let headers = headers::filter_response(response.headers(), &scrubber);
        let mut chunks = Vec::new();
        let mut length = 0u64;
        let mut stream = response.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RelayError::from_send(&e, settings.timeout))?;
            length = length.saturating_add(chunk.len() as u64);
            if length > settings.max_response_bytes {
                return Err(Kind::ResponseTooLarge(settings.max_response_bytes).into());
            }
            chunks.push(chunk);
        }
        let body = scrubber.redact(body::joined(chunks));
        let entry = Arc::new(CachedAnswer::new(&ask.path, sent_ms, status, &headers, body));
        Ok(Filled::Answer { entry, stored: false })
    }

    /// Asks the upstream (storing when `lease` holds the fill lock) and answers,
    /// falling back to `stale` when the upstream fails.
    async fn answer_from_upstream(
        &self,
        ask: &Ask<'_>,
        lease: Option<Lease>,
        stale: Option<Arc<CachedAnswer>>,
        cx: &mut Cx<'_>,
    ) -> Result<(Reply, CacheStatus), RelayError> {
        let now = now_ms();
        let stale = stale.filter(|e| e.age(now) < ask.policy.ttl + ask.policy.stale_if_error);
        match (self.fill(ask, lease, cx).await, stale) {
            (Err(e), Some(stale)) if e.is_upstream_failure() => {
                tracing::warn!(
                    request_id = cx.request_id,
                    upstream = ask.out.upstream.name(),
                    code = e.code(),
                    "upstream failed; serving the stored answer (stale_if_error)"
                );
                Ok(hit(&stale, ask.out, &ask.policy, CacheStatus::StaleIfError, None))
            }
            (Ok(Filled::Pass { exchange, .. }), Some(stale)) if exchange.response.status().is_server_error() => {
                let status = exchange.response.status();
                Ok(hit(&stale, ask.out, &ask.policy, CacheStatus::StaleIfError, Some(status)))
            }
            (Err(e), _) => Err(e),
            (Ok(Filled::Pass { exchange, reason }), _) => {
                let reply = Reply {
                    answer: Answer::Upstream(exchange),
                    cache_status: Some(format!("fwd=miss; detail={reason}")),
                };
                Ok((reply, CacheStatus::Miss))
            }
            (Ok(Filled::Answer { entry, stored }), _) => {
                if stored {
                    self.memory.put(&ask.identity, entry.clone(), ask.policy.ttl);
                }
                let params = if stored { "fwd=miss; stored" } else { "fwd=miss" };
                Ok((stored_reply(&entry, ask.out, params.to_owned()), CacheStatus::Miss))
            }
        }
    }
}

/// An opened entry that no purge covers.
fn usable(plain: Option<&[u8]>, purges: Option<&str>) -> Option<Arc<CachedAnswer>> {
    let e = CachedAnswer::decode(plain?)?;
    (!Purges::parse(purges).covers(&e)).then(|| Arc::new(e))
}

/// What a fill brought back.
enum Filled {
    /// A cacheable answer, buffered and scrubbed; `stored` when it is in the store.
    Answer { entry: Arc<CachedAnswer>, stored: bool },
    /// An answer not to store, to stream as is.
    Pass { exchange: Exchange, reason: &'static str },
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http::Method;

    use super::*;
    use crate::relay::call::stand_in::{self, Canned, Trace, Upstream};

    const FIRST: Canned = (200, &[("content-type", "text/plain")], "first");
    const SECOND: Canned = (200, &[("content-type", "text/plain")], "second");
    const BROKEN: Canned = (500, &[], "broken");
    const PRIVATE: Canned = (200, &[("cache-control", "no-store")], "private");
    const ROUTES: &str = r#"routes = [
  { path = "/fresh", cache = { ttl = "1h" } },
  { path = "/swr", cache = { ttl = "1s", stale_while_revalidate = "1h" } },
  { path = "/sie", cache = { ttl = "1s", stale_if_error = "1h" } },
]"#;

    /// One instance: its own memory level, the store shared through `dir`.
    fn instance(dir: &Path, upstream: &Upstream) -> (Broker, Cached<Upstream>) {
        let broker = stand_in::broker(dir, ROUTES);
        let cached = Cached::new(upstream.clone(), broker.clone(), Scrubbers::default());
        (broker, cached)
    }

    /// Serves `GET /<path>` and says how: the `Cache-Status` parameters,
    /// the log outcome, and the body.
    async fn get(
        broker: &Broker,
        cache: &Cached<Upstream>,
        path: &str,
        trace: &mut Trace,
    ) -> (String, &'static str, String) {
        let segments = [path];
        let out = stand_in::outgoing(broker, &segments, Method::GET);
        let reply = cache.serve(&out, &mut trace.cx(), None).await.unwrap();
        let outcome = trace.timing.cache.expect("the cache took part").1;
        let body = match reply.answer {
            Answer::Stored(stored) => String::from_utf8(stored.body.to_vec()).unwrap(),
            Answer::Upstream(exchange) => {
                let body = exchange.response.into_body().collect().await.unwrap().to_bytes();
                String::from_utf8(body.to_vec()).unwrap()
            }
        };
        (reply.cache_status.unwrap_or_default(), outcome, body)
    }

    /// Waits out a one-second `ttl`.
    async fn expire() {
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }

    #[tokio::test]
    async fn a_miss_calls_once_then_memory_and_the_store_answer() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::answering(&[FIRST]);
        let (broker, cache) = instance(dir.path(), &upstream);
        let (status, outcome, body) = get(&broker, &cache, "fresh", &mut Trace::default()).await;
        assert_eq!((status.as_str(), outcome, body.as_str()), ("fwd=miss; stored", "miss", "first"));
        let (status, outcome, _) = get(&broker, &cache, "fresh", &mut Trace::default()).await;
        assert!(status.ends_with("detail=memory"), "{status}");
        assert_eq!(outcome, "hit-memory");
        let (broker, other) = instance(dir.path(), &upstream);
        let (status, outcome, body) = get(&broker, &other, "fresh", &mut Trace::default()).await;
        assert!(status.starts_with("hit; ttl="), "{status}");
        assert_eq!((outcome, body.as_str()), ("hit", "first"));
        assert_eq!(upstream.calls(), 1, "a hit is no call");
    }

    #[tokio::test]
    async fn concurrent_misses_on_two_instances_make_one_call() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::answering(&[FIRST]).taking(Duration::from_millis(300));
        let ((a_broker, a), (b_broker, b)) = (instance(dir.path(), &upstream), instance(dir.path(), &upstream));
        let (mut a_trace, mut b_trace) = (Trace::default(), Trace::default());
        let late = async {
            // The other instance is filling by now.
            tokio::time::sleep(Duration::from_millis(100)).await;
            get(&b_broker, &b, "fresh", &mut b_trace).await
        };
        let (filled, collapsed) = tokio::join!(get(&a_broker, &a, "fresh", &mut a_trace), late);
        assert_eq!(filled.1, "miss");
        assert_eq!((collapsed.1, collapsed.2.as_str()), ("collapsed", "first"), "{collapsed:?}");
        assert_eq!(upstream.calls(), 1);
    }

    #[tokio::test]
    async fn a_stale_answer_is_served_at_once_and_refreshed_by_the_same_inner_call() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::answering(&[FIRST, SECOND]);
        let (broker, cache) = instance(dir.path(), &upstream);
        get(&broker, &cache, "swr", &mut Trace::default()).await;
        expire().await;
        let mut trace = Trace::default();
        let (status, outcome, body) = get(&broker, &cache, "swr", &mut trace).await;
        assert!(status.ends_with("detail=stale-while-revalidate"), "{status}");
        assert_eq!((outcome, body.as_str()), ("stale", "first"));
        trace.chores.finish(Duration::from_secs(5)).expect("the refresh is a chore of the request").await;
        assert_eq!(upstream.calls(), 2);
        let (broker, other) = instance(dir.path(), &upstream);
        let (_, outcome, body) = get(&broker, &other, "swr", &mut Trace::default()).await;
        assert_eq!((outcome, body.as_str()), ("hit", "second"), "the refresh was stored");
    }

    #[tokio::test]
    async fn a_failing_upstream_is_answered_from_the_stale_entry() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::answering(&[FIRST, BROKEN]);
        let (broker, cache) = instance(dir.path(), &upstream);
        get(&broker, &cache, "sie", &mut Trace::default()).await;
        expire().await;
        let (broker, other) = instance(dir.path(), &upstream);
        let (status, outcome, body) = get(&broker, &other, "sie", &mut Trace::default()).await;
        assert!(status.starts_with("fwd=stale; fwd-status=500;"), "{status}");
        assert_eq!((outcome, body.as_str()), ("stale-if-error", "first"));
        assert_eq!(upstream.calls(), 2);
    }

    #[tokio::test]
    async fn an_answer_the_upstream_forbids_storing_is_passed_on_and_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::answering(&[PRIVATE]);
        let (broker, cache) = instance(dir.path(), &upstream);
        for _ in 0..2 {
            let (status, outcome, body) = get(&broker, &cache, "fresh", &mut Trace::default()).await;
            assert_eq!((status.as_str(), outcome, body.as_str()), ("fwd=miss; detail=no-store", "miss", "private"));
        }
        assert_eq!(upstream.calls(), 2, "nothing was stored");
    }
}
