//! Rotating an upstream's secret without downtime (the README's rotation
//! procedure), against real parts: a redis-server behind the Upstash REST
//! protocol, a token endpoint that accepts a switchable set of secrets, an
//! API that checks the tokens it issued, and the relay in front of it.
//!
//! The new secret is deployed as the current one, the old one as the
//! previous one, and the endpoint refuses the new one (mistyped, or not yet
//! active): requests go on, `status` says the previous secret is in use, and
//! once the current one is fixed the next rotation uses it.

mod common;

use bytes::Bytes;
use common::{CLIENT_ID, CLIENT_SECRET, Rig, TEST_TIME, bounded};
use http_body_util::{BodyExt, Full};
use testkit::ApiServer;
use testkit::config::{JsonToken, SiteConfig, UpstreamConfig, env, route};
use tokenrelay::operator::{TokenStatus, status};
use tokenrelay::relay::Relay;
use tokenrelay::{Broker, Env, MintedWith, Provenance};

/// The secret just deployed as the current one; the rig's endpoint accepts only [`CLIENT_SECRET`] at first.
const NEW_SECRET: &str = "client-secret-new-41d0";
const PREVIOUS_VAR: &str = "API_CLIENT_SECRET_PREVIOUS";

/// The deploy of a rotation: the new secret is current, the old one previous.
fn rotating_env(rig: &Rig) -> Env {
    rig.env_with(&[("API_CLIENT_SECRET", NEW_SECRET), (PREVIOUS_VAR, CLIENT_SECRET)])
}

/// The rig's world with a previous secret, relaying `/echo/**` to `api`.
fn site(rig: &Rig, api: &str) -> SiteConfig {
    rig.site().edit_upstream("api", |u| {
        u.base_url(api).token(rig.token().previous_client_secret(PREVIOUS_VAR)).relay(|r| r.route(route("/echo/**")))
    })
}

async fn get(relay: &Relay, target: &str) -> (u16, String) {
    let request = http::Request::builder().uri(target).body(Full::new(Bytes::new())).unwrap();
    let response = relay.handle(request).await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn token_status(broker: &Broker) -> TokenStatus {
    status(broker, Some("api")).await.unwrap().remove(0).token.expect("a stored token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_current_secret_costs_no_failed_answer_and_status_names_the_previous_one_until_it_is_fixed() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let api = ApiServer::start(&rig.tokens).await.unwrap();
        let config = site(&rig, &api.url()).render();
        let env = rotating_env(&rig);
        let relays: Vec<Relay> = (0..3).map(|_| Relay::new(rig.broker_with(&config, &env))).collect();

        // Three instances, a few requests each, some at once: every one answered.
        let answers = futures_util::future::join_all(
            relays
                .iter()
                .cycle()
                .take(12)
                .enumerate()
                .map(|(i, r)| async move { get(r, &format!("/api/relay/api/echo/item?i={i}")).await }),
        )
        .await;
        for (i, (status, body)) in answers.iter().enumerate() {
            assert_eq!(*status, 200, "request {i}: {body}");
        }
        assert_eq!(
            rig.tokens.secrets_sent(),
            [NEW_SECRET, CLIENT_SECRET],
            "one rotation for all instances: the current secret refused once, the previous one accepted once"
        );

        let broker = rig.broker_with(&config, &env);
        let t = token_status(&broker).await;
        assert_eq!(
            (t.minted_with.as_str(), t.current_refused, t.has_previous_secret),
            ("previous", true, true),
            "{t:?}"
        );
        assert_eq!((t.current_accepted_at_ms, t.previous_accepted_at_ms), (None, Some(t.rotated_at_ms)));
        assert_eq!(broker.token("api").await.unwrap().minted_with(), MintedWith::Previous, "read from the store");

        // The operator fixes the current secret (the endpoint accepts it
        // again); the token rotates (here: the API revokes it early).
        rig.tokens.accept_secrets(&[NEW_SECRET, CLIENT_SECRET]);
        rig.tokens.revoke_issued();
        for (i, relay) in relays.iter().enumerate() {
            let (status, body) = get(relay, &format!("/api/relay/api/echo/after?i={i}")).await;
            assert_eq!(status, 200, "instance {i} after the fix: {body}");
        }
        assert_eq!(
            rig.tokens.secrets_sent(),
            [NEW_SECRET, CLIENT_SECRET, NEW_SECRET],
            "the next rotation used the current one"
        );
        let fixed = token_status(&broker).await;
        assert_eq!((fixed.minted_with.as_str(), fixed.current_refused), ("current", false), "{fixed:?}");
        assert_eq!(fixed.current_accepted_at_ms, Some(fixed.rotated_at_ms));
        assert_eq!(fixed.previous_accepted_at_ms, t.previous_accepted_at_ms, "the previous secret's time is kept");
        assert!(fixed.rotated_at_ms >= t.rotated_at_ms);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_build_gets_its_token_from_the_previous_secret_too() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let build = rig.broker_with(&site(&rig, "https://api.example.com").render(), &rotating_env(&rig));
        let token = build.token_valid_for("api", std::time::Duration::from_secs(60)).await.unwrap();
        assert_eq!((token.minted_with(), token.outcome()), (MintedWith::Previous, Provenance::Fetched));
        assert!(rig.tokens.is_valid(token.expose()));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_store_key_does_not_depend_on_which_secret_minted_the_token() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        // oauth2: the key never held the client secret. A token minted with
        // the previous secret is the one an instance deployed before the
        // rotation (no previous secret, the old one current) reads.
        let rotating = rig.broker_with(&site(&rig, "https://api.example.com").render(), &rotating_env(&rig));
        let minted = rotating.token("api").await.unwrap();
        assert_eq!(minted.minted_with(), MintedWith::Previous);
        let before = rig.broker().token("api").await.unwrap();
        assert_eq!((before.expose(), before.outcome()), (minted.expose(), Provenance::Store));
        assert_eq!(before.minted_with(), MintedWith::Current, "the old secret is that deployment's current one");
        assert_eq!(rig.tokens.calls(), 2, "one rotation: one refusal, one token");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_json_source_sends_its_previous_secret_in_place_of_the_field_it_replaces() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let config = |previous: Option<(&str, &str)>| {
            let token = JsonToken::new(rig.tokens.custom_url(), "/data/token")
                .expires_at_pointer("/data/expires_at")
                .body("key", env("API_CLIENT_ID"))
                .body("secret", env("API_CLIENT_SECRET"));
            let token = match previous {
                Some((var, field)) => token.previous_secret(var, field),
                None => token,
            };
            SiteConfig::new().upstream(UpstreamConfig::new("custom", "https://api.example.com", token)).render()
        };
        let with_previous = config(Some((PREVIOUS_VAR, "body.secret")));
        let token = rig.broker_with(&with_previous, &rotating_env(&rig)).token("custom").await.unwrap();
        assert_eq!(token.minted_with(), MintedWith::Previous);
        assert_eq!(rig.tokens.secrets_sent(), [NEW_SECRET, CLIENT_SECRET]);
        let form = rig.tokens.last_form();
        assert!(form.contains(&("key".to_owned(), CLIENT_ID.to_owned())), "the other fields as configured: {form:?}");

        // The same two secrets the other way round (a rollback) share the key: no fetch.
        let swapped = rig.env_with(&[("API_CLIENT_SECRET", CLIENT_SECRET), (PREVIOUS_VAR, NEW_SECRET)]);
        let again = rig.broker_with(&with_previous, &swapped).token("custom").await.unwrap();
        assert_eq!((again.expose(), again.outcome()), (token.expose(), Provenance::Store));
        assert_eq!(again.minted_with(), MintedWith::Current, "the secret that minted it is current there");
        assert_eq!(rig.tokens.calls(), 2);

        // Other secrets are other credentials: never the same key.
        let other = rig.env_with(&[("API_CLIENT_SECRET", CLIENT_SECRET), (PREVIOUS_VAR, "")]);
        let elsewhere = rig.broker_with(&config(None), &other).token("custom").await.unwrap();
        assert_eq!(elsewhere.outcome(), Provenance::Fetched);
        Ok(())
    })
    .await;
}
