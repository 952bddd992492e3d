//! Shared counters: additions, and a read of other keys in the same round
//! trip, which is how a cold request learns everything it needs at once.

use super::{Count, Read, Store, StoreError, Tallies, Values};

/// What [`Store::count`] brought back.
pub(crate) struct Counted {
    /// The counters' new totals, in order.
    pub(crate) totals: Vec<u64>,
    /// Whether the tallies sent along were written ([`Store::count_and_tally`]).
    pub(crate) tallied: bool,
    /// The values read, in order.
    pub(crate) values: Values,
}

impl Store {
    /// Adds each count to its shared counter and reads `reads`, in one
    /// round trip; each addition is atomic, so every instance counts together.
    pub(crate) async fn count(&self, counts: &[Count], reads: &[Read<'_>]) -> Result<Counted, StoreError> {
        self.count_and_tally(counts, &Tallies::default(), reads).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Env, StoreSettings};
    use crate::store::UPSTASH_VARS;

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
            assert_eq!(a.count(&[count("rate:x", 3), count("rate:y", 1)], &[]).await.unwrap().totals, [3, 1]);
            assert_eq!(upstash.requests(), 1, "one round trip for every counter");
            assert_eq!(b.count(&[count("rate:x", 2)], &[]).await.unwrap().totals, [5], "both instances count together");
            let pttl = upstash.redis_pttl("rate:x").await;
            assert!(pttl > 25_000 && pttl <= 30_000, "the counter expires in Redis too: {pttl}");
        })
        .await
        .unwrap();
    }
}
