//! Who may call the relay from a browser (the Fetch standard's CORS protocol).
//!
//! A request without `Origin` (a same-origin `GET`, or not a browser) and a
//! same-origin request are served; a cross-origin request only from an origin
//! in `[relay] allowed_origins`, anything else gets 403 before any work is
//! done. Origin checks stop other sites' pages from spending your quota
//! through visitors' browsers; rate limits handle everything else.
//!
//! `<img>`, `<script>` and links on another site send no `Origin`, so Fetch
//! Metadata (W3C Fetch Metadata Request Headers §2.1) closes that gap: a
//! request marked `Sec-Fetch-Site: cross-site` or `same-site` is served only
//! with an `Origin` in `allowed_origins`. Requests without Fetch Metadata
//! (older browsers, servers) are judged by `Origin` alone.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use super::Body;
use super::error::{Kind, RelayError};
use super::headers;
use crate::config::relay::{RelaySettings, Route};

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);
/// Response headers a cross-origin page may read beyond the CORS-safelisted ones.
const EXPOSED: &str = "age, cache-status, retry-after, server-timing, x-request-id";
/// Fetch Metadata: how the request's initiator relates to the relay's origin.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Who is calling, as far as the browser tells.
#[derive(Debug, Clone)]
pub(super) enum Caller {
    /// No `Origin` header, or the relay's own origin.
    SameOrigin,
    /// An allowed other origin, echoed in `Access-Control-Allow-Origin`.
    CrossOrigin(HeaderValue),
}

/// Classifies the request, refusing origins that are not allowed.
pub(super) fn caller(settings: &RelaySettings, headers: &HeaderMap) -> Result<Caller, RelayError> {
    let origin = headers.get(header::ORIGIN);
    let text = origin.and_then(|o| o.to_str().ok()).unwrap_or_default();
    if let Some(origin) = origin
        && settings.allowed_origins.iter().any(|o| o == text)
    {
        return Ok(Caller::CrossOrigin(origin.clone()));
    }
    let site = headers.get(SEC_FETCH_SITE).map(HeaderValue::as_bytes);
    if matches!(site, Some(b"cross-site" | b"same-site")) {
        return Err(Kind::CrossSiteForbidden.into());
    }
    if origin.is_none() {
        return Ok(Caller::SameOrigin);
    }
    // Same origin when the origin's authority is the Host the request was sent to.
    let authority = text.split_once("://").map(|(_, a)| a);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (authority, host) {
        (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => Ok(Caller::SameOrigin),
        _ => Err(Kind::OriginForbidden.into()),
    }
}

/// Whether this is a CORS preflight rather than an `OPTIONS` request of its own.
pub(super) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The requested method of a preflight; an unparsable one is refused like any unknown method.
pub(super) fn requested_method(headers: &HeaderMap) -> Method {
    headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(Method::OPTIONS)
}

/// 204 allowing the route's methods and those requested headers it forwards.
pub(super) fn preflight(request: &HeaderMap, route: &Route) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let requested: Vec<String> = request
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| headers::forwarded(route.forward_range).any(|f| f.as_str() == h))
        .collect();
    let methods = route.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let headers = response.headers_mut();
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_METHODS, methods),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, requested.join(", ")),
        (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE.as_secs().to_string()),
        (header::VARY, "access-control-request-method, access-control-request-headers".to_owned()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(name, v);
        }
    }
    response
}

/// Adds the CORS headers every answer to `caller` carries, errors included
/// (so pages can read error codes), and `Vary: Origin` so a CDN never serves
/// one origin's answer to another.
pub(super) fn decorate(headers: &mut HeaderMap, caller: Option<&Caller>) {
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(Caller::CrossOrigin(origin)) = caller {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::relay::RateLimit;

    fn settings() -> RelaySettings {
        RelaySettings {
            allowed_origins: vec!["https://site.example".into()],
            rate_limit: RateLimit { requests: 1, window: Duration::from_secs(1), per: Default::default() },
            ipv6_prefix: 64,
            max_request_bytes: 0,
            max_response_bytes: 0,
            max_cached_body_bytes: 0,
            timeout: Duration::from_secs(1),
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn allowed_origin_is_cross_origin_and_echoed() {
        let c = caller(&settings(), &headers(&[(header::ORIGIN, "https://site.example")])).unwrap();
        let mut h = HeaderMap::new();
        decorate(&mut h, Some(&c));
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://site.example");
        assert_eq!(h[header::VARY], "origin");
    }

    #[test]
    fn same_origin_and_no_origin_are_served_without_cors_headers() {
        let c = caller(
            &settings(),
            &headers(&[(header::ORIGIN, "http://localhost:8888"), (header::HOST, "localhost:8888")]),
        );
        assert!(matches!(c, Ok(Caller::SameOrigin)));
        assert!(matches!(caller(&settings(), &HeaderMap::new()), Ok(Caller::SameOrigin)));
    }

    #[test]
    fn other_and_null_origins_are_forbidden() {
        for origin in ["https://evil.example", "null", "https://site.example.evil.example", "http://site.example"] {
            let e = caller(&settings(), &headers(&[(header::ORIGIN, origin), (header::HOST, "relay.example")]))
                .unwrap_err();
            assert_eq!(e.code(), "origin_forbidden", "{origin}");
        }
    }

    #[test]
    fn cross_site_requests_without_an_allowed_origin_are_forbidden() {
        for site in ["cross-site", "same-site"] {
            let e = caller(&settings(), &headers(&[(SEC_FETCH_SITE, site)]));
            assert_eq!(e.unwrap_err().code(), "origin_forbidden", "{site} without Origin");
            let with_host = headers(&[
                (SEC_FETCH_SITE, site),
                (header::ORIGIN, "http://relay.example"),
                (header::HOST, "relay.example"),
            ]);
            assert!(caller(&settings(), &with_host).is_err(), "{site} claiming the relay's own origin");
        }
        let allowed = headers(&[(SEC_FETCH_SITE, "cross-site"), (header::ORIGIN, "https://site.example")]);
        assert!(matches!(caller(&settings(), &allowed), Ok(Caller::CrossOrigin(_))));
        for site in ["same-origin", "none"] {
            let own = headers(&[(SEC_FETCH_SITE, site)]);
            assert!(matches!(caller(&settings(), &own), Ok(Caller::SameOrigin)), "{site}");
        }
    }

    #[test]
    fn preflight_allows_route_methods_and_only_forwarded_headers() {
        let request =
            headers(&[(header::ACCESS_CONTROL_REQUEST_HEADERS, "Content-Type, Authorization, X-Custom, Range")]);
        let route = Route::test("/**").with_methods(&[Method::GET, Method::POST]);
        let r = preflight(&request, &route);
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
    }
}
