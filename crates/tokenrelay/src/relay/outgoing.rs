//! The request as it will be forwarded: validated by the request rules, read
//! by every layer of the upstream call (the cache keys it, the budget counts
//! it, the token step sends it). It depends on the config alone, so every
//! layer can import it and none imports another layer through it.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::config::relay::{Route, UpstreamRelay};
use crate::config::{Config, Upstream};

/// One request to relay, validated.
pub(super) struct Outgoing<'a> {
    pub(super) upstream: &'a Upstream,
    pub(super) relay: &'a UpstreamRelay,
    /// The route it matched: its cache and budget, if it has them.
    pub(super) route: &'a Route,
    pub(super) method: Method,
    pub(super) segments: &'a [&'a str],
    pub(super) query: Option<&'a str>,
    /// The allow-listed request headers.
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) timeout: Duration,
}

impl Outgoing<'_> {
    /// The path as forwarded, below the upstream's base URL.
    pub(super) fn path(&self) -> String {
        super::path::below("", self.segments)
    }

    /// An owned copy, for work that outlives the request (a cache refresh).
    /// Bodies are not kept: only a `GET` or `HEAD` is ever replayed so.
    pub(super) fn detach(&self) -> Detached {
        Detached {
            upstream: self.upstream.name().to_owned(),
            pattern: self.route.pattern.as_str().to_owned(),
            method: self.method.clone(),
            segments: self.segments.iter().map(|s| (*s).to_owned()).collect(),
            query: self.query.map(str::to_owned),
            headers: self.headers.clone(),
        }
    }
}

/// An [`Outgoing`] that owns what it names; [`Detached::attach`] finds its
/// upstream and route again in the config.
pub(super) struct Detached {
    upstream: String,
    pattern: String,
    method: Method,
    segments: Vec<String>,
    query: Option<String>,
    headers: HeaderMap,
}

impl Detached {
    /// The request again, borrowing from `config` and `segments` (which
    /// [`Detached::segments`] gives); `None` when the config no longer has its route.
    pub(super) fn attach<'a>(&'a self, config: &'a Config, segments: &'a [&'a str]) -> Option<Outgoing<'a>> {
        let upstream = config.upstreams.get(&self.upstream)?;
        let relay = upstream.relay.as_ref()?;
        let route = relay.routes.iter().find(|r| r.pattern.as_str() == self.pattern)?;
        Some(Outgoing {
            upstream,
            relay,
            route,
            method: self.method.clone(),
            segments,
            query: self.query.as_deref(),
            headers: self.headers.clone(),
            body: Bytes::new(),
            timeout: config.relay.timeout,
        })
    }

    /// The path segments, borrowed as [`Detached::attach`] takes them.
    pub(super) fn segments(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}
