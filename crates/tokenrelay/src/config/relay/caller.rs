//! A route's caller proof (`caller = { jwt = { … } }` or
//! `caller = { turnstile = { … } }` on a route), see `relay::caller`.
//!
//! ```toml
//! routes = [
//!   { path = "/me/**", caller = { jwt = { jwks_url = "https://example.eu.auth0.com/.well-known/jwks.json", issuer = "https://example.eu.auth0.com/", audience = "https://api.example.com" } } },
//!   { path = "/search/**", caller = { turnstile = { secret = { env = "TURNSTILE_SECRET" }, action = "search" }, session = "30m" } },
//! ]
//! ```

use std::time::Duration;

use http::Method;
use secrecy::SecretString;
use url::Url;

use super::super::Builder;
use super::super::raw::{RawCaller, RawJwt, RawTurnstile};
use super::Route;
use crate::param::Param;

/// How long a relay session lasts after a proof, unless `session` says otherwise.
pub const DEFAULT_CALLER_SESSION: Duration = Duration::from_secs(30 * 60);
/// Longest `session` accepted: a proof should be renewed at least daily.
const MAX_SESSION: Duration = Duration::from_secs(24 * 3600);
/// Cloudflare's Turnstile verification endpoint
/// (developers.cloudflare.com/turnstile/get-started/server-side-validation).
pub const TURNSTILE_SITEVERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
/// Cloudflare's limit on a widget's `action`: up to 32 of `[A-Za-z0-9_-]`
/// (developers.cloudflare.com/turnstile/get-started/client-side-rendering).
const MAX_ACTION_LEN: usize = 32;

/// What a route asks of its caller, and how long the relay session that a
/// proof earns lasts.
#[derive(Debug)]
pub(crate) struct CallerPolicy {
    pub(crate) proof: Proof,
    pub(crate) session: Duration,
}

/// The proof a caller brings when it has no valid relay session.
#[derive(Debug)]
pub(crate) enum Proof {
    /// The site's own login: a JWT signed by a key of `jwks_url`.
    Jwt { jwks_url: Url, issuer: String, audience: String },
    /// A Cloudflare Turnstile token, checked with `siteverify_url`, solved
    /// on one of `hostnames` (none listed: the request's own host) and, when
    /// set, for the widget's `action`.
    Turnstile { secret: SecretString, siteverify_url: Url, hostnames: Vec<String>, action: Option<String> },
}

impl Proof {
    /// Whether the proof names a caller who is the same on every proof: a
    /// login's `sub` does; a Turnstile session's id is new with every solved
    /// challenge, so it names no one a rate limit could count
    /// (`rate_limit.per = "caller"` counts such callers by address).
    pub(crate) fn names_caller(&self) -> bool {
        matches!(self, Proof::Jwt { .. })
    }
}

impl Builder<'_> {
    /// `field` is the route's, e.g. `relay.routes[0]`.
    pub(in crate::config) fn caller(&mut self, upstream: &str, field: &str, raw: RawCaller) -> Option<CallerPolicy> {
        let field = format!("{field}.caller");
        let session = raw.session.unwrap_or(DEFAULT_CALLER_SESSION);
        let session_ok = if session < Duration::from_secs(1) || session > MAX_SESSION {
            self.problem(upstream, &format!("{field}.session"), "must be between 1s and 24h");
            false
        } else {
            true
        };
        let proof = match (raw.jwt, raw.turnstile) {
            (Some(jwt), None) => self.jwt(upstream, &format!("{field}.jwt"), jwt),
            (None, Some(turnstile)) => self.turnstile(upstream, &format!("{field}.turnstile"), turnstile),
            _ => {
                self.problem(upstream, &field, "set exactly one of jwt = { … } or turnstile = { … }");
                None
            }
        };
        session_ok.then_some(CallerPolicy { proof: proof?, session })
    }

    fn jwt(&mut self, upstream: &str, field: &str, raw: RawJwt) -> Option<Proof> {
        let jwks_url = self.proof_url(upstream, &format!("{field}.jwks_url"), &raw.jwks_url);
        let mut named = true;
        for (name, value) in [("issuer", &raw.issuer), ("audience", &raw.audience)] {
            if value.trim().is_empty() {
                self.problem(
                    upstream,
                    &format!("{field}.{name}"),
                    "must not be empty: the value your login provider puts in its tokens",
                );
                named = false;
            }
        }
        named.then_some(Proof::Jwt { jwks_url: jwks_url?, issuer: raw.issuer, audience: raw.audience })
    }

    fn turnstile(&mut self, upstream: &str, field: &str, raw: RawTurnstile) -> Option<Proof> {
        let secret = self.secret(upstream, &format!("{field}.secret"), raw.secret);
        let url_field = format!("{field}.siteverify_url");
        let siteverify_url =
            self.proof_url(upstream, &url_field, raw.siteverify_url.as_deref().unwrap_or(TURNSTILE_SITEVERIFY_URL));
        let hostnames = match raw.hostnames {
            None => Some(Vec::new()),
            Some(list) => self.hostnames(upstream, &format!("{field}.hostnames"), list),
        };
        let action = match raw.action {
            Some(a)
                if a.is_empty()
                    || a.len() > MAX_ACTION_LEN
                    || !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                let why = "must be the widget's data-action: 1 to 32 letters, digits, - or _";
                self.problem(upstream, &format!("{field}.action"), why);
                None
            }
            action => Some(action),
        };
        let secret = match secret? {
            Param::Env { value, .. } => value,
            Param::Literal(_) => return None,
        };
        Some(Proof::Turnstile { secret, siteverify_url: siteverify_url?, hostnames: hostnames?, action: action? })
    }

    /// Host names as siteverify reports them: no scheme, port or path; kept in lower case.
    fn hostnames(&mut self, upstream: &str, field: &str, list: Vec<String>) -> Option<Vec<String>> {
        if list.is_empty() {
            let why =
                "list at least one host name, e.g. [\"www.example.com\"], or leave it out for the request's own host";
            self.problem(upstream, field, why);
            return None;
        }
        let mut ok = true;
        let mut names = Vec::new();
        for (i, text) in list.iter().enumerate() {
            match url::Host::parse(text) {
                // No wildcards: siteverify reports the one host the token was solved on.
                Ok(url::Host::Domain(d)) if !d.is_empty() && !d.contains('*') => names.push(d),
                Ok(url::Host::Domain(_)) | Err(_) => {
                    let why = format!(
                        "\"{text}\" is not a host name: write it without scheme, port, path or wildcard, e.g. \"www.example.com\""
                    );
                    self.problem(upstream, &format!("{field}[{i}]"), why);
                    ok = false;
                }
                Ok(url::Host::Ipv4(ip)) => names.push(ip.to_string()),
                Ok(url::Host::Ipv6(ip)) => names.push(ip.to_string()),
            }
        }
        ok.then_some(names)
    }

    /// Refuses a route without `caller` after a `caller` route whose paths
    /// it may match (`RoutePattern::may_overlap`: conservative), for methods
    /// the `caller` route does not allow: a request goes to the first route
    /// matching its path and method, so those would skip the proof.
    pub(in crate::config) fn caller_bypasses(&mut self, upstream: &str, routes: &[Option<Route>]) {
        for (i, guarded) in routes.iter().enumerate() {
            let Some(guarded) = guarded.as_ref().filter(|r| r.caller.is_some()) else { continue };
            for (j, later) in routes.iter().enumerate().skip(i + 1) {
                let Some(later) = later.as_ref() else { continue };
                if later.caller.is_some() || !later.pattern.may_overlap(&guarded.pattern) {
                    continue;
                }
                let open: Vec<&str> =
                    later.methods.iter().filter(|m| !guarded.methods.contains(m)).map(Method::as_str).collect();
                if !open.is_empty() {
                    let why = format!(
                        "matches paths of relay.routes[{i}] (\"{}\", which has caller) for {}, which relay.routes[{i}] does not allow: those requests would skip the caller proof. Add caller to relay.routes[{j}], add the methods to relay.routes[{i}], or narrow relay.routes[{j}].path",
                        guarded.pattern.as_str(),
                        open.join(", ")
                    );
                    self.problem(upstream, &format!("relay.routes[{j}]"), why);
                }
            }
        }
    }

    /// An `https` URL; `http` only on a loopback host (a local stand-in).
    fn proof_url(&mut self, upstream: &str, field: &str, text: &str) -> Option<Url> {
        let url = self.url(upstream, field, text)?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if url.scheme() != "https" && !loopback {
            self.problem(upstream, field, "must be https (http only on localhost)");
            return None;
        }
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::{Config, Env};
    use crate::error::Error;

    fn config(routes: &str) -> Result<Config, Error> {
        let text = format!(
            r#"
[upstreams.api]
base_url = "https://api.example.com"
token = {{ type = "static", key = {{ env = "API_KEY" }} }}

[upstreams.api.relay]
routes = [{routes}]
"#
        );
        Config::parse(
            &text,
            "tokenrelay.toml",
            &Env::from_pairs([("API_KEY", "k"), ("TURNSTILE_SECRET", "ts-secret-1")]),
        )
    }

    fn problems(routes: &str) -> Vec<String> {
        match config(routes) {
            Err(Error::ConfigInvalid { problems, .. }) => problems,
            other => panic!("expected config_invalid, got {other:?}"),
        }
    }

    fn policy(config: &Config) -> &CallerPolicy {
        config.upstreams["api"].relay.as_ref().unwrap().routes[0].caller.as_ref().unwrap()
    }

    #[test]
    fn jwt_caller_parses_with_the_default_session() {
        let c = config(
            r#"{ path = "/me", caller = { jwt = { jwks_url = "https://id.example.com/jwks.json", issuer = "https://id.example.com/", audience = "api" } } }"#,
        )
        .unwrap();
        let p = policy(&c);
        assert_eq!(p.session, DEFAULT_CALLER_SESSION);
        let Proof::Jwt { jwks_url, issuer, audience } = &p.proof else { panic!("{p:?}") };
        assert_eq!(
            (jwks_url.as_str(), issuer.as_str(), audience.as_str()),
            ("https://id.example.com/jwks.json", "https://id.example.com/", "api")
        );
    }

    #[test]
    fn turnstile_secret_comes_from_the_environment_and_stays_out_of_debug() {
        let c = config(
            r#"{ path = "/s", caller = { turnstile = { secret = { env = "TURNSTILE_SECRET" } }, session = "5m" } }"#,
        )
        .unwrap();
        let p = policy(&c);
        assert_eq!(p.session, Duration::from_secs(300));
        let Proof::Turnstile { secret, siteverify_url, .. } = &p.proof else { panic!("{p:?}") };
        assert_eq!(secret.expose_secret(), "ts-secret-1");
        assert_eq!(siteverify_url.as_str(), TURNSTILE_SITEVERIFY_URL);
        assert!(!format!("{c:?}").contains("ts-secret-1"), "Debug must not show the Turnstile secret");
    }

    #[test]
    fn every_caller_problem_names_upstream_route_and_field() {
        let p = problems(
            r#"
  { path = "/a", caller = { jwt = { jwks_url = "http://id.example.com/jwks", issuer = "", audience = "api" }, session = "2d" } },
  { path = "/b", caller = { turnstile = { secret = "literal-secret", siteverify_url = "ftp://x" } } },
  { path = "/c", caller = { } },
  { path = "/d", cache_control = "public, max-age=60", caller = { turnstile = { secret = { env = "TURNSTILE_SECRET" } } } },
"#,
        );
        let expect = [
            "upstream \"api\": relay.routes[0].caller.session: must be between 1s and 24h",
            "upstream \"api\": relay.routes[0].caller.jwt.jwks_url: must be https",
            "upstream \"api\": relay.routes[0].caller.jwt.issuer: must not be empty",
            "upstream \"api\": relay.routes[1].caller.turnstile.secret: must reference an environment variable",
            "upstream \"api\": relay.routes[1].caller.turnstile.siteverify_url: scheme must be http or https",
            "upstream \"api\": relay.routes[2].caller: set exactly one of",
            "upstream \"api\": relay.routes[3].cache_control: a route with caller",
        ];
        for e in expect {
            assert!(p.iter().any(|m| m.starts_with(e)), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
        assert!(!p.iter().any(|m| m.contains("literal-secret")), "{p:#?}");
    }

    #[test]
    fn turnstile_hostnames_and_action_are_checked_and_default_to_none() {
        let c =
            config(r#"{ path = "/s", caller = { turnstile = { secret = { env = "TURNSTILE_SECRET" } } } }"#).unwrap();
        let Proof::Turnstile { hostnames, action, .. } = &policy(&c).proof else { panic!() };
        assert!(hostnames.is_empty() && action.is_none(), "the request's own host, any action");
        let c = config(
            r#"{ path = "/s", caller = { turnstile = { secret = { env = "TURNSTILE_SECRET" }, hostnames = ["WWW.Example.com", "127.0.0.1"], action = "search_1" } } }"#,
        )
        .unwrap();
        let Proof::Turnstile { hostnames, action, .. } = &policy(&c).proof else { panic!() };
        assert_eq!(hostnames, &["www.example.com", "127.0.0.1"]);
        assert_eq!(action.as_deref(), Some("search_1"));
        let p = problems(
            r#"
  { path = "/a", caller = { turnstile = { secret = { env = "TURNSTILE_SECRET" }, hostnames = [] } } },
  { path = "/b", caller = { turnstile = { secret = { env = "TURNSTILE_SECRET" }, hostnames = ["ok.example", "https://www.example.com", "www.example.com:443", "*.example.com"], action = "" } } },
  { path = "/c", caller = { turnstile = { secret = { env = "TURNSTILE_SECRET" }, action = "has space" } } },
"#,
        );
        let expect = [
            "upstream \"api\": relay.routes[0].caller.turnstile.hostnames: list at least one host name",
            "upstream \"api\": relay.routes[1].caller.turnstile.hostnames[1]: \"https://www.example.com\" is not a host name",
            "upstream \"api\": relay.routes[1].caller.turnstile.hostnames[2]: \"www.example.com:443\" is not a host name",
            "upstream \"api\": relay.routes[1].caller.turnstile.hostnames[3]: \"*.example.com\" is not a host name",
            "upstream \"api\": relay.routes[1].caller.turnstile.action: must be the widget's data-action",
            "upstream \"api\": relay.routes[2].caller.turnstile.action: must be the widget's data-action",
        ];
        for e in expect {
            assert!(p.iter().any(|m| m.starts_with(e)), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn a_later_route_may_not_open_a_caller_routes_paths_to_other_methods() {
        let jwt = r#"caller = { jwt = { jwks_url = "https://id.example.com/jwks", issuer = "i", audience = "a" } }"#;
        let p = problems(&format!(
            r#"{{ path = "/v1/me/**", {jwt} }}, {{ path = "/v1/**", methods = ["GET", "POST", "HEAD"] }}, {{ path = "/v2/**", methods = ["POST"] }}"#
        ));
        assert_eq!(
            p,
            [
                "upstream \"api\": relay.routes[1]: matches paths of relay.routes[0] (\"/v1/me/**\", which has caller) for POST, HEAD, which relay.routes[0] does not allow: those requests would skip the caller proof. Add caller to relay.routes[1], add the methods to relay.routes[0], or narrow relay.routes[1].path"
            ],
            "{p:#?}"
        );
        for fine in [
            // The guarded methods are the caller route's: the later route never gets them.
            format!(r#"{{ path = "/v1/me/**", {jwt} }}, {{ path = "/v1/**" }}"#),
            // Every method guarded.
            format!(
                r#"{{ path = "/v1/me/**", methods = ["GET", "POST"], {jwt} }}, {{ path = "/v1/**", methods = ["GET", "POST"] }}"#
            ),
            // Guarded by a proof of its own.
            format!(r#"{{ path = "/v1/me/**", {jwt} }}, {{ path = "/v1/**", methods = ["POST"], {jwt} }}"#),
            // An open exception listed first is the config's choice.
            format!(r#"{{ path = "/v1/public/**", methods = ["POST"] }}, {{ path = "/v1/**", {jwt} }}"#),
            // Paths that never meet.
            format!(r#"{{ path = "/v1/me/**", {jwt} }}, {{ path = "/v2/**", methods = ["POST"] }}"#),
        ] {
            assert!(config(&fine).is_ok(), "{fine}: {:?}", config(&fine).err());
        }
    }

    #[test]
    fn loopback_stand_ins_may_use_http() {
        let c = config(
            r#"{ path = "/me", caller = { jwt = { jwks_url = "http://127.0.0.1:9/jwks", issuer = "i", audience = "a" } } }"#,
        );
        assert!(c.is_ok(), "{c:?}");
    }
}
