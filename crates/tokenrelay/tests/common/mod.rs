//! Shared rig for the integration tests: a redis-server reached through the
//! Upstash REST protocol, a real OAuth2 token endpoint that counts its calls,
//! and brokers built on them.
#![allow(dead_code)] // each test binary uses part of the rig

use std::time::Duration;

use testkit::config::{JsonToken, OAuth2Token, SiteConfig, UpstreamConfig, env, oauth2};
use testkit::{RedisServer, TokenServer, TokenServerConfig, Upstash, base64_key};
use tokenrelay::{Broker, Config, Env};

pub const CLIENT_ID: &str = "client-id-7f3a";
pub const CLIENT_SECRET: &str = "client-secret-9b2c";
pub const TEST_TIME: Duration = Duration::from_secs(60);

/// Redis behind the Upstash REST protocol, a token endpoint, and an encryption key.
pub struct Rig {
    pub redis: RedisServer,
    pub upstash: Upstash,
    pub tokens: TokenServer,
    pub key: String,
}

impl Rig {
    pub async fn start(tokens: TokenServerConfig) -> Rig {
        let redis = RedisServer::start().await.unwrap();
        let upstash = Upstash::start(&redis).await.unwrap();
        let tokens = TokenServer::start(tokens).await.unwrap();
        let key = base64_key();
        Rig { redis, upstash, tokens, key }
    }

    pub async fn default() -> Rig {
        Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET)).await
    }

    pub fn env(&self) -> Env {
        self.env_with(&[])
    }

    /// The rig's environment, with some variables replaced ("" unsets one).
    pub fn env_with(&self, overrides: &[(&str, &str)]) -> Env {
        let mut vars = vec![
            ("API_CLIENT_ID", CLIENT_ID.to_owned()),
            ("API_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("UPSTASH_REDIS_REST_URL", self.upstash.url()),
            ("UPSTASH_REDIS_REST_TOKEN", self.upstash.token().to_owned()),
            ("TOKENRELAY_ENCRYPTION_KEY", self.key.clone()),
        ];
        vars.retain(|(k, _)| !overrides.iter().any(|(o, _)| o == k));
        vars.extend(overrides.iter().map(|(k, v)| (*k, (*v).to_owned())));
        Env::from_pairs(vars)
    }

    /// The rig's world: short lock and cooldown timings, tokens always
    /// old enough to drop, and one upstream `api` on the rig's token endpoint.
    pub fn site(&self) -> SiteConfig {
        SiteConfig::new()
            .cache(|c| {
                c.lock_lease(Duration::from_secs(2))
                    .wait_timeout(Duration::from_secs(5))
                    .failure_cooldown(Duration::from_secs(2))
                    .min_token_age(Duration::ZERO)
            })
            .upstream(UpstreamConfig::new("api", "https://api.example.com/v3", self.token()))
    }

    /// The `api` upstream's token: the rig's endpoint, 300 ms an attempt.
    pub fn token(&self) -> OAuth2Token {
        oauth2(self.tokens.url(), "API_CLIENT_ID", "API_CLIENT_SECRET").timeout(Duration::from_millis(300))
    }

    /// [`site`](Self::site) as `tokenrelay.toml` text.
    pub fn config(&self) -> String {
        self.site().render()
    }

    /// A fully separate broker: its own memory cache, sharing only the store.
    pub fn broker(&self) -> Broker {
        self.broker_with(&self.config(), &self.env())
    }

    pub fn broker_with(&self, config: &str, env: &Env) -> Broker {
        Broker::new(Config::parse(config, "tokenrelay.toml", env).unwrap(), env).unwrap()
    }

    pub async fn stored_keys(&self) -> Vec<String> {
        self.upstash.redis_keys("tokenrelay:*").await
    }
}

pub use testkit::bounded;

/// The Redis key of the stored token (not its lock, failure or invalidation count).
pub async fn token_key(rig: &Rig) -> String {
    let keys = rig.stored_keys().await;
    keys.into_iter()
        .find(|k| [":lock", ":failure", ":invalidations"].iter().all(|s| !k.ends_with(s)))
        .expect("a stored token")
}

/// A `json` source on the token server's JSON route, alone in its config.
pub fn json_config(rig: &Rig) -> String {
    let token = JsonToken::new(rig.tokens.custom_url(), "/data/token")
        .expires_at_pointer("/data/expires_at")
        .body("key", env("API_CLIENT_ID"))
        .body("secret", env("API_CLIENT_SECRET"));
    SiteConfig::new().upstream(UpstreamConfig::new("custom", "https://api.example.com", token)).render()
}
