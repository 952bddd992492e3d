//! The config file as written: serde shapes only, validated by `super::builder`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

pub(super) use crate::param::RawParam;
use crate::token::oauth2::ClientAuth;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub relay: RawRelay,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    #[serde(default, with = "humantime_serde")]
    pub safety_margin: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub refresh_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lock_lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub wait_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub failure_cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub min_token_age: Option<Duration>,
    pub invalidations_per_hour: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    #[serde(default)]
    pub allow_unencrypted: bool,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub base_url: String,
    pub token: RawToken,
    /// Absent: the upstream is not reachable through the relay.
    pub relay: Option<RawUpstreamRelay>,
}

/// `[relay]`: site-wide relay settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub rate_limit: Option<RawRateLimit>,
    pub max_request_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
    pub max_cached_body_bytes: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub requests: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Site-wide only: `[relay] rate_limit`.
    pub ipv6_prefix: Option<u8>,
    /// `"ip"` (default) or `"caller"`: whom the limit counts (`relay::caller`).
    pub per: Option<String>,
}

/// `[upstreams.<name>.relay]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamRelay {
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub inject: RawInject,
    #[serde(default)]
    pub headers: BTreeMap<String, RawParam>,
    pub rate_limit: Option<RawRateLimit>,
    pub budget: Option<RawBudget>,
    /// `"route"` (default) or `"upstream"`: what an answer asking to wait cools down.
    pub cooldown: Option<String>,
}

/// `budget = { requests = 10000, per = "1d" }`: upstream calls per window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    pub requests: u64,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub path: String,
    pub methods: Option<Vec<String>>,
    pub cache_control: Option<String>,
    pub cache: Option<super::route_cache::RawRouteCache>,
    /// The proof a caller must bring (`relay::caller`).
    pub caller: Option<RawCaller>,
    #[serde(default)]
    pub path_params: bool,
    #[serde(default)]
    pub forward_range: bool,
    pub budget: Option<RawBudget>,
}

/// `{ header = "Authorization", format = "Bearer {token}" }` or `{ query = "access_token" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInject {
    pub header: Option<String>,
    pub format: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawToken {
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2 {
        url: String,
        client_id: RawParam,
        client_secret: RawParam,
        #[serde(default)]
        previous_client_secret: Option<RawParam>,
        #[serde(default)]
        auth: Option<ClientAuth>,
        scope: Option<String>,
        audience: Option<String>,
        #[serde(default)]
        extra: BTreeMap<String, RawParam>,
        #[serde(default, with = "humantime_serde")]
        default_lifetime: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
    Json {
        url: String,
        #[serde(default)]
        method: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, RawParam>,
        #[serde(default)]
        body: Option<toml::Table>,
        #[serde(default)]
        body_format: Option<BodyFormat>,
        #[serde(default)]
        previous_secret: Option<RawPrevious>,
        token_pointer: String,
        expires_in_pointer: Option<String>,
        expires_at_pointer: Option<String>,
        #[serde(default, with = "humantime_serde")]
        default_lifetime: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
    Static {
        key: RawParam,
    },
}

/// A `json` source's `previous_secret = { env = "NAME", replaces = "body.secret" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrevious {
    pub env: String,
    /// The credential it stands in for, named as in `tokenrelay check`
    /// without `token.`: `body.secret`, `headers.X-Key`, `body.list[0]`.
    pub replaces: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum BodyFormat {
    Json,
    Form,
}

/// A route's caller proof (`config::relay::caller`): `caller = { jwt = { … } }`, `caller = { turnstile = { … } }`, optionally with `session = "30m"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a caller table like { jwt = { … } } or { turnstile = { … } }")]
pub(super) struct RawCaller {
    pub jwt: Option<RawJwt>,
    pub turnstile: Option<RawTurnstile>,
    #[serde(default, with = "humantime_serde")]
    pub session: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTurnstile {
    pub secret: RawParam,
    pub siteverify_url: Option<String>,
    pub hostnames: Option<Vec<String>>,
    pub action: Option<String>,
}
