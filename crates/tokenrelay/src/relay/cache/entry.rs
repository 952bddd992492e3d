//! What may be cached, under which key, in which format, and for how long.
//!
//! Rules (RFC 9111): only `GET` and `HEAD`; only the statuses RFC 9110 §15.1
//! calls heuristically cacheable (200, 203, 204, 300, 301, 404, 410); never
//! an answer marked `no-store` or `private` (RFC 9111 §5.2.2.5, §5.2.2.7)
//! unless the route says `override = true`; never `Vary: *` (RFC 9110
//! §12.5.5). Conditional and range requests bypass the cache: their answers
//! (304, 206) are about the visitor's copy, not the resource.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::relay::{Inject, RouteCache, UpstreamRelay};
use crate::config::{Config, Upstream};
use crate::relay::TrustedKeyMap;
use crate::relay::outgoing::Outgoing;

/// Statuses cacheable by default (RFC 9110 §15.1), the ones we store.
const CACHEABLE_STATUSES: [u16; 7] = [200, 203, 204, 300, 301, 404, 410];
/// Request headers that make a request about the visitor's copy.
const BYPASSING: [HeaderName; 3] = [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE, header::RANGE];

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
    if crate::relay::headers::is_event_stream(headers) {
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

/// What a stored answer depends on, all of it: the deployment's upstream
/// ([`deployment`]) and the request ([`request`]). The rule it holds: an entry
/// never depends on anything outside its key. The token is not part of it: a
/// rotated token keeps the cache.
fn identity(out: &Outgoing<'_>, path: &str) -> String {
    with_deployment(&deployment(out.upstream, out.relay), out, path)
}

fn with_deployment(deployment: &str, out: &Outgoing<'_>, path: &str) -> String {
    let mut key = String::with_capacity(deployment.len() + 1 + request_len(path, out.query, &out.headers));
    key.push_str(deployment);
    // JSON holds no raw newline, so the two parts cannot run into each other.
    key.push('\n');
    write_request(&mut key, &out.method, path, out.query, &out.headers);
    key
}

/// Each upstream's [`deployment`] part of the key, written once: it depends
/// on the config alone, and building it (a JSON tree) cost every cached
/// request more than the rest of its key.
#[derive(Default)]
pub(super) struct Deployments(TrustedKeyMap<String, String>);

impl Deployments {
    pub(super) fn new(config: &Config) -> Self {
        let written =
            config.upstreams.values().filter_map(|u| Some((u.name().to_owned(), deployment(u, u.relay.as_ref()?))));
        Self(written.collect())
    }

    /// [`identity`] of `out`.
    pub(super) fn identity(&self, out: &Outgoing<'_>, path: &str) -> String {
        match self.0.get(out.upstream.name()) {
            Some(deployment) => with_deployment(deployment, out, path),
            None => identity(out, path),
        }
    }
}

/// What makes one deployment's answers its own: the base URL, what the token
/// is minted for (`Source::identity`, as token keys use it), how it is
/// injected, and the extra headers' values. Two deployments on one store
/// (Vercel's Preview and Production sharing variables) with another
/// `base_url` or other credentials never serve each other's answers, and a
/// changed `base_url` starts a new cache. It may hold secrets: the store only
/// sees a keyed hash of it.
fn deployment(upstream: &Upstream, relay: &UpstreamRelay) -> String {
    let inject = match &relay.inject {
        Inject::Header { name, prefix, suffix } => serde_json::json!(["header", name.as_str(), prefix, suffix]),
        Inject::Query { name } => serde_json::json!(["query", name]),
    };
    let headers: Vec<[&str; 2]> = relay.headers.iter().map(|(n, p)| [n.as_str(), p.expose()]).collect();
    serde_json::json!([upstream.base_url().as_str(), upstream.source.identity(), inject, headers]).to_string()
}

/// The part of the key that names the answer: method, path as forwarded,
/// the query exactly as forwarded but with its `&`-separated parameters
/// sorted by raw name (stable, so repeated parameters keep their order, and
/// never decoded: `+` and `%20`, `%FF` and `%FE` stay apart), and every
/// forwarded request header, value by value and byte for byte. The upstream
/// only sees forwarded headers, so any `Vary` it can honour names one of
/// them; keying on all of them respects every such `Vary`.
///
/// Written at the end of `out`: a cached request's key is built in one
/// buffer (it is part of every memory-cache hit).
fn write_request(out: &mut String, method: &Method, path: &str, query: Option<&str>, forwarded: &HeaderMap) {
    let mut params: Vec<&str> = query.map(|q| q.split('&').collect()).unwrap_or_default();
    params.sort_by_key(|p| p.split_once('=').map_or(*p, |(name, _)| name));
    for part in [method.as_str(), "\n", path, "\n"] {
        out.push_str(part);
    }
    for (i, param) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(param);
    }
    let mut names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        for value in forwarded.get_all(name) {
            for part in ["\n", name, ":"] {
                out.push_str(part);
            }
            escape_into(out, value.as_bytes());
        }
    }
}

/// About how long [`write_request`] writes, for one allocation.
fn request_len(path: &str, query: Option<&str>, forwarded: &HeaderMap) -> usize {
    let headers: usize = forwarded.iter().map(|(n, v)| n.as_str().len() + v.len() + 2).sum();
    16 + path.len() + query.map_or(0, str::len) + headers
}

/// `bytes` as text at the end of `out`, losslessly: visible ASCII but `%` as
/// is, every other byte `%XX`.
fn escape_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if (b.is_ascii_graphic() || b == b' ') && b != b'%' {
            out.push(char::from(b));
        } else {
            for c in [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]] {
                out.push(char::from(c));
            }
        }
    }
}

/// A stored answer: scrubbed headers and body, and when it was asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CachedAnswer {
    /// Milliseconds since the Unix epoch when the request was sent upstream
    /// (shared across instances, so wall-clock time). Not when the answer
    /// ended: a purge made while the answer was on its way must cover it, and
    /// RFC 9111 §4.2.3 counts an answer's age from its request too.
    pub(super) at: u64,
    /// The path as forwarded, for purges by prefix.
    pub(super) path: String,
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    #[serde(with = "base64_body")]
    pub(super) body: Bytes,
    /// `headers` as a map, parsed at the entry's first answer and copied
    /// for the next: a memory entry answers many.
    #[serde(skip)]
    map: OnceLock<HeaderMap>,
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

impl CachedAnswer {
    /// An entry of already scrubbed `headers` (values that are not visible
    /// ASCII are left out) and `body`, answering a request sent at `sent_ms`.
    pub(super) fn new(path: &str, sent_ms: u64, status: StatusCode, headers: &HeaderMap, body: Bytes) -> Self {
        let headers =
            headers.iter().filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
        Self { at: sent_ms, path: path.to_owned(), status: status.as_u16(), headers, body, map: OnceLock::new() }
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
        let parse = || {
            let pairs = self.headers.iter();
            pairs.filter_map(|(n, v)| Some((HeaderName::try_from(n).ok()?, HeaderValue::from_str(v).ok()?))).collect()
        };
        self.map.get_or_init(parse).clone()
    }

    pub(super) fn size(&self) -> usize {
        self.body.len() + self.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
    }
}

/// An upstream's purges: path prefix → when (ms since the epoch). An entry
/// stored at or before a purge of a prefix of its path is gone.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Purges(BTreeMap<String, u64>);

impl Purges {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        raw.and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default()
    }

    /// Each purged prefix with when it was purged (ms since the epoch).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(prefix, at)| (prefix.as_str(), *at))
    }

    pub(super) fn covers(&self, entry: &CachedAnswer) -> bool {
        self.0.iter().any(|(prefix, at)| *at >= entry.at && under(&entry.path, prefix))
    }

    /// Records a purge of `prefix` now, forgetting purges older than `keep`
    /// (no entry that old is left to hide).
    pub(crate) fn add(&mut self, prefix: &str, keep: Duration) -> String {
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

    fn request(method: &Method, path: &str, query: Option<&str>, forwarded: &HeaderMap) -> String {
        let mut out = String::new();
        write_request(&mut out, method, path, query, forwarded);
        out
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
    fn request_keys_sort_parameters_by_name_and_include_forwarded_headers() {
        let none = HeaderMap::new();
        let key = |q: &str| request(&Method::GET, "/s", Some(q), &none);
        assert_eq!(key("b=2&a=1"), key("a=1&b=2"));
        assert_ne!(key("a=1&b=2"), key("a=1&b=3"));
        assert_ne!(key("a=1&b=2"), request(&Method::HEAD, "/s", Some("a=1&b=2"), &none));
        assert_ne!(key("a=1&b=2"), request(&Method::GET, "/s", Some("a=1&b=2"), &headers(&[("accept", "text/csv")])));
        assert_ne!(key("a=1%26b"), key("a=1&b"));
    }

    #[test]
    fn request_keys_keep_repeated_parameters_in_order_and_every_byte() {
        let key = |q: &str| request(&Method::GET, "/s", Some(q), &HeaderMap::new());
        assert_ne!(key("sort=a&sort=b"), key("sort=b&sort=a"), "repeated parameters keep their order");
        assert_eq!(key("sort=a&x=1&sort=b"), key("x=1&sort=a&sort=b"), "sorted by name only, stably");
        assert_ne!(key("q=a+b"), key("q=a%20b"));
        assert_ne!(key("q=%FF"), key("q=%FE"));
        assert_ne!(key("q=%41"), key("q=A"), "never decoded");
        assert_ne!(key("a=1;b=2"), key("b=2;a=1"), "`;` is not reordered");
    }

    #[test]
    fn request_keys_are_written_as_stored_keys_expect() {
        // Store keys hash this text: a change of its form would drop every cache.
        let mut map = HeaderMap::new();
        for (name, value) in [("x-b", &b"1"[..]), ("accept", b"a/\xff%"), ("accept", b"b")] {
            map.append(HeaderName::from_static(name), HeaderValue::from_bytes(value).unwrap());
        }
        assert_eq!(
            request(&Method::GET, "/s", Some("z=1&a=2&a=1"), &map),
            "GET\n/s\na=2&a=1&z=1\naccept:a/%FF%25\naccept:b\nx-b:1"
        );
        assert_eq!(request(&Method::HEAD, "/", None, &HeaderMap::new()), "HEAD\n/\n");
    }

    #[test]
    fn request_keys_hold_header_values_byte_for_byte() {
        let value = |bytes: &[u8]| {
            let mut map = HeaderMap::new();
            map.append(header::ACCEPT, HeaderValue::from_bytes(bytes).unwrap());
            request(&Method::GET, "/s", None, &map)
        };
        assert_ne!(value(b"a/\xff"), value(b"a/\xfe"));
        assert_ne!(value(b"a/%FF"), value(b"a/\xff"));
        let mut two = HeaderMap::new();
        two.append(header::ACCEPT, HeaderValue::from_static("a"));
        two.append(header::ACCEPT, HeaderValue::from_static("b"));
        assert_ne!(request(&Method::GET, "/s", None, &two), value(b"a,b"), "two values are not one");
    }

    #[test]
    fn the_deployments_written_once_key_as_the_identity_does() {
        let dir = tempfile::tempdir().unwrap();
        let broker = crate::relay::call::stand_in::broker(dir.path(), "routes = [{ path = \"/x\" }]");
        let out = crate::relay::call::stand_in::outgoing(&broker, &["x"], Method::GET);
        let written = Deployments::new(broker.config());
        assert_eq!(written.identity(&out, "/x"), identity(&out, "/x"), "a stored answer keeps its key");
        assert_eq!(Deployments::default().identity(&out, "/x"), identity(&out, "/x"));
    }

    #[test]
    fn deployments_differ_by_base_url_credentials_injection_and_headers() {
        let base = r#"
[upstreams.api]
base_url = "https://api.example.com/v3"
token = { type = "static", key = { env = "KEY" } }
[upstreams.api.relay]
headers = { Api-Key = "one" }
routes = [{ path = "/x" }]
"#;
        let with_key = |text: &str, key: &str| {
            let env = crate::config::Env::from_pairs([("KEY", key)]);
            let config = crate::config::Config::parse(text, "tokenrelay.toml", &env).unwrap();
            let u = &config.upstreams["api"];
            deployment(u, u.relay.as_ref().unwrap())
        };
        let of = |text: &str| with_key(text, "key-1");
        let production = of(base);
        assert_eq!(of(base), production, "stable");
        assert_ne!(with_key(base, "key-2"), production, "another static key");
        for (what, changed) in [
            ("base_url", base.replace("api.example.com/v3", "preview.example.com/v3")),
            ("headers", base.replace("\"one\"", "\"two\"")),
            ("inject", base.replace("routes", "inject = { query = \"access_token\" }\nroutes")),
        ] {
            assert_ne!(of(&changed), production, "{what}");
        }
    }

    #[test]
    fn freshness_follows_the_windows() {
        let p = policy(false);
        let e = CachedAnswer::new("/x", now_ms(), StatusCode::OK, &HeaderMap::new(), Bytes::new());
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
        let e = CachedAnswer::new(
            "/search/images",
            now_ms(),
            StatusCode::NOT_FOUND,
            &headers(&[("content-type", "a/b")]),
            Bytes::from_static(b"\x00\xff"),
        );
        let back = CachedAnswer::decode(&e.encode()).unwrap();
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

    #[test]
    fn a_purge_covers_an_answer_requested_before_it_that_ended_after_it() {
        let sent = now_ms();
        let mut purges = Purges::default();
        purges.add("/slow", Duration::from_secs(60));
        // The answer ends after the purge; its request was sent before it.
        let e = CachedAnswer::new("/slow", sent.saturating_sub(1), StatusCode::OK, &HeaderMap::new(), Bytes::new());
        assert!(purges.covers(&e));
    }
}
