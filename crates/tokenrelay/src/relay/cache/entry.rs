//! What may be cached, under which key, in which format, and for how long.
//!
//! Rules (RFC 9111): only `GET` and `HEAD`; only the statuses RFC 9110 §15.1
//! calls heuristically cacheable (200, 203, 204, 300, 301, 404, 410); never
//! an answer marked `no-store` or `private` (RFC 9111 §5.2.2.5, §5.2.2.7)
//! unless the route says `override = true`; never `Vary: *` (RFC 9110
//! §12.5.5). Conditional and range requests bypass the cache: their answers
//! (304, 206) are about the visitor's copy, not the resource.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::config::relay::RouteCache;

/// Statuses cacheable by default (RFC 9110 §15.1), the ones we store.
const CACHEABLE_STATUSES: [u16; 7] = [200, 203, 204, 300, 301, 404, 410];
/// Request headers that make a request about the visitor's copy.
const BYPASSING: [HeaderName; 3] = [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE, header::RANGE];
/// Largest body stored. Upstash refuses requests above the plan's max request
/// size (1 MB on the free plan, see upstash.com/pricing); a body travels
/// base64 inside the entry and the sealed entry is base64 again (×16/9),
/// so 512 KiB stays below 1 MB with room for the headers.
pub(crate) const MAX_ENTRY_BODY_BYTES: usize = 512 * 1024;

/// Whether the request may be answered from the cache.
pub(super) fn request_applies(method: &Method, forwarded: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD) && !BYPASSING.iter().any(|h| forwarded.contains_key(h))
}

/// Why an upstream answer is not stored, or `None` when it may be.
pub(super) fn refusal(status: StatusCode, headers: &HeaderMap, policy: &RouteCache) -> Option<&'static str> {
    if !CACHEABLE_STATUSES.contains(&status.as_u16()) {
        return Some("status");
    }
    // An event stream is read as it comes (see `Relay::stream_answer`), never buffered.
    if super::super::headers::is_event_stream(headers) {
        return Some("event-stream");
    }
    if headers.get_all(header::VARY).iter().any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|n| n.trim() == "*"))) {
        return Some("vary");
    }
    let directives = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|d| d.split('=').next().unwrap_or_default().trim().to_ascii_lowercase()));
    let forbidden = directives.into_iter().any(|d| d == "no-store" || d == "private");
    (forbidden && !policy.override_upstream).then_some("no-store")
}

/// The part of the key that names the answer: method, path as forwarded,
/// query with its parameters sorted (their order never changes an answer we
/// could tell apart), and every forwarded request header. The upstream only
/// sees forwarded headers, so any `Vary` it can honour names one of them;
/// keying on all of them respects every such `Vary`. The token is not part
/// of it: a rotated token keeps the cache.
pub(super) fn identity(method: &Method, path: &str, query: Option<&str>, forwarded: &HeaderMap) -> String {
    let mut params: Vec<(String, String)> =
        query.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    params.sort();
    let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let mut names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = format!("{method}\n{path}\n{query}");
    for name in names {
        let values: Vec<&[u8]> = forwarded.get_all(name).iter().map(HeaderValue::as_bytes).collect();
        out.push_str(&format!("\n{name}:{}", String::from_utf8_lossy(&values.join(&b","[..]))));
    }
    out
}

/// A stored answer: scrubbed headers and body, and when it was fetched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    /// Milliseconds since the Unix epoch when the upstream answered (shared
    /// across instances, so wall-clock time).
    pub(super) at: u64,
    /// The path as forwarded, for purges by prefix.
    pub(super) path: String,
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    #[serde(with = "base64_body")]
    pub(super) body: Bytes,
}

/// How an entry may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Freshness {
    Fresh,
    /// Served at once while one refresh runs.
    Revalidate,
    /// Served only when the upstream fails.
    IfError,
    Expired,
}

impl Entry {
    /// An entry of already scrubbed `headers` (values that are not visible
    /// ASCII are left out) and `body`.
    pub(super) fn new(path: &str, status: StatusCode, headers: &HeaderMap, body: Bytes) -> Self {
        let headers =
            headers.iter().filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
        Self { at: now_ms(), path: path.to_owned(), status: status.as_u16(), headers, body }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The stored form, `None` when it is not ours (older format, damaged).
    pub(super) fn decode(plain: &[u8]) -> Option<Self> {
        serde_json::from_slice(plain).ok()
    }

    pub(super) fn age(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.at))
    }

    pub(super) fn freshness(&self, now_ms: u64, policy: &RouteCache) -> Freshness {
        let age = self.age(now_ms);
        match age.checked_sub(policy.ttl) {
            None => Freshness::Fresh,
            Some(late) if late < policy.stale_while_revalidate => Freshness::Revalidate,
            Some(late) if late < policy.stale_if_error => Freshness::IfError,
            Some(_) => Freshness::Expired,
        }
    }

    /// How long it stays fresh after `now_ms`; negative when stale (RFC 9211 §2.4 `ttl`).
    pub(super) fn ttl_secs(&self, now_ms: u64, policy: &RouteCache) -> i64 {
        let fresh_until = self.at.saturating_add(u64::try_from(policy.ttl.as_millis()).unwrap_or(u64::MAX));
        (i128::from(fresh_until) - i128::from(now_ms)).div_euclid(1000).try_into().unwrap_or(0)
    }

    pub(super) fn headers(&self) -> HeaderMap {
        self.headers
            .iter()
            .filter_map(|(n, v)| Some((HeaderName::try_from(n).ok()?, HeaderValue::from_str(v).ok()?)))
            .collect()
    }

    pub(super) fn size(&self) -> usize {
        self.body.len() + self.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
    }
}

/// An upstream's purges: path prefix → when (ms since the epoch). An entry
/// stored at or before a purge of a prefix of its path is gone.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Purges(BTreeMap<String, u64>);

impl Purges {
    pub(super) fn parse(raw: Option<&str>) -> Self {
        raw.and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default()
    }

    pub(super) fn covers(&self, entry: &Entry) -> bool {
        self.0.iter().any(|(prefix, at)| *at >= entry.at && under(&entry.path, prefix))
    }

    /// Records a purge of `prefix` now, forgetting purges older than `keep`
    /// (no entry that old is left to hide).
    pub(super) fn add(&mut self, prefix: &str, keep: Duration) -> String {
        let now = now_ms();
        let horizon = now.saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        self.0.retain(|_, at| *at >= horizon);
        self.0.insert(prefix.trim_end_matches('/').to_owned(), now);
        serde_json::to_string(&self.0).unwrap_or_default()
    }
}

/// Whether `path` is `prefix` or below it, by whole segments ("" is everything).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

mod base64_body {
    use super::{B64, Bytes};
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(body: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(body))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map(Bytes::from).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(override_upstream: bool) -> RouteCache {
        RouteCache {
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(60),
            stale_if_error: Duration::from_secs(600),
            override_upstream,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn only_listed_statuses_and_storable_answers_are_kept() {
        let p = policy(false);
        for ok in [200, 203, 204, 300, 301, 404, 410] {
            assert_eq!(refusal(StatusCode::from_u16(ok).unwrap(), &HeaderMap::new(), &p), None, "{ok}");
        }
        for no in [201, 206, 302, 304, 401, 429, 500, 503] {
            assert_eq!(refusal(StatusCode::from_u16(no).unwrap(), &HeaderMap::new(), &p), Some("status"), "{no}");
        }
        let private = headers(&[("cache-control", "max-age=60, Private")]);
        assert_eq!(refusal(StatusCode::OK, &private, &p), Some("no-store"));
        assert_eq!(refusal(StatusCode::OK, &headers(&[("cache-control", "no-store")]), &p), Some("no-store"));
        assert_eq!(refusal(StatusCode::OK, &private, &policy(true)), None, "override keeps it");
        assert_eq!(refusal(StatusCode::OK, &headers(&[("vary", "Accept, *")]), &policy(true)), Some("vary"));
        let events = headers(&[("content-type", "text/event-stream; charset=utf-8")]);
        assert_eq!(refusal(StatusCode::OK, &events, &policy(true)), Some("event-stream"), "relayed as it comes");
    }

    #[test]
    fn conditional_range_and_unsafe_requests_bypass() {
        assert!(request_applies(&Method::GET, &headers(&[("accept", "image/*")])));
        assert!(request_applies(&Method::HEAD, &HeaderMap::new()));
        assert!(!request_applies(&Method::POST, &HeaderMap::new()));
        assert!(!request_applies(&Method::GET, &headers(&[("if-none-match", "\"x\"")])));
        assert!(!request_applies(&Method::GET, &headers(&[("range", "bytes=0-1")])));
    }

    #[test]
    fn identity_sorts_query_parameters_and_includes_forwarded_headers() {
        let none = HeaderMap::new();
        let a = identity(&Method::GET, "/s", Some("b=2&a=1"), &none);
        assert_eq!(a, identity(&Method::GET, "/s", Some("a=1&b=2"), &none));
        assert_ne!(a, identity(&Method::GET, "/s", Some("a=1&b=3"), &none));
        assert_ne!(a, identity(&Method::HEAD, "/s", Some("a=1&b=2"), &none));
        assert_ne!(a, identity(&Method::GET, "/s", Some("a=1&b=2"), &headers(&[("accept", "text/csv")])));
        assert_ne!(
            identity(&Method::GET, "/s", Some("a=1%26b"), &none),
            identity(&Method::GET, "/s", Some("a=1&b"), &none)
        );
    }

    #[test]
    fn freshness_follows_the_windows() {
        let p = policy(false);
        let e = Entry::new("/x", StatusCode::OK, &HeaderMap::new(), Bytes::new());
        let at = |secs: u64| e.at + secs * 1000;
        assert_eq!(e.freshness(at(59), &p), Freshness::Fresh);
        assert_eq!(e.ttl_secs(at(50), &p), 10);
        assert_eq!(e.freshness(at(61), &p), Freshness::Revalidate);
        assert_eq!(e.ttl_secs(at(61), &p), -1);
        assert_eq!(e.freshness(at(200), &p), Freshness::IfError);
        assert_eq!(e.freshness(at(700), &p), Freshness::Expired);
    }

    #[test]
    fn entries_round_trip_and_purges_cover_by_whole_segments() {
        let e = Entry::new(
            "/search/images",
            StatusCode::NOT_FOUND,
            &headers(&[("content-type", "a/b")]),
            Bytes::from_static(b"\x00\xff"),
        );
        let back = Entry::decode(&e.encode()).unwrap();
        assert_eq!((back.status, back.body.as_ref(), back.headers().len()), (404, &b"\x00\xff"[..], 1));
        let mut purges = Purges::default();
        assert!(!purges.covers(&e));
        let record = purges.add("/search/", Duration::from_secs(60));
        assert!(Purges::parse(Some(&record)).covers(&e));
        let mut other = Purges::default();
        other.add("/sea", Duration::from_secs(60));
        assert!(!other.covers(&e), "a prefix matches whole segments");
        let mut all = Purges::default();
        all.add("", Duration::from_secs(60));
        assert!(all.covers(&e));
        let mut later = e.clone();
        later.at = now_ms() + 1000;
        assert!(!all.covers(&later), "an answer stored after the purge stays");
    }
}
