//! RedisServer and Upstash, through real connections.

use std::time::Duration;

use serde_json::json;
use testkit::{RedisServer, Upstash, bounded, wait_until};

/// How long one test may take.
const TEST_TIME: Duration = Duration::from_secs(30);

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let config = redis::AsyncConnectionConfig::new().set_connection_timeout(Duration::from_millis(500));
    let Ok(mut conn) = client.get_multiplexed_async_connection_with_config(&config).await else {
        return false;
    };
    redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
}

#[tokio::test]
async fn redis_server_answers_on_its_own_loopback_port() {
    bounded(TEST_TIME, async {
        let a = RedisServer::start().await?;
        let b = RedisServer::start().await?;
        assert_ne!(a.port(), b.port());
        assert_eq!(a.url(), format!("redis://127.0.0.1:{}", a.port()));
        assert!(ping(&a.url()).await && ping(&b.url()).await);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn redis_server_keeps_nothing_on_disk() {
    bounded(TEST_TIME, async {
        let redis = RedisServer::start().await?;
        let client = redis::Client::open(redis.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("save").query_async(&mut conn).await?;
        let aof: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("appendonly").query_async(&mut conn).await?;
        assert_eq!(save, ["save", ""]);
        assert_eq!(aof, ["appendonly", "no"]);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn redis_server_stops_and_restarts_empty_on_the_same_port() {
    bounded(TEST_TIME, async {
        let mut redis = RedisServer::start().await?;
        let url = redis.url();
        let client = redis::Client::open(url.clone())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("SET").arg("k").arg("v").exec_async(&mut conn).await?;

        redis.stop().await?;
        assert!(!redis.is_running());
        assert!(!ping(&url).await);

        redis.restart().await?;
        assert!(redis.is_running());
        assert_eq!(redis.url(), url);
        let mut conn = client.get_multiplexed_async_connection().await?;
        let value: Option<String> = redis::cmd("GET").arg("k").query_async(&mut conn).await?;
        assert_eq!(value, None);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn dropping_redis_server_kills_the_process() {
    bounded(TEST_TIME, async {
        let redis = RedisServer::start().await?;
        let url = redis.url();
        drop(redis);
        wait_until("redis no longer answers", Duration::from_secs(5), || async { !ping(&url).await }).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn upstash_serves_rest_and_exposes_what_is_stored_at_rest() {
    bounded(TEST_TIME, async {
        let redis = RedisServer::start().await?;
        let up = Upstash::start(&redis).await?;
        assert!(up.url().starts_with("http://127.0.0.1:"));
        let response: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/pipeline", up.url()))
            .bearer_auth(up.token())
            .json(&json!([["SET", "app:a", "1", "PX", 60000], ["SET", "app:b", "2"], ["SET", "other", "3"]]))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(response, json!([{"result": "OK"}, {"result": "OK"}, {"result": "OK"}]));
        assert_eq!((up.requests(), up.commands()), (1, 3));

        assert_eq!(up.redis_get("app:a").await.as_deref(), Some("1"));
        assert_eq!(up.redis_get("missing").await, None);
        assert_eq!(up.redis_keys("app:*").await, ["app:a", "app:b"]);
        assert!((1..=60_000).contains(&up.redis_pttl("app:a").await));
        assert_eq!(up.redis_pttl("app:b").await, -1);
        // Direct reads do not go through the facade.
        assert_eq!((up.requests(), up.commands()), (1, 3));
        up.reset_counts();
        assert_eq!((up.requests(), up.commands()), (0, 0));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn upstash_tokens_are_random_per_instance() {
    bounded(TEST_TIME, async {
        let redis = RedisServer::start().await?;
        let a = Upstash::start(&redis).await?;
        let b = Upstash::start(&redis).await?;
        assert_ne!(a.token(), b.token());
        assert_ne!(a.url(), b.url());
        let status =
            reqwest::Client::new().post(a.url()).bearer_auth(b.token()).json(&json!(["PING"])).send().await?.status();
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
        Ok(())
    })
    .await;
}
