//! The exchange with the upstream: attach the token, send, and on a 401
//! invalidate the token (compare-and-delete, so a late 401 never drops a
//! newer token), fetch a fresh one and send once more. When the broker keeps
//! the token (too young, or the upstream's invalidation budget is spent: see
//! [`Broker::invalidate`]), when the key is static, or when the fresh token is
//! refused too, the upstream's own 401 is the answer: a new token cannot cure
//! it, and rotating on every request would let any visitor hammer the token
//! endpoint. A 401 that says the token itself is no longer accepted
//! (`WWW-Authenticate: Bearer error="invalid_token"`, RFC 6750 §3.1, read by
//! `challenge`) drops it whatever its age, within the same hourly budget
//! ([`Broker::invalidate_revoked`]).
//!
//! Request bodies are buffered (bounded by `relay.max_request_bytes`) before
//! the first attempt, so every request is replayable; the second attempt is
//! the only retry.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::budget::Guard;
use super::chores::Chores;
use super::error::{Kind, RelayError};
use super::timing::Timing;
use super::{challenge, inject, path};
use crate::broker::Broker;
use crate::config::Upstream;
use crate::config::relay::{Route, UpstreamRelay};
use crate::token::{Provenance, Token};

/// One request to relay, validated.
pub(super) struct Outgoing<'a> {
    pub(super) upstream: &'a Upstream,
    pub(super) relay: &'a UpstreamRelay,
    /// The route it matched: its budget, if it has one, counts the calls.
    pub(super) route: &'a Route,
    pub(super) method: Method,
    pub(super) segments: &'a [&'a str],
    pub(super) query: Option<&'a str>,
    /// The allow-listed request headers.
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) timeout: Duration,
    /// The request's chores: a token refresh it makes due joins them.
    pub(super) chores: &'a Chores,
}

/// Sends `out`, retrying once with a fresh token after a 401, each call
/// admitted by `guard` first. Returns the upstream's response and the token
/// it was sent with.
pub(super) async fn exchange(
    broker: &Broker,
    guard: &Guard,
    out: &Outgoing<'_>,
    timing: &mut Timing,
) -> Result<(reqwest::Response, Token), RelayError> {
    let name = out.upstream.name();
    // Each call is admitted before its token is sought: a refused call costs nothing upstream.
    guard.admit(broker, out).await?;
    let first = token(broker, out, timing).await?;
    let response = send(broker, guard, out, &first, timing).await?;
    if response.status() != StatusCode::UNAUTHORIZED {
        return Ok((response, first));
    }
    // A static key cannot be refreshed: retrying would send the same key.
    let dropped = match first.outcome() {
        Provenance::Static => Ok(false),
        _ if challenge::token_revoked(response.headers()) => broker.invalidate_revoked(name, &first).await,
        _ => broker.invalidate(name, &first).await,
    };
    if !dropped.map_err(Kind::Token)? {
        tracing::info!(upstream = name, "upstream answered 401 and the token was kept; passing the 401 on");
        return Ok((response, first));
    }
    tracing::info!(upstream = name, "upstream answered 401; token invalidated, retrying once");
    guard.admit(broker, out).await?;
    let fresh = token(broker, out, timing).await?;
    let response = send(broker, guard, out, &fresh, timing).await?;
    if response.status() == StatusCode::UNAUTHORIZED {
        tracing::warn!(upstream = name, "upstream refused a fresh token too; passing its 401 on");
    }
    Ok((response, fresh))
}

/// A token for `out`; a refresh it makes due runs as a chore of the request,
/// alongside the upstream call.
async fn token(broker: &Broker, out: &Outgoing<'_>, timing: &mut Timing) -> Result<Token, RelayError> {
    let started = Instant::now();
    let (token, refresh) = broker.token_and_refresh(out.upstream.name()).await.map_err(Kind::Token)?;
    timing.add_token(started.elapsed(), token.outcome());
    if let Some(refresh) = refresh {
        out.chores.add(refresh);
    }
    Ok(token)
}

/// One call to the upstream; `guard` learns from its answer.
async fn send(
    broker: &Broker,
    guard: &Guard,
    out: &Outgoing<'_>,
    token: &Token,
    timing: &mut Timing,
) -> Result<reqwest::Response, RelayError> {
    let credentials = inject::credentials(out.relay, out.upstream.name(), token).map_err(Kind::Token)?;
    let param = credentials.query.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
    let url = path::outgoing_url(out.upstream.base_url(), out.segments, out.query, param)?;
    let mut headers = out.headers.clone();
    headers.extend(credentials.headers);
    let mut request = broker.http().request(out.method.clone(), url).headers(headers).timeout(out.timeout);
    if !out.body.is_empty() {
        request = request.body(out.body.clone());
    }
    let started = Instant::now();
    let result = request.send().await;
    timing.add_upstream(started.elapsed());
    let response = result.map_err(|e| RelayError::from_transport(&e, out.timeout))?;
    guard.learn(broker, out, &response);
    Ok(response)
}
