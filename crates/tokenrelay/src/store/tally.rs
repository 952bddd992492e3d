//! Reading tallies back, many at a time ([`Store::read_tallies`]): the
//! fields of hashes, and distinct-count estimates (HyperLogLogs), which
//! [`Store::count_and_tally`] writes with a count's round trip (see
//! [`Tallies`](super::Tallies)). What a field means is the owner's business
//! (`relay::meter` and `store::keys::meter`).

use super::{Backend, Backends, Store, StoreError, TallyRead};

impl Store {
    /// The fields of the hashes `hashes` and, for each set of estimates in
    /// `distinct`, the count of their union, in one round trip. Off the
    /// request path (the operator's views, a chore).
    pub(crate) async fn read_tallies(&self, hashes: &[&str], distinct: &[&[&str]]) -> Result<TallyRead, StoreError> {
        on_backend!(self, b => b.read_tallies(hashes, distinct))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::config::{Env, StoreSettings};
    use crate::store::UPSTASH_VARS;
    use crate::store::{Count, Distinct, FieldAdds, Tallies};

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
