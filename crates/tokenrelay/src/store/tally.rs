//! Tallies: additions to the fields of hashes (`HINCRBY`) and members added
//! to distinct-count estimates (`PFADD`, a HyperLogLog), written with a
//! count's round trip ([`Store::count_and_tally`]) as one command, and read
//! back many at a time ([`Store::read_tallies`]). What a field means is the
//! owner's business (`relay::meter` and `store::keys::meter`).

use std::collections::HashMap;
use std::time::Duration;

use super::{Backend, Backends, Count, Read, Store, StoreError};
use crate::store::count::Counted;

/// Additions to the fields of the hash `key`, which lives `ttl` from its creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldAdds {
    pub(crate) key: String,
    pub(crate) fields: Vec<(String, u64)>,
    pub(crate) ttl: Duration,
}

/// Members added to the distinct-count estimate `key`, which lives `ttl`
/// from its creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Distinct {
    pub(crate) key: String,
    pub(crate) members: Vec<String>,
    pub(crate) ttl: Duration,
}

/// Everything one round trip tallies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tallies {
    pub(crate) fields: Vec<FieldAdds>,
    pub(crate) distinct: Vec<Distinct>,
}

impl Tallies {
    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.distinct.is_empty()
    }
}

/// What [`Store::read_tallies`] brought back: each hash's fields (empty when
/// absent), and each union of estimates' count, in the order asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TallyRead {
    pub(crate) hashes: Vec<HashMap<String, u64>>,
    pub(crate) distinct: Vec<u64>,
}

impl Store {
    /// Like [`Store::count`], and writes `tallies` in the same round trip;
    /// [`Counted::tallied`] says whether they were written (a failed tally
    /// never fails the counts, which were added).
    pub(crate) async fn count_and_tally(
        &self,
        counts: &[Count],
        tallies: &Tallies,
        reads: &[Read<'_>],
    ) -> Result<Counted, StoreError> {
        let keys: Vec<&str> = reads.iter().map(|r| r.key).collect();
        let (totals, tallied, stored) = on_backend!(self, b => b.count_and_read(counts, tallies, &keys))?;
        Ok(Counted { totals, tallied, values: self.values(reads, stored) })
    }

    /// The fields of the hashes `hashes` and, for each set of estimates in
    /// `distinct`, the count of their union, in one round trip. Off the
    /// request path (the operator's views, a chore).
    pub(crate) async fn read_tallies(&self, hashes: &[&str], distinct: &[&[&str]]) -> Result<TallyRead, StoreError> {
        on_backend!(self, b => b.read_tallies(hashes, distinct))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, StoreSettings};
    use crate::store::UPSTASH_VARS;

    fn tallies(n: u64, members: &[&str]) -> Tallies {
        let ttl = Duration::from_secs(60);
        Tallies {
            fields: vec![
                FieldAdds { key: "h1".into(), fields: vec![("a".into(), n), ("b".into(), 1)], ttl },
                FieldAdds { key: "h2".into(), fields: vec![("a".into(), 2 * n)], ttl },
            ],
            distinct: vec![Distinct {
                key: "u".into(),
                members: members.iter().map(|m| (*m).to_owned()).collect(),
                ttl,
            }],
        }
    }

    async fn tallies_add_up(store: &Store) {
        let count = Count { key: "c".into(), add: 1, ttl: Duration::from_secs(60) };
        let first = store.count_and_tally(std::slice::from_ref(&count), &tallies(3, &["x", "y"]), &[]).await.unwrap();
        assert!(first.tallied);
        assert_eq!(first.totals, [1], "the counts go on as before");
        store.count_and_tally(&[], &tallies(4, &["y", "z"]), &[]).await.unwrap();
        let read = store.read_tallies(&["h1", "h2", "absent"], &[&["u"], &["none"], &["u", "none"]]).await.unwrap();
        let h = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect::<HashMap<_, _>>();
        assert_eq!(read.hashes, [h(&[("a", 7), ("b", 2)]), h(&[("a", 14)]), HashMap::new()]);
        assert_eq!(read.distinct, [3, 0, 3], "x, y and z");
    }

    #[tokio::test]
    async fn tallies_add_up_through_upstash_in_one_command() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let env = Env::from_pairs([(UPSTASH_VARS.0, upstash.url()), (UPSTASH_VARS.1, upstash.token().to_owned())]);
            let settings = StoreSettings { allow_unencrypted: true, timeout: Duration::from_secs(2) };
            let store =
                Store::from_env(&env, &settings, reqwest::Client::new(), std::path::Path::new("t.toml")).unwrap();
            tallies_add_up(&store).await;
            upstash.reset_counts();
            store.count_and_tally(&[], &tallies(1, &["w"]), &[]).await.unwrap();
            assert_eq!((upstash.requests(), upstash.commands()), (1, 1), "every tally in one command");
            let pttl = upstash.redis_pttl("h1").await;
            assert!(pttl > 55_000 && pttl <= 60_000, "a tally expires: {pttl}");
            let pttl = upstash.redis_pttl("u").await;
            assert!(pttl > 55_000 && pttl <= 60_000, "an estimate expires: {pttl}");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn tallies_add_up_in_the_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::from_pairs([(crate::store::LOCAL_STORE_VAR, dir.path().to_str().unwrap())]);
        let settings = StoreSettings { allow_unencrypted: true, timeout: Duration::from_secs(2) };
        let store = Store::from_env(&env, &settings, reqwest::Client::new(), std::path::Path::new("t.toml")).unwrap();
        tallies_add_up(&store).await;
    }
}
