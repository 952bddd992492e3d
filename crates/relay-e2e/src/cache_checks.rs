//! The shared response cache, checked over HTTP through several function
//! processes on one store, against the counting API: one upstream call per
//! miss, keys, what is never stored, stale answers, sealing and purges.
//! Each check uses its own paths, so they run in sequence on one fixture.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures_util::StreamExt;

use crate::fixture::{ALLOWED_ORIGIN, Fixture, PREVIEW_BASE_PATH};
use crate::http::{Reply, Shell};

const BASE: &str = "/api/relay/cached/echo";
/// The fixture's `ttl` of `/echo/swr/**` and `/echo/sie/**`.
const SHORT_TTL: Duration = Duration::from_secs(1);
/// The fixture's `stale_if_error` of `/echo/sie/**`.
const STALE_IF_ERROR: Duration = Duration::from_secs(3);
/// Longest wait for something another process does in the background.
const SETTLE: Duration = Duration::from_secs(5);

/// How a platform hands the function the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPassing {
    /// As the visitor sent it: Vercel, and Netlify in production (`rawQuery`).
    Raw,
    /// Parsed into parameters, which the function encodes again: `netlify
    /// dev` sends no `rawQuery`, so `+` and `%20` (or two invalid UTF-8
    /// bytes) reach the relay, and the upstream, as the same question.
    Parsed,
}

/// Every cache check but [`stale_while_revalidate_serves_at_once_and_refreshes_once`]
/// (which needs a function process that outlives its answer), in order.
pub async fn response_cache(shells: &[Shell], fx: &Fixture, query: QueryPassing) -> anyhow::Result<()> {
    concurrent_misses_make_one_upstream_call(shells, fx).await.context("concurrent misses")?;
    keys_sort_the_query_and_respect_forwarded_headers(shells, fx).await.context("keys")?;
    keys_keep_every_byte_of_the_query(shells, fx, query).await.context("query bytes")?;
    a_get_body_never_reaches_the_upstream(&shells[0], fx).await.context("GET body")?;
    deployments_never_share_answers(&shells[0], fx).await.context("deployments")?;
    uncacheable_answers_are_never_stored(&shells[0], fx).await.context("uncacheable answers")?;
    a_401_is_never_cached(&shells[0], fx).await.context("401")?;
    entries_are_sealed_in_redis(fx).await.context("sealing")?;
    stale_if_error_covers_an_outage_then_ends(&shells[0], fx).await.context("stale-if-error")?;
    purge_forgets_a_prefix_everywhere(shells, fx).await.context("purge")
}

/// How many requests the API saw for `path` (below `/v3`).
fn calls(fx: &Fixture, path: &str) -> usize {
    fx.api.requests().iter().filter(|r| r.path() == format!("/v3/echo{path}")).count()
}

fn cache_status(reply: &Reply) -> &str {
    reply.header("cache-status").unwrap_or_default()
}

async fn get_ok(shell: &Shell, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
    let reply = shell.get(&format!("{BASE}{path}"), headers).await?;
    ensure!(reply.status == 200, "GET {path}: {} {} ({})", reply.status, reply.text(), cache_status(&reply));
    Ok(reply)
}

/// 40 identical requests at once over every process: one upstream call,
/// the same answer everywhere; later ones are hits with an `Age`.
pub async fn concurrent_misses_make_one_upstream_call(shells: &[Shell], fx: &Fixture) -> anyhow::Result<()> {
    let path = "/fresh/stampede?q=cats";
    let replies: Vec<anyhow::Result<Reply>> = futures_util::stream::iter(0..40)
        .map(|i| get_ok(&shells[i % shells.len()], path, &[]))
        .buffer_unordered(40)
        .collect()
        .await;
    let replies = replies.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(
        calls(fx, "/fresh/stampede") == 1,
        "40 concurrent misses made {} upstream calls",
        calls(fx, "/fresh/stampede")
    );
    let stored = replies.iter().filter(|r| cache_status(r) == "tokenrelay; fwd=miss; stored").count();
    ensure!(stored == 1, "one answer says it was stored, got {stored}");
    ensure!(replies.iter().all(|r| r.body == replies[0].body), "every process served the same answer");
    let hit = get_ok(&shells[1 % shells.len()], path, &[("Origin", ALLOWED_ORIGIN)]).await?;
    ensure!(cache_status(&hit).starts_with("tokenrelay; hit; ttl="), "then a hit: {}", cache_status(&hit));
    ensure!(hit.header("age").is_some_and(|a| a.parse::<u64>().is_ok()), "a hit has an Age");
    ensure!(hit.header("cache-control") == Some("public, max-age=60"), "the route's cache_control as before");
    ensure!(hit.header_all("server-timing").contains("cache;dur="), "Server-Timing has a cache entry");
    let exposed = hit.header_all("access-control-expose-headers");
    ensure!(
        exposed.contains("age") && exposed.contains("cache-status"),
        "a cross-origin page can read them: {exposed}"
    );
    ensure!(calls(fx, "/fresh/stampede") == 1, "a hit never reaches the upstream");
    Ok(())
}

/// Parameter order does not split entries, values and forwarded headers do.
pub async fn keys_sort_the_query_and_respect_forwarded_headers(shells: &[Shell], fx: &Fixture) -> anyhow::Result<()> {
    for (i, query) in ["?b=2&a=1", "?a=1&b=2", "?a=1&b=3", "?a=1&b=3"].iter().enumerate() {
        get_ok(&shells[i % shells.len()], &format!("/fresh/keys{query}"), &[]).await?;
    }
    ensure!(calls(fx, "/fresh/keys") == 2, "two distinct queries, {} calls", calls(fx, "/fresh/keys"));
    for (i, accept) in ["application/json", "text/csv", "application/json", "text/csv"].iter().enumerate() {
        let reply = get_ok(&shells[i % shells.len()], "/fresh/vary", &[("Accept", accept)]).await?;
        let seen = reply.json()?.pointer("/headers/accept").and_then(|v| v.as_str().map(str::to_owned));
        ensure!(seen.as_deref() == Some(*accept), "Accept {accept} got the answer for {seen:?}");
    }
    ensure!(calls(fx, "/fresh/vary") == 2, "one entry per Accept, {} calls", calls(fx, "/fresh/vary"));
    Ok(())
}

/// The key holds the query byte for byte, sorted by parameter name only:
/// repeated parameters in another order, `+` and `%20`, `%FF` and `%FE` are
/// different questions, each with its own answer. Where the platform passes
/// the query parsed ([`QueryPassing::Parsed`]), only the order of repeated
/// parameters survives to the relay, so only that pair is asked.
pub async fn keys_keep_every_byte_of_the_query(
    shells: &[Shell],
    fx: &Fixture,
    query: QueryPassing,
) -> anyhow::Result<()> {
    let all = [("sort=a&sort=b", "sort=b&sort=a"), ("q=a+b", "q=a%20b"), ("q=%FF", "q=%FE")];
    let pairs = if query == QueryPassing::Raw { &all[..] } else { &all[..1] };
    for (i, query) in pairs.iter().flat_map(|(a, b)| [a, b]).enumerate() {
        let reply = get_ok(&shells[i % shells.len()], &format!("/fresh/bytes?{query}"), &[]).await?;
        let seen = reply.json()?["query"].clone();
        ensure!(seen == *query, "?{query} got the answer to ?{seen} ({})", cache_status(&reply));
    }
    let questions = 2 * pairs.len();
    let made = calls(fx, "/fresh/bytes");
    ensure!(made == questions, "{questions} questions, {made} upstream calls");
    Ok(())
}

/// A body on a `GET` never reaches the upstream, whose answer would be stored
/// under the body-less request's key: it is refused with 400
/// `body_not_allowed` (a platform that drops it before the function would
/// do as well), and a plain `GET` then gets an answer to no body.
pub async fn a_get_body_never_reaches_the_upstream(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    let target = format!("{BASE}/fresh/poison");
    let reply = shell.send("GET", &target, &[], b"POISON").await?;
    let refused = reply.status == 400 && reply.error_code().as_deref() == Some("body_not_allowed");
    let dropped = reply.status == 200 && reply.json().is_ok_and(|answer| answer["body"] == "");
    ensure!(refused || dropped, "a GET with a body: {} {}", reply.status, reply.text());
    let reached = fx.api.requests().iter().any(|r| r.body.windows(6).any(|w| w == b"POISON"));
    ensure!(!reached, "a GET's body reached the upstream");
    let plain = get_ok(shell, "/fresh/poison", &[]).await?;
    ensure!(plain.json()?["body"] == "", "a plain GET got an answer to a body: {}", plain.text());
    Ok(())
}

/// Two deployments on one store and encryption key with another `base_url`
/// (Vercel's Preview and Production sharing variables) never serve each
/// other's answers. The preview is a relay in this process on
/// [`Fixture::preview_env`]; its answers come from below [`PREVIEW_BASE_PATH`].
pub async fn deployments_never_share_answers(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    let env = tokenrelay::Env::from_pairs(fx.preview_env());
    let preview = tokenrelay::relay::Relay::from_env(&env).context("the preview relay")?;
    let path = "/fresh/deployment";
    let ask_preview = || async {
        let request = http::Request::get(format!("{BASE}{path}")).body(String::new())?;
        let response = preview.handle_buffered(request).await;
        let body = String::from_utf8_lossy(response.body()).into_owned();
        ensure!(response.status() == 200, "preview: {} {body}", response.status());
        let answer: serde_json::Value = serde_json::from_str(&body)?;
        anyhow::Ok(answer["path"].as_str().unwrap_or_default().to_owned())
    };
    let preview_path = format!("/v3{PREVIEW_BASE_PATH}/echo{path}");
    ensure!(ask_preview().await? == preview_path, "the preview asks its own base_url");
    let reply = get_ok(shell, path, &[]).await?;
    let seen = reply.json()?["path"].clone();
    ensure!(seen == format!("/v3/echo{path}"), "production served the preview's answer for {seen}");
    ensure!(calls(fx, path) == 1, "production asked its upstream: {} calls", calls(fx, path));
    ensure!(ask_preview().await? == preview_path, "the preview keeps its own answer");
    Ok(())
}

/// `no-store`, `private` and statuses outside the list always reach the upstream.
pub async fn uncacheable_answers_are_never_stored(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    for (path, detail) in [
        ("/fresh/nostore?cache_control=no-store", "no-store"),
        ("/fresh/private?cache_control=private,%20max-age=60", "no-store"),
        ("/fresh/created?status=201", "status"),
    ] {
        for _ in 0..2 {
            let reply = shell.get(&format!("{BASE}{path}"), &[]).await?;
            ensure!(reply.status < 300, "{path}: {}", reply.status);
            let status = cache_status(&reply);
            ensure!(status == format!("tokenrelay; fwd=miss; detail={detail}"), "{path}: Cache-Status {status}");
        }
        let bare = path.split('?').next().unwrap_or_default();
        ensure!(calls(fx, bare) == 2, "{path} reached the upstream {} times, not 2", calls(fx, bare));
    }
    let head = shell.send("HEAD", &format!("{BASE}/fresh/stampede?q=cats"), &[], b"").await?;
    ensure!(head.status == 200 && head.body.is_empty(), "HEAD has its own entry and no body");
    Ok(())
}

/// A 401 is never stored: the caller gets the upstream's own 401 (after one
/// refresh and retry, or at once when the invalidation budget is spent, as
/// the fixture's is by `checks::a_401_refreshes_the_token_once`), and the
/// next request asks the upstream again.
pub async fn a_401_is_never_cached(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    fx.api.reject_all_tokens(true);
    let reply = shell.get(&format!("{BASE}/fresh/auth"), &[]).await;
    fx.api.reject_all_tokens(false);
    let reply = reply?;
    ensure!(reply.status == 401, "{} {}", reply.status, reply.text());
    ensure!(reply.json()?["error"] == "invalid_token", "not the upstream's own answer: {}", reply.text());
    ensure!(cache_status(&reply) == "tokenrelay; fwd=miss; detail=status", "Cache-Status: {}", cache_status(&reply));
    let refused = calls(fx, "/fresh/auth");
    ensure!(refused == 1 || refused == 2, "the 401 and at most one retry, got {refused}");
    get_ok(shell, "/fresh/auth", &[]).await?;
    ensure!(calls(fx, "/fresh/auth") == refused + 1, "the 401 was not cached");
    Ok(())
}

/// Entries in Redis hold no readable answer.
pub async fn entries_are_sealed_in_redis(fx: &Fixture) -> anyhow::Result<()> {
    let keys = fx.upstash.redis_keys("tokenrelay:v1:cache:*").await;
    ensure!(keys.len() >= 3, "entries are in the store: {keys:?}");
    for key in keys.iter().filter(|k| !k.ends_with(":lock") && !k.ends_with(":purges")) {
        ensure!(!key.contains("stampede") && !key.contains("cats"), "a key names the request: {key}");
        let value = fx.upstash.redis_get(key).await.unwrap_or_default();
        ensure!(value.starts_with("v1."), "{key} is not sealed");
        // Each needle holds a character base64 never has mid-value, or is long enough that a
        // sealed value's random text cannot hold it by chance ("cats" alone once did).
        for readable in ["q=cats", "stampede", "application/json", "\"path\""] {
            ensure!(!value.contains(readable), "{key} holds {readable:?} in clear");
        }
    }
    Ok(())
}

/// After `ttl`, stale answers are served at once while one refresh runs.
pub async fn stale_while_revalidate_serves_at_once_and_refreshes_once(
    shells: &[Shell],
    fx: &Fixture,
) -> anyhow::Result<()> {
    let first = get_ok(&shells[0], "/swr/a", &[]).await?;
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(100)).await;
    let stale: Vec<anyhow::Result<Reply>> = futures_util::stream::iter(0..12)
        .map(|i| get_ok(&shells[i % shells.len()], "/swr/a", &[]))
        .buffer_unordered(12)
        .collect()
        .await;
    for reply in stale {
        let reply = reply?;
        ensure!(reply.body == first.body, "the stored answer is served");
        let status = cache_status(&reply);
        ensure!(status.starts_with("tokenrelay; hit;"), "served without waiting: {status}");
    }
    let deadline = Instant::now() + SETTLE;
    while calls(fx, "/swr/a") < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(calls(fx, "/swr/a") == 2, "one background refresh, got {} calls", calls(fx, "/swr/a"));
    // The refreshed entry is fresh again once the refresh has stored it (the
    // upstream counts its call before the relay has read and kept the answer):
    // more requests, stale hits until then, make no more calls.
    let fresh = |reply: &Reply| cache_status(reply).starts_with("tokenrelay; hit; ttl=0");
    let mut after = get_ok(&shells[0], "/swr/a", &[]).await?;
    while !fresh(&after) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = get_ok(&shells[0], "/swr/a", &[]).await?;
    }
    ensure!(fresh(&after), "refreshed: {}", cache_status(&after));
    ensure!(calls(fx, "/swr/a") == 2, "refreshed exactly once");
    Ok(())
}

/// Within `stale_if_error` a failing upstream is hidden; after it, its error shows.
pub async fn stale_if_error_covers_an_outage_then_ends(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    let first = get_ok(shell, "/sie/a", &[]).await?;
    let stored_at = Instant::now();
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(100)).await;
    fx.api.fail_with(Some(503));
    let outcome = async {
        let reply = get_ok(shell, "/sie/a", &[]).await?;
        ensure!(reply.body == first.body, "the stored answer stands in");
        let status = cache_status(&reply);
        ensure!(status.starts_with("tokenrelay; fwd=stale; fwd-status=503;"), "Cache-Status {status}");
        tokio::time::sleep(
            (SHORT_TTL + STALE_IF_ERROR).saturating_sub(stored_at.elapsed()) + Duration::from_millis(200),
        )
        .await;
        let reply = shell.get(&format!("{BASE}/sie/a"), &[]).await?;
        ensure!(reply.status == 503, "after the window the upstream's error shows: {}", reply.status);
        ensure!(cache_status(&reply).starts_with("tokenrelay; fwd=miss"), "Cache-Status {}", cache_status(&reply));
        Ok(())
    }
    .await;
    fx.api.fail_with(None);
    outcome
}

/// A purge of a path prefix reaches every process; other paths stay cached.
pub async fn purge_forgets_a_prefix_everywhere(shells: &[Shell], fx: &Fixture) -> anyhow::Result<()> {
    for shell in shells {
        get_ok(shell, "/fresh/purge/one", &[]).await?;
        get_ok(shell, "/fresh/kept/two", &[]).await?;
    }
    ensure!(calls(fx, "/fresh/purge/one") == 1 && calls(fx, "/fresh/kept/two") == 1, "cached before the purge");
    let env = tokenrelay::Env::from_pairs(fx.env());
    let broker = tokenrelay::Broker::from_env(&env).context("a broker on the fixture's store")?;
    tokenrelay::operator::purge_cache(&broker, "cached", "/echo/fresh/purge").await?;
    // Each process answers from its in-process level for at most a second,
    // then asks the store, which knows the purge.
    let deadline = Instant::now() + SETTLE;
    for shell in shells {
        while cache_status(&get_ok(shell, "/fresh/purge/one", &[]).await?).contains("detail=memory") {
            ensure!(Instant::now() < deadline, "the purge never reached {}", shell.addr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ensure!(calls(fx, "/fresh/purge/one") == 2, "refetched once after the purge: {}", calls(fx, "/fresh/purge/one"));
    for shell in shells {
        get_ok(shell, "/fresh/kept/two", &[]).await?;
    }
    ensure!(calls(fx, "/fresh/kept/two") == 1, "another prefix stays cached");
    let err = tokenrelay::operator::purge_cache(&broker, "getty", "").await.unwrap_err();
    ensure!(err.code() == "cache_purge_failed", "an upstream without a cache: {err}");
    Ok(())
}
