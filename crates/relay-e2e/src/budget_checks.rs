//! What protects the site's quota at the upstream: the budget of upstream
//! calls shared by every instance, and the upstream's own limit (a 429 with
//! `Retry-After`) respected by every instance.

use std::time::Duration;

use anyhow::{Context, ensure};

use crate::fixture::BUDGETED_CALLS;
use crate::{Fixture, Reply, Shell};

/// Longer than the relay's sync interval (500 ms): an instance that waited
/// this long decides on the store's count again, as one thawed after a freeze.
const PAUSE: Duration = Duration::from_millis(600);
/// The longest cooldown an upstream's headers can start (`relay::upstream_limits`).
const MAX_COOLDOWN_SECS: u64 = 3600;

/// How many requests the API received whose path starts with `prefix`.
fn calls(fx: &Fixture, prefix: &str) -> usize {
    fx.api.requests().iter().filter(|r| r.uri.starts_with(prefix)).count()
}

/// A 503 with `code` and a `Retry-After` of at most `max` seconds.
fn refused(reply: &Reply, code: &str, max: u64) -> anyhow::Result<()> {
    ensure!(reply.status == 503, "expected 503 {code}, got {}: {}", reply.status, reply.text());
    ensure!(reply.json()?["error"]["code"] == code, "expected {code}: {}", reply.text());
    let retry_after: u64 = reply.header("retry-after").context("Retry-After")?.parse()?;
    ensure!((1..=max).contains(&retry_after), "Retry-After {retry_after} is not within 1..={max}");
    Ok(())
}

/// The `budgeted` upstream's daily budget holds across `shells` (one per
/// instance): cache hits are free, calls stop at the budget whichever
/// instance makes them, and then every instance answers `budget_exhausted`
/// until the day's (UTC, epoch-aligned) window ends. Requests go round the
/// instances with a pause longer than the sync interval between rounds, so
/// that each decides on the store's count: the exact case (within an
/// interval, the bound `relay::rate_limit` states applies).
pub async fn budget_bounds_upstream_calls(shells: &[Shell], fx: &Fixture) -> anyhow::Result<()> {
    let prefix = "/v3/echo/";
    let before = calls(fx, prefix);
    let cached = "/api/relay/budgeted/echo/cached/one";
    ensure!(shells[0].get_as(30, cached).await?.status == 200, "the cached route's miss");
    for (i, shell) in shells.iter().cycle().take(8).enumerate() {
        let reply = shell.get_as(31, cached).await?;
        ensure!(reply.status == 200, "hit {i}: {}", reply.status);
    }
    ensure!(calls(fx, prefix) - before == 1, "cache hits make no upstream call");

    let mut statuses = Vec::new();
    for round in 0..3 {
        for (i, shell) in shells.iter().enumerate() {
            let reply = shell.get_as(32, &format!("/api/relay/budgeted/echo/plain/{round}-{i}")).await?;
            if reply.status != 200 {
                refused(&reply, "budget_exhausted", 86_400)?;
            }
            statuses.push(reply.status);
        }
        tokio::time::sleep(PAUSE).await;
    }
    let made = calls(fx, prefix) - before;
    ensure!(made as u64 == BUDGETED_CALLS, "{made} upstream calls for a budget of {BUDGETED_CALLS}: {statuses:?}");
    ensure!(
        statuses.iter().filter(|s| **s == 200).count() as u64 == BUDGETED_CALLS - 1,
        "the cached miss spent one: {statuses:?}"
    );
    for shell in shells {
        refused(&shell.get_as(33, "/api/relay/budgeted/echo/plain/after").await?, "budget_exhausted", 86_400)?;
    }
    ensure!(calls(fx, prefix) - before == made, "no call once the budget is spent");
    Ok(())
}

/// The `busy` upstream answers 429 with `Retry-After: 30`: the first call
/// passes it on, and from then every instance answers `upstream_cooling_down`
/// without calling it, learning the cooldown from the store.
pub async fn upstream_limit_stops_every_instance(shells: &[Shell], fx: &Fixture) -> anyhow::Result<()> {
    let target = "/api/relay/busy/busy";
    let first = shells[0].get_as(40, target).await?;
    ensure!(first.status == 429, "the upstream's own 429 is passed on: {}", first.status);
    for (i, shell) in shells.iter().cycle().take(3 * shells.len()).enumerate() {
        refused(&shell.get_as(41 + (i % 3) as u8, target).await?, "upstream_cooling_down", 30)
            .with_context(|| format!("request {i}"))?;
    }
    let made = calls(fx, "/v3/busy");
    ensure!(made == 1, "the upstream was called {made} times, not once");
    Ok(())
}

/// The `spent` upstream answers 200 with `X-RateLimit-Remaining: 0` and a
/// `X-RateLimit-Reset` of `u64::MAX` (a Unix time past any clock): the
/// visitor gets that answer, and from then every instance cools the
/// upstream down for at most [`MAX_COOLDOWN_SECS`], without calling it.
pub async fn limit_headers_past_any_clock_are_answered_and_capped(
    shells: &[Shell],
    fx: &Fixture,
) -> anyhow::Result<()> {
    let target = format!("/api/relay/spent/echo/quota?set-x-ratelimit-remaining=0&set-x-ratelimit-reset={}", u64::MAX);
    let first = shells[0].get_as(50, &target).await.context("the answer that reports the quota")?;
    ensure!(first.status == 200, "the upstream's answer is passed on: {} {}", first.status, first.text());
    ensure!(first.json()?["path"] == "/v3/echo/quota", "the upstream's own body: {}", first.text());
    for (i, shell) in shells.iter().enumerate() {
        refused(&shell.get_as(51, &target).await?, "upstream_cooling_down", MAX_COOLDOWN_SECS)
            .with_context(|| format!("instance {i}"))?;
    }
    let made = calls(fx, "/v3/echo/quota");
    ensure!(made == 1, "the upstream was called {made} times, not once");
    Ok(())
}

/// A visitor chooses a path on which the `picky` upstream answers 429 with
/// `Retry-After: 99999999`: the visitor gets that answer, and from then that
/// route pattern cools down on every instance (for at most
/// [`MAX_COOLDOWN_SECS`]) without calling it, while the upstream's other
/// route still answers 200 on every instance.
pub async fn a_refusal_cools_down_only_its_route(shells: &[Shell], fx: &Fixture) -> anyhow::Result<()> {
    let chosen = "/api/relay/picky/echo/search/x?status=429&set-retry-after=99999999";
    let first = shells[0].get_as(60, chosen).await?;
    ensure!(first.status == 429, "the upstream's own 429 is passed on: {} {}", first.status, first.text());
    for (i, shell) in shells.iter().enumerate() {
        refused(&shell.get_as(61, "/api/relay/picky/echo/search/y").await?, "upstream_cooling_down", MAX_COOLDOWN_SECS)
            .with_context(|| format!("the refused route on instance {i}"))?;
        let other = shell.get_as(62, &format!("/api/relay/picky/echo/images/{i}")).await?;
        ensure!(other.status == 200, "the other route on instance {i}: {} {}", other.status, other.text());
    }
    let made = calls(fx, "/v3/echo/search/");
    ensure!(made == 1, "the refused route was called {made} times, not once");
    Ok(())
}
