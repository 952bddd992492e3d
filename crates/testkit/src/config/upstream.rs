//! `[upstreams.<name>]`: where an upstream is, how its token is obtained and
//! what the relay lets through to it.

use std::collections::BTreeMap;
use std::time::Duration;

use toml_edit::Value;

use super::render::{Table, lines};
use super::route::RouteConfig;
use super::settings::{Budget, RateLimit, setters};

/// A configured value: literal, or `{ env = "NAME" }` (how secrets are written).
#[derive(Clone, Debug)]
pub enum Param {
    Literal(String),
    Env(String),
}

/// The value of the environment variable `name`.
pub fn env(name: impl Into<String>) -> Param {
    Param::Env(name.into())
}

impl From<&str> for Param {
    fn from(literal: &str) -> Self {
        Param::Literal(literal.to_owned())
    }
}

impl From<String> for Param {
    fn from(literal: String) -> Self {
        Param::Literal(literal)
    }
}

impl From<&Param> for Value {
    fn from(param: &Param) -> Value {
        match param {
            Param::Literal(v) => v.as_str().into(),
            Param::Env(name) => {
                let mut t = Table::default();
                t.set("env", name.as_str());
                t.into()
            }
        }
    }
}

fn params(map: &BTreeMap<String, Param>) -> Table {
    let mut t = Table::default();
    for (k, v) in map {
        t.set(k, v);
    }
    t
}

/// How an upstream's token is obtained.
#[derive(Clone, Debug)]
pub enum Token {
    OAuth2(OAuth2Token),
    Json(JsonToken),
    /// A key that never expires.
    Static(Param),
}

/// An OAuth2 client-credentials exchange at `url`, with the client id and
/// secret read from the environment variables `id_env` and `secret_env`.
pub fn oauth2(url: impl Into<String>, id_env: &str, secret_env: &str) -> OAuth2Token {
    OAuth2Token {
        url: url.into(),
        client_id: env(id_env),
        client_secret: env(secret_env),
        previous_client_secret: None,
        auth: None,
        scope: None,
        audience: None,
        extra: BTreeMap::new(),
        default_lifetime: None,
        timeout: None,
    }
}

/// `type = "oauth2_client_credentials"`.
#[derive(Clone, Debug)]
pub struct OAuth2Token {
    url: String,
    client_id: Param,
    client_secret: Param,
    previous_client_secret: Option<Param>,
    auth: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
    extra: BTreeMap<String, Param>,
    default_lifetime: Option<Duration>,
    timeout: Option<Duration>,
}

impl OAuth2Token {
    setters! { default_lifetime: Duration, timeout: Duration }

    /// `previous_client_secret = { env = "<name>" }`: the secret being rotated out.
    pub fn previous_client_secret(mut self, env_name: &str) -> Self {
        self.previous_client_secret = Some(env(env_name));
        self
    }

    /// Sends the client id and secret in the form body, not as HTTP Basic.
    pub fn form_auth(mut self) -> Self {
        self.auth = Some("form".to_owned());
        self
    }

    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// One more form parameter of the token request.
    pub fn extra(mut self, name: &str, value: impl Into<Param>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.set("type", "oauth2_client_credentials")
            .set("url", self.url.as_str())
            .set("client_id", &self.client_id)
            .set("client_secret", &self.client_secret)
            .opt("previous_client_secret", self.previous_client_secret.as_ref())
            .opt("auth", self.auth.as_deref())
            .opt("scope", self.scope.as_deref())
            .opt("audience", self.audience.as_deref())
            .table("extra", params(&self.extra))
            .duration("default_lifetime", self.default_lifetime)
            .duration("timeout", self.timeout);
        t
    }
}

impl From<OAuth2Token> for Token {
    fn from(token: OAuth2Token) -> Self {
        Token::OAuth2(token)
    }
}

/// `type = "json"`: a token read by JSON pointer from an endpoint's answer.
#[derive(Clone, Debug)]
pub struct JsonToken {
    url: String,
    token_pointer: String,
    expires_in_pointer: Option<String>,
    expires_at_pointer: Option<String>,
    body: BTreeMap<String, Param>,
    previous_secret: Option<(String, String)>,
    default_lifetime: Option<Duration>,
    timeout: Option<Duration>,
}

impl JsonToken {
    /// POSTs to `url` and reads the token at `token_pointer`.
    pub fn new(url: impl Into<String>, token_pointer: &str) -> Self {
        Self {
            url: url.into(),
            token_pointer: token_pointer.to_owned(),
            expires_in_pointer: None,
            expires_at_pointer: None,
            body: BTreeMap::new(),
            previous_secret: None,
            default_lifetime: None,
            timeout: None,
        }
    }

    setters! { default_lifetime: Duration, timeout: Duration }

    pub fn expires_in_pointer(mut self, pointer: &str) -> Self {
        self.expires_in_pointer = Some(pointer.to_owned());
        self
    }

    pub fn expires_at_pointer(mut self, pointer: &str) -> Self {
        self.expires_at_pointer = Some(pointer.to_owned());
        self
    }

    /// `previous_secret = { env = "<env_name>", replaces = "<replaces>" }`:
    /// the secret being rotated out, sent in place of the field `replaces`
    /// (e.g. `body.secret`).
    pub fn previous_secret(mut self, env_name: &str, replaces: &str) -> Self {
        self.previous_secret = Some((env_name.to_owned(), replaces.to_owned()));
        self
    }

    /// One field of the request body.
    pub fn body(mut self, name: &str, value: impl Into<Param>) -> Self {
        self.body.insert(name.to_owned(), value.into());
        self
    }

    fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.set("type", "json")
            .set("url", self.url.as_str())
            .set("token_pointer", self.token_pointer.as_str())
            .opt("expires_in_pointer", self.expires_in_pointer.as_deref())
            .opt("expires_at_pointer", self.expires_at_pointer.as_deref())
            .table("body", params(&self.body))
            .table(
                "previous_secret",
                self.previous_secret.iter().fold(Table::default(), |mut t, (env, replaces)| {
                    t.set("env", env.as_str()).set("replaces", replaces.as_str());
                    t
                }),
            )
            .duration("default_lifetime", self.default_lifetime)
            .duration("timeout", self.timeout);
        t
    }
}

impl From<JsonToken> for Token {
    fn from(token: JsonToken) -> Self {
        Token::Json(token)
    }
}

impl Token {
    fn to_table(&self) -> Table {
        match self {
            Token::OAuth2(t) => t.to_table(),
            Token::Json(t) => t.to_table(),
            Token::Static(key) => {
                let mut t = Table::default();
                t.set("type", "static").set("key", key);
                t
            }
        }
    }
}

/// `[upstreams.<name>]`.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    name: String,
    base_url: String,
    token: Token,
    relay: Option<UpstreamRelay>,
}

impl UpstreamConfig {
    /// The upstream `name` at `base_url`, not relayed until [`relay`](Self::relay).
    pub fn new(name: &str, base_url: impl Into<String>, token: impl Into<Token>) -> Self {
        Self { name: name.to_owned(), base_url: base_url.into(), token: token.into(), relay: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    pub fn token(mut self, token: impl Into<Token>) -> Self {
        self.token = token.into();
        self
    }

    /// Relays the upstream, or changes how: `f` gets the current relay
    /// section (empty the first time).
    pub fn relay(mut self, f: impl FnOnce(UpstreamRelay) -> UpstreamRelay) -> Self {
        self.relay = Some(f(self.relay.take().unwrap_or_default()));
        self
    }

    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.set("base_url", self.base_url.as_str()).set("token", self.token.to_table());
        if let Some(relay) = &self.relay {
            t.set("relay", relay.to_table());
        }
        t
    }
}

/// Where the token goes on each relayed request.
#[derive(Clone, Debug)]
pub enum Inject {
    /// In header `name`, written as `format` (`"Bearer {token}"` by default).
    Header { name: String, format: Option<String> },
    /// In query parameter `name`.
    Query(String),
}

/// `[upstreams.<name>.relay]`: what the relay lets through to the upstream.
#[derive(Clone, Debug, Default)]
pub struct UpstreamRelay {
    routes: Vec<RouteConfig>,
    inject: Option<Inject>,
    headers: BTreeMap<String, Param>,
    rate_limit: Option<RateLimit>,
    budget: Option<Budget>,
}

impl UpstreamRelay {
    setters! { inject: Inject, rate_limit: RateLimit, budget: Budget }

    /// Adds a route after the others (the first match wins).
    pub fn route(mut self, route: impl Into<RouteConfig>) -> Self {
        self.routes.push(route.into());
        self
    }

    /// A header sent upstream with every relayed request.
    pub fn header(mut self, name: &str, value: impl Into<Param>) -> Self {
        self.headers.insert(name.to_owned(), value.into());
        self
    }

    fn to_table(&self) -> Table {
        let mut t = Table::default();
        t.set("routes", lines(self.routes.iter().map(|r| r.to_table().into())))
            .table("headers", params(&self.headers))
            .opt("rate_limit", self.rate_limit.as_ref().map(RateLimit::to_table))
            .opt("budget", self.budget.as_ref().map(Budget::to_table));
        let inject = self.inject.as_ref().map(|inject| {
            let mut i = Table::default();
            match inject {
                Inject::Header { name, format } => i.set("header", name.as_str()).opt("format", format.as_deref()),
                Inject::Query(name) => i.set("query", name.as_str()),
            };
            i
        });
        t.opt("inject", inject);
        t
    }
}
