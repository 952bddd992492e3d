//! The `upstash-local` executable.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::RedisServer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_upstash-local");

#[tokio::test]
async fn prints_its_url_when_ready_and_serves_it() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let redis = RedisServer::start().await?;
        let mut child = Command::new(BIN)
            .args(["--redis", &redis.url(), "--listen", "127.0.0.1:0"])
            .env("UPSTASH_LOCAL_TOKEN", "from-env")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let line = BufReader::new(stdout).lines().next_line().await?.expect("a ready line");
        let url = line
            .strip_prefix("upstash-local ready url=")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .to_owned();

        let body: Value = reqwest::Client::new()
            .post(&url)
            .bearer_auth("from-env")
            .json(&json!(["ECHO", "hi"]))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(body, json!({"result": "hi"}));
        child.kill().await?;
        anyhow::Ok(())
    })
    .await
    .expect("test timed out")
    .expect("test failed");
}

/// `--forward-script-flags` passes scripts on as serverless-redis-http does.
#[tokio::test]
async fn forward_script_flags_lets_redis_refuse_the_key_locking_flag() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let redis = RedisServer::start().await?;
        let mut child = Command::new(BIN)
            .args(["--redis", &redis.url(), "--listen", "127.0.0.1:0", "--forward-script-flags", "--token", "t"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let line = BufReader::new(stdout).lines().next_line().await?.expect("a ready line");
        let url = line.strip_prefix("upstash-local ready url=").unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let script = json!(["EVAL", "#!lua flags=allow-key-locking\nreturn 1", 0]);
        let body: Value = reqwest::Client::new().post(url).bearer_auth("t").json(&script).send().await?.json().await?;
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("Unexpected flag in script shebang"), "{body}");
        child.kill().await?;
        anyhow::Ok(())
    })
    .await
    .expect("test timed out")
    .expect("test failed");
}

#[tokio::test]
async fn refuses_to_start_without_a_token() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let output =
            Command::new(BIN).args(["--listen", "127.0.0.1:0"]).env_remove("UPSTASH_LOCAL_TOKEN").output().await?;
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("token is required"));
        anyhow::Ok(())
    })
    .await
    .expect("test timed out")
    .expect("test failed");
}
