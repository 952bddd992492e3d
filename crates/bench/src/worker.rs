//! `tokenrelay-bench instances --count N`: a process holding N fully separate
//! brokers (each its own memory cache and HTTP client, sharing only the store),
//! so that a stampede spans many processes and many instances per process.
//!
//! Protocol, one line each way: the worker prints `ready`; for each
//! `go <phase> <unix-ms>` on stdin it waits until that wall-clock moment, has
//! every instance get a token and call the API with it at once, prints one
//! JSON [`Record`] per instance, then `done`. `quit` or end of input stops it.
//! Config, store and credentials come from the environment, as on a platform.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokenrelay::{Broker, Env};
use tokio::io::AsyncBufReadExt;

use crate::world::{SEARCH, UPSTREAM};

/// Variable holding the API's base URL, for using the token.
pub const API_URL_VAR: &str = "BENCH_API_URL";
/// A single use of the token must not hang the stampede.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// What one instance saw in one phase.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub phase: String,
    /// `broker.token()` alone.
    pub token_us: u64,
    /// Token plus the API call made with it.
    pub total_us: u64,
    /// Where the token came from (`memory`, `store`, `fetched`, …), or the error code.
    pub outcome: String,
    /// The API's status (401: the token had expired or was unknown); 0 without a token.
    pub status: u16,
    /// When the token expires, Unix milliseconds.
    pub expires_at_ms: u64,
}

pub fn main(args: &[String]) -> ExitCode {
    let run = || -> anyhow::Result<()> {
        let count = match args {
            [flag, n] if flag == "--count" => n.parse().context("--count takes a number")?,
            _ => anyhow::bail!("usage: tokenrelay-bench instances --count N"),
        };
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(serve(count))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tokenrelay-bench instances: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(count: usize) -> anyhow::Result<()> {
    let env = Env::process();
    let brokers = (0..count).map(|_| Broker::from_env(&env)).collect::<Result<Vec<_>, _>>()?;
    let api = std::env::var(API_URL_VAR).with_context(|| format!("{API_URL_VAR} is not set"))?;
    let url = format!("{api}{SEARCH}");
    let http = reqwest::Client::builder().timeout(API_TIMEOUT).build()?;
    println!("ready");

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next().and_then(|ms| ms.parse::<u64>().ok())) {
            (Some("go"), Some(phase), Some(at_ms)) => {
                let wait = (UNIX_EPOCH + Duration::from_millis(at_ms)).duration_since(SystemTime::now());
                tokio::time::sleep(wait.unwrap_or_default()).await;
                let mut instances = tokio::task::JoinSet::new();
                for broker in &brokers {
                    instances.spawn(use_token(broker.clone(), http.clone(), url.clone(), phase.to_owned()));
                }
                while let Some(record) = instances.join_next().await {
                    println!("{}", serde_json::to_string(&record?)?);
                }
                println!("done");
            }
            (Some("quit"), ..) => break,
            _ => anyhow::bail!("unexpected command {line:?}"),
        }
    }
    Ok(())
}

/// One request of one instance: get the token, call the API with it.
async fn use_token(broker: Broker, http: reqwest::Client, url: String, phase: String) -> Record {
    let started = Instant::now();
    let token = broker.token(UPSTREAM).await;
    let token_us = micros(started.elapsed());
    let (outcome, status, expires_at_ms) = match &token {
        Ok(token) => {
            let status = match http.get(&url).bearer_auth(token.expose()).send().await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            let expires_at_ms = token.expires_at().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
            (token.outcome().as_str().to_owned(), status, u64::try_from(expires_at_ms.as_millis()).unwrap_or_default())
        }
        Err(err) => (err.code().to_owned(), 0, 0),
    };
    Record { phase, token_us, total_us: micros(started.elapsed()), outcome, status, expires_at_ms }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
