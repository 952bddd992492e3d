//! `Broker::token_valid_for`: a token handed to a build must outlive it.

mod common;

use std::time::{Duration, SystemTime};

use common::{Rig, TEST_TIME, bounded};
use testkit::{ExpiresIn, TokenServerConfig};
use tokenrelay::Provenance;

/// The rig's config for an endpoint that sends no `expires_in`, so the
/// configured `default_lifetime` decides how long tokens last.
fn config_with_lifetime(rig: &Rig, lifetime: Duration) -> String {
    rig.site().edit_upstream("api", |u| u.token(rig.token().default_lifetime(lifetime))).render()
}

async fn rig() -> Rig {
    Rig::start(TokenServerConfig::new(common::CLIENT_ID, common::CLIENT_SECRET).expires_in(ExpiresIn::Omitted)).await
}

#[tokio::test]
async fn a_token_that_outlives_the_minimum_is_reused() {
    bounded(TEST_TIME, async {
        let rig = rig().await;
        let broker = rig.broker_with(&config_with_lifetime(&rig, Duration::from_secs(3600)), &rig.env());
        let first = broker.token("api").await.unwrap();
        let again = broker.token_valid_for("api", Duration::from_secs(30 * 60)).await.unwrap();
        assert_eq!(again.expose(), first.expose());
        assert_eq!(again.outcome(), Provenance::Memory);
        assert_eq!(rig.tokens.calls(), 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_stored_token_expiring_within_the_minimum_is_replaced_in_the_store_too() {
    bounded(TEST_TIME, async {
        let rig = rig().await;
        // Another instance stored a token that expires in 20 seconds.
        let short = rig.broker_with(&config_with_lifetime(&rig, Duration::from_secs(20)), &rig.env());
        let old = short.token("api").await.unwrap();

        let build = rig.broker_with(&config_with_lifetime(&rig, Duration::from_secs(3600)), &rig.env());
        let token = build.token_valid_for("api", Duration::from_secs(60)).await.unwrap();
        assert_ne!(token.expose(), old.expose());
        assert_eq!(rig.tokens.calls(), 2);
        let left = token.expires_at().unwrap().duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(50 * 60), "{left:?}");

        // Browse-time instances now find the new token in the store.
        let later = rig.broker_with(&config_with_lifetime(&rig, Duration::from_secs(3600)), &rig.env());
        let shared = later.token("api").await.unwrap();
        assert_eq!((shared.expose(), shared.outcome()), (token.expose(), Provenance::Store));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn tokens_shorter_than_the_minimum_fail_with_both_durations_named() {
    bounded(TEST_TIME, async {
        let rig = rig().await;
        let broker = rig.broker_with(&config_with_lifetime(&rig, Duration::from_secs(600)), &rig.env());
        let err = broker.token_valid_for("api", Duration::from_secs(15 * 60)).await.unwrap_err();
        assert_eq!(err.code(), "token_unavailable");
        let message = err.to_string();
        assert!(message.starts_with("upstream \"api\": token unavailable: a new token is valid for 10m,"), "{message}");
        assert!(message.contains("less than the required 15m"), "{message}");
        assert_eq!(rig.tokens.calls(), 2, "one fetch, one forced refresh, no more");
        Ok(())
    })
    .await;
}
