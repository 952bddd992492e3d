//! Token rotation across instances against real parts (a redis-server behind
//! the Upstash REST protocol, a token endpoint that counts its calls): one
//! fetch per rotation however many race, locks released by crashed, cancelled
//! or overtaken holders, refresh ahead, and a store that goes away.

mod common;

use std::time::{Duration, Instant};

use common::{CLIENT_ID, CLIENT_SECRET, Rig, TEST_TIME, bounded};
use testkit::{Behavior, TokenServerConfig};
use tokenrelay::{Broker, Provenance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_cold_brokers_racing_on_an_empty_store_fetch_exactly_once() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let brokers: Vec<Broker> = (0..50).map(|_| rig.broker()).collect();
        let tasks: Vec<_> =
            brokers.into_iter().map(|b| tokio::spawn(async move { b.token("api").await.unwrap() })).collect();
        let mut values = Vec::new();
        for t in tasks {
            values.push(t.await.unwrap().expose().to_owned());
        }
        assert_eq!(rig.tokens.calls(), 1, "exactly one token request for 50 racing instances");
        assert!(values.iter().all(|v| v == &values[0]), "everyone got the same token");
        assert!(rig.tokens.is_valid(&values[0]));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn warm_instance_makes_zero_store_calls_and_cold_one_makes_one() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let warm = rig.broker();
        assert_eq!(warm.token("api").await.unwrap().outcome(), Provenance::Fetched);
        rig.upstash.reset_counts();
        for _ in 0..100 {
            assert_eq!(warm.token("api").await.unwrap().outcome(), Provenance::Memory);
        }
        assert_eq!(rig.upstash.requests(), 0, "store calls for 100 warm requests");

        let cold = rig.broker();
        assert_eq!(cold.token("api").await.unwrap().outcome(), Provenance::Store);
        assert_eq!(rig.upstash.requests(), 1, "store calls for a cold instance");
        assert_eq!(rig.tokens.calls(), 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn crashed_lock_holder_blocks_rotation_only_until_its_lease_expires() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        rig.tokens.set_behavior(Behavior::Hang);
        // A holder takes the lock; we learn its key, then the holder's process dies
        // mid-refresh: nothing releases the lock it leaves behind.
        let holder = rig.broker();
        let crashed = tokio::spawn(async move { holder.token("api").await });
        testkit::wait_until("the lock is taken", Duration::from_secs(5), || async {
            rig.stored_keys().await.iter().any(|k| k.ends_with(":lock"))
        })
        .await
        .unwrap();
        let lock = rig.stored_keys().await.into_iter().find(|k| k.ends_with(":lock")).unwrap();
        crashed.abort();
        let mut redis = rig.upstash.redis_client().get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd("SET")
            .arg(&lock)
            .arg("crashed-owner")
            .arg("PX")
            .arg(2000)
            .query_async(&mut redis)
            .await
            .unwrap();
        let locked_at = Instant::now();
        let calls = rig.tokens.calls();
        rig.tokens.set_behavior(Behavior::Normal);

        let token = rig.broker().token("api").await.unwrap();
        assert!(rig.tokens.is_valid(token.expose()));
        assert!(locked_at.elapsed() >= Duration::from_millis(1500), "waited for the 2 s lease, not less");
        assert_eq!(rig.tokens.calls(), calls + 1, "one fetch resumed rotation");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn cancelled_lock_holder_releases_the_lock_at_once() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        rig.tokens.set_behavior(Behavior::Hang);
        let holder = rig.broker();
        let cancelled = tokio::spawn(async move { holder.token("api").await });
        testkit::wait_until("the lock is taken", Duration::from_secs(5), || async {
            rig.stored_keys().await.iter().any(|k| k.ends_with(":lock"))
        })
        .await
        .unwrap();
        // The request holding it goes away, as when a visitor hangs up on a streaming function.
        cancelled.abort();
        testkit::wait_until("the lock is released, well before its 2 s lease", Duration::from_millis(700), || async {
            !rig.stored_keys().await.iter().any(|k| k.ends_with(":lock"))
        })
        .await
        .unwrap();
        rig.tokens.set_behavior(Behavior::Normal);
        let token = rig.broker().token("api").await.unwrap();
        assert!(rig.tokens.is_valid(token.expose()));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_ran_out_never_overwrites_the_newer_token() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let config = rig
            .site()
            .cache(|c| c.lock_lease(Duration::from_secs(20)).wait_timeout(Duration::from_secs(25)))
            .edit_upstream("api", |u| u.token(rig.token().timeout(Duration::from_secs(5))))
            .render();
        // The leader takes the lock; the token server holds its fetch.
        let hold = rig.tokens.hold_next();
        let leader = rig.broker_with(&config, &rig.env());
        let leader = tokio::spawn(async move { leader.token("api").await });
        testkit::wait_until("the leader's fetch arrives", Duration::from_secs(5), || async { rig.tokens.calls() == 1 })
            .await
            .unwrap();
        // Its lease runs out (a paused process, a slow network) and another
        // instance takes the lock and stores a newer token.
        let lock = rig.stored_keys().await.into_iter().find(|k| k.ends_with(":lock")).expect("the leader's lock");
        assert!(rig.upstash.redis_pexpire(&lock, 1).await);
        testkit::wait_until("the lease runs out", Duration::from_secs(5), || async {
            rig.upstash.redis_get(&lock).await.is_none()
        })
        .await
        .unwrap();
        let newer = rig.broker_with(&config, &rig.env()).token("api").await.unwrap();
        assert_eq!(newer.outcome(), Provenance::Fetched);

        // The old leader's fetch completes: it may use its token, but never store it.
        hold.release();
        let late = leader.await.unwrap().unwrap();
        assert_ne!(late.expose(), newer.expose());
        let cold = rig.broker_with(&config, &rig.env()).token("api").await.unwrap();
        assert_eq!(
            (cold.expose(), cold.outcome()),
            (newer.expose(), Provenance::Store),
            "the store kept the newer token"
        );
        assert_eq!(rig.tokens.calls(), 2);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn token_is_refreshed_ahead_of_expiry_without_making_callers_wait() {
    bounded(TEST_TIME, async {
        // 4 s tokens, 1 s margin: served until 3 s, refreshed from 2 s on.
        let rig = Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).lifetime(Duration::from_secs(4))).await;
        let b = rig.broker_with(
            &rig.site()
                .cache(|c| c.safety_margin(Duration::from_secs(1)).refresh_window(Duration::from_secs(1)))
                .render(),
            &rig.env(),
        );
        let first = b.token("api").await.unwrap();
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let during = b.token("api").await.unwrap();
        assert_eq!(during.expose(), first.expose(), "the caller is served at once, from memory");
        assert_eq!(during.outcome(), Provenance::Memory);
        testkit::wait_until("background refresh", Duration::from_secs(5), || async { rig.tokens.calls() == 2 })
            .await
            .unwrap();
        testkit::wait_until("new token served", Duration::from_secs(5), || async {
            b.token("api").await.unwrap().expose() != first.expose()
        })
        .await
        .unwrap();
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn redis_stopped_mid_run_still_serves_valid_tokens_and_recovers() {
    bounded(TEST_TIME, async {
        let mut rig = Rig::default().await;
        let warm = rig.broker();
        warm.token("api").await.unwrap();
        rig.redis.stop().await.unwrap();

        assert_eq!(warm.token("api").await.unwrap().outcome(), Provenance::Memory);
        let cold = rig.broker().token("api").await.unwrap();
        assert_eq!(cold.outcome(), Provenance::Direct);
        assert!(rig.tokens.is_valid(cold.expose()));

        rig.redis.restart().await.unwrap();
        testkit::wait_until("the store serves again", Duration::from_secs(10), || async {
            rig.broker().token("api").await.is_ok_and(|t| t.outcome() == Provenance::Fetched)
        })
        .await
        .unwrap();
        assert_eq!(rig.broker().token("api").await.unwrap().outcome(), Provenance::Store, "recovered by itself");
        Ok(())
    })
    .await;
}
