//! The browse-time relay: `GET /api/relay/<upstream>/<path>?<query>` is
//! forwarded to `<base_url>/<path>?<query>` with the upstream's credentials
//! attached, and the answer comes back without them.
//!
//! Framework-free: an [`http::Request`] in, an [`http::Response`] out, so the
//! Vercel and Netlify shells (and any other) only convert types. In order,
//! a request goes through:
//!
//! 1. `cors`: a foreign `Origin` not in `[relay] allowed_origins` → 403;
//! 2. `path`: the path is split and every segment validated (no dot
//!    segments, encoded separators, `//`, `@`, `\`, control characters…;
//!    `;` parameters only on routes with `path_params`);
//! 3. `route`: the upstream's configured patterns and methods (404/405),
//!    or the CORS preflight answer;
//! 4. `caller`: on a route with `caller`, a valid relay session cookie, or
//!    a login's JWT or a Turnstile token that earns one (401);
//! 5. `rate_limit`: per client (IPv4 address, IPv6 /64, or with `per = "caller"` the proven caller) and upstream; a
//!    client's first request of a window on an instance is counted in the
//!    store, the rest are decided in memory and synced as chores (429);
//! 6. the body, buffered up to `relay.max_request_bytes` (413); none on a
//!    `GET` or `HEAD` (400: the cache could not key an answer to it);
//! 7. `cache`: on a route with `cache = { ttl = … }`, a `GET` or `HEAD` is
//!    answered from the shared response cache when it can be, and a miss
//!    makes one upstream call across instances (the steps below);
//! 8. `forward`: token from the [`Broker`], `inject`ed, sent with
//!    `relay.timeout`; a 401 invalidates the token and retries once, unless
//!    the broker keeps the token: then the upstream's 401 is the answer
//!    (`challenge` reads whether the upstream said the token is revoked);
//!    `budget` admits each call first: not while `upstream_limits` says the
//!    upstream asked to wait, nor past the site's budget of calls (503);
//! 9. `headers` and `scrub`: the response is streamed back with allow-listed
//!    headers only, injected credentials redacted in every encoding the
//!    scrubber knows, within `relay.max_response_bytes`.
//!
//! Every failure is one [`RelayError`] with a stable code, answered as
//! `{ "error": { "code", "message" } }` by `error`. One structured log line
//! per request, and a `Server-Timing` header splitting token and upstream time.
//!
//! ```no_run
//! # async fn demo(request: http::Request<http_body_util::Full<bytes::Bytes>>) -> Result<(), tokenrelay::Error> {
//! let relay = tokenrelay::relay::Relay::from_env(&tokenrelay::Env::process())?;
//! let response = relay.handle(request).await; // http::Response<tokenrelay::relay::Body>
//! # Ok(()) }
//! ```

mod body;
mod budget;
mod cache;
mod caller;
mod challenge;
mod chores;
mod cors;
mod error;
mod forward;
mod headers;
mod inject;
#[cfg(feature = "logging")]
mod logging;
mod path;
mod rate_limit;
mod route;
mod scrub;
mod service;
mod status;
mod timing;
mod upstream_limits;

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};

pub use body::Body;
pub use cache::purge_cache;
pub use caller::TURNSTILE_HEADER;
pub use error::{RelayCode, RelayError};
#[cfg(feature = "logging")]
pub use logging::init_logging;
pub use path::{MOUNT, Mount};
pub use service::{Endpoint, ResponseFuture};
pub use status::{BudgetStatus, PurgeStatus, SharedBuckets, TokenStatus, UpstreamStatus, status};

use crate::broker::Broker;
use crate::config::Env;
use crate::config::relay::{Inject, Route};
use crate::store;
use crate::token::Token;
use error::Kind;
use timing::Timing;

/// The response header carrying the request id.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C Server Timing.
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
/// A Content Security Policy that loads nothing and sandboxes the document:
/// `fetch()` callers are unaffected, an HTML answer opened directly is inert.
const INERT: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";
/// Added to the longest chore's own bound (a token fetch within
/// `cache.lock_lease`, a refresh within `relay.timeout`) for its store writes.
const CHORES_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The visitor's IP address, as the platform reports it; set by the shell as
/// a request extension. Rate limits count IPv6 clients by network
/// (`[relay] rate_limit.ipv6_prefix`, /64 by default); without an address,
/// all such visitors share one rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The first address in header `name` (e.g. `x-real-ip` on Vercel,
    /// `x-nf-client-connection-ip` on Netlify). Only use a header the platform
    /// itself sets: a visitor can send any header.
    pub fn from_header(headers: &HeaderMap, name: &str) -> Option<Self> {
        let value = headers.get(name)?.to_str().ok()?;
        value.split(',').next()?.trim().parse().ok().map(ClientIp)
    }
}

/// The platform's id of this request, for logs; set by the shell as a
/// request extension. Without it, the relay makes one up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The relay. Cheap to clone; build one per process and share it.
#[derive(Debug, Clone)]
pub struct Relay {
    broker: Broker,
    limiter: rate_limit::RateLimiter,
    guard: budget::Guard,
    scrubbers: inject::Scrubbers,
    cache: cache::ResponseCache,
    caller: std::sync::Arc<caller::Gate>,
    mount: path::Mount,
}

/// What is known about a request so far, for the log line. Names are
/// borrowed from the config where they can be: no copy per request.
#[derive(Default)]
struct Record<'a> {
    upstream: Option<Cow<'a, str>>,
    route: Option<&'a str>,
    timing: Timing,
    /// Work the request made due, done before its answer ends.
    chores: chores::Chores,
}

impl Relay {
    /// A relay over `broker`'s config, store and HTTP client.
    pub fn new(broker: Broker) -> Self {
        let cooldowns = upstream_limits::Cooldowns::new(&broker);
        let limiter = rate_limit::RateLimiter::new(broker.clone(), cooldowns.clone());
        Self {
            guard: budget::Guard::new(limiter.clone(), cooldowns),
            limiter,
            broker,
            scrubbers: inject::Scrubbers::default(),
            cache: cache::ResponseCache::default(),
            caller: std::sync::Arc::default(),
            mount: path::Mount::default(),
        }
    }

    /// The relay answering below `mount` instead of [`MOUNT`]; its session
    /// cookies are scoped to it.
    pub fn mounted_at(mut self, mount: Mount) -> Self {
        self.caller = std::sync::Arc::new(caller::Gate::new(mount.clone()));
        self.mount = mount;
        self
    }

    /// Loads the config and builds the broker ([`Broker::from_env`]).
    pub fn from_env(env: &Env) -> crate::Result<Self> {
        Broker::from_env(env).map(Self::new)
    }

    /// The largest request body the relay takes (`relay.max_request_bytes`):
    /// a shell that reads the body itself passes at most one byte more.
    pub fn max_request_bytes(&self) -> u64 {
        self.broker.config().relay.max_request_bytes
    }

    /// Answers one request. The body streams from the upstream; if the
    /// upstream fails midway the body ends with an error. It ends once the
    /// request's chores are done.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (response, chores) = self.handle_apart(request).await;
        response.map(|body| body.ending_after(chores))
    }

    /// Like [`handle`](Self::handle), with the request's chores apart from
    /// the answer, for a shell whose runtime keeps the invocation open until
    /// its background work is done (`vercel_runtime`'s `wait_until`): the
    /// answer then ends at once. The caller must run the chores to their end
    /// before the invocation ends.
    pub(crate) async fn handle_apart<B>(&self, request: Request<B>) -> (Response<Body>, Option<chores::Finish>)
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map_or_else(|| format!("{:016x}", fastrand::u64(..)), |r| r.0.clone());
        let method = request.method().clone();
        let caller = cors::caller(&self.broker.config().relay, request.headers());
        let mut record = Record::default();
        let result = match &caller {
            Ok(_) => self.serve(request, &request_id, &mut record).await,
            Err(e) => Err(e.clone()),
        };
        let (mut response, error) = match result {
            Ok(r) => (r, None),
            Err(e) => (e.to_response(), Some(e)),
        };
        let headers = response.headers_mut();
        cors::decorate(headers, caller.as_ref().ok());
        if let Ok(id) = HeaderValue::from_str(&request_id) {
            headers.insert(REQUEST_ID, id);
        }
        if let Some(timing) = record.timing.header() {
            headers.insert(SERVER_TIMING, timing);
        }
        log(&request_id, &method, &record, response.status(), error.as_ref(), started);
        let settings = self.broker.config();
        let deadline = settings.cache.lock_lease.max(settings.relay.timeout) + CHORES_MARGIN;
        (response, record.chores.finish(deadline))
    }

    /// Like [`handle`](Self::handle), for shells that must return the whole
    /// body at once (Netlify's Lambda-style functions): a body that fails
    /// midway (too large, timed out) becomes that error's JSON answer.
    pub async fn handle_buffered<B>(&self, request: Request<B>) -> Response<Bytes>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = self.handle(request).await.into_parts();
        match body.collect().await {
            Ok(collected) => Response::from_parts(parts, collected.to_bytes()),
            Err(err) => {
                let (mut error_parts, error_body) = err.to_response().into_parts();
                let kept = [
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    header::VARY,
                    REQUEST_ID,
                    SERVER_TIMING,
                ];
                for name in kept {
                    for value in parts.headers.get_all(&name) {
                        error_parts.headers.append(name.clone(), value.clone());
                    }
                }
                let bytes = error_body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                Response::from_parts(error_parts, bytes)
            }
        }
    }

    async fn serve<'a, B>(
        &'a self,
        request: Request<B>,
        request_id: &str,
        record: &mut Record<'a>,
    ) -> Result<Response<Body>, RelayError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let settings = &self.broker.config().relay;
        let (parts, body) = request.into_parts();
        let target = self.mount.split(parts.uri.path())?;
        // An upstream without a relay section is as invisible as an unknown one.
        let Some((upstream, relay)) =
            self.broker.config().upstreams.get(target.upstream).and_then(|u| Some((u, u.relay.as_ref()?)))
        else {
            record.upstream = Some(Cow::Owned(target.upstream.to_owned()));
            return Err(Kind::UnknownUpstream(target.upstream.to_owned()).into());
        };
        record.upstream = Some(Cow::Borrowed(upstream.name()));
        let query = parts.uri.query();
        query.map(path::check_query).transpose()?;

        if cors::is_preflight(&parts.method, &parts.headers) {
            let route =
                route::select(relay, upstream.name(), &target.segments, &cors::requested_method(&parts.headers))?;
            record.route = Some(route.pattern.as_str());
            return Ok(cors::preflight(&parts.headers, route));
        }
        let route = route::select(relay, upstream.name(), &target.segments, &parts.method)?;
        record.route = Some(route.pattern.as_str());
        if !route.path_params {
            path::check_no_params(&target.segments)?;
        }
        if let (Inject::Query { name }, Some(q)) = (&relay.inject, query) {
            path::check_param_unset(q, name)?;
        }

        let mut out = forward::Outgoing {
            upstream,
            relay,
            route,
            method: parts.method,
            segments: &target.segments,
            query,
            headers: headers::forward_request(&parts.headers, route.forward_range),
            body: Bytes::new(),
            timeout: settings.timeout,
            chores: &record.chores,
        };
        let ip = parts.extensions.get::<ClientIp>().map(|c| c.0);
        // Before the rate limit, which may count per caller.
        let admitted = match &route.caller {
            Some(policy) => {
                let (http, store) = (self.broker.http(), self.broker.store());
                Some(self.caller.admit(http, store, upstream.name(), policy, &parts.headers, ip).await?)
            }
            None => None,
        };
        let subject = admitted.as_ref().map(|a| a.subject.as_str());
        let cache_read = match self.limiter.decide(upstream.name(), ip, subject)? {
            rate_limit::Verdict::Admitted(sync) => {
                if let Some(sync) = sync {
                    record.chores.add(sync);
                }
                None
            }
            rate_limit::Verdict::Count(counting) => self.count(&out, route, counting).await?,
        };
        out.body = read_body(&out.method, &parts.headers, body, settings.max_request_bytes).await?;
        let mut response = match route.cache {
            Some(policy) => cache::serve(self, &out, route, policy, request_id, &mut record.timing, cache_read).await,
            None => self.relay_upstream(&out, route, request_id, &mut record.timing).await,
        }?;
        if let Some(cookie) = admitted.and_then(|a| a.set_cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response)
    }

    /// Counts `out` against its rate limit in the store and decides it. A
    /// cold instance reads, in the same round trip, the token it lacks, the
    /// cached answer the request may be served from (returned) and the
    /// upstream's cooldown.
    async fn count(
        &self,
        out: &forward::Outgoing<'_>,
        route: &Route,
        counting: rate_limit::Counting,
    ) -> Result<Option<store::CacheState>, RelayError> {
        let name = out.upstream.name();
        let token_keys = self.broker.keys_to_read(name);
        let cache_keys = route.cache.and_then(|_| cache::keys_to_read(self, out));
        let cooldowns = self.guard.cooldowns();
        let cooldown_keys = cooldowns.key(name);
        let store = self.broker.store();
        match store.count_and_read(counting.counts(), token_keys, cache_keys.as_ref(), &cooldown_keys).await {
            Ok(read) => {
                cooldowns.learn(&cooldown_keys, &read.cooldowns);
                self.limiter.settle(counting, Some(read.totals))?;
                if let Some(token) = read.token {
                    self.broker.adopt(name, &token);
                }
                Ok(read.cache)
            }
            Err(_) => self.limiter.settle(counting, None).map(|()| None),
        }
    }

    /// Exchanges `out` with the upstream and streams the answer back.
    async fn relay_upstream(
        &self,
        out: &forward::Outgoing<'_>,
        route: &Route,
        request_id: &str,
        timing: &mut Timing,
    ) -> Result<Response<Body>, RelayError> {
        let (response, token) = forward::exchange(&self.broker, &self.guard, out, timing).await?;
        self.stream_answer(out, route, response, &token, request_id).await
    }

    /// The upstream's answer, streamed back scrubbed and within the size limit.
    async fn stream_answer(
        &self,
        out: &forward::Outgoing<'_>,
        route: &Route,
        response: reqwest::Response,
        token: &Token,
        request_id: &str,
    ) -> Result<Response<Body>, RelayError> {
        let settings = &self.broker.config().relay;
        if response.content_length().is_some_and(|n| n > settings.max_response_bytes) {
            return Err(Kind::ResponseTooLarge(settings.max_response_bytes).into());
        }
        let (upstream, relay) = (out.upstream, out.relay);
        let scrubber = self.scrubbers.get(upstream.name(), relay, token);
        let status = response.status();
        let mut headers = headers::filter_response(response.headers(), &scrubber);
        decorate(&mut headers, status, route);
        let source = body::Source {
            request_id: request_id.to_owned(),
            upstream: upstream.name().to_owned(),
            timeout: settings.timeout,
            limit: settings.max_response_bytes,
        };
        let event_stream = headers::is_event_stream(&headers);
        let body = Body::upstream(response, scrubber.stream(), source).primed(event_stream).await?;
        let mut relayed = Response::new(body);
        *relayed.status_mut() = status;
        *relayed.headers_mut() = headers;
        Ok(relayed)
    }
}

/// The headers the relay sets on every relayed answer, cached or not.
fn decorate(headers: &mut HeaderMap, status: http::StatusCode, route: &Route) {
    // Unless the route says the answer is public, no cache may keep it.
    let cacheable = status.is_success() || status == http::StatusCode::NOT_MODIFIED;
    let cache_control = route.cache_control.clone().filter(|_| cacheable);
    headers.insert(header::CACHE_CONTROL, cache_control.unwrap_or(HeaderValue::from_static("no-store")));
    // The answer is served from the site's own origin: whatever the upstream
    // sends, a browser must not run it as a page of this site.
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(INERT));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// The request body, at most `limit` bytes. A `GET` or `HEAD` has none: its
/// body never reaches the upstream, whose answer could depend on it while the
/// cache keys it without (and whose servers disagree on what it means).
async fn read_body<B>(method: &http::Method, headers: &HeaderMap, body: B, limit: u64) -> Result<Bytes, RelayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Kind::BodyTooLarge(limit).into());
    }
    let bytes = match Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(Kind::BodyTooLarge(limit).into()),
        Err(_) => return Err(Kind::BodyUnreadable.into()),
    };
    if !bytes.is_empty() && (method == http::Method::GET || method == http::Method::HEAD) {
        return Err(Kind::BodyNotAllowed(method.clone()).into());
    }
    Ok(bytes)
}

/// One line per request: ids, names, durations and outcomes, never a value.
fn log(
    request_id: &str,
    method: &http::Method,
    record: &Record,
    status: http::StatusCode,
    error: Option<&RelayError>,
    started: Instant,
) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let upstream = record.upstream.as_deref().unwrap_or("-");
    let route = record.route.unwrap_or("-");
    let token = record.timing.token.map_or("-", |(_, o)| o.as_str());
    let token_ms = record.timing.token.map_or(0.0, |(d, _)| ms(d));
    let upstream_ms = record.timing.upstream.map_or(0.0, ms);
    let cache = record.timing.cache.map_or("-", |(_, o)| o.as_str());
    let duration_ms = ms(started.elapsed());
    let code = error.map_or("-", RelayError::code);
    let detail = error.and_then(RelayError::detail).map(ToString::to_string);
    if status.is_server_error() {
        tracing::warn!(request_id, %method, upstream, route, status = status.as_u16(), code, detail, cache, token, token_ms, upstream_ms, duration_ms, "relay request failed");
    } else {
        tracing::info!(request_id, %method, upstream, route, status = status.as_u16(), code, cache, token, token_ms, upstream_ms, duration_ms, "relay request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, StatusCode};
    use http_body_util::Full;

    fn body(bytes: &'static [u8]) -> Full<Bytes> {
        Full::new(Bytes::from_static(bytes))
    }

    #[tokio::test]
    async fn get_and_head_carry_no_body() {
        for method in [Method::GET, Method::HEAD] {
            let err = read_body(&method, &HeaderMap::new(), body(b"POISON"), 100).await.unwrap_err();
            assert_eq!((err.code(), err.status()), ("body_not_allowed", StatusCode::BAD_REQUEST), "{method}");
            assert!(!err.to_string().contains("POISON"), "{err}");
            assert_eq!(read_body(&method, &HeaderMap::new(), body(b""), 100).await.unwrap(), "", "{method}");
        }
        assert_eq!(read_body(&Method::POST, &HeaderMap::new(), body(b"x"), 100).await.unwrap(), "x");
    }
}
