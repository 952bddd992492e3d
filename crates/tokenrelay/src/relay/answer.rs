//! The answer: every relayed answer, from the upstream or from the cache, is
//! shaped here: the upstream's allow-listed headers, scrubbed; the relay's
//! own (`Cache-Control`, an inert CSP, `Cache-Status`); and the body, streamed
//! and scrubbed within `relay.max_response_bytes`, or whole from the cache.
//! [`finish`] adds what every answer carries, errors included: the request
//! id and `Server-Timing`.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::{self, Body};
use super::cache::{Answer, Reply, Stored};
use super::call::Exchange;
use super::error::{Kind, RelayError};
use super::headers;
use super::inject::Scrubbers;
use super::outgoing::Outgoing;
use super::timing::Timing;
use crate::config::relay::{RelaySettings, Route};

/// The response header carrying the request id.
pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C Server Timing.
pub(super) const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
/// RFC 9211 `Cache-Status`.
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
/// A Content Security Policy that loads nothing and sandboxes the document:
/// `fetch()` callers are unaffected, an HTML answer opened directly is inert.
const INERT: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// The answer to `out` of `reply`.
pub(super) async fn shape(
    reply: Reply,
    out: &Outgoing<'_>,
    scrubbers: &Scrubbers,
    settings: &RelaySettings,
    request_id: &str,
) -> Result<Response<Body>, RelayError> {
    let mut response = match reply.answer {
        Answer::Upstream(exchange) => stream(exchange, out, scrubbers, settings, request_id).await?,
        Answer::Stored(stored) => whole(stored, out.route),
    };
    // Written into one buffer that the value then owns: no formatting, no copy.
    if let Some(params) = reply.cache_status
        && let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(["tokenrelay; ", &params].concat()))
    {
        response.headers_mut().insert(CACHE_STATUS, v);
    }
    Ok(response)
}

/// The upstream's answer, streamed back scrubbed and within the size limit.
async fn stream(
    exchange: Exchange,
    out: &Outgoing<'_>,
    scrubbers: &Scrubbers,
    settings: &RelaySettings,
    request_id: &str,
) -> Result<Response<Body>, RelayError> {
    let Exchange { response, token } = exchange;
    if crate::broker::declared_length(&response).is_some_and(|n| n > settings.max_response_bytes) {
        return Err(Kind::ResponseTooLarge(settings.max_response_bytes).into());
    }
    let upstream = out.upstream.name();
    let scrubber = scrubbers.get(upstream, out.relay, &token);
    let status = response.status();
    let mut headers = headers::filter_response(response.headers(), &scrubber);
    decorate(&mut headers, status, out.route);
    let source = body::Source {
        request_id: request_id.to_owned(),
        upstream: upstream.to_owned(),
        timeout: settings.timeout,
        limit: settings.max_response_bytes,
    };
    let event_stream = headers::is_event_stream(&headers);
    let body = Body::upstream(response.into_body(), scrubber.stream(), source).primed(event_stream).await?;
    let mut relayed = Response::new(body);
    *relayed.status_mut() = status;
    *relayed.headers_mut() = headers;
    Ok(relayed)
}

/// An answer from the cache, with its `Age`.
fn whole(stored: Stored, route: &Route) -> Response<Body> {
    let mut response = Response::new(Body::full(stored.body));
    *response.status_mut() = stored.status;
    let headers = response.headers_mut();
    *headers = stored.headers;
    headers.reserve(headers::SET_BY_RELAY);
    decorate(headers, stored.status, route);
    // RFC 9111 §5.1: seconds since the upstream answered.
    headers.insert(header::AGE, HeaderValue::from(stored.age.as_secs()));
    response
}

/// The headers the relay sets on every relayed answer, cached or not.
fn decorate(headers: &mut HeaderMap, status: StatusCode, route: &Route) {
    // Unless the route says the answer is public, no cache may keep it.
    let cacheable = status.is_success() || status == StatusCode::NOT_MODIFIED;
    let cache_control = route.cache_control.clone().filter(|_| cacheable);
    headers.insert(header::CACHE_CONTROL, cache_control.unwrap_or(HeaderValue::from_static("no-store")));
    // The answer is served from the site's own origin: whatever the upstream
    // sends, a browser must not run it as a page of this site.
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(INERT));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// What every answer carries, errors included: its request id and how long
/// token, upstream and cache took.
pub(super) fn finish(headers: &mut HeaderMap, request_id: &str, timing: &Timing) {
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
    if let Some(timing) = timing.header() {
        headers.insert(SERVER_TIMING, timing);
    }
}
