//! A 401 that a new token cannot cure must not rotate the token on every
//! request: young tokens are kept, and invalidations are budgeted per
//! upstream across instances, in the store (real Redis behind the Upstash
//! REST protocol). A token the upstream says it revoked is dropped whatever
//! its age, within the same budget.

mod common;

use std::time::Duration;

use common::{Rig, TEST_TIME, bounded, token_key};
use tokenrelay::Provenance;

const HOUR: Duration = Duration::from_secs(3600);

fn config(rig: &Rig, min_token_age: Duration, per_hour: u32) -> String {
    rig.site().cache(|c| c.invalidations_per_hour(per_hour).min_token_age(min_token_age)).render()
}

#[tokio::test]
async fn a_token_younger_than_the_minimum_age_is_kept_by_every_instance() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let text = config(&rig, HOUR, 10);
        let (a, b) = (rig.broker_with(&text, &rig.env()), rig.broker_with(&text, &rig.env()));
        let token = a.token("api").await.unwrap();
        assert!(!a.invalidate("api", &token).await.unwrap(), "kept from memory");
        // B knows the token's age from the store only.
        let seen_by_b = b.token("api").await.unwrap();
        assert_eq!(seen_by_b.outcome(), Provenance::Store);
        let fresh_b = rig.broker_with(&text, &rig.env());
        assert!(!fresh_b.invalidate("api", &token).await.unwrap(), "kept by an instance that never held it");
        assert_eq!(a.token("api").await.unwrap().expose(), token.expose());
        assert_eq!(rig.tokens.calls(), 1, "no token was fetched again");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn invalidations_are_budgeted_per_upstream_across_instances() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let text = config(&rig, Duration::ZERO, 2);
        let brokers = [rig.broker_with(&text, &rig.env()), rig.broker_with(&text, &rig.env())];
        let mut dropped = Vec::new();
        for i in 0..6 {
            let broker = &brokers[i % 2];
            let token = broker.token("api").await.unwrap();
            dropped.push(broker.invalidate("api", &token).await.unwrap());
        }
        assert_eq!(dropped, [true, true, false, false, false, false]);
        assert_eq!(rig.tokens.calls(), 3, "the first token and one per spent invalidation");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_late_401_for_a_replaced_token_spends_no_budget() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let text = config(&rig, Duration::ZERO, 1);
        let (a, b) = (rig.broker_with(&text, &rig.env()), rig.broker_with(&text, &rig.env()));
        let old = a.token("api").await.unwrap();
        assert!(b.invalidate("api", &b.token("api").await.unwrap()).await.unwrap());
        let newer = b.token("api").await.unwrap();
        // A still holds the old token: dropping it costs nothing, and A moves on to the newer one.
        assert!(a.invalidate("api", &old).await.unwrap());
        assert_eq!(a.token("api").await.unwrap().expose(), newer.expose());
        assert_eq!(rig.tokens.calls(), 2);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_revoked_token_is_dropped_whatever_its_age_within_the_budget() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let text = config(&rig, HOUR, 1);
        let (a, b) = (rig.broker_with(&text, &rig.env()), rig.broker_with(&text, &rig.env()));
        let young = a.token("api").await.unwrap();
        assert!(a.invalidate_revoked("api", &young).await.unwrap(), "dropped although younger than an hour");
        let fresh = b.token("api").await.unwrap();
        assert_ne!(fresh.expose(), young.expose(), "dropped from the store too");
        assert_eq!(rig.tokens.calls(), 2);
        assert!(!b.invalidate_revoked("api", &fresh).await.unwrap(), "the hour's one invalidation is spent");
        assert_eq!(b.token("api").await.unwrap().expose(), fresh.expose());
        assert_eq!(rig.tokens.calls(), 2, "no token fetched past the budget");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn late_401_keeps_the_newer_token_in_the_store() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let (a, b) = (rig.broker(), rig.broker());
        let old = a.token("api").await.unwrap();
        // Instance B sees a 401 first, rotates: the store now holds a newer token.
        b.invalidate("api", &b.token("api").await.unwrap()).await.unwrap();
        let newer = b.token("api").await.unwrap();
        assert_ne!(newer.expose(), old.expose());
        let stored_before = rig.upstash.redis_get(&token_key(&rig).await).await;

        // A's late 401 for the old token must not throw the newer one away.
        a.invalidate("api", &old).await.unwrap();
        assert_eq!(rig.upstash.redis_get(&token_key(&rig).await).await, stored_before);
        let again = a.token("api").await.unwrap();
        assert_eq!(again.expose(), newer.expose());
        assert_eq!(again.outcome(), Provenance::Store);
        assert_eq!(rig.tokens.calls(), 2);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn invalidation_drops_the_rejected_token_from_both_levels() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let b = rig.broker();
        let first = b.token("api").await.unwrap();
        b.invalidate("api", &first).await.unwrap();
        let left = rig.stored_keys().await;
        assert!(left.iter().all(|k| k.ends_with(":invalidations")), "store still holds the token: {left:?}");
        let second = b.token("api").await.unwrap();
        assert_ne!(first.expose(), second.expose());
        assert_eq!(second.outcome(), Provenance::Fetched);
        Ok(())
    })
    .await;
}
