//! On a shell whose runtime drains background work before its invocation
//! ends (the Vercel function), the visitor's answer ends first: a stale
//! answer and a request that makes its token due for refresh end as fast as
//! a fresh hit, with `Content-Length`, while the refresh, against a slow
//! upstream, still happens before the instance is frozen at the runtime's `end`.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use testkit::Behavior;
use testkit::freeze::Freeze;

use crate::Logs;
use crate::fixture::{Fixture, TokenSchedule};
use crate::frozen::Platform;
use crate::http::{Reply, Shell};
use crate::scenarios::{Figures, STALE_DETAIL};

/// How long the upstream and the token endpoint take to answer.
pub const SLOW: Duration = Duration::from_millis(300);
/// An answer this quick did not wait for a refresh, which takes at least [`SLOW`].
const ENDS_FIRST: Duration = Duration::from_millis(150);
/// A `cached` route with `ttl = "1s"` and `stale_while_revalidate = "1h"`, from an upstream taking [`SLOW`].
const STALE_AFTER_TTL: &str = "/api/relay/cached/echo/swr/end-first?delay_ms=300";
const RELAYED: &str = "/api/relay/getty/search/images?phrase=cats";
/// Answered 404 before any rule that makes work due: once the instance
/// answers it, the invocation before it is over.
const PROBE: &str = "/api/relay/getty/no-such-route";
/// Tokens live 6 s, are served until 1 s before expiry, and are refreshed
/// from 2 s before that: due for refresh from 3 s after their fetch.
const SCHEDULE: TokenSchedule = TokenSchedule {
    lifetime: Duration::from_secs(6),
    safety_margin: Some(Duration::from_secs(1)),
    refresh_window: Some(Duration::from_secs(2)),
};
/// When the first tokens are due for refresh, with room for their fetch.
const DUE: Duration = Duration::from_millis(3300);

#[derive(Debug)]
pub struct EndFirstFigures {
    pub fresh_hit: Duration,
    /// A request whose token was due for refresh, the token endpoint taking [`SLOW`].
    pub refresh_window: Duration,
    /// A stale hit, its refresh from an upstream taking [`SLOW`].
    pub stale_hit: Duration,
    /// The stale hit's `Content-Length`.
    pub stale_length: Option<String>,
    /// Token fetches of the refresh-window request.
    pub token_fetches: usize,
    /// The next relayed request used the refreshed token.
    pub refreshed_token_used: bool,
    /// `Cache-Status` of the request after the stale hit.
    pub after_stale: String,
    /// Upstream calls for the stale route: the fill and the refresh.
    pub upstream_calls: usize,
}

impl fmt::Display for EndFirstFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "answers end first (upstream and token endpoint {SLOW:?}): fresh hit {:?}, refresh-window request {:?}, stale hit {:?} (Content-Length {:?}); {} token fetches, refreshed token used: {}; {} upstream calls, after the stale hit: {:?}",
            self.fresh_hit,
            self.refresh_window,
            self.stale_hit,
            self.stale_length,
            self.token_fetches,
            self.refreshed_token_used,
            self.upstream_calls,
            self.after_stale
        )
    }
}

impl Figures for EndFirstFigures {
    fn meets_target(&self) -> anyhow::Result<()> {
        ensure!(self.stale_hit < ENDS_FIRST, "the stale hit ends before its refresh: {self}");
        ensure!(self.stale_length.is_some(), "the stale hit has a Content-Length: {self}");
        ensure!(self.refresh_window < ENDS_FIRST, "the refresh-window request ends before its refresh: {self}");
        ensure!(self.token_fetches == 1 && self.refreshed_token_used, "the token was refreshed: {self}");
        ensure!(self.upstream_calls == 2, "the stale answer was refreshed once: {self}");
        ensure!(
            self.after_stale.starts_with("tokenrelay; hit;") && !self.after_stale.contains(STALE_DETAIL),
            "the request after the stale hit gets the refreshed answer: {self}"
        );
        Ok(())
    }

    fn latencies(&self) -> &[Duration] {
        &[]
    }
}

/// One instance, frozen between invocations.
pub async fn answers_end_first(platform: &Platform) -> anyhow::Result<EndFirstFigures> {
    let fx = Fixture::start_with(SCHEDULE).await?;
    let logs = Logs::default();
    let deployment = platform.deploy(&fx, 1, Freeze::On, &logs).await?;
    let shell = &deployment.shell;
    // Each upstream has a token of its own.
    let tokens_fetched = Instant::now();
    ok(shell, RELAYED).await.context("the first relayed request")?;
    ok(shell, STALE_AFTER_TTL).await.context("the first cached request")?;
    let (fresh, fresh_hit) = timed(shell, STALE_AFTER_TTL).await?;
    let status = fresh.header("cache-status").unwrap_or_default();
    ensure!(status.starts_with("tokenrelay; hit;") && !status.contains(STALE_DETAIL), "a fresh hit: {status}");

    tokio::time::sleep(DUE.saturating_sub(tokens_fetched.elapsed())).await;
    fx.tokens.set_behavior(Behavior::Delay(SLOW));
    let fetched = fx.tokens.calls();
    let refresh_window = timed(shell, RELAYED).await?.1;
    idle(shell).await?;
    fx.tokens.set_behavior(Behavior::Normal);
    let token_fetches = fx.tokens.calls() - fetched;
    ok(shell, RELAYED).await?;
    let newest = fx.tokens.issued().last().cloned().unwrap_or_default();
    let used = fx.api.requests().last().and_then(|r| r.header("authorization").map(str::to_owned));
    let refreshed_token_used = used == Some(format!("Bearer {newest}"));

    let (stale, stale_hit) = timed(shell, STALE_AFTER_TTL).await?;
    let status = stale.header("cache-status").unwrap_or_default();
    ensure!(status.contains(STALE_DETAIL), "served stale: {status}");
    // Taken once the instance is thawed again, which is after the stale hit's `end`.
    let after_stale = ok(shell, STALE_AFTER_TTL).await?.header("cache-status").unwrap_or_default().to_owned();
    let path = STALE_AFTER_TTL.replace("/api/relay/cached", "/v3");
    let path = path.split('?').next().unwrap_or_default();
    Ok(EndFirstFigures {
        fresh_hit,
        refresh_window,
        stale_hit,
        stale_length: stale.header("content-length").map(str::to_owned),
        token_fetches,
        refreshed_token_used,
        after_stale,
        upstream_calls: fx.api.requests().iter().filter(|r| r.path() == path).count(),
    })
}

async fn ok(shell: &Shell, target: &str) -> anyhow::Result<Reply> {
    let reply = shell.get(target, &[]).await?;
    ensure!(reply.status == 200, "{target}: {} {}", reply.status, reply.text());
    Ok(reply)
}

/// The answer to `target` and how long it took, once the instance is idle:
/// not waiting for the previous invocation's end.
async fn timed(shell: &Shell, target: &str) -> anyhow::Result<(Reply, Duration)> {
    idle(shell).await?;
    let started = Instant::now();
    let reply = ok(shell, target).await?;
    Ok((reply, started.elapsed()))
}

/// Returns once the instance took a request of its own: the invocations before have ended.
async fn idle(shell: &Shell) -> anyhow::Result<()> {
    let reply = shell.get(PROBE, &[]).await?;
    ensure!(reply.status == 404, "{PROBE}: {} {}", reply.status, reply.text());
    Ok(())
}
