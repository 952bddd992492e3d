//! The Upstash REST facade, run in-process in front of a [`RedisServer`].

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use upstash_local::UpstashLocal;

use crate::RedisServer;

/// An in-process `upstash-local` on a free port with a random token, plus direct
/// access to the Redis behind it for asserting what is stored at rest.
pub struct Upstash {
    handle: upstash_local::Handle,
    redis: redis::Client,
}

impl Upstash {
    /// Starts the REST facade in front of `redis`; it accepts Upstash's
    /// script flags, as Upstash does.
    pub async fn start(redis: &RedisServer) -> anyhow::Result<Self> {
        Self::start_as(redis, |server| server).await
    }

    /// The same, but passing scripts to Redis unchanged, as
    /// serverless-redis-http (SRH) does: Redis refuses Upstash's
    /// `allow-key-locking` flag (`ERR Unexpected flag in script shebang`).
    pub async fn start_like_srh(redis: &RedisServer) -> anyhow::Result<Self> {
        Self::start_as(redis, UpstashLocal::forward_script_flags).await
    }

    async fn start_as(redis: &RedisServer, mode: fn(UpstashLocal) -> UpstashLocal) -> anyhow::Result<Self> {
        let token = format!("local_{:032x}", fastrand::u128(..));
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding 127.0.0.1:0")?;
        let handle = mode(UpstashLocal::new(redis.url(), token)).start(listener).await?;
        let redis = redis::Client::open(redis.url())?;
        Ok(Self { handle, redis })
    }

    /// Base REST URL, e.g. `http://127.0.0.1:PORT` (what `UPSTASH_REDIS_REST_URL` holds).
    pub fn url(&self) -> String {
        self.handle.url()
    }

    /// The bearer token (what `UPSTASH_REDIS_REST_TOKEN` holds).
    pub fn token(&self) -> &str {
        self.handle.token()
    }

    /// Redis commands served so far (each pipeline entry counts once).
    pub fn commands(&self) -> u64 {
        self.handle.commands()
    }

    /// HTTP requests received so far.
    pub fn requests(&self) -> u64 {
        self.handle.requests()
    }

    /// HTTP requests that added to a counter (a rate limit's, a budget's…),
    /// however many counters each added to.
    pub fn counting_requests(&self) -> u64 {
        self.handle.counting_requests()
    }

    /// Sets [`commands`](Self::commands), [`requests`](Self::requests) and
    /// [`counting_requests`](Self::counting_requests) back to zero.
    pub fn reset_counts(&self) {
        self.handle.reset_counts();
    }

    /// The raw value of `key` read straight from Redis (not through the REST facade,
    /// and not counted).
    ///
    /// # Panics
    /// If Redis cannot be reached or `key` does not hold a string.
    pub async fn redis_get(&self, key: &str) -> Option<String> {
        self.query(redis::cmd("GET").arg(key), "GET").await
    }

    /// Keys matching `pattern` (Redis `KEYS` glob), sorted.
    ///
    /// # Panics
    /// If Redis cannot be reached.
    pub async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.query(redis::cmd("KEYS").arg(pattern), "KEYS").await;
        keys.sort();
        keys
    }

    /// Remaining time to live of `key` in milliseconds, as Redis `PTTL` reports it
    /// (-1: no expiry, -2: no such key).
    ///
    /// # Panics
    /// If Redis cannot be reached.
    pub async fn redis_pttl(&self, key: &str) -> i64 {
        self.query(redis::cmd("PTTL").arg(key), "PTTL").await
    }

    /// Makes `key` expire in `ms` milliseconds (Redis `PEXPIRE`), as if its
    /// lease ran out; returns whether the key existed.
    ///
    /// # Panics
    /// If Redis cannot be reached.
    pub async fn redis_pexpire(&self, key: &str, ms: u64) -> bool {
        self.query(redis::cmd("PEXPIRE").arg(key).arg(ms), "PEXPIRE").await
    }

    /// A client for the Redis behind the facade, for anything else a test needs.
    pub fn redis_client(&self) -> &redis::Client {
        &self.redis
    }

    /// Stops the facade and waits for in-flight requests.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd, what: &str) -> T {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5));
        let mut conn = self
            .redis
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap_or_else(|e| panic!("testkit: cannot connect to redis for {what}: {e}"));
        cmd.query_async(&mut conn).await.unwrap_or_else(|e| panic!("testkit: redis {what} failed: {e}"))
    }
}
