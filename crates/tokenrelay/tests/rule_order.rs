//! The relay's rules run in the README's order (`relay/mod.rs`, `Relay::serve`
//! then `Relay::new`'s layers): a request that breaks two adjacent rules gets
//! the earlier rule's error. Each pair also shows, alone, that the later rule
//! is broken too, so the order is what decides.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use testkit::config::{Budget, Caller, RateLimit, SiteConfig, Token, UpstreamConfig, env, route};
use tokenrelay::relay::{ClientIp, Relay};
use tokenrelay::{Broker, Config, Env};

const HOUR: Duration = Duration::from_secs(3600);
/// Not a JWT: refused before any JWKS fetch.
const BAD_PROOF: (&str, &str) = ("authorization", "Bearer not-a-jwt");
/// Over the relay's `max_request_bytes` (16).
const BIG_BODY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A relay over a fresh local store, for upstream `api` (never reachable)
/// with `rate_limit` requests an hour per address and `budget` calls an hour.
fn relay(store: &tempfile::TempDir, rate_limit: u32, budget: u64) -> Relay {
    let site = SiteConfig::new()
        .relay_settings(|r| r.allowed_origins(["https://site.example"]).max_request_bytes(16u64))
        .upstream(UpstreamConfig::new("api", "http://127.0.0.1:9", Token::Static(env("API_KEY"))).relay(|r| {
            r.rate_limit(RateLimit::new(rate_limit, HOUR))
                .budget(Budget::new(budget, HOUR))
                .route(route("/me/**").methods(["GET", "POST"]).caller(Caller::jwt(
                    "https://id.example/jwks",
                    "i",
                    "a",
                )))
                .route(route("/open/**").methods(["GET", "POST"]))
        }));
    let env = Env::from_pairs([("API_KEY", "k"), ("TOKENRELAY_LOCAL_STORE", store.path().to_str().unwrap())]);
    Relay::new(Broker::new(Config::parse(&site.render(), "tokenrelay.toml", &env).unwrap(), &env).unwrap())
}

/// The error code `relay` answers the request with, or `"ok"`.
async fn code(relay: &Relay, method: Method, path: &str, headers: &[(&str, &str)], body: &'static [u8]) -> String {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Full::new(Bytes::from_static(body))).unwrap();
    request.extensions_mut().insert(ClientIp("203.0.113.7".parse().unwrap()));
    let response = relay.handle(request).await;
    if response.status().is_success() {
        return "ok".to_owned();
    }
    let body = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    json["error"]["code"].as_str().unwrap_or("no code").to_owned()
}

#[tokio::test]
async fn origin_before_path_before_route() {
    let store = tempfile::tempdir().unwrap();
    let relay = relay(&store, 100, 100);
    let hostile = "/api/relay/api/nope/%2e%2e/x";
    assert_eq!(code(&relay, Method::GET, hostile, &[], b"").await, "path_rejected");
    assert_eq!(code(&relay, Method::GET, "/api/relay/api/nope", &[], b"").await, "route_not_found");
    let foreign = [("origin", "https://evil.example")];
    assert_eq!(code(&relay, Method::GET, hostile, &foreign, b"").await, "origin_forbidden");
}

#[tokio::test]
async fn route_before_rate_limit_before_caller() {
    let store = tempfile::tempdir().unwrap();
    let relay = relay(&store, 1, 100);
    // The address's one request of the hour, answered by the unreachable upstream.
    assert_eq!(code(&relay, Method::GET, "/api/relay/api/open/x", &[], b"").await, "upstream_unreachable");
    assert_eq!(code(&relay, Method::GET, "/api/relay/api/open/x", &[], b"").await, "rate_limited");
    assert_eq!(code(&relay, Method::GET, "/api/relay/api/nope", &[], b"").await, "route_not_found");
    assert_eq!(code(&relay, Method::GET, "/api/relay/api/me/x", &[BAD_PROOF], b"").await, "rate_limited");
}

#[tokio::test]
async fn caller_before_body_before_the_upstream_call() {
    let store = tempfile::tempdir().unwrap();
    let relay = relay(&store, 100, 1);
    assert_eq!(code(&relay, Method::POST, "/api/relay/api/open/x", &[], BIG_BODY).await, "body_too_large");
    assert_eq!(code(&relay, Method::POST, "/api/relay/api/me/x", &[BAD_PROOF], BIG_BODY).await, "caller_unauthorized");
    // The budget's one call of the hour, then the budget is what refuses.
    assert_eq!(code(&relay, Method::GET, "/api/relay/api/open/x", &[], b"").await, "upstream_unreachable");
    assert_eq!(code(&relay, Method::POST, "/api/relay/api/open/x", &[], b"small").await, "budget_exhausted");
    assert_eq!(code(&relay, Method::POST, "/api/relay/api/open/x", &[], BIG_BODY).await, "body_too_large");
}
