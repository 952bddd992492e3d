//! The shared response cache of routes with `cache = { ttl = … }`.
//!
//! Two levels, like tokens: a small in-process level ([`memory`]) and the
//! shared store, where entries are sealed like tokens and named by
//! `store::keys`. [`entry`] says what is cacheable, the key, the format and
//! freshness; this module decides what to serve:
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

mod entry;
mod memory;
mod purge;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::chores::Chores;
use super::error::RelayError;
use super::forward::{self, Outgoing};
use super::timing::Timing;
use super::{Body, Relay, headers};
use crate::clock::now_ms;
use crate::config::relay::{Route, RouteCache};
use crate::store::{Backoff, CacheKeys, CacheState, Lease};
use crate::token::Token;
pub(super) use entry::Purges;
use entry::{CachedAnswer, Freshness};
use memory::Memory;
pub use purge::purge_cache;

/// RFC 9211 `Cache-Status`.
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
/// How long a miss waits for another instance's fill before asking the upstream itself.
const FILL_WAIT: Duration = Duration::from_secs(3);
/// About how often a waiting miss looks for the filled entry.
const FILL_POLL: Duration = Duration::from_millis(20);
/// Added to `relay.timeout` for the fill lock's lease: time to store the answer.
/// Also the lease of the purge record's lock.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// The cache levels and refreshes in flight; shared by the clones of a relay.
#[derive(Default, Clone)]
pub(super) struct ResponseCache {
    memory: Arc<Memory>,
    refreshing: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseCache")
    }
}

/// One cacheable request.
struct Ask<'a> {
    out: &'a Outgoing<'a>,
    route: &'a Route,
    policy: RouteCache,
    keys: CacheKeys,
    path: String,
    request_id: &'a str,
}

/// How the cache took part in an answer: log outcome and `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CacheStatus {
    HitMemory,
    Hit,
    /// Served another instance's fill after waiting for it.
    Collapsed,
    /// Served stale while one refresh runs.
    Stale,
    /// Served stale because the upstream failed.
    StaleIfError,
    Miss,
    /// Not answerable from the cache (method, conditional or range request).
    Bypass,
}

impl CacheStatus {
    /// The log and `Server-Timing` name.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CacheStatus::HitMemory => "hit-memory",
            CacheStatus::Hit => "hit",
            CacheStatus::Collapsed => "collapsed",
            CacheStatus::Stale => "stale",
            CacheStatus::StaleIfError => "stale-if-error",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// Answers `out` on a route with a cache: from the cache when it can, else
/// from the upstream, storing what may be stored.
pub(super) async fn serve(
    relay: &Relay,
    out: &Outgoing<'_>,
    route: &Route,
    policy: RouteCache,
    request_id: &str,
    timing: &mut Timing,
    read: Option<CacheState>,
) -> Result<Response<Body>, RelayError> {
    let started = Instant::now();
    if !entry::request_applies(&out.method, &out.headers) {
        timing.cache = Some((Duration::ZERO, CacheStatus::Bypass));
        let mut response = relay.relay_upstream(out, route, request_id, timing).await?;
        let fwd =
            if out.method == http::Method::GET || out.method == http::Method::HEAD { "request" } else { "method" };
        set_status(&mut response, &format!("fwd={fwd}"));
        return Ok(response);
    }
    let (path, keys) = keys(relay, out);
    let ask = Ask { out, route, policy, keys, path, request_id };
    let (response, outcome) = lookup(relay, &ask, timing, read).await?;
    timing.cache =
        Some((started.elapsed().saturating_sub(timing.upstream.unwrap_or_default() + token_time(timing)), outcome));
    Ok(response)
}

/// The path as forwarded and the store keys of `out`'s answer.
fn keys(relay: &Relay, out: &Outgoing<'_>) -> (String, CacheKeys) {
    let path = format!("/{}", out.segments.join("/"));
    let identity = entry::identity(out, &path);
    let keys = relay.broker.store().cache_keys(out.upstream.name(), &identity);
    (path, keys)
}

/// The store keys a cold request may read with its other store calls:
/// those of `out`'s answer when it may come from the cache and this
/// instance's memory does not hold it.
pub(super) fn keys_to_read(relay: &Relay, out: &Outgoing<'_>) -> Option<CacheKeys> {
    if !entry::request_applies(&out.method, &out.headers) {
        return None;
    }
    let (_, keys) = keys(relay, out);
    relay.cache.memory.get(&keys.entry).is_none().then_some(keys)
}

fn token_time(timing: &Timing) -> Duration {
    timing.token.map_or(Duration::ZERO, |(d, _)| d)
}

async fn lookup(
    relay: &Relay,
    ask: &Ask<'_>,
    timing: &mut Timing,
    read: Option<CacheState>,
) -> Result<(Response<Body>, CacheStatus), RelayError> {
    let cache = &relay.cache;
    if let Some(e) = cache.memory.get(&ask.keys.entry) {
        return Ok((answer(&e, ask, CacheStatus::HitMemory, None), CacheStatus::HitMemory));
    }
    let store = relay.broker.store();
    let state = match read {
        Some(state) => state,
        None => match store.read_cached(&ask.keys).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(request_id = ask.request_id, upstream = ask.out.upstream.name(), error = %e, "cache store unreachable; asking the upstream without caching");
                return answer_from_upstream(relay, ask, None, None, timing).await;
            }
        },
    };
    let now = now_ms();
    let stored = usable(state.entry.as_deref(), state.purges.as_deref());
    let freshness = stored.as_ref().map(|e| e.freshness(now, &ask.policy));
    match (&stored, freshness) {
        (Some(e), Some(Freshness::Fresh)) => {
            remember(cache, ask, e.clone(), now);
            return Ok((answer(e, ask, CacheStatus::Hit, None), CacheStatus::Hit));
        }
        (Some(e), Some(Freshness::Revalidate)) => {
            if !state.filling
                && let Some(refresh) = refresh(relay, ask)
            {
                ask.out.chores.add(refresh);
            }
            return Ok((answer(e, ask, CacheStatus::Stale, None), CacheStatus::Stale));
        }
        _ => {}
    }
    let stale = stored.filter(|_| matches!(freshness, Some(Freshness::Revalidate | Freshness::IfError)));
    let lease = if state.filling {
        None
    } else {
        match store.lock_cached(&ask.keys, fill_lease(relay)).await {
            Ok((Some(lease), after)) => {
                // Another instance may have stored it between our read and our lock.
                if let Some(e) = usable(after.entry.as_deref(), after.purges.as_deref())
                    .filter(|e| e.freshness(now_ms(), &ask.policy) == Freshness::Fresh)
                {
                    lease.release().await;
                    remember(cache, ask, e.clone(), now_ms());
                    return Ok((answer(&e, ask, CacheStatus::Hit, None), CacheStatus::Hit));
                }
                Some(lease)
            }
            Ok((None, _)) => None,
            Err(_) => return answer_from_upstream(relay, ask, None, stale, timing).await,
        }
    };
    if lease.is_some() {
        return answer_from_upstream(relay, ask, lease, stale, timing).await;
    }
    if let Some(e) = wait_for_fill(relay, ask).await {
        remember(cache, ask, e.clone(), now_ms());
        return Ok((answer(&e, ask, CacheStatus::Collapsed, None), CacheStatus::Collapsed));
    }
    answer_from_upstream(relay, ask, None, stale, timing).await
}

/// The fill lock's lease: the upstream's whole answer, and time to store it.
fn fill_lease(relay: &Relay) -> Duration {
    relay.broker.config().relay.timeout + LEASE_MARGIN
}

/// Polls the store until another instance's fill is stored, it gave up
/// (uncacheable answer, failure), or [`FILL_WAIT`] passed.
async fn wait_for_fill(relay: &Relay, ask: &Ask<'_>) -> Option<Arc<CachedAnswer>> {
    let mut backoff = Backoff::new(FILL_POLL, FILL_POLL, FILL_WAIT.min(relay.broker.config().relay.timeout));
    while backoff.wait().await {
        let state = relay.broker.store().read_cached(&ask.keys).await.ok()?;
        let fresh = usable(state.entry.as_deref(), state.purges.as_deref())
            .filter(|e| e.freshness(now_ms(), &ask.policy) == Freshness::Fresh);
        if fresh.is_some() || !state.filling {
            return fresh;
        }
    }
    None
}

/// An opened entry that no purge covers.
fn usable(plain: Option<&[u8]>, purges: Option<&str>) -> Option<Arc<CachedAnswer>> {
    let e = CachedAnswer::decode(plain?)?;
    (!Purges::parse(purges).covers(&e)).then(|| Arc::new(e))
}

fn remember(cache: &ResponseCache, ask: &Ask<'_>, e: Arc<CachedAnswer>, now: u64) {
    let fresh_for = u64::try_from(e.ttl_secs(now, &ask.policy)).map_or(Duration::ZERO, Duration::from_secs);
    cache.memory.put(&ask.keys.entry, e, fresh_for);
}

/// What a fill brought back.
enum Filled {
    /// A cacheable answer, buffered and scrubbed; `stored` when it is in the store.
    Answer { entry: Arc<CachedAnswer>, stored: bool },
    /// An answer not to store, to stream as is.
    Pass { response: reqwest::Response, token: Token, reason: &'static str },
}

/// Asks the upstream; stores a cacheable answer while `lease` holds the fill
/// lock. The lease is let go in every case before this returns: by the
/// fenced write, or released when nothing is stored (and by its drop if the
/// request is cancelled meanwhile). With no lease, stores nothing.
async fn fill(relay: &Relay, ask: &Ask<'_>, lease: Option<Lease>, timing: &mut Timing) -> Result<Filled, RelayError> {
    let asked = ask_upstream(relay, ask, timing).await;
    let fits = |e: &CachedAnswer| e.body.len() as u64 <= relay.broker.config().relay.max_cached_body_bytes;
    let (entry, lease) = match (asked, lease) {
        (Ok(Filled::Answer { entry, .. }), Some(lease)) if fits(&entry) => (entry, lease),
        (asked, lease) => {
            if let Some(lease) = lease {
                lease.release().await;
            }
            return asked;
        }
    };
    let put = relay.broker.store().put_cached(&ask.keys, &entry.encode(), ask.policy.lifetime(), lease).await;
    let stored = put.unwrap_or_else(|e| {
        tracing::warn!(request_id = ask.request_id, upstream = ask.out.upstream.name(), error = %e, "could not store a cached answer");
        false
    });
    Ok(Filled::Answer { entry, stored })
}

/// The upstream's answer: buffered and scrubbed when it may be stored, else
/// as it comes, to stream.
async fn ask_upstream(relay: &Relay, ask: &Ask<'_>, timing: &mut Timing) -> Result<Filled, RelayError> {
    let sent_ms = now_ms();
    let (response, token) = forward::exchange(&relay.broker, &relay.guard, ask.out, timing).await?;
    let status = response.status();
    let too_big = response.content_length().is_some_and(|n| n > relay.broker.config().relay.max_cached_body_bytes);
    let refusal = entry::refusal(status, response.headers(), &ask.policy).or(too_big.then_some("size"));
    if let Some(reason) = refusal {
        return Ok(Filled::Pass { response, token, reason });
    }
    let settings = &relay.broker.config().relay;
    let scrubber = relay.scrubbers.get(ask.out.upstream.name(), ask.out.relay, &token);
    let headers = headers::filter_response(response.headers(), &scrubber);
    let mut redactor = scrubber.stream();
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RelayError::from_transport(&e, settings.timeout))?;
        if (body.len() + chunk.len()) as u64 > settings.max_response_bytes {
            return Err(super::error::Kind::ResponseTooLarge(settings.max_response_bytes).into());
        }
        body.extend_from_slice(&redactor.push(&chunk));
    }
    body.extend_from_slice(&redactor.finish());
    let entry = Arc::new(CachedAnswer::new(&ask.path, sent_ms, status, &headers, body.freeze()));
    Ok(Filled::Answer { entry, stored: false })
}

/// Asks the upstream (storing when `lease` holds the fill lock) and answers,
/// falling back to `stale` when the upstream fails.
async fn answer_from_upstream(
    relay: &Relay,
    ask: &Ask<'_>,
    lease: Option<Lease>,
    stale: Option<Arc<CachedAnswer>>,
    timing: &mut Timing,
) -> Result<(Response<Body>, CacheStatus), RelayError> {
    let now = now_ms();
    let stale = stale.filter(|e| e.age(now) < ask.policy.ttl + ask.policy.stale_if_error);
    match (fill(relay, ask, lease, timing).await, stale) {
        (Err(e), Some(stale)) if e.is_upstream_failure() => {
            tracing::warn!(
                request_id = ask.request_id,
                upstream = ask.out.upstream.name(),
                code = e.code(),
                "upstream failed; serving the stored answer (stale_if_error)"
            );
            Ok((answer(&stale, ask, CacheStatus::StaleIfError, None), CacheStatus::StaleIfError))
        }
        (Ok(Filled::Pass { response, .. }), Some(stale)) if response.status().is_server_error() => {
            let status = response.status();
            Ok((answer(&stale, ask, CacheStatus::StaleIfError, Some(status)), CacheStatus::StaleIfError))
        }
        (Err(e), _) => Err(e),
        (Ok(Filled::Pass { response, token, reason }), _) => {
            let mut answer = relay.stream_answer(ask.out, ask.route, response, &token, ask.request_id).await?;
            set_status(&mut answer, &format!("fwd=miss; detail={reason}"));
            Ok((answer, CacheStatus::Miss))
        }
        (Ok(Filled::Answer { entry, stored }), _) => {
            if stored {
                relay.cache.memory.put(&ask.keys.entry, entry.clone(), ask.policy.ttl);
            }
            let mut answer = answer(&entry, ask, CacheStatus::Miss, None);
            set_status(&mut answer, if stored { "fwd=miss; stored" } else { "fwd=miss" });
            Ok((answer, CacheStatus::Miss))
        }
    }
}

/// The refresh of a stale entry, as a chore of the request that served it,
/// unless this process runs one already; across instances, the fill lock
/// lets only one through.
fn refresh(relay: &Relay, ask: &Ask<'_>) -> Option<impl Future<Output = ()> + Send + 'static> {
    let started = Refreshing::start(relay, &ask.keys.entry)?;
    let relay = relay.clone();
    let copy = Copied::of(ask);
    Some(async move {
        let _started = started;
        let config = relay.broker.config();
        let Some((upstream, upstream_relay, route, policy)) = copy.route(config) else { return };
        let segments: Vec<&str> = copy.segments.iter().map(String::as_str).collect();
        // A token refresh this one makes due is its own chore, finished here.
        let chores = Chores::default();
        let out = Outgoing {
            upstream,
            relay: upstream_relay,
            route,
            method: copy.method.clone(),
            segments: &segments,
            query: copy.query.as_deref(),
            headers: copy.headers.clone(),
            body: Bytes::new(),
            timeout: config.relay.timeout,
            chores: &chores,
        };
        let ask = Ask {
            out: &out,
            route,
            policy,
            keys: copy.keys.clone(),
            path: copy.path.clone(),
            request_id: &copy.request_id,
        };
        let request_id = ask.request_id;
        let Ok((Some(lease), after)) = relay.broker.store().lock_cached(&ask.keys, fill_lease(&relay)).await else {
            return;
        };
        // Another instance may have refreshed it since we read it stale.
        if usable(after.entry.as_deref(), after.purges.as_deref())
            .is_some_and(|e| e.freshness(now_ms(), &policy) == Freshness::Fresh)
        {
            lease.release().await;
            return;
        }
        match fill(&relay, &ask, Some(lease), &mut Timing::default()).await {
            Ok(Filled::Answer { entry, stored: true }) => relay.cache.memory.put(&ask.keys.entry, entry, policy.ttl),
            Ok(_) => tracing::info!(request_id, upstream = upstream.name(), "cache refresh got an answer not to store"),
            Err(e) => tracing::warn!(request_id, upstream = upstream.name(), code = e.code(), "cache refresh failed"),
        }
        if let Some(finish) = chores.finish(fill_lease(&relay)) {
            finish.await;
        }
    })
}

/// What a refresh needs of the request that started it, owned, since it
/// runs as a task of its own.
struct Copied {
    upstream: String,
    pattern: String,
    method: http::Method,
    segments: Vec<String>,
    query: Option<String>,
    headers: http::HeaderMap,
    keys: CacheKeys,
    path: String,
    request_id: String,
}

impl Copied {
    fn of(ask: &Ask<'_>) -> Self {
        Self {
            upstream: ask.out.upstream.name().to_owned(),
            pattern: ask.route.pattern.as_str().to_owned(),
            method: ask.out.method.clone(),
            segments: ask.out.segments.iter().map(|s| (*s).to_owned()).collect(),
            query: ask.out.query.map(str::to_owned),
            headers: ask.out.headers.clone(),
            keys: ask.keys.clone(),
            path: ask.path.clone(),
            request_id: ask.request_id.to_owned(),
        }
    }

    /// The upstream, its relay section, the route and its cache, found again in `config`.
    fn route<'c>(
        &self,
        config: &'c crate::config::Config,
    ) -> Option<(&'c crate::config::Upstream, &'c crate::config::relay::UpstreamRelay, &'c Route, RouteCache)> {
        let u = config.upstreams.get(&self.upstream)?;
        let r = u.relay.as_ref()?;
        let route = r.routes.iter().find(|x| x.pattern.as_str() == self.pattern)?;
        Some((u, r, route, route.cache?))
    }
}

/// This process's refresh of one entry; forgotten however it ends.
struct Refreshing {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Refreshing {
    /// `None` when this process already refreshes `key`.
    fn start(relay: &Relay, key: &str) -> Option<Self> {
        let set = relay.cache.refreshing.clone();
        let fresh = set.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned());
        fresh.then(|| Self { set, key: key.to_owned() })
    }
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

/// The answer built from a stored entry, with `Age` and `Cache-Status`.
fn answer(e: &CachedAnswer, ask: &Ask<'_>, outcome: CacheStatus, failed: Option<StatusCode>) -> Response<Body> {
    let now = now_ms();
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::OK);
    let body = if ask.out.method == http::Method::HEAD { Bytes::new() } else { e.body.clone() };
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    *headers = e.headers();
    super::decorate(headers, status, ask.route);
    // RFC 9111 §5.1: seconds since the upstream answered.
    headers.insert(header::AGE, HeaderValue::from(e.age(now).as_secs()));
    let ttl = e.ttl_secs(now, &ask.policy);
    let detail = match outcome {
        CacheStatus::HitMemory => format!("hit; ttl={ttl}; detail=memory"),
        CacheStatus::Hit => format!("hit; ttl={ttl}"),
        CacheStatus::Collapsed => format!("hit; ttl={ttl}; collapsed"),
        CacheStatus::Stale => format!("hit; ttl={ttl}; detail=stale-while-revalidate"),
        CacheStatus::StaleIfError => match failed {
            Some(s) => format!("fwd=stale; fwd-status={}; ttl={ttl}; detail=stale-if-error", s.as_u16()),
            None => format!("fwd=stale; ttl={ttl}; detail=stale-if-error"),
        },
        CacheStatus::Miss | CacheStatus::Bypass => return response,
    };
    set_status(&mut response, &detail);
    response
}

fn set_status(response: &mut Response<Body>, params: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("tokenrelay; {params}")) {
        response.headers_mut().insert(CACHE_STATUS, v);
    }
}
