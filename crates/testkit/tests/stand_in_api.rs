//! The `stand-in-api` executable.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn serves_a_token_endpoint_and_an_api_that_accepts_its_tokens() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stand-in-api"))
            .args(["--token-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .args(["--client-id", "demo"])
            .env("STAND_IN_CLIENT_SECRET", "demo-secret")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let url = |prefix: &str, line: Option<String>| {
            let line = line.unwrap_or_default();
            line.strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix}..., got {line:?}")).to_owned()
        };
        let token_url = url("token_url=", lines.next_line().await?);
        let api_url = url("api_url=", lines.next_line().await?);

        let client = reqwest::Client::new();
        let body: Value = client
            .post(&token_url)
            .basic_auth("demo", Some("demo-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = body["access_token"].as_str().unwrap_or_default();
        let status =
            client.get(format!("{api_url}/search/images?phrase=demo")).bearer_auth(token).send().await?.status();
        assert_eq!(status, reqwest::StatusCode::OK);
        child.kill().await?;
        anyhow::Ok(())
    })
    .await
    .expect("test timed out")
    .expect("test failed");
}
