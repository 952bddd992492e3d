//! A small Upstash Redis REST client on reqwest.
//!
//! Protocol (Upstash REST API): a command is a JSON array POSTed to the base
//! URL with `Authorization: Bearer <token>`; `/pipeline` takes an array of
//! commands. Replies are `{"result": …}` or `{"error": "…"}` (HTTP 400 for
//! Redis errors). We do not send `Upstash-Encoding: base64`: every value we
//! store is ASCII, so plain JSON strings are exact.
//!
//! The [`Backend`] operations are Redis commands, Lua scripts (`EVAL`, atomic
//! in Redis; see [`script`]) and pipelines (one round trip, not atomic).

#![deny(clippy::arithmetic_side_effects)]

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::{Backend, Count, StoreError, Tallies, TallyRead};
use script::{ADD_COUNT_SCRIPT, DELETE_IF_SCRIPT, SET_FENCED_SCRIPT, TALLY_SCRIPT};

mod tally;

mod script;

/// A client for one Upstash database.
pub(crate) struct UpstashClient {
    url: Url,
    pipeline_url: Url,
    token: SecretString,
    http: reqwest::Client,
    timeout: Duration,
    /// Set once the store refused the script flag: from then on, for the
    /// life of the process, scripts go without it.
    flag_refused: AtomicBool,
}

impl UpstashClient {
    pub(crate) fn new(url: Url, token: SecretString, http: reqwest::Client, timeout: Duration) -> Self {
        let mut pipeline_url = url.clone();
        pipeline_url
            .path_segments_mut()
            .map(|mut s| {
                s.pop_if_empty().push("pipeline");
            })
            .ok();
        Self { url, pipeline_url, token, http, timeout, flag_refused: AtomicBool::new(false) }
    }

    /// The database URL (not secret; the token is).
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// Runs one command.
    pub(crate) async fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        let reply = self.post(&self.url, &serde_json::json!(args)).await?;
        reply_result(reply)
    }

    /// How long one request to the store may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs several commands in one round trip (not atomic); each has its own result.
    pub(crate) async fn pipeline(&self, commands: &[Vec<&str>]) -> Result<Vec<Result<Value, StoreError>>, StoreError> {
        match self.post(&self.pipeline_url, &serde_json::json!(commands)).await? {
            Value::Array(items) if items.len() == commands.len() => Ok(items.into_iter().map(reply_result).collect()),
            _ => Err(StoreError::Protocol("pipeline reply is not one result per command")),
        }
    }

    async fn post(&self, url: &Url, body: &Value) -> Result<Value, StoreError> {
        let resp = self
            .http
            .post(url.clone())
            .bearer_auth(self.token.expose_secret())
            .json(body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| StoreError::transport(&e))?;
        let status = resp.status();
        let value: Value = match resp.json().await {
            Ok(v) => v,
            Err(e) if e.is_timeout() => return Err(StoreError::Timeout),
            Err(_) if !status.is_success() => return Err(StoreError::Status(status.as_u16())),
            Err(_) => return Err(StoreError::Protocol("reply is not JSON")),
        };
        match status.as_u16() {
            200 | 400 => Ok(value),
            other => Err(StoreError::Status(other)),
        }
    }
}

impl Backend for UpstashClient {
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>, StoreError> {
        strings(self.command(&mget(keys)).await?, keys.len())
    }

    async fn delete_if(&self, key: &str, expected: &str) -> Result<bool, StoreError> {
        Ok(self.eval(&DELETE_IF_SCRIPT, &["1", key, expected]).await? == 1)
    }

    /// `SET lock owner NX PX lease`, then `MGET keys`, pipelined.
    async fn lock_and_read(
        &self,
        lock: &str,
        owner: &str,
        lease: Duration,
        keys: &[&str],
    ) -> Result<(bool, Vec<Option<String>>), StoreError> {
        let lease = millis(lease);
        let mut replies = self.pipeline(&[vec!["SET", lock, owner, "NX", "PX", &lease], mget(keys)]).await?.into_iter();
        let won = !replies.next().ok_or(StoreError::Protocol("missing SET reply"))??.is_null();
        let values = replies.next().ok_or(StoreError::Protocol("missing MGET reply"))??;
        Ok((won, strings(values, keys.len())?))
    }

    async fn set_fenced(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        lock: &str,
        owner: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.eval(&SET_FENCED_SCRIPT, &["2", key, lock, value, &millis(ttl), owner]).await? == 1)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        self.command(&["SET", key, value, "PX", &millis(ttl)]).await.map(drop)
    }

    /// One `EVAL` per counter, one `EVAL` for every tally, then `MGET` of
    /// the keys, all pipelined.
    async fn count_and_read(
        &self,
        counts: &[Count],
        tallies: &Tallies,
        keys: &[&str],
    ) -> Result<(Vec<u64>, bool, Vec<Option<String>>), StoreError> {
        let args: Vec<(String, String)> = counts.iter().map(|n| (n.add.to_string(), millis(n.ttl))).collect();
        let tally = tally::args(tallies);
        let mut replies = self
            .eval_pipelines(&ADD_COUNT_SCRIPT, &TALLY_SCRIPT, |add_count, add_tallies| {
                let mut commands: Vec<Vec<&str>> = counts
                    .iter()
                    .zip(&args)
                    .map(|(n, (add, ttl))| vec!["EVAL", add_count, "1", &n.key, add, ttl])
                    .collect();
                if !tallies.is_empty() {
                    commands.push(tally::command(add_tallies, &tally));
                }
                if !keys.is_empty() {
                    commands.push(mget(keys));
                }
                commands
            })
            .await?;
        let values = match keys.is_empty() {
            true => Vec::new(),
            false => strings(replies.pop().ok_or(StoreError::Protocol("missing MGET reply"))??, keys.len())?,
        };
        let tallied = match tallies.is_empty() {
            true => true,
            false => match replies.pop().ok_or(StoreError::Protocol("missing tally reply"))? {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "tallies not stored; kept for the next sync");
                    false
                }
            },
        };
        let totals = replies
            .into_iter()
            .map(|reply| reply?.as_u64().ok_or(StoreError::Protocol("counter reply is not a number")))
            .collect::<Result<_, _>>()?;
        Ok((totals, tallied, values))
    }

    /// `HGETALL` of each hash, then `PFCOUNT` of each union, pipelined.
    async fn read_tallies(&self, hashes: &[&str], distinct: &[&[&str]]) -> Result<TallyRead, StoreError> {
        let commands: Vec<Vec<&str>> = (hashes.iter().map(|h| vec!["HGETALL", *h]))
            .chain(distinct.iter().map(|union| std::iter::once("PFCOUNT").chain(union.iter().copied()).collect()))
            .collect();
        if commands.is_empty() {
            return Ok(TallyRead::default());
        }
        let mut replies = self.pipeline(&commands).await?.into_iter();
        let hashes = (&mut replies).take(hashes.len()).map(|r| tally::hash(r?)).collect::<Result<_, _>>()?;
        let distinct = replies
            .map(|r| r?.as_u64().ok_or(StoreError::Protocol("PFCOUNT reply is not a number")))
            .collect::<Result<_, _>>()?;
        Ok(TallyRead { hashes, distinct })
    }
}

fn mget<'a>(keys: &[&'a str]) -> Vec<&'a str> {
    std::iter::once("MGET").chain(keys.iter().copied()).collect()
}

/// An MGET reply: one string or null per key.
fn strings(reply: Value, n: usize) -> Result<Vec<Option<String>>, StoreError> {
    match reply {
        Value::Array(items) if items.len() == n => items
            .into_iter()
            .map(|v| match v {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s)),
                _ => Err(StoreError::Protocol("expected a string or null")),
            })
            .collect(),
        _ => Err(StoreError::Protocol("MGET reply is not one value per key")),
    }
}

/// Redis PX wants whole milliseconds, at least 1.
fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

fn reply_result(reply: Value) -> Result<Value, StoreError> {
    match reply {
        Value::Object(mut map) => match map.remove("error") {
            Some(Value::String(e)) => Err(StoreError::Redis(e)),
            Some(_) => Err(StoreError::Protocol("error is not a string")),
            None => map.remove("result").ok_or(StoreError::Protocol("reply has neither result nor error")),
        },
        _ => Err(StoreError::Protocol("reply is not an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(20);

    pub(super) async fn client() -> (testkit::RedisServer, testkit::Upstash, UpstashClient) {
        let redis = testkit::RedisServer::start().await.unwrap();
        let upstash = testkit::Upstash::start(&redis).await.unwrap();
        let c = client_of(&upstash);
        (redis, upstash, c)
    }

    pub(super) fn client_of(upstash: &testkit::Upstash) -> UpstashClient {
        UpstashClient::new(
            Url::parse(&upstash.url()).unwrap(),
            SecretString::from(upstash.token().to_owned()),
            reqwest::Client::new(),
            Duration::from_secs(2),
        )
    }

    #[tokio::test]
    async fn commands_round_trip_through_real_redis() {
        tokio::time::timeout(T, async {
            let (_redis, _u, c) = client().await;
            assert_eq!(c.command(&["SET", "k", "v", "PX", "60000"]).await.unwrap(), Value::from("OK"));
            assert_eq!(c.command(&["GET", "k"]).await.unwrap(), Value::from("v"));
            assert_eq!(c.command(&["GET", "missing"]).await.unwrap(), Value::Null);
            assert_eq!(c.command(&["INCR", "n"]).await.unwrap(), Value::from(1));
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn pipeline_returns_one_result_per_command_including_errors() {
        tokio::time::timeout(T, async {
            let (_redis, _u, c) = client().await;
            let out = c.pipeline(&[vec!["SET", "a", "1"], vec!["INCR", "a"], vec!["HGET", "a", "f"]]).await.unwrap();
            assert_eq!(out.len(), 3);
            assert_eq!(out[1].as_ref().unwrap(), &Value::from(2));
            match &out[2] {
                Err(StoreError::Redis(e)) => assert!(e.starts_with("WRONGTYPE"), "{e}"),
                other => panic!("expected a Redis error, got {other:?}"),
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn fenced_write_stores_only_while_the_lock_is_held() {
        tokio::time::timeout(T, async {
            let (_redis, _u, c) = client().await;
            let (lease, ttl) = (Duration::from_secs(5), Duration::from_secs(60));
            assert!(c.lock_and_read("lock", "a", lease, &["k"]).await.unwrap().0);
            assert!(!c.set_fenced("k", "from b", ttl, "lock", "b").await.unwrap());
            assert!(c.set_fenced("k", "from a", ttl, "lock", "a").await.unwrap());
            assert_eq!(c.mget(&["k", "lock"]).await.unwrap(), vec![Some("from a".to_owned()), None]);
            assert!(!c.set_fenced("k", "late", ttl, "lock", "a").await.unwrap(), "released: a late write is fenced");
            let pttl = c.command(&["PTTL", "k"]).await.unwrap().as_i64().unwrap();
            assert!(pttl > 55_000 && pttl <= 60_000, "{pttl}");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn redis_errors_keep_their_prefix() {
        tokio::time::timeout(T, async {
            let (_redis, _u, c) = client().await;
            match c.command(&["EVALSHA", "0000000000000000000000000000000000000000", "0"]).await {
                Err(StoreError::Redis(e)) => assert!(e.starts_with("NOSCRIPT"), "{e}"),
                other => panic!("expected NOSCRIPT, got {other:?}"),
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn wrong_token_is_an_http_error_that_does_not_echo_the_token() {
        tokio::time::timeout(T, async {
            let (_redis, upstash, _) = client().await;
            let c = UpstashClient::new(
                Url::parse(&upstash.url()).unwrap(),
                SecretString::from("wrong-token-value".to_owned()),
                reqwest::Client::new(),
                Duration::from_secs(2),
            );
            let err = c.command(&["GET", "k"]).await.unwrap_err();
            assert!(matches!(err, StoreError::Status(401)), "{err:?}");
            assert!(!err.to_string().contains("wrong-token-value"));
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn unreachable_server_fails_fast_with_a_transport_error() {
        tokio::time::timeout(T, async {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let c = UpstashClient::new(
                Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
                SecretString::from("t".to_owned()),
                reqwest::Client::new(),
                Duration::from_millis(500),
            );
            assert!(matches!(c.command(&["GET", "k"]).await, Err(StoreError::Transport(_) | StoreError::Timeout)));
        })
        .await
        .unwrap();
    }
}
