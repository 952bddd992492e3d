//! Polling helpers for readiness and free ports, and a test's time bound.

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use anyhow::{Context, bail};

/// How often [`wait_until`] re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns true, failing after `timeout`.
///
/// `what` names the condition in the error, e.g. `"redis answers PING"`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Runs a test's body, failing the test, with its error's whole chain, if
/// the body fails or takes longer than `limit`.
pub async fn bounded<F: Future<Output = anyhow::Result<()>>>(limit: Duration, test: F) {
    match tokio::time::timeout(limit, test).await {
        Err(_) => panic!("test timed out after {limit:?}"),
        Ok(Err(e)) => panic!("test failed: {e:#}"),
        Ok(Ok(())) => {}
    }
}

/// A loopback port that was free a moment ago (the OS picked it for a throwaway listener).
///
/// Another process may take it before it is used: callers that spawn servers retry.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
