//! The fake OAuth2 token endpoint, over real HTTP.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{Behavior, ExpiresIn, TokenServer, TokenServerConfig, bounded, wait_until};

/// How long one test may take.
const TEST_TIME: Duration = Duration::from_secs(30);

/// Posts a form with client credentials in the form fields.
async fn form_request(server: &TokenServer, fields: &[(&str, &str)]) -> anyhow::Result<(StatusCode, String)> {
    let response = reqwest::Client::new().post(server.url()).form(fields).send().await?;
    Ok((response.status(), response.text().await?))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const GOOD: [(&str, &str); 3] =
    [("grant_type", "client_credentials"), ("client_id", "test-client"), ("client_secret", "test-secret")];

#[tokio::test]
async fn issues_a_bearer_token_for_form_credentials() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        let response = reqwest::Client::new().post(server.url()).form(&GOOD).send().await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await?;
        let token = body["access_token"].as_str().expect("access_token");
        assert!(token.starts_with("tok_") && token.len() == 36, "{token}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 1800);
        assert_eq!(server.issued(), [token]);
        assert!(server.is_valid(token));
        assert!(!server.is_valid("tok_unknown"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn accepts_basic_auth_with_form_urlencoded_credentials() {
    bounded(TEST_TIME, async {
        let (id, secret) = ("my client:1", "s3cr+t/&=ü");
        let server = TokenServer::start(TokenServerConfig::new(id, secret)).await?;
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = BASE64.encode(format!("{}:{}", encode(id), encode(secret)));
        let response = reqwest::Client::new()
            .post(server.url())
            .header("Authorization", format!("Basic {basic}"))
            .form(&[("grant_type", "client_credentials"), ("scope", "read write")])
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(server.last_authorization(), Some(format!("Basic {basic}")));
        assert_eq!(
            server.last_form(),
            [("grant_type".to_owned(), "client_credentials".to_owned()), ("scope".to_owned(), "read write".to_owned())]
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn rejects_wrong_credentials_with_invalid_client() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        let (status, body) = form_request(
            &server,
            &[("grant_type", "client_credentials"), ("client_id", "test-client"), ("client_secret", "nope")],
        )
        .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json(&body)["error"], "invalid_client");
        assert!(json(&body)["error_description"].is_string());

        let (status, _) = form_request(&server, &[("grant_type", "client_credentials")]).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let response = reqwest::Client::new()
            .post(server.url())
            .basic_auth("test-client", Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(server.issued().is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn rejects_missing_or_other_grant_types() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        for grant in [None, Some("password")] {
            let mut fields = vec![("client_id", "test-client"), ("client_secret", "test-secret")];
            if let Some(grant) = grant {
                fields.push(("grant_type", grant));
            }
            let (status, body) = form_request(&server, &fields).await?;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(json(&body), json!({"error": "unsupported_grant_type"}));
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn rejects_json_bodies_on_the_oauth_route() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        let response = reqwest::Client::new()
            .post(server.url())
            .json(&json!({"grant_type": "client_credentials", "client_id": "test-client", "client_secret": "test-secret"}))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.json::<Value>().await?["error"], "invalid_request");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn expires_in_can_be_a_string_or_absent() {
    bounded(TEST_TIME, async {
        let config = TokenServerConfig::default().lifetime(Duration::from_secs(600));
        let as_string = TokenServer::start(config.clone().expires_in(ExpiresIn::String)).await?;
        let (_, body) = form_request(&as_string, &GOOD).await?;
        assert_eq!(json(&body)["expires_in"], "600");

        let omitted = TokenServer::start(config.expires_in(ExpiresIn::Omitted)).await?;
        let (_, body) = form_request(&omitted, &GOOD).await?;
        assert!(json(&body).get("expires_in").is_none());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn tokens_are_unique_and_stop_being_valid_after_their_lifetime() {
    bounded(TEST_TIME, async {
        let config = TokenServerConfig::default().lifetime(Duration::from_secs(1));
        let server = TokenServer::start(config).await?;
        let mut tokens = Vec::new();
        for _ in 0..3 {
            let (_, body) = form_request(&server, &GOOD).await?;
            tokens.push(json(&body)["access_token"].as_str().expect("token").to_owned());
        }
        assert_eq!(server.issued(), tokens);
        tokens.dedup();
        assert_eq!(tokens.len(), 3);
        assert!(server.is_valid(&tokens[0]));
        wait_until("the first token expires", Duration::from_secs(5), || async { !server.is_valid(&tokens[0]) })
            .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn counts_every_call_whatever_the_outcome() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        form_request(&server, &GOOD).await?;
        form_request(&server, &[("grant_type", "client_credentials")]).await?;
        server.set_behavior(Behavior::Status(500));
        form_request(&server, &GOOD).await?;
        reqwest::Client::new().post(server.custom_url()).body("nope").send().await?;
        assert_eq!(server.calls(), 4);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn status_behavior_answers_with_a_plain_body() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        server.set_behavior(Behavior::Status(503));
        let (status, body) = form_request(&server, &GOOD).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(serde_json::from_str::<Value>(&body).is_err());
        server.set_behavior(Behavior::Normal);
        assert_eq!(form_request(&server, &GOOD).await?.0, StatusCode::OK);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn delay_behavior_answers_normally_after_the_delay() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        server.set_behavior(Behavior::Delay(Duration::from_millis(300)));
        let started = std::time::Instant::now();
        let (status, _) = form_request(&server, &GOOD).await?;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(300));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn hang_behavior_never_answers() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        server.set_behavior(Behavior::Hang);
        let result =
            reqwest::Client::new().post(server.url()).form(&GOOD).timeout(Duration::from_millis(300)).send().await;
        assert!(result.is_err_and(|e| e.is_timeout()));
        assert_eq!(server.calls(), 1);
        // Dropping the server does not wait for the hanging request.
        tokio::time::timeout(Duration::from_secs(5), async move { drop(server) }).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn garbage_behavior_answers_200_with_non_json() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        server.set_behavior(Behavior::Garbage);
        let (status, body) = form_request(&server, &GOOD).await?;
        assert_eq!(status, StatusCode::OK);
        assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn missing_token_behavior_answers_200_without_access_token() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        server.set_behavior(Behavior::MissingToken);
        let (status, body) = form_request(&server, &GOOD).await?;
        assert_eq!(status, StatusCode::OK);
        assert!(json(&body).get("access_token").is_none(), "{body}");
        assert_eq!(json(&body)["token_type"], "Bearer");
        assert!(server.issued().is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn oauth_error_behavior_answers_400_with_the_error() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        server.set_behavior(Behavior::OAuthError {
            error: "invalid_scope".into(),
            description: "scope not allowed".into(),
        });
        let (status, body) = form_request(&server, &GOOD).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json(&body), json!({"error": "invalid_scope", "error_description": "scope not allowed"}));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn records_the_last_form_and_authorization() {
    bounded(TEST_TIME, async {
        let server = TokenServer::start(TokenServerConfig::default()).await?;
        let mut fields = GOOD.to_vec();
        fields.push(("audience", "https://api.example/"));
        form_request(&server, &fields).await?;
        assert!(server.last_form().contains(&("audience".to_owned(), "https://api.example/".to_owned())));
        assert_eq!(server.last_authorization(), None);
        assert!(server.last_body().contains("audience=https%3A%2F%2Fapi.example%2F"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn custom_json_route_issues_tokens_with_an_absolute_expiry() {
    bounded(TEST_TIME, async {
        let config = TokenServerConfig::default().lifetime(Duration::from_secs(120));
        let server = TokenServer::start(config).await?;
        let response = reqwest::Client::new()
            .post(server.custom_url())
            .json(&json!({"key": "test-client", "secret": "test-secret"}))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        let token = body["data"]["token"].as_str().expect("token");
        assert!(server.is_valid(token));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let expires_at = body["data"]["expires_at"].as_u64().expect("expires_at");
        assert!((now + 110..=now + 130).contains(&expires_at), "{expires_at} vs {now}");
        assert!(server.last_form().contains(&("key".to_owned(), "test-client".to_owned())));

        let response = reqwest::Client::new()
            .post(server.custom_url())
            .json(&json!({"key": "test-client", "secret": "wrong"}))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(server.calls(), 2);
        Ok(())
    })
    .await;
}
