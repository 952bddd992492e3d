//! The Upstash client's Lua scripts (`EVAL`, atomic in Redis). Every script
//! starts with `#!lua flags=allow-key-locking`: Upstash runs an `EVAL` under a
//! global lock unless it says it touches only its `KEYS`, which ours do.
//! Plain Redis refuses that flag, and so does any REST proxy that passes
//! scripts to it unchanged, such as serverless-redis-http (SRH), which
//! Upstash recommends for local development and CI. The first refusal
//! switches the client to scripts without the flag for the rest of the
//! process, and the refused call is sent again at once without it.

#![deny(clippy::arithmetic_side_effects)]

use std::sync::atomic::Ordering;

use serde_json::Value;

use super::UpstashClient;
use crate::store::StoreError;

/// A Lua script, with Upstash's flag that locks only the script's `KEYS`
/// (upstash.com/docs/redis/overall/lua-scripts), not the whole database, and
/// without it for stores that refuse the flag.
pub(super) struct Script {
    flagged: &'static str,
    plain: &'static str,
}

impl Script {
    fn text(&self, flagged: bool) -> &'static str {
        if flagged { self.flagged } else { self.plain }
    }
}

macro_rules! script {
    ($body:expr) => {
        Script { flagged: concat!("#!lua flags=allow-key-locking\n", $body), plain: $body }
    };
}

/// Compare-and-delete: deletes KEYS[1] only while it still holds ARGV[1].
pub(super) const DELETE_IF_SCRIPT: Script =
    script!("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end");

/// Fenced write: sets KEYS[1] to ARGV[1] for ARGV[2] ms and deletes the lock
/// KEYS[2], only while the lock still holds the owner ARGV[3]; returns 1 if so.
/// The owner check and the write are one script, so no other instance can take
/// the lock between them (Redis runs a script atomically).
pub(super) const SET_FENCED_SCRIPT: Script = script!(
    "if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end \
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
redis.call('DEL', KEYS[2]) \
return 1"
);

/// Adds ARGV[1] to the counter KEYS[1], gives it ARGV[2] ms to live if it has
/// no expiry yet, and returns the new total.
pub(super) const ADD_COUNT_SCRIPT: Script = script!(
    "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return n"
);

/// Tallies (`store::Tallies`) in one command: KEYS are the hashes, then the
/// estimates. ARGV[1] is the number of hashes; then, for each hash, its TTL
/// (ms), its number of fields and each field and addition; then, for each
/// estimate, its TTL, its number of members and the members. A key gets its
/// TTL only when it has none yet (when it is created), like a counter.
pub(super) const TALLY_SCRIPT: Script = script!(
    "local a = 2 \
for k = 1, #KEYS do \
local ttl, n = ARGV[a], tonumber(ARGV[a + 1]) a = a + 2 \
if k <= tonumber(ARGV[1]) then \
for i = 1, n do redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1]) a = a + 2 end \
else \
if n > 0 then redis.call('PFADD', KEYS[k], unpack(ARGV, a, a + n - 1)) end a = a + n \
end \
if redis.call('PTTL', KEYS[k]) == -1 then redis.call('PEXPIRE', KEYS[k], ttl) end \
end \
return #KEYS"
);

impl UpstashClient {
    /// Runs `script` with `keys_and_args` (`EVAL script numkeys key… arg…`),
    /// without the flag if the store refused it, now or before.
    pub(super) async fn eval(&self, script: &Script, keys_and_args: &[&str]) -> Result<Value, StoreError> {
        let flagged = self.flagged();
        match self.command(&eval(script.text(flagged), keys_and_args)).await {
            Err(StoreError::Redis(e)) if flagged && refuses_flag(&e) => {
                self.flag_refused(&e);
                self.command(&eval(script.plain, keys_and_args)).await
            }
            other => other,
        }
    }

    /// Runs the pipeline `build` makes of the texts of scripts `a` and `b`:
    /// once more without the flag if the store refused it. A refused script
    /// did not run (Redis reads the flags before it runs anything), and a
    /// store that refuses the flag refuses it in every script, so sending the
    /// pipeline again counts nothing twice; the rest of it only reads.
    pub(super) async fn eval_pipelines<'a>(
        &self,
        a: &Script,
        b: &Script,
        build: impl Fn(&'static str, &'static str) -> Vec<Vec<&'a str>>,
    ) -> Result<Vec<Result<Value, StoreError>>, StoreError> {
        let flagged = self.flagged();
        let replies = self.pipeline(&build(a.text(flagged), b.text(flagged))).await?;
        let refusal = replies.iter().find_map(|r| match r {
            Err(StoreError::Redis(e)) if flagged && refuses_flag(e) => Some(e.clone()),
            _ => None,
        });
        match refusal {
            Some(e) => {
                self.flag_refused(&e);
                self.pipeline(&build(a.plain, b.plain)).await
            }
            None => Ok(replies),
        }
    }

    /// Whether scripts go with the flag: until the store refused it.
    pub(super) fn flagged(&self) -> bool {
        !self.flag_refused.load(Ordering::Relaxed)
    }

    /// Notes the refusal, and says so once.
    fn flag_refused(&self, error: &str) {
        if !self.flag_refused.swap(true, Ordering::Relaxed) {
            tracing::info!(
                store = %self.url,
                error,
                "the store refuses Upstash's script flag allow-key-locking (a plain Redis behind the REST protocol); sending scripts without it from now on"
            );
        }
    }
}

/// `EVAL script` followed by `keys_and_args`.
fn eval<'a>(script: &'a str, keys_and_args: &[&'a str]) -> Vec<&'a str> {
    std::iter::once("EVAL").chain(std::iter::once(script)).chain(keys_and_args.iter().copied()).collect()
}

/// Whether a Redis error is a refusal of the script's shebang flags: Redis 7
/// and later (and Valkey) say `Unexpected flag in script shebang`; Redis 6,
/// which knows no shebang, fails to compile the script at its `#`.
fn refuses_flag(error: &str) -> bool {
    error.contains("shebang") || error.contains("near '#'")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::upstash::tests::{client, client_of};
    use crate::store::{Backend, Count, Tallies};

    const T: Duration = Duration::from_secs(20);

    /// A REST proxy passing scripts to plain Redis, as serverless-redis-http does.
    async fn srh_client() -> (testkit::RedisServer, testkit::Upstash, UpstashClient) {
        let redis = testkit::RedisServer::start().await.unwrap();
        let upstash = testkit::Upstash::start_like_srh(&redis).await.unwrap();
        let c = client_of(&upstash);
        (redis, upstash, c)
    }

    #[tokio::test]
    async fn a_refused_script_flag_is_noticed_once_and_the_refused_call_sent_again_without_it() {
        tokio::time::timeout(T, async {
            let (_redis, upstash, c) = srh_client().await;
            let (lease, ttl) = (Duration::from_secs(5), Duration::from_secs(60));
            assert!(c.lock_and_read("lock", "a", lease, &["k"]).await.unwrap().0);
            upstash.reset_counts();
            assert!(c.set_fenced("k", "v", ttl, "lock", "a").await.unwrap(), "the first caller does not fail");
            assert_eq!(upstash.requests(), 2, "refused, then sent again at once without the flag");
            assert_eq!(c.mget(&["k", "lock"]).await.unwrap(), vec![Some("v".to_owned()), None]);
            upstash.reset_counts();
            assert!(!c.delete_if("k", "other").await.unwrap());
            let count = Count { key: "n".to_owned(), add: 2, ttl };
            assert_eq!(
                c.count_and_read(&[count], &Tallies::default(), &["k"]).await.unwrap(),
                (vec![2], true, vec![Some("v".to_owned())])
            );
            assert_eq!(upstash.requests(), 2, "from then on, scripts go without the flag: one request each");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_pipeline_whose_scripts_are_refused_is_sent_again_and_counts_once() {
        tokio::time::timeout(T, async {
            let (_redis, upstash, c) = srh_client().await;
            let count = |key: &str, add| Count { key: key.to_owned(), add, ttl: Duration::from_secs(60) };
            let tallies = Tallies {
                distinct: vec![crate::store::Distinct {
                    key: "u".to_owned(),
                    members: vec!["m".to_owned()],
                    ttl: Duration::from_secs(60),
                }],
                ..Tallies::default()
            };
            let (totals, tallied, _) =
                c.count_and_read(&[count("x", 3), count("y", 1)], &tallies, &["k"]).await.unwrap();
            assert!(tallied, "the tally went again without the flag too");
            assert_eq!(totals, [3, 1]);
            assert_eq!(upstash.requests(), 2, "refused, then sent again without the flag");
            assert_eq!(upstash.redis_get("x").await.as_deref(), Some("3"), "the refused round counted nothing");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_store_that_takes_the_flag_keeps_getting_it() {
        tokio::time::timeout(T, async {
            let (_redis, upstash, c) = client().await;
            assert!(c.lock_and_read("lock", "a", Duration::from_secs(5), &["k"]).await.unwrap().0);
            assert!(c.delete_if("lock", "a").await.unwrap());
            assert_eq!(upstash.requests(), 2, "no call sent twice");
            assert!(c.flagged(), "scripts keep Upstash's key-locking flag");
        })
        .await
        .unwrap();
    }

    #[test]
    fn shebang_refusals_are_told_from_other_script_errors() {
        assert!(refuses_flag("ERR Unexpected flag in script shebang: allow-key-locking"));
        assert!(refuses_flag("ERR Error compiling script (new function): user_script:1: unexpected symbol near '#'"));
        assert!(!refuses_flag("WRONGTYPE Operation against a key holding the wrong kind of value"));
        assert!(!refuses_flag("NOPERM User default has no permissions to run the 'eval' command"));
    }
}
