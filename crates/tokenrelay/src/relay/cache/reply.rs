//! What the cache answers, and how it says it took part: the `Cache-Status`
//! parameters (RFC 9211) and the outcome for the log and `Server-Timing`.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderMap;

use super::entry::CachedAnswer;
use crate::clock::now_ms;
use crate::config::relay::RouteCache;
use crate::relay::call::Exchange;
use crate::relay::outgoing::Outgoing;

/// What the cache answers: the upstream's exchange to stream, or a stored
/// answer; with its `Cache-Status` parameters when the cache took part.
pub(in crate::relay) struct Reply {
    pub(in crate::relay) answer: Answer,
    /// `Cache-Status` parameters after `tokenrelay; ` (RFC 9211).
    pub(in crate::relay) cache_status: Option<String>,
}

/// The body of a [`Reply`].
pub(in crate::relay) enum Answer {
    /// Straight from the upstream, streamed as it comes.
    Upstream(Exchange),
    /// A stored (or just filled) answer, scrubbed already.
    Stored(Stored),
}

/// An answer from the cache.
pub(in crate::relay) struct Stored {
    pub(in crate::relay) status: StatusCode,
    pub(in crate::relay) headers: HeaderMap,
    /// Empty for a `HEAD`.
    pub(in crate::relay) body: Bytes,
    /// Since the upstream answered (RFC 9111 §5.1 `Age`).
    pub(in crate::relay) age: Duration,
}

/// How the cache took part in an answer: log outcome and `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::relay) enum CacheStatus {
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
    pub(in crate::relay) fn as_str(self) -> &'static str {
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

/// A hit (or a stale answer) served from `e`, with its `Cache-Status`.
pub(super) fn hit(
    e: &CachedAnswer,
    out: &Outgoing<'_>,
    policy: &RouteCache,
    outcome: CacheStatus,
    failed: Option<StatusCode>,
) -> (Reply, CacheStatus) {
    let mut ttl = itoa::Buffer::new();
    let ttl = ttl.format(e.ttl_secs(now_ms(), policy));
    let params = match outcome {
        CacheStatus::HitMemory => ["hit; ttl=", ttl, "; detail=memory"].concat(),
        CacheStatus::Collapsed => ["hit; ttl=", ttl, "; collapsed"].concat(),
        CacheStatus::Stale => ["hit; ttl=", ttl, "; detail=stale-while-revalidate"].concat(),
        CacheStatus::StaleIfError => match failed {
            Some(s) => ["fwd=stale; fwd-status=", s.as_str(), "; ttl=", ttl, "; detail=stale-if-error"].concat(),
            None => ["fwd=stale; ttl=", ttl, "; detail=stale-if-error"].concat(),
        },
        CacheStatus::Hit | CacheStatus::Miss | CacheStatus::Bypass => ["hit; ttl=", ttl].concat(),
    };
    (stored_reply(e, out, params), outcome)
}

/// The reply of a stored entry.
pub(super) fn stored_reply(e: &CachedAnswer, out: &Outgoing<'_>, params: String) -> Reply {
    let body = if out.method == http::Method::HEAD { Bytes::new() } else { e.body.clone() };
    let stored = Stored {
        status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::OK),
        headers: e.headers(),
        body,
        age: e.age(now_ms()),
    };
    Reply { answer: Answer::Stored(stored), cache_status: Some(params) }
}
