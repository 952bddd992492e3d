//! Everything a relay function talks to, real and on loopback: Redis behind
//! the Upstash REST protocol, an OAuth2 token endpoint, the third-party API
//! and a second, "evil" server that nothing may ever reach; plus the
//! `tokenrelay.toml` and environment a function process runs with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use testkit::config::{Budget, Inject, RateLimit, RouteCache, SiteConfig, UpstreamConfig, env, oauth2, route};
use testkit::{ApiServer, RedisServer, TokenServer, TokenServerConfig, Upstash, base64_key};

/// The site's origin allowed to call the relay cross-origin.
pub const ALLOWED_ORIGIN: &str = "https://site.example";
/// Requests per client in the `limited` upstream's window.
pub const LIMITED_REQUESTS: u32 = 3;
/// `relay.max_request_bytes` of the fixture.
pub const MAX_REQUEST_BYTES: usize = 4096;
/// `relay.max_response_bytes` of the fixture: below the 64 KiB the relay
/// reads ahead, so that the limit is crossed before it answers.
pub const MAX_RESPONSE_BYTES: usize = 32768;
/// `cache.invalidations_per_hour` of the fixture.
pub const INVALIDATIONS_PER_HOUR: u32 = 1;
/// Below the API's `/v3`, the preview deployment's `base_url`: its answers
/// come from `/v3/echo/preview/...`, so they differ from production's.
pub const PREVIEW_BASE_PATH: &str = "/echo/preview";
/// The preview deployment's config file, beside `tokenrelay.toml`.
const PREVIEW_CONFIG: &str = "tokenrelay-preview.toml";
/// `relay.timeout` of the fixture, in seconds.
pub const TIMEOUT_SECS: u64 = 2;
/// Requests per client in the `metered` upstream's window (the freeze scenarios').
pub const METERED_REQUESTS: u32 = 10;
/// The `metered` upstream's window: an hour, so that a scenario of seconds
/// cannot straddle two of the epoch-aligned windows unless it starts in the
/// last seconds of one (see `scenarios::rate_limit`).
pub const METERED_WINDOW: Duration = Duration::from_secs(3600);
/// The `budgeted` upstream's calls a day, shared by every instance.
pub const BUDGETED_CALLS: u64 = 6;
/// Lifetime of the token endpoint's tokens unless a test asks for others.
const TOKEN_LIFETIME: Duration = Duration::from_secs(1800);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

/// The relay config under test, against the API at `api` and the token
/// endpoint at `token_url`. `getty` is relayed with Getty's shape (bearer
/// token plus `Api-Key`); `limited` has a tiny rate limit; `hidden` has a
/// token but no relay section; `cached` has routes with a response cache;
/// `metered` has a rate limit for the freeze scenarios; `budgeted` a budget
/// of [`BUDGETED_CALLS`] upstream calls a day; `busy` is over its own limit
/// (the API answers 429 with `Retry-After: 30`); `spent` is told by its
/// answers how much of its quota is left (`set-…` knobs of the API's echo);
/// `picky` has two routes, for a refusal that covers only its own.
/// `queried` takes its token as a query parameter. `rotating` names a
/// previous secret beside the current one (a rotation under way). A token is kept while
/// younger than an hour unless the API says it is revoked
/// (`error="invalid_token"`), and only one is dropped an hour
/// ([`INVALIDATIONS_PER_HOUR`]), so the first 401 check spends it.
fn site(api: &str, token_url: &str, schedule: TokenSchedule) -> SiteConfig {
    let upstream = |name: &str| UpstreamConfig::new(name, api, oauth2(token_url, "GETTY_API_KEY", "GETTY_API_SECRET"));
    let getty_shaped = |name: &str| upstream(name).relay(|r| r.header("Api-Key", env("GETTY_API_KEY")));
    let swr = |ttl: Duration, window: Duration| RouteCache::ttl(ttl).stale_while_revalidate(window);
    SiteConfig::new()
        .cache(|c| {
            c.min_token_age(HOUR)
                .invalidations_per_hour(INVALIDATIONS_PER_HOUR)
                .safety_margin(schedule.safety_margin)
                .refresh_window(schedule.refresh_window)
        })
        .relay_settings(|r| {
            r.allowed_origins([ALLOWED_ORIGIN])
                .max_request_bytes(MAX_REQUEST_BYTES as u64)
                .max_response_bytes(MAX_RESPONSE_BYTES as u64)
                .timeout(Duration::from_secs(TIMEOUT_SECS))
                .rate_limit(RateLimit::new(100_000, MINUTE))
        })
        .upstream(getty_shaped("getty").relay(|r| {
            r.route(route("/search/images").methods(["GET"]).cache_control("public, max-age=60"))
                .route(route("/echo/params/**").path_params())
                .route(route("/echo/ranged/**").forward_range())
                .route(route("/echo/**").methods(["GET", "POST"]))
                .route("/reveal")
                .route("/headers")
                .route("/denied")
                .route("/big")
                .route("/slow")
                .route("/cookie")
        }))
        .upstream(
            getty_shaped("limited")
                .relay(|r| r.rate_limit(RateLimit::new(LIMITED_REQUESTS, MINUTE)).route("/search/images")),
        )
        .upstream(getty_shaped("cached").relay(|r| {
            r.route(
                route("/echo/fresh/**")
                    .methods(["GET", "HEAD"])
                    .cache(RouteCache::ttl(HOUR))
                    .cache_control("public, max-age=60"),
            )
            .route(route("/echo/swr/**").cache(swr(Duration::from_secs(1), HOUR)))
            .route(
                route("/echo/sie/**")
                    .cache(RouteCache::ttl(Duration::from_secs(1)).stale_if_error(Duration::from_secs(3))),
            )
            .route(route("/echo/revalidated/**").cache(swr(Duration::from_secs(2), 5 * MINUTE)))
        }))
        .upstream(upstream("queried").relay(|r| r.inject(Inject::Query("access_token".into())).route("/echo/**")))
        .upstream(
            getty_shaped("metered")
                .relay(|r| r.rate_limit(RateLimit::new(METERED_REQUESTS, METERED_WINDOW)).route("/search/images")),
        )
        .upstream(upstream("budgeted").relay(|r| {
            r.budget(Budget::new(BUDGETED_CALLS, DAY))
                .route(route("/echo/cached/**").cache(RouteCache::ttl(HOUR)))
                .route("/echo/**")
        }))
        .upstream(upstream("busy").relay(|r| r.route("/busy")))
        .upstream(upstream("spent").relay(|r| r.route("/echo/**")))
        .upstream(upstream("picky").relay(|r| r.route("/echo/search/**").route("/echo/**")))
        .upstream(upstream("hidden"))
        .upstream(
            getty_shaped("rotating")
                .token(
                    oauth2(token_url, "GETTY_API_KEY", "GETTY_API_SECRET").previous_client_secret(PREVIOUS_SECRET_VAR),
                )
                .relay(|r| r.route("/search/images")),
        )
}

/// The variable of `rotating`'s previous secret.
const PREVIOUS_SECRET_VAR: &str = "GETTY_API_SECRET_PREVIOUS";

/// The running services and the config pointing at them. Stops everything when dropped.
pub struct Fixture {
    pub redis: RedisServer,
    pub upstash: Upstash,
    pub tokens: TokenServer,
    pub api: ApiServer,
    /// A server on loopback that hostile inputs try to reach; it must never be.
    pub evil: ApiServer,
    dir: tempfile::TempDir,
    schedule: TokenSchedule,
    key: String,
    secret: String,
    previous_secret: String,
    encryption_key: String,
}

/// A token endpoint whose tokens live `lifetime`, and the `[cache]` schedule
/// that serves them: `safety_margin` and `refresh_window` (the relay's
/// defaults when `None`).
#[derive(Clone, Copy, Debug)]
pub struct TokenSchedule {
    pub lifetime: Duration,
    pub safety_margin: Option<Duration>,
    pub refresh_window: Option<Duration>,
}

impl Default for TokenSchedule {
    fn default() -> Self {
        Self { lifetime: TOKEN_LIFETIME, safety_margin: None, refresh_window: None }
    }
}

/// What serves the Upstash REST protocol in front of the fixture's Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstashServer {
    /// `upstash-local` as Upstash behaves: scripts with Upstash's
    /// `allow-key-locking` flag run.
    #[default]
    Upstash,
    /// A plain-Redis REST proxy such as serverless-redis-http (SRH), which
    /// Upstash recommends for local development and CI: scripts reach Redis
    /// unchanged, and Redis refuses the flag.
    Srh,
}

impl Fixture {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(TokenSchedule::default()).await
    }

    /// The same, with tokens issued and served on `schedule`.
    pub async fn start_with(schedule: TokenSchedule) -> anyhow::Result<Self> {
        Self::start_on(UpstashServer::default(), schedule).await
    }

    /// The same, with the store served by `server`.
    pub async fn start_on(server: UpstashServer, schedule: TokenSchedule) -> anyhow::Result<Self> {
        let key = format!("key_{:024x}", fastrand::u128(..));
        let secret = format!("secret_{:024x}", fastrand::u128(..));
        let previous_secret = format!("previous_{:024x}", fastrand::u128(..));
        let redis = RedisServer::start().await?;
        let upstash = match server {
            UpstashServer::Upstash => Upstash::start(&redis).await?,
            UpstashServer::Srh => Upstash::start_like_srh(&redis).await?,
        };
        let tokens =
            TokenServer::start(TokenServerConfig::new(&key, &secret).punctuated().lifetime(schedule.lifetime)).await?;
        let api = ApiServer::start(&tokens).await?;
        let evil = ApiServer::start(&tokens).await?;
        let dir = tempfile::Builder::new().prefix("relay-e2e-").tempdir().context("creating the config directory")?;
        let config = |api: &str| site(api, &tokens.url(), schedule);
        config(&api.url()).write(&dir.path().join("tokenrelay.toml"))?;
        config(&format!("{}{PREVIEW_BASE_PATH}", api.url())).write(&dir.path().join(PREVIEW_CONFIG))?;
        let encryption_key = base64_key();
        Ok(Self { redis, upstash, tokens, api, evil, dir, schedule, key, secret, previous_secret, encryption_key })
    }

    /// The config [`config_path`](Self::config_path) holds, to extend and write back.
    pub fn site(&self) -> SiteConfig {
        site(&self.api.url(), &self.tokens.url(), self.schedule)
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tokenrelay.toml")
    }

    /// A scratch directory that lives as long as the fixture.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment of a function process: config, credentials and the
    /// shared store (Upstash REST in front of the fixture's Redis).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.env_without_store();
        env.push(("UPSTASH_REDIS_REST_URL".into(), self.upstash.url()));
        env.push(("UPSTASH_REDIS_REST_TOKEN".into(), self.upstash.token().to_owned()));
        env.push(("TOKENRELAY_ENCRYPTION_KEY".into(), self.encryption_key.clone()));
        env
    }

    /// The environment of another deployment on the same store, with the same
    /// credentials and encryption key but another `base_url` (the API's
    /// [`PREVIEW_BASE_PATH`]), as Vercel's Preview and Production sharing
    /// variables would be.
    pub fn preview_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        let preview = self.dir.path().join(PREVIEW_CONFIG).display().to_string();
        env.retain(|(k, _)| k != "TOKENRELAY_CONFIG");
        env.push(("TOKENRELAY_CONFIG".into(), preview));
        env
    }

    /// The same without a remote store: the function uses the local file store in `dir`.
    pub fn env_with_local_store(&self, dir: &Path) -> Vec<(String, String)> {
        let mut env = self.env_without_store();
        env.push(("TOKENRELAY_LOCAL_STORE".into(), dir.display().to_string()));
        env
    }

    fn env_without_store(&self) -> Vec<(String, String)> {
        vec![
            ("TOKENRELAY_CONFIG".into(), self.config_path().display().to_string()),
            ("GETTY_API_KEY".into(), self.key.clone()),
            ("GETTY_API_SECRET".into(), self.secret.clone()),
            (PREVIOUS_SECRET_VAR.into(), self.previous_secret.clone()),
            ("RUST_LOG".into(), "info".into()),
        ]
    }

    /// The API key (also sent upstream as `Api-Key`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The client secret (`GETTY_API_SECRET`).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// `rotating`'s previous secret, which the token endpoint refuses until
    /// told otherwise ([`TokenServer::accept_secrets`]).
    pub fn previous_secret(&self) -> &str {
        &self.previous_secret
    }

    /// Every secret value: the key, the secret, the previous secret, the
    /// store's token and encryption key, and every token issued so far.
    pub fn secrets(&self) -> Vec<String> {
        let mut all = vec![
            self.key.clone(),
            self.secret.clone(),
            self.previous_secret.clone(),
            self.upstash.token().to_owned(),
            self.encryption_key.clone(),
        ];
        all.extend(self.tokens.issued());
        all
    }

    /// Fails naming `what` if `text` contains any secret (never the secret itself).
    pub fn assert_no_secrets(&self, what: &str, text: &str) -> anyhow::Result<()> {
        let names = ["API key", "client secret", "previous client secret", "Upstash token", "encryption key"];
        for (i, secret) in self.secrets().iter().enumerate() {
            let name = names.get(i).copied().unwrap_or("an access token");
            anyhow::ensure!(!text.contains(secret.as_str()), "{what} contains {name}");
        }
        Ok(())
    }
}
