//! Which headers cross the relay.
//!
//! Requests: an allow-list only. The browser's `Authorization`, `Cookie`,
//! `Forwarded`/`X-Forwarded-*`, `Origin` and everything else stay behind, so
//! the upstream sees the relay's credentials and nothing of the visitor's.
//!
//! Responses: everything except hop-by-hop headers (RFC 9110 §7.6.1), cookies,
//! the upstream's own CORS headers (the relay answers CORS itself), framing
//! headers the relay recomputes, and any header that names or contains an
//! injected credential.

use http::header::{self, HeaderMap, HeaderName};

use super::scrub::Scrubber;

/// Request headers forwarded upstream (content negotiation and conditional requests).
pub(super) const FORWARDED: [HeaderName; 6] = [
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::CONTENT_TYPE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::RANGE,
];

/// Response headers never passed back.
const DROPPED: [HeaderName; 13] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::SET_COOKIE,
    // The body may be redacted or cut short, so its length is the server's to frame.
    header::CONTENT_LENGTH,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
];

/// The allow-listed request headers of `incoming`.
pub(super) fn forward_request(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in &FORWARDED {
        for value in incoming.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The upstream's response headers, filtered.
pub(super) fn filter_response(upstream: &HeaderMap, injected: &[HeaderName], secrets: &Scrubber) -> HeaderMap {
    // Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
    let listed: Vec<String> = upstream
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in upstream {
        let drop = DROPPED.contains(name)
            || matches!(
                name.as_str(),
                "keep-alive"
                    | "proxy-connection"
                    | "set-cookie2"
                    | "access-control-expose-headers"
                    | "access-control-max-age"
            )
            || listed.iter().any(|l| l == name.as_str())
            || injected.contains(name)
            || secrets.contains(value.as_bytes());
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
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
        ]);
        let out = forward_request(&incoming);
        let names: Vec<_> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "if-none-match"]);
    }

    #[test]
    fn response_drops_hop_by_hop_cookies_cors_and_credentials() {
        let upstream = map(&[
            ("content-type", "application/json"),
            ("etag", "\"v1\""),
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("set-cookie", "s=1"),
            ("access-control-allow-origin", "*"),
            ("api-key", "k"),
            ("x-debug", "received Bearer tok_secret_value"),
        ]);
        let secrets = Scrubber::new(vec![b"tok_secret_value".to_vec()]);
        let out = filter_response(&upstream, &[HeaderName::from_static("api-key")], &secrets);
        let names: Vec<_> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "etag"]);
    }
}
