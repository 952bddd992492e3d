//! The shared token store: Upstash Redis over REST when configured, else an
//! embedded local file store. Both offer the same few operations, and values
//! are sealed before they are written (see [`seal`]).

mod local;
pub(crate) mod seal;
pub(crate) mod upstash;

use std::sync::Once;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use url::Url;

use crate::config::{Env, StoreSettings};
use crate::error::{Error, MissingVar, Result};
use local::LocalStore;
use seal::Sealer;
use upstash::UpstashClient;

/// Upstash database URL and token (Upstash's own names).
pub const UPSTASH_VARS: (&str, &str) = ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN");
/// The same, as Vercel KV names them.
pub const VERCEL_KV_VARS: (&str, &str) = ("KV_REST_API_URL", "KV_REST_API_TOKEN");
/// Base64 of the 32-byte AES-256-GCM key sealing tokens at rest.
pub const ENCRYPTION_KEY_VAR: &str = "TOKENRELAY_ENCRYPTION_KEY";
/// Overrides the local store's directory.
pub const LOCAL_STORE_VAR: &str = "TOKENRELAY_LOCAL_STORE";

/// Compare-and-delete: deletes KEYS[1] only while it still holds ARGV[1].
const DELETE_IF_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Adds ARGV[1] to the counter KEYS[1], gives it ARGV[2] ms to live if it has
/// no expiry yet, and returns the new total.
const ADD_COUNT_SCRIPT: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return n";

/// Why a store operation failed. Never holds a secret: the Upstash token is
/// only ever sent as a header.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("timed out")]
    Timeout,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("redis error: {0}")]
    Redis(String),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("local store: {0}")]
    Io(String),
}

impl StoreError {
    pub(crate) fn transport(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            StoreError::Timeout
        } else if e.is_connect() {
            StoreError::Transport("connection failed".to_owned())
        } else {
            // The source, not the error itself: reqwest's Display includes the URL.
            StoreError::Transport(
                std::error::Error::source(e).map_or_else(|| "request failed".to_owned(), ToString::to_string),
            )
        }
    }
}

enum Backend {
    Upstash(UpstashClient),
    Local(LocalStore),
}

/// The store in use, with the sealer for its values.
pub(crate) struct Store {
    backend: Backend,
    pub(crate) sealer: Sealer,
}

impl Store {
    /// Chooses the store from the environment: Upstash (or Vercel KV) when its
    /// URL is set, else the local file store, said once in the log.
    pub(crate) fn from_env(
        env: &Env,
        settings: &StoreSettings,
        http: reqwest::Client,
        config_file: &std::path::Path,
    ) -> Result<Store> {
        let missing = |name: &str, why: &str| Error::MissingEnv {
            file: config_file.to_owned(),
            missing: vec![MissingVar { name: name.to_owned(), used_by: why.to_owned() }],
        };
        let found = [UPSTASH_VARS, VERCEL_KV_VARS].into_iter().find(|(url, _)| env.get(url).is_some());
        let Some((url_var, token_var)) = found else {
            return Self::local(env);
        };
        let url = Url::parse(env.get(url_var).unwrap_or_default())
            .map_err(|e| Error::InvalidEnv { name: url_var.to_owned(), reason: format!("not a URL: {e}") })?;
        let token = env
            .get(token_var)
            .ok_or_else(|| missing(token_var, &format!("the shared store, since {url_var} is set")))?;
        let sealer = match env.get(ENCRYPTION_KEY_VAR) {
            Some(key) => sealer_from(key)?,
            None if settings.allow_unencrypted => Sealer::Plain,
            None => {
                return Err(missing(
                    ENCRYPTION_KEY_VAR,
                    "encrypting tokens in the remote store; or set store.allow_unencrypted = true",
                ));
            }
        };
        let client = UpstashClient::new(url, SecretString::from(token.to_owned()), http, settings.timeout);
        Ok(Store { backend: Backend::Upstash(client), sealer })
    }

    fn local(env: &Env) -> Result<Store> {
        let dir = env.get(LOCAL_STORE_VAR).map_or_else(LocalStore::default_dir, Into::into);
        let local = LocalStore::open(dir.clone()).map_err(|e| Error::InvalidEnv {
            name: LOCAL_STORE_VAR.to_owned(),
            reason: format!("cannot use {}: {e}", dir.display()),
        })?;
        let sealer = match env.get(ENCRYPTION_KEY_VAR) {
            Some(key) => sealer_from(key)?,
            None => {
                let key = local.key().map_err(|e| Error::InvalidEnv {
                    name: LOCAL_STORE_VAR.to_owned(),
                    reason: format!("cannot create the local key in {}: {e}", dir.display()),
                })?;
                sealer_from(&key)?
            }
        };
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            tracing::info!(dir = %dir.display(), "no Upstash database configured (UPSTASH_REDIS_REST_URL or KV_REST_API_URL): using the local file store, shared by processes on this machine only");
        });
        Ok(Store { backend: Backend::Local(local), sealer })
    }

    /// Whether other machines share this store.
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::Upstash(_))
    }

    /// One line saying which store is used, without secrets.
    pub(crate) fn describe(&self) -> String {
        let sealing = if self.sealer.encrypts() { "AES-256-GCM" } else { "unencrypted" };
        match &self.backend {
            Backend::Upstash(c) => format!("upstash {} ({sealing})", c.url()),
            Backend::Local(l) => format!("local file store {} ({sealing})", l.dir().display()),
        }
    }

    pub(crate) async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>, StoreError> {
        match &self.backend {
            Backend::Upstash(c) => {
                let args: Vec<&str> = std::iter::once("MGET").chain(keys.iter().copied()).collect();
                match c.command(&args).await? {
                    Value::Array(items) if items.len() == keys.len() => {
                        items.into_iter().map(optional_string).collect()
                    }
                    _ => Err(StoreError::Protocol("MGET reply is not one value per key")),
                }
            }
            Backend::Local(l) => l.mget(keys).await,
        }
    }

    /// Deletes `key` only while it still holds `expected`.
    pub(crate) async fn delete_if(&self, key: &str, expected: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Upstash(c) => Ok(c.command(&["EVAL", DELETE_IF_SCRIPT, "1", key, expected]).await? == 1),
            Backend::Local(l) => l.delete_if(key, expected).await,
        }
    }

    /// `SET lock owner NX PX lease`, then `MGET keys`, in one round trip: when
    /// the lock is won, the read shows the state after winning it, so a token
    /// stored by the previous holder is never fetched again.
    pub(crate) async fn lock_and_read(
        &self,
        lock: &str,
        owner: &str,
        lease: Duration,
        keys: &[&str],
    ) -> Result<(bool, Vec<Option<String>>), StoreError> {
        match &self.backend {
            Backend::Upstash(c) => {
                let lease = millis(lease);
                let mget: Vec<&str> = std::iter::once("MGET").chain(keys.iter().copied()).collect();
                let mut replies = c.pipeline(&[vec!["SET", lock, owner, "NX", "PX", &lease], mget]).await?.into_iter();
                let won = !replies.next().ok_or(StoreError::Protocol("missing SET reply"))??.is_null();
                match replies.next().ok_or(StoreError::Protocol("missing MGET reply"))?? {
                    Value::Array(items) if items.len() == keys.len() => {
                        Ok((won, items.into_iter().map(optional_string).collect::<Result<_, _>>()?))
                    }
                    _ => Err(StoreError::Protocol("MGET reply is not one value per key")),
                }
            }
            Backend::Local(l) => l.lock_and_read(lock, owner, lease, keys).await,
        }
    }

    /// Stores a value and releases a lock held by `owner`, in one round trip.
    pub(crate) async fn set_and_unlock(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        lock: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Upstash(c) => {
                let ttl = millis(ttl);
                let replies = c
                    .pipeline(&[vec!["SET", key, value, "PX", &ttl], vec!["EVAL", DELETE_IF_SCRIPT, "1", lock, owner]])
                    .await?;
                replies.into_iter().try_for_each(|r| r.map(drop))
            }
            Backend::Local(l) => l.set_and_unlock(key, value, ttl, lock, owner).await,
        }
    }

    /// Adds each count to its counter (created with its `ttl` to live) and
    /// returns the new totals, in order: one round trip for all of them,
    /// each addition atomic, so that every instance counts together.
    pub(crate) async fn add_counts(&self, counts: &[Count]) -> Result<Vec<u64>, StoreError> {
        match &self.backend {
            Backend::Upstash(c) => {
                let args: Vec<(String, String)> = counts.iter().map(|n| (n.add.to_string(), millis(n.ttl))).collect();
                let commands: Vec<Vec<&str>> = counts
                    .iter()
                    .zip(&args)
                    .map(|(n, (add, ttl))| vec!["EVAL", ADD_COUNT_SCRIPT, "1", &n.key, add, ttl])
                    .collect();
                c.pipeline(&commands)
                    .await?
                    .into_iter()
                    .map(|reply| reply?.as_u64().ok_or(StoreError::Protocol("counter reply is not a number")))
                    .collect()
            }
            Backend::Local(l) => l.add_counts(counts).await,
        }
    }
}

/// An addition to a shared counter ([`Store::add_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) key: String,
    pub(crate) add: u64,
    /// How long a counter this addition creates lives.
    pub(crate) ttl: Duration,
}

fn sealer_from(key: &str) -> Result<Sealer> {
    Sealer::from_base64(key).map_err(|reason| Error::InvalidEnv { name: ENCRYPTION_KEY_VAR.to_owned(), reason })
}

fn optional_string(v: Value) -> Result<Option<String>, StoreError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(StoreError::Protocol("expected a string or null")),
    }
}

/// Redis PX wants whole milliseconds, at least 1.
fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_add_up_across_instances_through_upstash() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let env = Env::from_pairs([(UPSTASH_VARS.0, upstash.url()), (UPSTASH_VARS.1, upstash.token().to_owned())]);
            let settings = StoreSettings { allow_unencrypted: true, timeout: Duration::from_secs(2) };
            let open =
                || Store::from_env(&env, &settings, reqwest::Client::new(), std::path::Path::new("t.toml")).unwrap();
            let (a, b) = (open(), open());
            let ttl = Duration::from_secs(30);
            let count = |key: &str, add| Count { key: key.to_owned(), add, ttl };
            assert_eq!(a.add_counts(&[count("rate:x", 3), count("rate:y", 1)]).await.unwrap(), [3, 1]);
            assert_eq!(b.add_counts(&[count("rate:x", 2)]).await.unwrap(), [5], "both instances count together");
            let pttl = upstash.redis_pttl("rate:x").await;
            assert!(pttl > 25_000 && pttl <= 30_000, "the counter expires in Redis too: {pttl}");
        })
        .await
        .unwrap();
    }
}
