//! The relay's rules: `[relay]` for the whole site and
//! `[upstreams.<name>.relay]` per upstream, validated once into typed values.
//!
//! ```toml
//! [relay]
//! allowed_origins = ["https://www.example.com"]
//! rate_limit = { requests = 60, window = "1m", ipv6_prefix = 64 }
//!
//! [upstreams.getty.relay]
//! headers = { Api-Key = { env = "GETTY_API_KEY" } }
//! routes = [{ path = "/search/images/**", methods = ["GET"], cache_control = "public, max-age=300" }]
//! ```
//!
//! This file holds the settings, routes and rate limits; `inject` where the
//! token and the extra headers go on the upstream request.

mod caller;
#[cfg(test)]
mod for_tests;
mod inject;

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::Builder;
use super::raw::{RawBudget, RawRateLimit, RawRelay, RawRoute, RawUpstreamRelay};
use super::route_cache;
pub(crate) use super::route_cache::RouteCache;
pub(crate) use super::route_pattern::RoutePattern;
use crate::param::Param;
pub(crate) use caller::{CallerPolicy, Proof};
pub(crate) use inject::Inject;

/// Longest time an upstream gets to answer, body included.
pub const DEFAULT_RELAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body relayed (bodies are buffered so that a request can be
/// replayed after a 401).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Largest response relayed: below Netlify's 6 MB limit for buffered
/// function responses, so one setting behaves the same on every platform.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 5 * 1024 * 1024;
/// Largest body the response cache stores. Upstash refuses requests above
/// the plan's max request size (10 MB on Free and Pay-as-you-go since
/// 2025-09, upstash.com/pricing); a body travels base64 inside a sealed,
/// base64 entry (about 16/9 of its size): 5 MiB is 9.3 MB stored.
pub const DEFAULT_MAX_CACHED_BODY_BYTES: u64 = 5 * 1024 * 1024;
/// Requests per client IP and upstream in [`DEFAULT_RATE_WINDOW`].
pub const DEFAULT_RATE_REQUESTS: u32 = 60;
/// The window of the default rate limit.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);
/// IPv6 clients are counted by network, not address: one subscriber usually
/// gets a whole /64 (RFC 6177 recommends /48 to /64 per site; SLAAC needs a /64,
/// RFC 4291 §2.5.1) and can pick a fresh address in it for every request.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Allowed `ipv6_prefix` values: from an ISP's allocation (/32) to one address.
const IPV6_PREFIXES: std::ops::RangeInclusive<u8> = 32..=128;

/// Methods a route may allow; `OPTIONS` is answered by the CORS preflight.
const ROUTE_METHODS: [Method; 6] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// Site-wide relay settings (`[relay]`).
#[derive(Debug, Clone)]
pub(crate) struct RelaySettings {
    /// Cross-origin callers allowed, as ASCII origins (`https://host[:port]`).
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) rate_limit: RateLimit,
    /// IPv6 clients sharing this many leading bits share their rate limits.
    pub(crate) ipv6_prefix: u8,
    pub(crate) max_request_bytes: u64,
    pub(crate) max_response_bytes: u64,
    /// Answers with larger bodies are relayed, not stored in the response cache.
    pub(crate) max_cached_body_bytes: u64,
    pub(crate) timeout: Duration,
}

/// At most `requests` per client (or caller) and upstream in each `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) requests: u32,
    pub(crate) window: Duration,
    pub(crate) per: Per,
}

/// Whom a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Per {
    /// The visitor's address (IPv4) or network (IPv6).
    #[default]
    Ip,
    /// The proven caller (a login's `sub`, a Turnstile session), on
    /// upstreams whose every route has `caller`: two people behind one
    /// address get a limit each.
    Caller,
}

/// At most `requests` upstream calls in each `per` window, counted across
/// every instance (`budget = { requests = 10000, per = "1d" }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) requests: u64,
    pub(crate) per: Duration,
}

/// What the relay exposes of one upstream (`[upstreams.<name>.relay]`).
#[derive(Debug)]
pub(crate) struct UpstreamRelay {
    pub(crate) routes: Vec<Route>,
    pub(crate) inject: Inject,
    /// Extra headers sent upstream, e.g. Getty's `Api-Key`; values from the
    /// environment are secrets.
    pub(crate) headers: Vec<(HeaderName, Param)>,
    /// Overrides `[relay] rate_limit` for this upstream.
    pub(crate) rate_limit: Option<RateLimit>,
    /// The upstream calls of its routes without a budget of their own.
    pub(crate) budget: Option<Budget>,
    /// What an answer asking to wait cools down.
    pub(crate) cooldown: CooldownScope,
}

/// What an upstream's answer asking to wait (`relay::upstream_limits`)
/// cools down: `cooldown = "route"` or `"upstream"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CooldownScope {
    /// The route pattern whose call got it, unless its rate-limit headers
    /// say the whole service's quota is spent: a visitor's path cannot
    /// silence the other routes.
    #[default]
    Route,
    /// Every route of the upstream, for APIs whose refusals always mean the
    /// whole service.
    Upstream,
}

/// One allowed path pattern with its methods.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) pattern: RoutePattern,
    pub(crate) methods: Vec<Method>,
    /// Set on successful responses so the platform CDN may cache them.
    pub(crate) cache_control: Option<HeaderValue>,
    /// Whether segments may carry `;` path parameters (RFC 3986 §3.3).
    /// Off by default: Tomcat, Jetty and Spring strip them before
    /// normalising, so `/images/..;/admin` reaches `/admin` there.
    pub(crate) path_params: bool,
    /// Whether the visitor's `Range` header is forwarded. Off by default: a
    /// credential echoed in the body could be fetched in slices that the
    /// scrubber never sees whole.
    pub(crate) forward_range: bool,
    /// The relay's own shared response cache, when the route opts in.
    pub(crate) cache: Option<RouteCache>,
    /// This route's upstream calls, counted apart from the upstream's budget.
    pub(crate) budget: Option<Budget>,
    /// The proof the caller must bring (a login's JWT, a Turnstile token).
    pub(crate) caller: Option<CallerPolicy>,
}

impl Builder<'_> {
    pub(super) fn relay_settings(&mut self, raw: RawRelay) -> RelaySettings {
        let mut origins = Vec::new();
        for (i, text) in raw.allowed_origins.iter().enumerate() {
            match origin(text) {
                Ok(o) => origins.push(o),
                Err(why) => self.problems.push(format!("relay.allowed_origins[{i}]: {why}")),
            }
        }
        let default = RateLimit { requests: DEFAULT_RATE_REQUESTS, window: DEFAULT_RATE_WINDOW, per: Per::Ip };
        if raw.rate_limit.as_ref().is_some_and(|r| r.per.is_some()) {
            self.problems.push(
                "relay.rate_limit.per: is per upstream: set it in [upstreams.<name>.relay] rate_limit".to_owned(),
            );
        }
        let ipv6_prefix = raw.rate_limit.as_ref().and_then(|r| r.ipv6_prefix).unwrap_or(DEFAULT_IPV6_PREFIX);
        if !IPV6_PREFIXES.contains(&ipv6_prefix) {
            self.problems.push(format!(
                "relay.rate_limit.ipv6_prefix: {ipv6_prefix} is not between {} and {}",
                IPV6_PREFIXES.start(),
                IPV6_PREFIXES.end()
            ));
        }
        let rate_limit = raw.rate_limit.map_or(default, |r| {
            rate_limit(r).unwrap_or_else(|why| {
                self.problems.push(format!("relay.rate_limit: {why}"));
                default
            })
        });
        let timeout = raw.timeout.unwrap_or(DEFAULT_RELAY_TIMEOUT);
        if timeout.is_zero() {
            self.problems.push("relay.timeout: must be greater than zero".to_owned());
        }
        RelaySettings {
            allowed_origins: origins,
            rate_limit,
            ipv6_prefix,
            max_request_bytes: raw.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            max_response_bytes: raw.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            max_cached_body_bytes: raw.max_cached_body_bytes.unwrap_or(DEFAULT_MAX_CACHED_BODY_BYTES),
            timeout,
        }
    }

    pub(super) fn upstream_relay(&mut self, upstream: &str, raw: RawUpstreamRelay) -> Option<UpstreamRelay> {
        if raw.routes.is_empty() {
            self.problem(
                upstream,
                "relay.routes",
                "add at least one route, e.g. { path = \"/search/**\", methods = [\"GET\"] }",
            );
        }
        let every_route_has_caller = raw.routes.iter().all(|r| r.caller.is_some());
        let routes: Vec<_> = raw.routes.into_iter().enumerate().map(|(i, r)| self.route(upstream, i, r)).collect();
        self.caller_bypasses(upstream, &routes);
        let inject = self.inject(upstream, raw.inject);
        let headers = self.extra_headers(upstream, raw.headers, inject.as_ref());
        if raw.rate_limit.as_ref().is_some_and(|r| r.ipv6_prefix.is_some()) {
            self.problem(upstream, "relay.rate_limit.ipv6_prefix", "is site-wide: set it in [relay] rate_limit");
        }
        if raw.rate_limit.as_ref().is_some_and(|r| r.per.as_deref() == Some("caller")) && !every_route_has_caller {
            self.problem(
                upstream,
                "relay.rate_limit.per",
                "\"caller\" needs caller = { … } on every route of the upstream",
            );
        }
        let rate_limit = match raw.rate_limit.map(rate_limit) {
            None => Some(None),
            Some(Ok(limit)) => Some(Some(limit)),
            Some(Err(why)) => {
                self.problem(upstream, "relay.rate_limit", why);
                None
            }
        };
        let budget = self.budget(upstream, "relay.budget", raw.budget);
        let cooldown = match raw.cooldown.as_deref() {
            None | Some("route") => Some(CooldownScope::Route),
            Some("upstream") => Some(CooldownScope::Upstream),
            Some(_) => {
                self.problem(upstream, "relay.cooldown", "must be \"route\" (the default) or \"upstream\"");
                None
            }
        };
        Some(UpstreamRelay {
            routes: routes.into_iter().collect::<Option<_>>()?,
            inject: inject?,
            headers: headers?,
            rate_limit: rate_limit?,
            budget: budget?,
            cooldown: cooldown?,
        })
    }

    fn route(&mut self, upstream: &str, i: usize, raw: RawRoute) -> Option<Route> {
        let field = format!("relay.routes[{i}]");
        let pattern =
            RoutePattern::parse(&raw.path).map_err(|why| self.problem(upstream, &format!("{field}.path"), why)).ok();
        let methods: Option<Vec<Method>> = match raw.methods {
            None => Some(vec![Method::GET]),
            Some(list) if list.is_empty() => {
                self.problem(upstream, &format!("{field}.methods"), "list at least one method, e.g. [\"GET\"]");
                None
            }
            Some(list) => {
                // Every unknown method is reported, not just the first.
                let found: Vec<_> = list
                    .iter()
                    .map(|m| (m, ROUTE_METHODS.iter().find(|k| k.as_str().eq_ignore_ascii_case(m)).cloned()))
                    .collect();
                for (m, _) in found.iter().filter(|(_, known)| known.is_none()) {
                    self.problem(
                        upstream,
                        &format!("{field}.methods"),
                        format!("\"{m}\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE"),
                    );
                }
                found.into_iter().map(|(_, known)| known).collect()
            }
        };
        if raw.cache_control.is_some() && raw.caller.is_some() {
            // A CDN would serve the answer to callers without proof.
            self.problem(
                upstream,
                &format!("{field}.cache_control"),
                "a route with caller may not set it: a CDN would serve its answers to callers without proof",
            );
        }
        let cache_control = match raw.cache_control.map(|v| HeaderValue::from_str(&v)) {
            Some(Ok(v)) => Some(Some(v)),
            Some(Err(_)) => {
                self.problem(
                    upstream,
                    &format!("{field}.cache_control"),
                    "is not a valid header value (control characters or non-ASCII)",
                );
                None
            }
            None => Some(None),
        };
        let cache = match raw.cache.map(route_cache::parse) {
            Some(Ok(c)) => Some(Some(c)),
            Some(Err(problems)) => {
                for (name, why) in problems {
                    self.problem(upstream, &format!("{field}.cache.{name}"), why);
                }
                None
            }
            None => Some(None),
        };
        let caller = match raw.caller.map(|c| self.caller(upstream, &field, c)) {
            Some(Some(policy)) => Some(Some(policy)),
            Some(None) => None,
            None => Some(None),
        };
        let budget = self.budget(upstream, &format!("{field}.budget"), raw.budget);
        Some(Route {
            pattern: pattern?,
            methods: methods?,
            cache_control: cache_control?,
            path_params: raw.path_params,
            forward_range: raw.forward_range,
            cache: cache?,
            budget: budget?,
            caller: caller?,
        })
    }

    /// `Some(None)` without a budget, `None` after reporting a bad one.
    fn budget(&mut self, upstream: &str, field: &str, raw: Option<RawBudget>) -> Option<Option<Budget>> {
        let Some(raw) = raw else { return Some(None) };
        let mut ok = true;
        if raw.requests == 0 {
            self.problem(upstream, &format!("{field}.requests"), "must be at least 1");
            ok = false;
        }
        if raw.per < Duration::from_secs(1) {
            self.problem(upstream, &format!("{field}.per"), "must be at least 1s, e.g. \"1d\"");
            ok = false;
        }
        ok.then_some(Some(Budget { requests: raw.requests, per: raw.per }))
    }
}

/// `https://host[:port]`, exactly as browsers send it in `Origin` (RFC 6454 §6.1).
fn origin(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("\"{text}\" is not a URL: {e}"))?;
    let serialized = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || serialized != text.trim_end_matches('/') {
        return Err(format!(
            "\"{text}\" is not an origin: write scheme://host[:port], without a path, e.g. \"https://www.example.com\""
        ));
    }
    Ok(serialized)
}

fn rate_limit(raw: RawRateLimit) -> Result<RateLimit, &'static str> {
    let per = match raw.per.as_deref() {
        None | Some("ip") => Per::Ip,
        Some("caller") => Per::Caller,
        Some(_) => return Err("per must be \"ip\" or \"caller\""),
    };
    if raw.requests == 0 {
        return Err("requests must be at least 1");
    }
    if raw.window < Duration::from_secs(1) {
        return Err("window must be at least 1s");
    }
    Ok(RateLimit { requests: raw.requests, window: raw.window, per })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{env, problems};
    use crate::config::{Config, Env};

    const GETTY: &str = r#"
[relay]
allowed_origins = ["https://www.example.com"]

[upstreams.getty]
base_url = "https://api.gettyimages.com/v3"
token = { type = "oauth2_client_credentials", url = "https://auth.example.com/token", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.getty.relay]
headers = { Api-Key = { env = "GETTY_API_KEY" } }
routes = [
  { path = "/search/images/**", cache_control = "public, max-age=300" },
  { path = "/images/*", methods = ["get", "HEAD"], path_params = true, forward_range = true },
]
"#;

    #[test]
    fn getty_relay_parses_with_defaults() {
        let config = Config::parse(GETTY, "tokenrelay.toml", &env()).unwrap();
        assert_eq!(config.relay.allowed_origins, ["https://www.example.com"]);
        let default = RateLimit { requests: DEFAULT_RATE_REQUESTS, window: DEFAULT_RATE_WINDOW, per: Per::Ip };
        assert_eq!(config.relay.rate_limit, default);
        assert_eq!(config.relay.ipv6_prefix, DEFAULT_IPV6_PREFIX);
        assert_eq!(config.relay.timeout, DEFAULT_RELAY_TIMEOUT);
        let relay = config.upstreams["getty"].relay.as_ref().unwrap();
        assert_eq!(relay.routes[0].methods, [Method::GET]);
        assert_eq!(relay.routes[0].cache_control.as_ref().unwrap(), "public, max-age=300");
        assert_eq!(relay.routes[1].methods, [Method::GET, Method::HEAD]);
        assert!(!relay.routes[0].path_params && !relay.routes[0].forward_range, "both are opt-in");
        assert!(relay.routes[1].path_params && relay.routes[1].forward_range);
        let bearer = Inject::Header {
            name: HeaderName::from_static("authorization"),
            prefix: "Bearer ".into(),
            suffix: String::new(),
        };
        assert_eq!(relay.inject, bearer);
        assert_eq!(relay.headers[0].0, "api-key");
        assert!(!format!("{config:?}").contains("key-123"), "Debug must not show header secrets");
    }

    #[test]
    fn upstream_without_relay_section_is_not_relayed() {
        let text = GETTY.split("[upstreams.getty.relay]").next().unwrap();
        let config = Config::parse(text, "tokenrelay.toml", &env()).unwrap();
        assert!(config.upstreams["getty"].relay.is_none());
    }

    #[test]
    fn every_relay_problem_names_its_field() {
        let text = r#"
[relay]
allowed_origins = ["https://www.example.com/app"]
rate_limit = { requests = 0, window = "1m", ipv6_prefix = 129 }
timeout = "0s"

[upstreams.getty]
base_url = "https://api.example.com/v3?x=1"
token = { type = "static", key = { env = "GETTY_API_KEY" } }

[upstreams.getty.relay]
inject = { query = "key", format = "{token}" }
headers = { "Bad Name" = "x", Host = "evil.example" }
rate_limit = { requests = 5, window = "1m", ipv6_prefix = 48 }
routes = [{ path = "search/**", methods = ["GET", "TRACE"] }]
"#;
        let p = problems(text, &env());
        let expect = [
            "relay.allowed_origins[0]: \"https://www.example.com/app\" is not an origin",
            "relay.rate_limit.ipv6_prefix: 129 is not between 32 and 128",
            "relay.rate_limit: requests must be at least 1",
            "relay.timeout: must be greater than zero",
            "upstream \"getty\": base_url: must not have a query or fragment",
            "upstream \"getty\": relay.routes[0].path: must start with '/'",
            "upstream \"getty\": relay.routes[0].methods: \"TRACE\" is not one of",
            "upstream \"getty\": relay.inject: set either query, or header and format, not both",
            "upstream \"getty\": relay.headers.Bad Name: is not a valid header name",
            "upstream \"getty\": relay.headers.Host: is set by the relay",
            "upstream \"getty\": relay.rate_limit.ipv6_prefix: is site-wide",
        ];
        for e in expect {
            assert!(p.iter().any(|m| m.starts_with(e)), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn budgets_parse_per_upstream_and_route_and_bad_ones_name_their_field() {
        let text = r#"
[upstreams.api]
base_url = "https://api.example.com"
token = { type = "static", key = { env = "GETTY_API_KEY" } }

[upstreams.api.relay]
budget = { requests = 10000, per = "1d" }
routes = [{ path = "/search/**", budget = { requests = 50, per = "1h" } }, { path = "/**" }]
"#;
        let config = Config::parse(text, "t.toml", &env()).unwrap();
        let relay = config.upstreams["api"].relay.as_ref().unwrap();
        assert_eq!(relay.budget, Some(Budget { requests: 10000, per: Duration::from_secs(86_400) }));
        assert_eq!(relay.routes[0].budget, Some(Budget { requests: 50, per: Duration::from_secs(3600) }));
        assert_eq!(relay.routes[1].budget, None);
        let bad = text.replace("10000, per = \"1d\"", "0, per = \"1d\"").replace("\"1h\"", "\"10ms\"");
        let p = problems(&bad, &env());
        assert_eq!(
            p,
            [
                "upstream \"api\": relay.routes[0].budget.per: must be at least 1s, e.g. \"1d\"",
                "upstream \"api\": relay.budget.requests: must be at least 1",
            ],
            "{p:#?}"
        );
    }

    #[test]
    fn token_format_needs_exactly_one_placeholder() {
        let text = GETTY.replace("headers = {", "inject = { header = \"X-Token\", format = \"Token\" }\nheaders = {");
        let p = problems(&text, &env());
        assert!(p[0].contains("relay.inject.format: must contain {token} exactly once"), "{p:?}");
    }

    #[test]
    fn header_value_from_env_is_checked_without_being_echoed() {
        let env = Env::from_pairs([("GETTY_API_KEY", "key-123\r\nX-Evil: 1"), ("GETTY_API_SECRET", "secret-456")]);
        let p = problems(GETTY, &env);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("relay.headers.Api-Key: value is not a valid header value"), "{p:?}");
        assert!(!p[0].contains("key-123"), "{p:?}");
    }

    #[test]
    fn unknown_relay_fields_are_named() {
        let p = problems(&GETTY.replace("allowed_origins", "allowed_origin"), &env());
        assert!(p[0].contains("allowed_origin"), "{p:?}");
        let p = problems(&GETTY.replace("cache_control", "cache"), &env());
        assert!(p[0].contains("cache"), "{p:?}");
    }

    #[test]
    fn origins_must_be_bare_origins() {
        assert_eq!(origin("https://www.example.com").unwrap(), "https://www.example.com");
        assert_eq!(origin("http://localhost:8888/").unwrap(), "http://localhost:8888");
        assert!(origin("https://example.com/app").unwrap_err().contains("not an origin"));
        assert!(origin("example.com").unwrap_err().contains("not a URL"));
    }
}
