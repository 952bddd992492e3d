//! Talking to token endpoints: bounded retries of transient failures, clear
//! errors for rejections and unusable answers (never a panic, never an expired
//! token served), no hammering of a failing endpoint, and the request forms of
//! OAuth2 client credentials, JSON endpoints and static keys.

mod common;

use std::time::Duration;

use common::{CLIENT_ID, CLIENT_SECRET, Rig, TEST_TIME, bounded, json_config};
use testkit::config::{SiteConfig, Token, UpstreamConfig, env};
use testkit::{Behavior, ExpiresIn, TokenServerConfig};
use tokenrelay::Provenance;

async fn failure(rig: &Rig, behavior: Behavior) -> tokenrelay::Error {
    rig.tokens.set_behavior(behavior);
    rig.broker().token("api").await.unwrap_err()
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let err = failure(&rig, Behavior::Status(500)).await;
        assert_eq!(err.code(), "token_unavailable");
        assert_eq!(
            err.to_string(),
            "upstream \"api\": token unavailable: token endpoint failed 3 times, last: HTTP 500 Internal Server Error"
        );
        assert_eq!(rig.tokens.calls(), 3);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let err = failure(&rig, Behavior::Hang).await;
        assert_eq!(err.code(), "token_unavailable");
        assert!(err.to_string().ends_with("last: timed out after 300ms"), "{err}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn garbage_and_tokenless_responses_are_invalid_not_retried() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let err = failure(&rig, Behavior::Garbage).await;
        assert_eq!(err.code(), "token_response_invalid");
        assert_eq!(
            err.to_string(),
            "upstream \"api\": invalid token response: HTTP 200 OK body is not a JSON token response"
        );
        let rig = Rig::default().await;
        let err = failure(&rig, Behavior::MissingToken).await;
        assert_eq!(err.to_string(), "upstream \"api\": invalid token response: missing \"access_token\"");
        assert_eq!(rig.tokens.calls(), 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn tokens_that_arrive_expired_or_with_absurd_expiry_are_invalid_never_served() {
    bounded(TEST_TIME, async {
        let cases = [
            ("0", "\"expires_in\" says the token has already expired"),
            ("1e300", "\"expires_in\" is out of range"),
            ("1.7e12", "\"expires_in\" is more than 10 years away (milliseconds where seconds are due?)"),
            ("-30", "\"expires_in\" is not a number of seconds"),
        ];
        for (raw, reason) in cases {
            let rig =
                Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).expires_in(ExpiresIn::Raw(raw))).await;
            let err = rig.broker().token("api").await.unwrap_err();
            assert_eq!(err.code(), "token_response_invalid", "expires_in {raw}: {err}");
            assert_eq!(err.to_string(), format!("upstream \"api\": invalid token response: {reason}"));
            assert_eq!(rig.tokens.calls(), 1, "not retried");
            assert!(
                !rig.stored_keys().await.iter().any(|k| !k.ends_with(":failure")),
                "nothing but the failure stored"
            );
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn json_expires_at_in_the_past_or_out_of_range_is_invalid_never_a_panic() {
    bounded(TEST_TIME, async {
        for (raw, reason) in [
            ("1700000000", "/data/expires_at says the token has already expired"),
            ("1e300", "/data/expires_at is out of range"),
            ("\"1999-01-01T00:00:00Z\"", "/data/expires_at says the token has already expired"),
        ] {
            let rig =
                Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).expires_in(ExpiresIn::Raw(raw))).await;
            let err = rig.broker_with(&json_config(&rig), &rig.env()).token("custom").await.unwrap_err();
            assert_eq!(err.code(), "token_response_invalid", "expires_at {raw}: {err}");
            assert_eq!(err.to_string(), format!("upstream \"custom\": invalid token response: {reason}"));
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn oauth_errors_and_bad_credentials_are_rejections() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let err = failure(
            &rig,
            Behavior::OAuthError { error: "invalid_scope".into(), description: "scope x is unknown".into() },
        )
        .await;
        assert_eq!(err.code(), "token_rejected");
        assert_eq!(
            err.to_string(),
            "upstream \"api\": token endpoint rejected the request: invalid_scope (scope x is unknown), HTTP 400"
        );

        let rig = Rig::default().await;
        let env = rig.env_with(&[("API_CLIENT_SECRET", "wrong-secret")]);
        let err = rig.broker_with(&rig.config(), &env).token("api").await.unwrap_err();
        assert_eq!(err.code(), "token_rejected");
        assert!(err.to_string().contains("invalid_client"), "{err}");
        assert!(!err.to_string().contains("wrong-secret"));
        assert_eq!(rig.tokens.calls(), 1, "a rejection is not retried");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_failing_endpoint_is_not_hammered_by_this_or_other_instances() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let first = rig.broker();
        rig.tokens.set_behavior(Behavior::Status(503));
        first.token("api").await.unwrap_err();
        assert_eq!(rig.tokens.calls(), 3);
        // Within the cooldown: the same instance and a fresh one fail fast.
        assert_eq!(first.token("api").await.unwrap_err().code(), "token_unavailable");
        let other = rig.broker().token("api").await.unwrap_err();
        assert!(other.to_string().contains("shared by another instance"), "{other}");
        assert_eq!(rig.tokens.calls(), 3, "no new endpoint calls during the cooldown");
        // After it, rotation resumes by itself.
        rig.tokens.set_behavior(Behavior::Normal);
        testkit::wait_until("recovery after the cooldown", Duration::from_secs(10), || async {
            first.token("api").await.is_ok()
        })
        .await
        .unwrap();
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn getty_style_string_expiry_form_auth_and_extra_parameters() {
    bounded(TEST_TIME, async {
        let rig = Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).expires_in(ExpiresIn::String)).await;
        let token =
            rig.token().form_auth().scope("read").audience("https://api.example.com").extra("resource", "images");
        let config = rig.site().edit_upstream("api", |u| u.token(token)).render();
        let token = rig.broker_with(&config, &rig.env()).token("api").await.unwrap();
        let lifetime = token.expires_at().unwrap().duration_since(std::time::SystemTime::now()).unwrap();
        assert!(lifetime > Duration::from_secs(1790), "expires_in \"1800\" understood");
        let form = rig.tokens.last_form();
        for (k, v) in [
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", "read"),
            ("audience", "https://api.example.com"),
            ("resource", "images"),
        ] {
            assert!(form.contains(&(k.to_owned(), v.to_owned())), "{k} missing from {form:?}");
        }
        assert_eq!(rig.tokens.last_authorization(), None);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn basic_auth_is_the_default() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        rig.broker().token("api").await.unwrap();
        assert!(rig.tokens.last_authorization().is_some_and(|a| a.starts_with("Basic ")));
        assert!(!rig.tokens.last_form().iter().any(|(k, _)| k == "client_secret"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn json_source_reads_token_and_absolute_expiry_by_pointer() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let token = rig.broker_with(&json_config(&rig), &rig.env()).token("custom").await.unwrap();
        assert!(rig.tokens.is_valid(token.expose()));
        assert!(token.expires_at().unwrap() > std::time::SystemTime::now() + Duration::from_secs(1700));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn static_keys_need_neither_endpoint_nor_store() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let maps = UpstreamConfig::new("maps", "https://maps.example.com", Token::Static(env("API_CLIENT_SECRET")));
        let b = rig.broker_with(&SiteConfig::new().upstream(maps).render(), &rig.env());
        let token = b.token("maps").await.unwrap();
        assert_eq!(token.expose(), CLIENT_SECRET);
        assert_eq!(token.outcome(), Provenance::Static);
        assert_eq!((rig.tokens.calls(), rig.upstash.requests()), (0, 0));
        assert_eq!(b.token("nope").await.unwrap_err().code(), "unknown_upstream");
        Ok(())
    })
    .await;
}
