//! The REST protocol against a real redis-server, over real HTTP.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{RedisServer, Upstash, bounded, wait_until};

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends a JSON body to `path` with the right token.
async fn call(up: &Upstash, path: &str, body: Value, base64: bool) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = reqwest::Client::new().post(format!("{}{path}", up.url())).bearer_auth(up.token()).json(&body);
    if base64 {
        request = request.header("Upstash-Encoding", "base64");
    }
    let response = request.send().await?;
    Ok((response.status(), response.json().await?))
}

async fn run(up: &Upstash, command: Value) -> anyhow::Result<(StatusCode, Value)> {
    call(up, "/", command, false).await
}

async fn setup() -> anyhow::Result<(RedisServer, Upstash)> {
    let redis = RedisServer::start().await?;
    let up = Upstash::start(&redis).await?;
    Ok((redis, up))
}

#[tokio::test]
async fn set_then_get_round_trips_a_value() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        assert_eq!(run(&up, json!(["SET", "k", "héllo ✓"])).await?, (StatusCode::OK, json!({"result": "OK"})));
        assert_eq!(run(&up, json!(["GET", "k"])).await?, (StatusCode::OK, json!({"result": "héllo ✓"})));
        assert_eq!(up.redis_get("k").await.as_deref(), Some("héllo ✓"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn numbers_are_forwarded_as_decimal_text() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        run(&up, json!(["SET", "n", 41, "EX", 100])).await?;
        assert_eq!(run(&up, json!(["INCR", "n"])).await?.1, json!({"result": 42}));
        assert_eq!(run(&up, json!(["INCRBYFLOAT", "n", 0.5])).await?.1, json!({"result": "42.5"}));
        let pttl = up.redis_pttl("n").await;
        assert!((1..=100_000).contains(&pttl), "pttl {pttl}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn replies_map_nil_integers_and_nested_arrays() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        assert_eq!(run(&up, json!(["GET", "missing"])).await?.1, json!({"result": null}));
        assert_eq!(run(&up, json!(["DEL", "missing"])).await?.1, json!({"result": 0}));
        let script = "return {1, 'a', {2, 'b', false}}";
        assert_eq!(run(&up, json!(["EVAL", script, 0])).await?.1, json!({"result": [1, "a", [2, "b", null]]}));
        assert_eq!(run(&up, json!(["PING"])).await?.1, json!({"result": "PONG"}));
        Ok(())
    })
    .await;
}

/// Upstash runs a script that says it locks only its keys; Redis refuses
/// the flag. The default drops it; the SRH mode forwards it, as
/// serverless-redis-http does, so that clients meet Redis's refusal.
#[tokio::test]
async fn the_key_locking_flag_is_dropped_or_forwarded_like_srh() {
    bounded(TEST_TIMEOUT, async {
        let redis = RedisServer::start().await?;
        let flagged = json!(["EVAL", "#!lua flags=allow-key-locking\nreturn 7", 0]);
        let dropped = Upstash::start(&redis).await?;
        assert_eq!(run(&dropped, flagged.clone()).await?, (StatusCode::OK, json!({"result": 7})));
        let srh = Upstash::start_like_srh(&redis).await?;
        let (status, body) = run(&srh, flagged).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("Unexpected flag in script shebang: allow-key-locking"), "{body}");
        assert_eq!(run(&srh, json!(["EVAL", "return 7", 0])).await?.1, json!({"result": 7}), "unflagged scripts run");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn base64_encoding_covers_strings_and_statuses_but_not_ok_numbers_or_null() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let b64 = |s: &str| BASE64.encode(s);
        assert_eq!(call(&up, "/", json!(["SET", "k", "v"]), true).await?.1, json!({"result": "OK"}));
        assert_eq!(call(&up, "/", json!(["GET", "k"]), true).await?.1, json!({"result": b64("v")}));
        assert_eq!(call(&up, "/", json!(["PING"]), true).await?.1, json!({"result": b64("PONG")}));
        assert_eq!(call(&up, "/", json!(["MGET", "k", "nope"]), true).await?.1, json!({"result": [b64("v"), null]}));
        assert_eq!(call(&up, "/", json!(["STRLEN", "k"]), true).await?.1, json!({"result": 1}));
        assert_eq!(
            call(&up, "/pipeline", json!([["TYPE", "k"], ["EVAL", "return {'x', 3}", 0]]), true).await?.1,
            json!([{"result": b64("string")}, {"result": [b64("x"), 3]}])
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn base64_encoding_carries_binary_values_exactly() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let mut conn = up.redis_client().get_multiplexed_async_connection().await?;
        let bytes: &[u8] = &[0xff, 0x00, 0xfe, b'a'];
        redis::cmd("SET").arg("bin").arg(bytes).exec_async(&mut conn).await?;
        let (_, body) = call(&up, "/", json!(["GET", "bin"]), true).await?;
        let encoded = body["result"].as_str().expect("string result");
        assert_eq!(BASE64.decode(encoded)?, bytes);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn redis_errors_keep_their_prefix_and_answer_400() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let (status, body) = run(&up, json!(["GET"])).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"error": "ERR wrong number of arguments for 'get' command"}));

        let (status, body) = run(&up, json!(["EVALSHA", "0".repeat(40), 0])).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap_or_default().starts_with("NOSCRIPT "), "{body}");

        run(&up, json!(["SET", "s", "x"])).await?;
        let (status, body) = run(&up, json!(["LPUSH", "s", "y"])).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"error": "WRONGTYPE Operation against a key holding the wrong kind of value"}));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn pipeline_answers_each_entry_with_result_or_error() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let (status, body) =
            call(&up, "/pipeline", json!([["SET", "p", "1"], ["LPUSH", "p", "x"], ["INCR", "p"], ["GET", "p"]]), false)
                .await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!([
                {"result": "OK"},
                {"error": "WRONGTYPE Operation against a key holding the wrong kind of value"},
                {"result": 2},
                {"result": "2"}
            ])
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn multi_exec_runs_entries_together_and_reports_runtime_errors_per_entry() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        run(&up, json!(["SET", "s", "x"])).await?;
        let (status, body) =
            call(&up, "/multi-exec", json!([["INCR", "m"], ["LPUSH", "s", "y"], ["INCR", "m"]]), false).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!([
                {"result": 1},
                {"error": "WRONGTYPE Operation against a key holding the wrong kind of value"},
                {"result": 2}
            ])
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn multi_exec_with_a_malformed_entry_applies_nothing() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let (status, body) = call(&up, "/multi-exec", json!([["SET", "t", "1"], ["GET"]]), false).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap_or_default().starts_with("ERR "), "{body}");
        assert_eq!(up.redis_get("t").await, None);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn wrong_or_missing_token_is_rejected_with_401() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let client = reqwest::Client::new();
        for auth in [Some("Bearer wrong"), Some(""), None] {
            let mut request = client.post(up.url()).json(&json!(["SET", "k", "v"]));
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            let response = request.send().await?;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.json::<Value>().await?, json!({"error": "Unauthorized"}));
        }
        assert_eq!(up.redis_get("k").await, None);
        assert_eq!(up.commands(), 0);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn malformed_bodies_are_rejected_with_a_cause() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let client = reqwest::Client::new();
        let cases: [(&str, &str, &str); 6] = [
            ("/", "SET k v", "not valid JSON"),
            ("/", r#"{"cmd": "GET"}"#, "non-empty JSON array"),
            ("/", "[]", "non-empty JSON array"),
            ("/", r#"["SET", "k", {"a": 1}]"#, "argument 2"),
            ("/pipeline", r#"["GET", "k"]"#, "array of command arrays"),
            ("/multi-exec", r#"[["GET", "k"], [null]]"#, "pipeline entry 1"),
        ];
        for (path, body, cause) in cases {
            let response = client.post(format!("{}{path}", up.url())).bearer_auth(up.token()).body(body).send().await?;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path} {body}");
            let error = response.json::<Value>().await?["error"].as_str().unwrap_or_default().to_owned();
            assert!(error.contains(cause), "{path} {body}: {error}");
        }
        assert_eq!(up.commands(), 0);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn commands_that_would_hijack_the_shared_connection_are_refused() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        for command in [json!(["MULTI"]), json!(["SELECT", 2]), json!(["BLPOP", "q", 0])] {
            let (status, body) = run(&up, command.clone()).await?;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{command}");
            assert!(body["error"].as_str().unwrap_or_default().contains("not supported"), "{body}");
        }
        // The connection is still usable by everyone else.
        assert_eq!(run(&up, json!(["SET", "k", "v"])).await?.1, json!({"result": "OK"}));
        assert_eq!(up.redis_get("k").await.as_deref(), Some("v"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_json() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let huge = format!(r#"["SET", "k", "{}"]"#, "x".repeat(17 * 1024 * 1024));
        let response = reqwest::Client::new().post(up.url()).bearer_auth(up.token()).body(huge).send().await?;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(response.json::<Value>().await?["error"].is_string());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn unknown_routes_answer_404_json() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let (status, body) = call(&up, "/nope", json!(["PING"]), false).await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn counts_requests_and_commands_separately() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        run(&up, json!(["SET", "k", "v"])).await?;
        call(&up, "/pipeline", json!([["GET", "k"], ["GET", "k"], ["DEL", "k"]]), false).await?;
        call(&up, "/multi-exec", json!([["INCR", "c"], ["INCR", "c"]]), false).await?;
        assert_eq!((up.requests(), up.commands()), (3, 6));
        up.reset_counts();
        assert_eq!((up.requests(), up.commands()), (0, 0));
        run(&up, json!(["GET", "k"])).await?;
        assert_eq!((up.requests(), up.commands()), (1, 1));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn counts_the_requests_that_add_to_a_counter_once_each() {
    bounded(TEST_TIMEOUT, async {
        let (_redis, up) = setup().await?;
        let script = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
        run(&up, json!(["INCRBY", "a", "1"])).await?;
        call(&up, "/pipeline", json!([["EVAL", script, "1", "a", "2"], ["EVAL", script, "1", "b", "1"]]), false)
            .await?;
        run(&up, json!(["GET", "a"])).await?;
        run(&up, json!(["EVAL", "return 1", "0"])).await?;
        assert_eq!((up.requests(), up.counting_requests()), (4, 2), "two of four requests added, one to two counters");
        up.reset_counts();
        assert_eq!(up.counting_requests(), 0);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn redis_outage_answers_503_quickly_then_recovers() {
    bounded(TEST_TIMEOUT, async {
        let (mut redis, up) = setup().await?;
        assert_eq!(run(&up, json!(["SET", "k", "v"])).await?.0, StatusCode::OK);

        redis.stop().await?;
        let started = std::time::Instant::now();
        // The first request may be the one that finds the old connection broken.
        for _ in 0..2 {
            let (status, body) = run(&up, json!(["GET", "k"])).await?;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert!(body["error"].as_str().unwrap_or_default().contains("redis unavailable"));
        }
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());

        redis.restart().await?;
        wait_until("upstash-local serves again", Duration::from_secs(10), || async {
            matches!(run(&up, json!(["PING"])).await, Ok((StatusCode::OK, _)))
        })
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn unreachable_redis_at_startup_is_tolerated() {
    bounded(TEST_TIMEOUT, async {
        let port = testkit::free_port()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let handle = upstash_local::start(listener, &format!("redis://127.0.0.1:{port}"), "t".into()).await?;
        let response = reqwest::Client::new().post(handle.url()).bearer_auth("t").json(&json!(["PING"])).send().await?;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn invalid_redis_url_fails_to_start() {
    bounded(TEST_TIMEOUT, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let result = upstash_local::start(listener, "not a url", "t".into()).await;
        assert!(result.is_err());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    bounded(TEST_TIMEOUT, async {
        let redis = RedisServer::start().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let handle = upstash_local::start(listener, &redis.url(), "t".into()).await?;
        let addr = handle.addr();
        handle.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    bounded(TEST_TIMEOUT, async {
        let redis = RedisServer::start().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let handle = upstash_local::start(listener, &redis.url(), "t".into()).await?;
        let addr = handle.addr();
        drop(handle);
        wait_until("the port is closed", Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await?;
        Ok(())
    })
    .await;
}
