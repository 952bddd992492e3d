//! The fake third-party API, over real HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{ApiServer, TokenServer, TokenServerConfig, bounded, wait_until};

/// How long one test may take.
const TEST_TIME: Duration = Duration::from_secs(30);

async fn fetch_token(tokens: &TokenServer) -> anyhow::Result<String> {
    let body: Value = reqwest::Client::new()
        .post(tokens.url())
        .basic_auth("test-client", Some("test-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
}

async fn servers(lifetime: Duration) -> anyhow::Result<(TokenServer, ApiServer, String)> {
    let tokens = TokenServer::start(TokenServerConfig::default().lifetime(lifetime)).await?;
    let api = ApiServer::start(&tokens).await?;
    let token = fetch_token(&tokens).await?;
    Ok((tokens, api, token))
}

async fn get(url: &str, token: Option<&str>) -> anyhow::Result<reqwest::Response> {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?)
}

#[tokio::test]
async fn searches_images_with_a_live_token() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        assert!(api.url().starts_with("http://127.0.0.1:") && api.url().ends_with("/v3"));
        let response = get(&format!("{}/search/images?phrase=red%20cats", api.url()), Some(&token)).await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        assert_eq!(body["images"][0], json!({"id": "1", "title": "red cats 1"}));
        assert_eq!(body["images"].as_array().map(Vec::len), Some(3));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn rejects_missing_unknown_and_expired_tokens() {
    bounded(TEST_TIME, async {
        let (tokens, api, token) = servers(Duration::from_secs(2)).await?;
        let url = format!("{}/search/images?phrase=x", api.url());
        for bad in [None, Some("tok_not_issued_here")] {
            let response = get(&url, bad).await?;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.json::<Value>().await?, json!({"error": "invalid_token"}));
        }
        assert_eq!(get(&url, Some(&token)).await?.status(), StatusCode::OK);
        wait_until("the token expires", Duration::from_secs(5), || async { !tokens.is_valid(&token) }).await?;
        assert_eq!(get(&url, Some(&token)).await?.status(), StatusCode::UNAUTHORIZED);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn reject_all_tokens_turns_every_answer_into_401() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        let url = format!("{}/cookie", api.url());
        api.reject_all_tokens(true);
        assert_eq!(get(&url, Some(&token)).await?.status(), StatusCode::UNAUTHORIZED);
        api.reject_all_tokens(false);
        assert_eq!(get(&url, Some(&token)).await?.status(), StatusCode::OK);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn echo_returns_the_request_it_received() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        let body: Value = reqwest::Client::new()
            .post(format!("{}/echo/a/b?x=1&y=two", api.url()))
            .bearer_auth(&token)
            .header("X-Custom", "yes")
            .body("payload")
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(body["method"], "POST");
        assert_eq!(body["path"], "/v3/echo/a/b");
        assert_eq!(body["query"], "x=1&y=two");
        assert_eq!(body["headers"]["x-custom"], "yes");
        assert_eq!(body["headers"]["authorization"], format!("Bearer {token}"));
        assert_eq!(body["body"], "payload");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn echo_knobs_set_the_status_and_headers_of_its_answer() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        let url =
            format!("{}/echo/q?status=429&set-retry-after=99&set-x-ratelimit-reset=18446744073709551615", api.url());
        let reply = reqwest::Client::new().get(url).bearer_auth(&token).send().await?;
        assert_eq!(reply.status(), 429);
        assert_eq!(reply.headers()["retry-after"], "99");
        assert_eq!(reply.headers()["x-ratelimit-reset"], "18446744073709551615");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn records_every_request_including_rejected_ones() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        get(&format!("{}/echo/one?q=1", api.url()), None).await?;
        reqwest::Client::new()
            .put(format!("{}/echo/two", api.url()))
            .bearer_auth(&token)
            .header("X-Trace", "abc")
            .body("body bytes")
            .send()
            .await?;
        let recorded = api.requests();
        assert_eq!(recorded.len(), 2);
        assert_eq!((recorded[0].method.as_str(), recorded[0].uri.as_str()), ("GET", "/v3/echo/one?q=1"));
        assert_eq!(recorded[0].header("authorization"), None);
        assert_eq!(recorded[1].method, "PUT");
        assert_eq!(recorded[1].path(), "/v3/echo/two");
        assert_eq!(recorded[1].header("X-Trace"), Some("abc"));
        assert_eq!(recorded[1].body, b"body bytes");
        api.clear_requests();
        assert!(api.requests().is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn big_streams_exactly_the_requested_bytes() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        for size in [0usize, 10, 100_000] {
            let response = get(&format!("{}/big?bytes={size}", api.url()), Some(&token)).await?;
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers().get("content-length").is_none() || size == 0);
            assert_eq!(response.bytes().await?.len(), size);
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn slow_answers_after_the_requested_delay() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        let started = std::time::Instant::now();
        let body: Value = get(&format!("{}/slow?ms=250", api.url()), Some(&token)).await?.json().await?;
        assert_eq!(body, json!({"slept_ms": 250}));
        assert!(started.elapsed() >= Duration::from_millis(250));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn cookie_route_sets_a_cookie() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        let response = get(&format!("{}/cookie", api.url()), Some(&token)).await?;
        let cookie = response.headers()["set-cookie"].to_str()?;
        assert!(cookie.starts_with("session="), "{cookie}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn unknown_paths_answer_404_for_authorized_callers() {
    bounded(TEST_TIME, async {
        let (_tokens, api, token) = servers(Duration::from_secs(60)).await?;
        assert_eq!(get(&format!("{}/nope", api.url()), Some(&token)).await?.status(), StatusCode::NOT_FOUND);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn accepts_tokens_from_the_custom_json_route() {
    bounded(TEST_TIME, async {
        let tokens = TokenServer::start(TokenServerConfig::default()).await?;
        let api = ApiServer::start(&tokens).await?;
        let body: Value = reqwest::Client::new()
            .post(tokens.custom_url())
            .json(&json!({"key": "test-client", "secret": "test-secret"}))
            .send()
            .await?
            .json()
            .await?;
        let token = body["data"]["token"].as_str().unwrap_or_default();
        assert_eq!(get(&format!("{}/cookie", api.url()), Some(token)).await?.status(), StatusCode::OK);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn revoked_tokens_are_refused_and_later_ones_accepted() {
    bounded(TEST_TIME, async {
        let (tokens, api, old) = servers(Duration::from_secs(60)).await?;
        let url = format!("{}/search/images?phrase=x", api.url());
        tokens.revoke_issued();
        assert_eq!(get(&url, Some(&old)).await?.status(), StatusCode::UNAUTHORIZED);
        let new = fetch_token(&tokens).await?;
        assert_eq!(get(&url, Some(&new)).await?.status(), StatusCode::OK);
        Ok(())
    })
    .await;
}
