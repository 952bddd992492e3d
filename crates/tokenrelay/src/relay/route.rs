//! Choosing the configured route for a path and method: 404 when no pattern
//! matches, 405 (with the allowed methods) when patterns match but none
//! allows the method.

use http::Method;

use super::error::{Kind, RelayError};
use crate::config::relay::{Route, UpstreamRelay};

/// The first route whose pattern matches `segments` and allows `method`.
pub(super) fn select<'a>(
    relay: &'a UpstreamRelay,
    upstream: &str,
    segments: &[&str],
    method: &Method,
) -> Result<&'a Route, RelayError> {
    let matching: Vec<&Route> = relay.routes.iter().filter(|r| r.pattern.matches(segments)).collect();
    if matching.is_empty() {
        return Err(Kind::RouteNotFound(upstream.to_owned()).into());
    }
    if let Some(route) = matching.iter().find(|r| r.methods.contains(method)) {
        return Ok(route);
    }
    let mut allowed: Vec<Method> = Vec::new();
    for m in matching.iter().flat_map(|r| &r.methods) {
        if !allowed.contains(m) {
            allowed.push(m.clone());
        }
    }
    Err(Kind::MethodNotAllowed { method: method.clone(), allowed }.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::relay::{Inject, RoutePattern};

    fn relay(routes: &[(&str, &[Method])]) -> UpstreamRelay {
        UpstreamRelay {
            routes: routes
                .iter()
                .map(|(p, m)| Route {
                    pattern: RoutePattern::parse(p).unwrap(),
                    methods: m.to_vec(),
                    cache_control: None,
                    path_params: false,
                    forward_range: false,
                    cache: None,
                    budget: None,
                    caller: None,
                })
                .collect(),
            inject: Inject::Query { name: "key".into() },
            headers: Vec::new(),
            rate_limit: None,
            budget: None,
            cooldown: Default::default(),
        }
    }

    #[test]
    fn first_matching_route_with_the_method_wins() {
        let r = relay(&[("/search/**", &[Method::GET]), ("/search/images", &[Method::POST])]);
        let route = select(&r, "getty", &["search", "images"], &Method::POST).unwrap();
        assert_eq!(route.pattern.as_str(), "/search/images");
    }

    #[test]
    fn unmatched_path_is_route_not_found() {
        let r = relay(&[("/search/**", &[Method::GET])]);
        assert_eq!(select(&r, "getty", &["admin"], &Method::GET).unwrap_err().code(), "route_not_found");
    }

    #[test]
    fn matched_path_with_other_method_lists_every_allowed_method_once() {
        let r = relay(&[("/a/*", &[Method::GET, Method::HEAD]), ("/a/**", &[Method::GET, Method::POST])]);
        let err = select(&r, "getty", &["a", "b"], &Method::DELETE).unwrap_err();
        assert_eq!(err.code(), "method_not_allowed");
        assert!(err.to_string().ends_with("allowed: GET, HEAD, POST"), "{err}");
    }
}
