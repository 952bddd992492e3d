//! Shared rig for the integration tests: a redis-server reached through the
//! Upstash REST protocol, a real OAuth2 token endpoint that counts its calls,
//! and brokers built on them.
#![allow(dead_code)] // each test binary uses part of the rig

use std::time::Duration;

use testkit::{RedisServer, TokenServer, TokenServerConfig, Upstash};
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

    pub fn config(&self, extra: &str) -> String {
        format!(
            r#"
[cache]
lock_lease = "2s"
wait_timeout = "5s"
failure_cooldown = "2s"
min_token_age = "0s"
{extra}

[upstreams.api]
base_url = "https://api.example.com/v3"

[upstreams.api.token]
type = "oauth2_client_credentials"
url = "{url}"
client_id = {{ env = "API_CLIENT_ID" }}
client_secret = {{ env = "API_CLIENT_SECRET" }}
timeout = "300ms"
"#,
            url = self.tokens.url()
        )
    }

    /// A fully separate broker: its own memory cache, sharing only the store.
    pub fn broker(&self) -> Broker {
        self.broker_with(&self.config(""), &self.env())
    }

    pub fn broker_with(&self, config: &str, env: &Env) -> Broker {
        Broker::new(Config::parse(config, "tokenrelay.toml", env).unwrap(), env).unwrap()
    }

    pub async fn stored_keys(&self) -> Vec<String> {
        self.upstash.redis_keys("tokenrelay:*").await
    }
}

pub fn base64_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::array::from_fn::<u8, 32, _>(|_| fastrand::u8(..)))
}

pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIME, f).await.expect("test timed out")
}

/// The Redis key of the stored token (not its lock, failure or invalidation count).
pub async fn token_key(rig: &Rig) -> String {
    let keys = rig.stored_keys().await;
    keys.into_iter()
        .find(|k| [":lock", ":failure", ":invalidations"].iter().all(|s| !k.ends_with(s)))
        .expect("a stored token")
}

/// A `json` source on the token server's JSON route.
pub fn json_config(rig: &Rig) -> String {
    format!(
        r#"
[upstreams.custom]
base_url = "https://api.example.com"
[upstreams.custom.token]
type = "json"
url = "{}"
token_pointer = "/data/token"
expires_at_pointer = "/data/expires_at"
body = {{ key = {{ env = "API_CLIENT_ID" }}, secret = {{ env = "API_CLIENT_SECRET" }} }}
"#,
        rig.tokens.custom_url()
    )
}
