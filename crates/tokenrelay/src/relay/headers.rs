//! Which headers cross the relay, in both directions by allow-list.
//!
//! Requests: the browser's `Authorization`, `Cookie`, `Forwarded`/`X-Forwarded-*`,
//! `Origin` and everything else stay behind, so the upstream sees the relay's
//! credentials and nothing of the visitor's. `Range` only on routes that set
//! `forward_range`. `Accept-Encoding: identity` is always sent: without it
//! any content coding is acceptable (RFC 9110 §12.5.3), and a compressed
//! body could not be scrubbed.
//!
//! Responses: the answer is served from the site's own origin, so a header
//! the upstream sends acts on the site (`Clear-Site-Data` wipes its storage,
//! `Strict-Transport-Security`, `Alt-Svc`, `NEL`/`Report-To`, `Link`
//! preloads…). Only what an API client needs passes; a header that contains
//! an injected credential (in any encoding the scrubber knows) is dropped
//! even then.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::scrub::Scrubber;

/// Request headers forwarded upstream (content negotiation and conditional requests).
const FORWARDED: [HeaderName; 5] =
    [header::ACCEPT, header::ACCEPT_LANGUAGE, header::CONTENT_TYPE, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE];

/// Response headers passed back: representation metadata (RFC 9110 §8),
/// validators (§8.8), ranges (§14), `Vary`, `Retry-After` (§10.2.3) and
/// `Content-Disposition` (RFC 6266). `Content-Length` is left to the server:
/// the body may be redacted or cut short. `Cache-Control` is the relay's own.
const RETURNED: [HeaderName; 11] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_DISPOSITION,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::ETAG,
    header::LAST_MODIFIED,
    header::VARY,
    header::RETRY_AFTER,
    header::WARNING,
];

/// Prefixes of rate-limit headers passed back: `RateLimit` and
/// `RateLimit-Policy` (IETF httpapi draft), `RateLimit-Limit/-Remaining/-Reset`
/// (its earlier drafts) and the de facto `X-RateLimit-*` and `X-Rate-Limit-*`.
const RATE_LIMIT_PREFIXES: [&str; 3] = ["ratelimit", "x-ratelimit-", "x-rate-limit-"];

/// The most headers the relay sets on a relayed answer: `Cache-Control`,
/// `Content-Security-Policy`, `X-Content-Type-Options`, `Vary` and two
/// `Access-Control-*`, its request id, `Server-Timing`, `Cache-Status` and
/// `Age`. Room for them up front spares the answer's map two regrowths.
pub(super) const SET_BY_RELAY: usize = 10;

/// The request headers a route forwards.
pub(super) fn forwarded(forward_range: bool) -> impl Iterator<Item = HeaderName> {
    FORWARDED.into_iter().chain(forward_range.then_some(header::RANGE))
}

/// The allow-listed request headers of `incoming`, asking for an uncompressed answer.
pub(super) fn forward_request(incoming: &HeaderMap, forward_range: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    for name in forwarded(forward_range) {
        for value in incoming.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The allow-listed response headers of `upstream` that hold no credential.
pub(super) fn filter_response(upstream: &HeaderMap, secrets: &Scrubber) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len() + SET_BY_RELAY);
    for (name, value) in upstream {
        let allowed = RETURNED.contains(name) || RATE_LIMIT_PREFIXES.iter().any(|p| name.as_str().starts_with(p));
        if allowed && !secrets.contains(value.as_bytes()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Whether the answer is an event stream (`text/event-stream`, HTML Living
/// Standard §9.2), which is relayed as it comes rather than read ahead or cached.
pub(super) fn is_event_stream(headers: &HeaderMap) -> bool {
    const EVENT_STREAM: &[u8] = b"text/event-stream";
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let t = v.as_bytes().trim_ascii_start();
        t.get(..EVENT_STREAM.len()).is_some_and(|p| p.eq_ignore_ascii_case(EVENT_STREAM))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn only_allow_listed_request_headers_go_upstream() {
        let incoming = map(&[
            ("accept", "application/json"),
            ("authorization", "Bearer visitor"),
            ("cookie", "session=1"),
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("if-none-match", "\"abc\""),
            ("api-key", "visitor-key"),
            ("origin", "https://site.example"),
            ("accept-encoding", "gzip, br"),
        ]);
        let out = forward_request(&incoming, false);
        let names: Vec<_> = out.iter().map(|(n, v)| format!("{n}: {}", v.to_str().unwrap())).collect();
        assert_eq!(names, ["accept-encoding: identity", "accept: application/json", "if-none-match: \"abc\""]);
    }

    #[test]
    fn range_goes_upstream_only_where_the_route_opts_in() {
        let incoming = map(&[("range", "bytes=0-9")]);
        assert!(!forward_request(&incoming, false).contains_key("range"));
        assert_eq!(forward_request(&incoming, true)["range"], "bytes=0-9");
    }

    #[test]
    fn response_keeps_only_what_an_api_client_needs() {
        let upstream = map(&[
            ("content-type", "application/json"),
            ("etag", "\"v1\""),
            ("x-ratelimit-remaining", "41"),
            ("ratelimit-policy", "\"default\";q=100;w=60"),
            ("retry-after", "3"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("set-cookie", "s=1"),
            ("access-control-allow-origin", "*"),
            ("clear-site-data", "\"*\""),
            ("strict-transport-security", "max-age=63072000; includeSubDomains; preload"),
            ("alt-svc", "h3=\":443\""),
            ("nel", "{\"report_to\":\"default\"}"),
            ("report-to", "{\"group\":\"default\"}"),
            ("link", "</evil.js>; rel=preload; as=script"),
            ("location", "https://elsewhere.example/"),
            ("www-authenticate", "Basic realm=\"api\""),
            ("content-length", "12"),
            ("api-key", "k"),
            ("x-debug", "received Bearer tok_secret_value"),
            ("etag", "\"tok_secret_value\""),
        ]);
        let secrets = Scrubber::new(vec![b"tok_secret_value".to_vec()]);
        let out = filter_response(&upstream, &secrets);
        let names: Vec<_> = out.iter().map(|(n, v)| format!("{n}: {}", v.to_str().unwrap())).collect();
        assert_eq!(
            names,
            [
                "content-type: application/json",
                "etag: \"v1\"",
                "x-ratelimit-remaining: 41",
                "ratelimit-policy: \"default\";q=100;w=60",
                "retry-after: 3",
            ]
        );
    }

    #[test]
    fn an_event_stream_is_told_by_its_media_type_in_any_case() {
        for streams in ["text/event-stream", "  Text/Event-Stream; charset=utf-8"] {
            assert!(is_event_stream(&map(&[("content-type", streams)])), "{streams}");
        }
        for other in ["text/event", "application/json", "x text/event-stream"] {
            assert!(!is_event_stream(&map(&[("content-type", other)])), "{other}");
        }
        assert!(!is_event_stream(&HeaderMap::new()), "no content type");
    }
}
