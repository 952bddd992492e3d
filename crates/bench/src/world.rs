//! The local world every scenario runs in: a redis-server behind the Upstash
//! REST protocol, OAuth2 token endpoints and the API that trusts their tokens,
//! all on 127.0.0.1.
//!
//! The servers run on a runtime of their own (other threads than the load
//! generator's), in this process, so that their counters can be read directly:
//! Upstash REST requests, token-endpoint calls, and what the API received.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hyper::header::HeaderValue;
use testkit::config::{Budget, RateLimit, RouteCache, RouteConfig, SiteConfig, UpstreamConfig, oauth2, route};
use testkit::{ApiServer, RedisServer, TokenServer, TokenServerConfig, Upstash, base64_key};
use tokio::runtime::Handle;

use crate::load::Target;

/// The upstream's name in `tokenrelay.toml`, and so in relay paths.
pub const UPSTREAM: &str = "api";
/// The realistic upstream's name: bench/jwt-api, an API that verifies an
/// RS256 JWT against its issuer's JWKS on every request.
pub const JWT_UPSTREAM: &str = "jwt";
/// The request every scenario relays, below the upstream's base URL.
pub const SEARCH: &str = "/search/images?phrase=cat";
/// The API's route that answers after a delay (`/slow?ms=N`), for an upstream
/// as slow as a real one.
const SLOW: &str = "/slow";
/// Environment variables the config's client id and secret come from.
const CLIENT_ID_VAR: &str = "BENCH_CLIENT_ID";
const CLIENT_SECRET_VAR: &str = "BENCH_CLIENT_SECRET";
const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret";
/// The relay's rate limit is per client IP, and every bench client is 127.0.0.1:
/// the limit is set out of reach (it is still checked on every request), in
/// windows of the default length, so that the store calls the limiter makes
/// (a client's first request of a window, then a background sync a second)
/// show as they would in production.
const UNREACHABLE_RATE_LIMIT: u32 = u32::MAX;
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);
/// The upstream's budget of calls a day: far from its end in any run, so
/// that the warm path shows what a budget costs when it is not near (its
/// syncs count calls ahead, as a chore, at most once an interval).
const FAR_BUDGET: u64 = 1_000_000_000;
const BUDGET_WINDOW: Duration = Duration::from_secs(86_400);

/// Redis, Upstash REST in front of it, and the encryption key of the store.
pub struct World {
    servers: Handle,
    pub upstash: Upstash,
    _redis: RedisServer,
    key: String,
    dir: tempfile::TempDir,
}

/// A token endpoint and the API that accepts its live tokens.
pub struct Upstream {
    pub tokens: TokenServer,
    pub api: ApiServer,
}

impl World {
    /// Starts redis-server and Upstash REST on the `servers` runtime.
    pub async fn start(servers: Handle) -> anyhow::Result<World> {
        let (redis, upstash) = servers
            .spawn(async {
                let redis = RedisServer::start().await?;
                let upstash = Upstash::start(&redis).await?;
                anyhow::Ok((redis, upstash))
            })
            .await??;
        let dir = tempfile::Builder::new().prefix("tokenrelay-bench-").tempdir()?;
        Ok(World { servers, upstash, _redis: redis, key: base64_key(), dir })
    }

    /// A token endpoint whose tokens live `lifetime`, and an API trusting it.
    pub async fn upstream(&self, lifetime: Duration) -> anyhow::Result<Upstream> {
        let config = TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).lifetime(lifetime);
        let (tokens, api) = self
            .servers
            .spawn(async move {
                let tokens = TokenServer::start(config).await?;
                let api = ApiServer::start(&tokens).await?;
                anyhow::Ok((tokens, api))
            })
            .await??;
        Ok(Upstream { tokens, api })
    }

    /// A scratch directory for configs and logs, removed at the end.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bench's `tokenrelay.toml` for `upstream`: upstream [`UPSTREAM`]
    /// relaying `GET /search/**` and `GET /slow`, under a rate limit out of
    /// reach and a budget far from its end.
    pub fn site(&self, upstream: &Upstream) -> SiteConfig {
        self.site_with(upstream, search_route())
    }

    /// The same, with the relay's response cache keeping `/search/**` answers `ttl`.
    pub fn cached_site(&self, upstream: &Upstream, ttl: Duration) -> SiteConfig {
        self.site_with(upstream, search_route().cache(RouteCache::ttl(ttl)))
    }

    fn site_with(&self, upstream: &Upstream, search: RouteConfig) -> SiteConfig {
        let token = oauth2(upstream.tokens.url(), CLIENT_ID_VAR, CLIENT_SECRET_VAR);
        SiteConfig::new()
            .relay_settings(|r| r.rate_limit(RateLimit::new(UNREACHABLE_RATE_LIMIT, RATE_LIMIT_WINDOW)))
            .upstream(UpstreamConfig::new(UPSTREAM, upstream.api.url(), token).relay(|r| {
                r.budget(Budget::new(FAR_BUDGET, BUDGET_WINDOW)).route(search).route(route(SLOW).methods(["GET"]))
            }))
    }

    /// Writes `site` as `<name>.toml` in [`dir`](Self::dir).
    pub fn write_config(&self, name: &str, site: &SiteConfig) -> anyhow::Result<PathBuf> {
        let path = self.dir().join(format!("{name}.toml"));
        site.write(&path)?;
        Ok(path)
    }

    /// The environment of the JWT-verifying API: the one client it accepts.
    pub fn jwt_api_env(&self) -> Vec<(String, String)> {
        vec![
            ("JWT_API_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
            ("JWT_API_CLIENT_SECRET".to_owned(), CLIENT_SECRET.to_owned()),
        ]
    }

    /// The environment a relay instance gets on a platform: store, key,
    /// credentials and config path.
    pub fn relay_env(&self, config: &Path) -> Vec<(String, String)> {
        let pairs = [
            ("UPSTASH_REDIS_REST_URL", self.upstash.url()),
            ("UPSTASH_REDIS_REST_TOKEN", self.upstash.token().to_owned()),
            (tokenrelay::ENCRYPTION_KEY_VAR, self.key.clone()),
            (tokenrelay::CONFIG_PATH_VAR, config.display().to_string()),
            (CLIENT_ID_VAR, CLIENT_ID.to_owned()),
            (CLIENT_SECRET_VAR, CLIENT_SECRET.to_owned()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The environment of the Node baseline, which reads its settings the way
    /// such functions usually do: one variable each.
    pub fn baseline_env(&self, upstream: &Upstream, token_margin: Duration) -> Vec<(String, String)> {
        let pairs = [
            ("UPSTASH_REDIS_REST_URL", self.upstash.url()),
            ("UPSTASH_REDIS_REST_TOKEN", self.upstash.token().to_owned()),
            ("BASELINE_UPSTREAM", UPSTREAM.to_owned()),
            ("BASELINE_BASE_URL", upstream.api.url()),
            ("BASELINE_TOKEN_URL", upstream.tokens.url()),
            ("BASELINE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("BASELINE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("BASELINE_TOKEN_MARGIN_SECS", token_margin.as_secs().to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// An in-process broker on `config`, as one more instance would have.
    pub fn broker(&self, config: &Path) -> anyhow::Result<tokenrelay::Broker> {
        Ok(tokenrelay::Broker::from_env(&tokenrelay::Env::from_pairs(self.relay_env(config)))?)
    }

    /// Starts counting store round trips from zero.
    pub async fn reset_store_count(&self) -> anyhow::Result<()> {
        self.upstash.reset_counts();
        Ok(())
    }

    /// Store round trips since [`reset_store_count`](Self::reset_store_count).
    pub async fn store_count(&self) -> anyhow::Result<StoreCount> {
        Ok(StoreCount { requests: self.upstash.requests(), counts: self.upstash.counting_requests() })
    }

    /// Empties Redis (uncounted: straight to Redis, not through Upstash REST).
    pub async fn flush_store(&self) -> anyhow::Result<()> {
        let mut redis = self.upstash.redis_client().get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHDB").query_async::<()>(&mut redis).await?;
        Ok(())
    }
}

/// Upstash REST requests, split by purpose.
///
/// The relay adds to its shared counters (the rate limit's, the budget's) in
/// round trips of their own: syncs, at most one an interval as a chore of a
/// request, and the counts a request waits for (a client's first request of
/// a window on an instance, a budget's call with nothing counted ahead).
/// upstash-local counts the requests that add to a counter; the token path
/// never does, so the rest are token round trips.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreCount {
    pub requests: u64,
    /// Round trips that added to the shared counters.
    pub counts: u64,
}

impl StoreCount {
    /// Round trips for the token: reads, locks, writes.
    pub fn token(&self) -> u64 {
        self.requests.saturating_sub(self.counts)
    }

    pub fn add(&mut self, other: StoreCount) {
        self.requests += other.requests;
        self.counts += other.counts;
    }
}

impl Upstream {
    pub fn api_addr(&self) -> anyhow::Result<SocketAddr> {
        addr_of(&self.api.url())
    }

    /// `request` (below the base URL) straight to the API, with `token`.
    pub fn direct(&self, token: &str, request: &str) -> anyhow::Result<Target> {
        let base = reqwest::Url::parse(&self.api.url())?;
        let authorization = HeaderValue::from_str(&format!("Bearer {token}"))?;
        Ok(Target::new(self.api_addr()?, format!("{}{request}", base.path())).with_authorization(authorization))
    }
}

/// The path a relay function serves the bench's usual request under.
pub fn relay_path() -> String {
    relay_path_for(SEARCH)
}

/// The path a relay function serves `request` (below the base URL) under.
pub fn relay_path_for(request: &str) -> String {
    format!("/api/relay/{UPSTREAM}{request}")
}

/// A request the API answers after `delay`.
pub fn slow_request(delay: Duration) -> String {
    format!("{SLOW}?ms={}", delay.as_millis())
}

/// `host:port` of an `http://` URL.
pub fn addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    let url = reqwest::Url::parse(url)?;
    let addrs = url.socket_addrs(|| None)?;
    addrs.into_iter().next().with_context(|| format!("{url} has no address"))
}

/// The JWT-verifying API at `url` as upstream [`JWT_UPSTREAM`], with the
/// bench's client credentials.
pub fn jwt_upstream(url: &str) -> UpstreamConfig {
    let token = oauth2(format!("{url}/token"), CLIENT_ID_VAR, CLIENT_SECRET_VAR);
    UpstreamConfig::new(JWT_UPSTREAM, url, token).relay(|r| r.route(search_route()))
}

/// `GET /search/**`, the route of [`SEARCH`].
fn search_route() -> RouteConfig {
    route("/search/**").methods(["GET"])
}
