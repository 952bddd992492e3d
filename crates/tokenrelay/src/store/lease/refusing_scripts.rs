//! A store whose Redis refuses every script (`ACL SETUSER default -eval`):
//! the fenced write and the compare-and-delete fail, and the lock must
//! still not outlive the request that held it.

use std::time::Duration;

use crate::config::{Env, StoreSettings};
use crate::store::{Store, StoreError, TokenKeys, UPSTASH_VARS, Write};

const T: Duration = Duration::from_secs(20);
/// The store's timeout: a lease shorter than this may run out before a `DEL` lands.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

async fn world() -> (testkit::RedisServer, testkit::Upstash, Store) {
    let redis = testkit::RedisServer::start().await.unwrap();
    let upstash = testkit::Upstash::start(&redis).await.unwrap();
    let env = Env::from_pairs([(UPSTASH_VARS.0, upstash.url()), (UPSTASH_VARS.1, upstash.token().to_owned())]);
    let settings = StoreSettings { allow_unencrypted: true, timeout: STORE_TIMEOUT };
    let store = Store::from_env(&env, &settings, reqwest::Client::new(), std::path::Path::new("t.toml")).unwrap();
    (redis, upstash, store)
}

async fn refuse_scripts(upstash: &testkit::Upstash) {
    let mut conn = upstash.redis_client().get_multiplexed_async_connection().await.unwrap();
    let ok: String = redis::cmd("ACL").arg("SETUSER").arg("default").arg("-eval").query_async(&mut conn).await.unwrap();
    assert_eq!(ok, "OK");
}

#[tokio::test]
async fn a_refused_fenced_write_releases_the_lock_with_a_plain_delete() {
    tokio::time::timeout(T, async {
        let (_redis, upstash, store) = world().await;
        let keys = TokenKeys::new(store.namer(), "getty", "id");
        let (lease, _) = keys.take(&store, Duration::from_secs(30)).await.unwrap();
        refuse_scripts(&upstash).await;
        let put = store.put_fenced(&keys.token, Write::Sealed(b"token"), Duration::from_secs(60), lease.unwrap()).await;
        assert!(matches!(put, Err(StoreError::Redis(ref e)) if e.starts_with("NOPERM")), "{put:?}");
        assert_eq!(upstash.redis_get(&keys.lock).await, None, "no one waits out the 30 s lease");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_cancelled_holder_releases_the_lock_with_a_plain_delete() {
    tokio::time::timeout(T, async {
        let (_redis, upstash, store) = world().await;
        let keys = TokenKeys::new(store.namer(), "getty", "id");
        let (lease, _) = keys.take(&store, Duration::from_secs(30)).await.unwrap();
        refuse_scripts(&upstash).await;
        drop(lease);
        let released = || async { upstash.redis_get(&keys.lock).await.is_none() };
        testkit::wait_until("the lock is released", Duration::from_secs(5), released).await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_plain_delete_that_could_land_after_the_lease_is_not_sent() {
    tokio::time::timeout(T, async {
        let (_redis, upstash, store) = world().await;
        let keys = TokenKeys::new(store.namer(), "getty", "id");
        let lease = STORE_TIMEOUT / 2;
        let (held, _) = keys.take(&store, lease).await.unwrap();
        refuse_scripts(&upstash).await;
        // As if the lease had run out and another instance held the lock now.
        let mut conn = upstash.redis_client().get_multiplexed_async_connection().await.unwrap();
        let _: () =
            redis::cmd("SET").arg(&keys.lock).arg("other").arg("PX").arg(30_000).query_async(&mut conn).await.unwrap();
        held.unwrap().release().await;
        assert_eq!(upstash.redis_get(&keys.lock).await.as_deref(), Some("other"), "another's lease is kept");
    })
    .await
    .unwrap();
}
