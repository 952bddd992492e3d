//! A relayed route: its path, methods, response cache and the proof a caller
//! must bring.

use std::time::Duration;

use super::render::{Table, strings};
use super::settings::{Budget, setters};
use super::upstream::{Param, env};

/// The route at `path` (`/search/**`), any method the relay allows.
pub fn route(path: &str) -> RouteConfig {
    RouteConfig::new(path)
}

/// One entry of `routes = [...]`.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    path: String,
    methods: Option<Vec<String>>,
    cache_control: Option<String>,
    cache: Option<RouteCache>,
    caller: Option<Caller>,
    path_params: bool,
    forward_range: bool,
    budget: Option<Budget>,
}

impl RouteConfig {
    pub fn new(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            methods: None,
            cache_control: None,
            cache: None,
            caller: None,
            path_params: false,
            forward_range: false,
            budget: None,
        }
    }

    setters! { cache: RouteCache, caller: Caller, budget: Budget }

    /// The methods relayed (`["GET", "POST"]`).
    pub fn methods<I: IntoIterator<Item = S>, S: Into<String>>(mut self, methods: I) -> Self {
        self.methods = Some(methods.into_iter().map(Into::into).collect());
        self
    }

    /// The `Cache-Control` set on successful answers, for the platform's CDN.
    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_owned());
        self
    }

    /// Lets segments carry `;` path parameters.
    pub fn path_params(mut self) -> Self {
        self.path_params = true;
        self
    }

    /// Forwards the visitor's `Range` header.
    pub fn forward_range(mut self) -> Self {
        self.forward_range = true;
        self
    }

    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.set("path", self.path.as_str())
            .opt("methods", self.methods.as_ref().map(strings))
            .opt("cache_control", self.cache_control.as_deref())
            .opt("cache", self.cache.as_ref().map(RouteCache::to_table))
            .opt("caller", self.caller.as_ref().map(Caller::to_table))
            .flag("path_params", self.path_params)
            .flag("forward_range", self.forward_range)
            .opt("budget", self.budget.as_ref().map(Budget::to_table));
        t
    }
}

impl From<&str> for RouteConfig {
    fn from(path: &str) -> Self {
        RouteConfig::new(path)
    }
}

/// `cache = { ttl = "5m", … }`: the relay's own response cache on a route.
#[derive(Clone, Debug, Default)]
pub struct RouteCache {
    ttl: Option<Duration>,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    override_upstream: bool,
}

impl RouteCache {
    /// Answers kept fresh for `ttl`.
    pub fn ttl(ttl: Duration) -> Self {
        Self { ttl: Some(ttl), ..Self::default() }
    }

    setters! { stale_while_revalidate: Duration, stale_if_error: Duration }

    /// Stores answers the upstream marks `no-store` or `private`.
    pub fn override_upstream(mut self) -> Self {
        self.override_upstream = true;
        self
    }

    fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.duration("ttl", self.ttl)
            .duration("stale_while_revalidate", self.stale_while_revalidate)
            .duration("stale_if_error", self.stale_if_error)
            .flag("override", self.override_upstream);
        t
    }
}

/// `caller = { … }`: the proof a caller must bring.
#[derive(Clone, Debug)]
pub struct Caller {
    proof: Proof,
    session: Option<Duration>,
}

#[derive(Clone, Debug)]
enum Proof {
    Jwt { jwks_url: String, issuer: String, audience: String },
    Turnstile(Turnstile),
}

impl Caller {
    /// A login's JWT, checked against the issuer's JWKS.
    pub fn jwt(jwks_url: impl Into<String>, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        let proof = Proof::Jwt { jwks_url: jwks_url.into(), issuer: issuer.into(), audience: audience.into() };
        Self { proof, session: None }
    }

    /// A Cloudflare Turnstile token.
    pub fn turnstile(turnstile: Turnstile) -> Self {
        Self { proof: Proof::Turnstile(turnstile), session: None }
    }

    setters! {
        /// How long the relay's session cookie spares the proof.
        session: Duration,
    }

    fn to_table(&self) -> Table {
        let mut t = Table::default();
        match &self.proof {
            Proof::Jwt { jwks_url, issuer, audience } => {
                let mut jwt = Table::default();
                jwt.set("jwks_url", jwks_url.as_str())
                    .set("issuer", issuer.as_str())
                    .set("audience", audience.as_str());
                t.set("jwt", jwt)
            }
            Proof::Turnstile(turnstile) => t.set("turnstile", turnstile.to_table()),
        };
        t.duration("session", self.session);
        t
    }
}

/// `turnstile = { secret = { env = … }, … }`.
#[derive(Clone, Debug)]
pub struct Turnstile {
    secret: Param,
    siteverify_url: Option<String>,
    hostnames: Option<Vec<String>>,
    action: Option<String>,
}

impl Turnstile {
    /// The widget whose secret is in the environment variable `secret_env`.
    pub fn new(secret_env: &str) -> Self {
        Self { secret: env(secret_env), siteverify_url: None, hostnames: None, action: None }
    }

    pub fn siteverify_url(mut self, url: impl Into<String>) -> Self {
        self.siteverify_url = Some(url.into());
        self
    }

    pub fn hostnames<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hostnames: I) -> Self {
        self.hostnames = Some(hostnames.into_iter().map(Into::into).collect());
        self
    }

    pub fn action(mut self, action: &str) -> Self {
        self.action = Some(action.to_owned());
        self
    }

    fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.set("secret", &self.secret)
            .opt("siteverify_url", self.siteverify_url.as_deref())
            .opt("hostnames", self.hostnames.as_ref().map(strings))
            .opt("action", self.action.as_deref());
        t
    }
}
