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
//! 4. `rate_limit`: per client (IPv4 address, IPv6 /64) and upstream,
//!    counted before any caller proof is checked, so that a proof costs the
//!    address that sends it; with `per = "caller"`, a login's requests count
//!    per proven caller instead (by its session, or its JWT once verified; a
//!    failed JWT counts against the address). Counted on the shared
//!    counters of `counter` (which also count the budgets): a client's first
//!    request of a window on an instance is counted in the store, the rest
//!    are decided in memory and synced as chores (429);
//! 5. `caller`: on a route with `caller`, a valid relay session cookie, or
//!    a login's JWT or a Turnstile token that earns one (401);
//! 6. the body, buffered up to `relay.max_request_bytes` (413); none on a
//!    `GET` or `HEAD` (400: the cache could not key an answer to it);
//! 7. the upstream call, a stack of layers each wrapping the one below
//!    (`call`), composed once in [`Relay::new`]:
//!    - `cache`: on a route with `cache = { ttl = … }`, a `GET` or `HEAD` is
//!      answered from the shared response cache when it can be, and a miss
//!      makes one upstream call across instances (the layers below);
//!    - `call::retry`: a 401 invalidates the token and calls once more,
//!      unless the broker keeps the token: then the upstream's 401 is the
//!      answer (`challenge` reads whether the upstream said it is revoked);
//!    - `call::budget`: not while `upstream_limits` says the upstream asked
//!      to wait, nor past the site's `budgets` of calls (503);
//!    - `call::metered`: the usage meter (`meter`) counts each call, its
//!      latency and its token fetches and failures;
//!    - `call::authorized`: token from the [`Broker`], `inject`ed, sent with
//!      `relay.timeout`;
//! 8. `answer`: allow-listed headers only, the relay's own (`Cache-Control`,
//!    CSP, `Cache-Status`), and the body streamed back with injected
//!    credentials redacted in every encoding `scrub` knows, within
//!    `relay.max_response_bytes`.
//!
//! Every failure is one [`RelayError`] with a stable code, answered as
//! `{ "error": { "code", "message" } }` by `error`. One structured log line
//! per request, a `Server-Timing` header splitting token and upstream time,
//! and the answer counted by the usage meter (`meter`: status class, error
//! code, cache answer, client), whose counts ride the counters' round trips.
//!
//! ```no_run
//! # async fn demo(request: http::Request<http_body_util::Full<bytes::Bytes>>) -> Result<(), tokenrelay::Error> {
//! let relay = tokenrelay::relay::Relay::from_env(&tokenrelay::Env::process())?;
//! let response = relay.handle(request).await; // http::Response<tokenrelay::relay::Body>
//! # Ok(()) }
//! ```

mod answer;
mod body;
mod budgets;
mod cache;
mod call;
mod caller;
mod challenge;
mod chores;
mod cors;
mod counter;
mod error;
mod headers;
mod inject;
#[cfg(feature = "logging")]
mod logging;
pub(crate) mod meter;
mod outgoing;
mod path;
mod rate_limit;
mod record;
mod request_body;
mod route;
mod scrub;
mod service;
mod spike;
pub(crate) mod timer_anchor;
mod timing;
mod upstream_limits;

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, Response};
use http_body_util::BodyExt;

pub use body::Body;
pub use caller::TURNSTILE_HEADER;
pub use error::{RelayCode, RelayError};
#[cfg(feature = "logging")]
pub use logging::init_logging;
pub use path::{MOUNT, Mount};
pub use service::{Endpoint, ResponseFuture};
pub use timer_anchor::anchor_timers;
// For the operator's views (`crate::operator`): the cache's purge record and
// the rate limit's shared buckets, read where their owners say.
pub(crate) use cache::Purges;
pub(crate) use rate_limit::shared_bucket_keys;

use crate::alerts::Alerts;
use crate::broker::Broker;
use crate::config::Env;
use crate::config::relay::Inject;
use crate::store::CacheState;
use answer::{REQUEST_ID, SERVER_TIMING};
use call::{Authorized, Budgeted, ColdPlan, Cx, Metered, RetryOn401};
use error::Kind;
use outgoing::Outgoing;
use record::Record;

/// A map whose keys never come from a visitor (config names, indices,
/// minutes), hashed with FxHash, several times cheaper than the standard
/// SipHash, which only a map a visitor can add keys to needs (against
/// flooding). A visitor's string may be looked up in one.
pub(crate) type TrustedKeyMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

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
    /// The address in header `name` (a [`Platform`](crate::platform::Platform)'s
    /// `client_ip_header`), by [`first_of`](Self::first_of) its first field.
    /// Only use a header the platform itself sets: a visitor can send any header.
    pub fn from_header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<Self> {
        Self::first_of(headers.get(name)?.to_str().ok()?)
    }

    /// The first address of a header's value: the one rule of every shell
    /// for a repeated header, which arrives as a comma list (Node joins two
    /// `X-Real-IP` fields as `"a, b"`). None when that first one is not an address.
    pub fn first_of(value: &str) -> Option<Self> {
        value.split(',').next()?.trim().parse().ok().map(ClientIp)
    }
}

/// The platform's id of this request, for logs; set by the shell as a
/// request extension. Without it, the relay makes one up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The upstream call, outermost layer first (see [`Relay::new`]).
type UpstreamCall = cache::Cached<RetryOn401<Budgeted<Metered<Authorized>>>>;

/// The relay. Cheap to clone; build one per process and share it.
#[derive(Debug, Clone)]
pub struct Relay {
    broker: Broker,
    limiter: rate_limit::RateLimiter,
    upstream: UpstreamCall,
    scrubbers: inject::Scrubbers,
    caller: std::sync::Arc<caller::Gate>,
    mount: path::Mount,
    counters: counter::Counters,
    meter: meter::Meter,
    alerts: Alerts,
}

impl Relay {
    /// A relay over `broker`'s config, store and HTTP client. The upstream
    /// call is composed here, each layer wrapping the one it guards: the
    /// response cache (a hit makes no call), the 401 retry (a retry is a
    /// second call), the budget and the upstream's cooldown (a refused call
    /// costs no token), then the token and the send.
    pub fn new(broker: Broker) -> Self {
        Self::composed(broker, std::sync::Arc::new(crate::clock::now_ms))
    }

    /// The relay of [`new`](Self::new), its usage meter on a clock the test moves.
    #[cfg(test)]
    pub(crate) fn on_clock(broker: Broker, clock: &meter::testing::TestClock) -> Self {
        Self::composed(broker, clock.clock())
    }

    /// The relay of [`new`](Self::new), its usage meter on `clock`.
    fn composed(broker: Broker, clock: meter::Clock) -> Self {
        let alerts = Alerts::new(&broker);
        let cooldowns = upstream_limits::Cooldowns::new(&broker);
        // One engine counts rate limits and budgets; its syncs read the
        // cooldowns too, and write the usage meter's counts.
        let counters = counter::Counters::new(broker.clone(), cooldowns.clone());
        let limiter = rate_limit::RateLimiter::new(&broker, &counters, &alerts);
        let budgets = budgets::Budgets::new(&broker, &counters);
        let meter = meter::Meter::new(broker.config(), &counters, rate_limit::RateLimiter::client_name, clock);
        let scrubbers = inject::Scrubbers::default();
        let send = Metered::new(Authorized::new(broker.clone(), alerts.clone()), meter.clone());
        let budgeted = Budgeted::new(send, broker.clone(), budgets, cooldowns, alerts.clone());
        let retried = RetryOn401::new(budgeted, broker.clone());
        let upstream = cache::Cached::new(retried, broker.clone(), scrubbers.clone());
        let caller = std::sync::Arc::default();
        Self { broker, limiter, upstream, scrubbers, caller, mount: path::Mount::default(), counters, meter, alerts }
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
        let request_id = request.extensions().get::<RequestId>().map_or_else(random_request_id, |r| r.0.clone());
        let method = request.method().clone();
        let client = self.limiter.client(request.extensions().get::<ClientIp>().map(|c| c.0));
        let caller = cors::caller(&self.broker.config().relay, request.headers());
        let mut record = Record::default();
        let result = match &caller {
            // Boxed: the rules' and the layers' state machine (kilobytes) starts
            // in its box and stays there. Inline, it made this future as large,
            // and a shell's runtime copied the whole of it on every move (three
            // times a request under vercel_runtime: an eighth of the relay's
            // instructions, callgrind).
            Ok(_) => Box::pin(self.serve(request, &request_id, &mut record)).await,
            Err(e) => Err(e.clone()),
        };
        let (mut response, error) = match result {
            Ok(r) => (r, None),
            Err(e) => (e.to_response(), Some(e)),
        };
        let headers = response.headers_mut();
        cors::decorate(headers, caller.as_ref().ok());
        answer::finish(headers, &request_id, &record.timing);
        record.log(&request_id, &method, response.status(), error.as_ref(), started);
        self.meter.answer(&record, response.status(), error.as_ref(), client);
        if let Some(flush) = self.meter.flush_if_due(&self.counters) {
            record.chores.add(flush);
        }
        if let Some(error) = &error {
            error.alert(self.known_upstream(&record), &self.alerts);
        }
        // Last, so that it sends what this request noticed.
        if self.alerts.spike_check_due() {
            record.chores.add(spike::check(self.broker.clone(), self.alerts.clone()));
        } else if let Some(chore) = self.alerts.chore() {
            record.chores.add(chore);
        }
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
                let (mut error_parts, error_body) = err.to_response::<Body>().into_parts();
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

    /// The request rules in order (the module's list), then the upstream
    /// call, then the answer.
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
        // 2. path
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

        // 3. route, or the CORS preflight's answer
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
        let mut out = Outgoing {
            upstream,
            relay,
            route,
            method: parts.method,
            segments: &target.segments,
            query,
            headers: headers::forward_request(&parts.headers, route.forward_range),
            body: Bytes::new(),
            timeout: settings.timeout,
        };

        // 4. rate limit, before any proof is checked: a proof (a siteverify
        // or JWKS call) costs the address that sends it. A request counts
        // against its address; on a `per = "caller"` upstream, a login's (by
        // its session, checked here without a network call, or its JWT)
        // counts against its caller once proven, and a failed one against
        // its address.
        let ip = parts.extensions.get::<ClientIp>().map(|c| c.0);
        let store = self.broker.store();
        let session =
            route.caller.as_ref().and_then(|p| self.caller.session(store, upstream.name(), p, &parts.headers));
        let per_login = self.limiter.counts_callers(upstream.name())
            && route.caller.as_ref().is_some_and(|p| p.proof.names_caller());
        let mut cached = None;
        if !per_login {
            cached = self.limit(&out, record, ip, None).await?;
        } else if session.is_none() {
            self.limiter.has_room(upstream.name(), ip)?;
        }

        // 5. caller: the session, or a login's JWT or a Turnstile token that earns one
        let admitted = match (&route.caller, session) {
            (None, _) => None,
            (Some(_), Some(session)) => Some(session),
            (Some(policy), None) => {
                // Boxed: a proof's network calls stay out of the future of every request that needs none.
                let proof = self.caller.prove(self.broker.http(), store, upstream.name(), policy, &parts.headers, ip);
                match Box::pin(proof).await {
                    Ok(proven) => Some(proven),
                    Err(refused) if per_login => {
                        self.limit(&out, record, ip, None).await?;
                        return Err(refused);
                    }
                    Err(refused) => return Err(refused),
                }
            }
        };
        if let Some(caller) = admitted.as_ref().filter(|_| per_login) {
            cached = self.limit(&out, record, ip, Some(&caller.subject)).await?;
        }

        // 6. body
        out.body = request_body::read_body(&out.method, &parts.headers, body, settings.max_request_bytes).await?;

        // 7. the upstream call, through its layers
        let mut cx = Cx { request_id, timing: &mut record.timing, chores: &record.chores };
        let reply = self.upstream.serve(&out, &mut cx, cached).await?;

        // 8. the answer
        let mut response = answer::shape(reply, &out, &self.scrubbers, settings, request_id).await?;
        if let Some(cookie) = admitted.and_then(|a| a.set_cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response)
    }

    /// The configured upstream `record` names: alerts never key on a name a visitor made up.
    fn known_upstream<'r>(&self, record: &'r Record<'_>) -> Option<&'r str> {
        record.upstream.as_deref().filter(|name| self.broker.config().upstreams.contains_key(*name))
    }

    /// Decides `out` against its rate limit for `ip`, or with `caller` for
    /// the proven caller ([`RateLimiter::decide`](rate_limit::RateLimiter::decide)):
    /// in memory, else counted in the store (see [`count`](Self::count)).
    async fn limit(
        &self,
        out: &Outgoing<'_>,
        record: &Record<'_>,
        ip: Option<IpAddr>,
        caller: Option<&str>,
    ) -> Result<Option<CacheState>, RelayError> {
        match self.limiter.decide(out.upstream.name(), ip, caller)? {
            rate_limit::Verdict::Admitted(sync) => {
                if let Some(sync) = sync {
                    record.chores.add(sync);
                }
                Ok(None)
            }
            rate_limit::Verdict::Count(counting) => self.count(out, counting).await,
        }
    }

    /// Counts `out` against its rate limit in the store and decides it, in
    /// the round trip that also reads what the upstream call's layers ask
    /// for (a cold instance's token, cached answer and cooldown); returns the
    /// cached answer's state for the cache layer.
    async fn count(
        &self,
        out: &Outgoing<'_>,
        mut counting: rate_limit::Counting,
    ) -> Result<Option<CacheState>, RelayError> {
        let mut plan = ColdPlan::default();
        self.upstream.plan(out, &mut plan);
        match plan.read(self.broker.store(), counting.counts(), counting.tallies()).await {
            Ok(mut read) => {
                counting.tallied(read.tallied);
                let cached = self.upstream.learn(out, &mut read);
                self.limiter.settle(counting, Some(read.totals))?;
                Ok(cached)
            }
            Err(_) => self.limiter.settle(counting, None).map(|()| None),
        }
    }
}

/// A request id for a request the platform gave none: 16 random hex digits.
fn random_request_id() -> String {
    hex16(fastrand::u64(..))
}

/// `n` as 16 lowercase hex digits, as `format!("{n:016x}")` writes it
/// without the formatting machinery.
fn hex16(n: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..16).rev().map(|i| char::from(DIGITS[((n >> (i * 4)) & 0xf) as usize])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits() {
        for n in [0, 5, 0x0123_4567_89ab_cdef, u64::MAX, fastrand::u64(..)] {
            assert_eq!(hex16(n), format!("{n:016x}"));
        }
        assert_ne!(random_request_id(), random_request_id());
    }
}
