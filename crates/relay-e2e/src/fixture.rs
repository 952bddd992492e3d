//! Everything a relay function talks to, real and on loopback: Redis behind
//! the Upstash REST protocol, an OAuth2 token endpoint, the third-party API
//! and a second, "evil" server that nothing may ever reach; plus the
//! `tokenrelay.toml` and environment a function process runs with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use testkit::{ApiServer, RedisServer, TokenServer, TokenServerConfig, Upstash};

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
pub const INVALIDATIONS_PER_HOUR: usize = 1;
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

/// The relay config under test. `getty` is relayed with Getty's shape (bearer
/// token plus `Api-Key`); `limited` has a tiny rate limit; `hidden` has a
/// token but no relay section; `cached` has routes with a response cache;
/// `metered` has a rate limit for the freeze scenarios; `budgeted` a budget
/// of [`BUDGETED_CALLS`] upstream calls a day; `busy` is over its own limit
/// (the API answers 429 with `Retry-After: 30`); `spent` is told by its
/// answers how much of its quota is left (`set-…` knobs of the API's echo);
/// `picky` has two routes, for a refusal that covers only its own.
/// `queried` takes its token as a query parameter. A token is kept while
/// younger than an hour unless the API says it is revoked
/// (`error="invalid_token"`), and only one is dropped an hour
/// ([`INVALIDATIONS_PER_HOUR`]), so the first 401 check spends it.
const CONFIG: &str = r#"
[cache]
min_token_age = "1h"
invalidations_per_hour = {invalidations}
{schedule}
[relay]
allowed_origins = ["{origin}"]
max_request_bytes = {max_request}
max_response_bytes = {max_response}
timeout = "{timeout}s"
rate_limit = { requests = 100000, window = "1m" }

[upstreams.getty]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.getty.relay]
headers = { Api-Key = { env = "GETTY_API_KEY" } }
routes = [
  { path = "/search/images", methods = ["GET"], cache_control = "public, max-age=60" },
  { path = "/echo/params/**", path_params = true },
  { path = "/echo/ranged/**", forward_range = true },
  { path = "/echo/**", methods = ["GET", "POST"] },
  { path = "/reveal" },
  { path = "/headers" },
  { path = "/denied" },
  { path = "/big" },
  { path = "/slow" },
  { path = "/cookie" },
]

[upstreams.limited]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.limited.relay]
headers = { Api-Key = { env = "GETTY_API_KEY" } }
rate_limit = { requests = {limited}, window = "1m" }
routes = [{ path = "/search/images" }]

[upstreams.cached]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.cached.relay]
headers = { Api-Key = { env = "GETTY_API_KEY" } }
routes = [
  { path = "/echo/fresh/**", methods = ["GET", "HEAD"], cache = { ttl = "1h" }, cache_control = "public, max-age=60" },
  { path = "/echo/swr/**", cache = { ttl = "1s", stale_while_revalidate = "1h" } },
  { path = "/echo/sie/**", cache = { ttl = "1s", stale_if_error = "3s" } },
  { path = "/echo/revalidated/**", cache = { ttl = "2s", stale_while_revalidate = "5m" } },
]

[upstreams.queried]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.queried.relay]
inject = { query = "access_token" }
routes = [{ path = "/echo/**" }]

[upstreams.metered]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.metered.relay]
headers = { Api-Key = { env = "GETTY_API_KEY" } }
rate_limit = { requests = {metered}, window = "{metered_window}s" }
routes = [{ path = "/search/images" }]

[upstreams.budgeted]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.budgeted.relay]
budget = { requests = {budgeted}, per = "1d" }
routes = [{ path = "/echo/cached/**", cache = { ttl = "1h" } }, { path = "/echo/**" }]

[upstreams.busy]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.busy.relay]
routes = [{ path = "/busy" }]

[upstreams.spent]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.spent.relay]
routes = [{ path = "/echo/**" }]

[upstreams.picky]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }

[upstreams.picky.relay]
routes = [{ path = "/echo/search/**" }, { path = "/echo/**" }]

[upstreams.hidden]
base_url = "{api}"
token = { type = "oauth2_client_credentials", url = "{token_url}", client_id = { env = "GETTY_API_KEY" }, client_secret = { env = "GETTY_API_SECRET" } }
"#;

/// The running services and the config pointing at them. Stops everything when dropped.
pub struct Fixture {
    pub redis: RedisServer,
    pub upstash: Upstash,
    pub tokens: TokenServer,
    pub api: ApiServer,
    /// A server on loopback that hostile inputs try to reach; it must never be.
    pub evil: ApiServer,
    dir: tempfile::TempDir,
    key: String,
    secret: String,
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

impl TokenSchedule {
    /// The `[cache]` lines it sets.
    fn config_lines(&self) -> String {
        let line = |name: &str, value: Option<Duration>| {
            value.map(|v| format!("{name} = \"{}ms\"\n", v.as_millis())).unwrap_or_default()
        };
        line("safety_margin", self.safety_margin) + &line("refresh_window", self.refresh_window)
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
        let config = |api: &str| {
            CONFIG
                .replace("{origin}", ALLOWED_ORIGIN)
                .replace("{max_request}", &MAX_REQUEST_BYTES.to_string())
                .replace("{max_response}", &MAX_RESPONSE_BYTES.to_string())
                .replace("{timeout}", &TIMEOUT_SECS.to_string())
                .replace("{limited}", &LIMITED_REQUESTS.to_string())
                .replace("{invalidations}", &INVALIDATIONS_PER_HOUR.to_string())
                .replace("{schedule}", &schedule.config_lines())
                .replace("{metered}", &METERED_REQUESTS.to_string())
                .replace("{budgeted}", &BUDGETED_CALLS.to_string())
                .replace("{metered_window}", &METERED_WINDOW.as_secs().to_string())
                .replace("{api}", api)
                .replace("{token_url}", &tokens.url())
        };
        std::fs::write(dir.path().join("tokenrelay.toml"), config(&api.url())).context("writing tokenrelay.toml")?;
        let preview = config(&format!("{}{PREVIEW_BASE_PATH}", api.url()));
        std::fs::write(dir.path().join(PREVIEW_CONFIG), preview).context("writing the preview config")?;
        let encryption_key =
            base64::engine::general_purpose::STANDARD.encode(fastrand::u128(..).to_le_bytes().repeat(2));
        Ok(Self { redis, upstash, tokens, api, evil, dir, key, secret, encryption_key })
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
            ("RUST_LOG".into(), "info".into()),
        ]
    }

    /// The API key (also sent upstream as `Api-Key`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Every secret value: the key, the secret, the store's token and
    /// encryption key, and every token issued so far.
    pub fn secrets(&self) -> Vec<String> {
        let mut all =
            vec![self.key.clone(), self.secret.clone(), self.upstash.token().to_owned(), self.encryption_key.clone()];
        all.extend(self.tokens.issued());
        all
    }

    /// Fails naming `what` if `text` contains any secret (never the secret itself).
    pub fn assert_no_secrets(&self, what: &str, text: &str) -> anyhow::Result<()> {
        let names = ["API key", "client secret", "Upstash token", "encryption key"];
        for (i, secret) in self.secrets().iter().enumerate() {
            let name = names.get(i).copied().unwrap_or("an access token");
            anyhow::ensure!(!text.contains(secret.as_str()), "{what} contains {name}");
        }
        Ok(())
    }
}
