//! What every platform shell must do, checked over HTTP. Each check leaves
//! the fixture as it found it (token rejection switched back off, request
//! logs cleared) so they can run in sequence against one deployment.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures_util::StreamExt;

use crate::fixture::{ALLOWED_ORIGIN, Fixture, LIMITED_REQUESTS, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, TIMEOUT_SECS};
use crate::http::{Reply, Shell, Visitor};

const SEARCH: &str = "/api/relay/getty/search/images?phrase=cats";
/// Requests to a resource the upstream always refuses, in the 401 check.
const DENIED_REQUESTS: usize = 20;

/// 200 `GET`s spread over `shells` (processes sharing one store), 16 at a
/// time, cause exactly one token request. Run it first, on a fresh fixture.
pub async fn one_token_for_many_requests(shells: &[Shell], fx: &Fixture, requests: usize) -> anyhow::Result<()> {
    ensure!(fx.tokens.calls() == 0, "precondition: no token fetched yet");
    let replies: Vec<anyhow::Result<Reply>> = futures_util::stream::iter(0..requests)
        .map(|i| {
            let shell = &shells[i % shells.len()];
            async move { shell.get(SEARCH, &[]).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for reply in replies {
        let reply = reply?;
        ensure!(reply.status == 200, "a request failed: {} {}", reply.status, reply.text());
    }
    ensure!(
        fx.tokens.calls() == 1,
        "{requests} requests over {} processes made {} token requests",
        shells.len(),
        fx.tokens.calls()
    );
    Ok(())
}

/// The rules every request goes through, checked on one function: what is
/// forwarded, what comes back, hostile paths, routes and methods, CORS, limits.
pub async fn request_rules(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    happy_path_forwards_only_what_it_should(shell, fx).await.context("happy path")?;
    responses_never_carry_credentials_or_cookies(shell, fx).await.context("response filtering")?;
    only_allow_listed_response_headers_come_back(shell, fx).await.context("response headers")?;
    echoed_credentials_are_redacted_in_every_encoding(shell, fx).await.context("encoded echoes")?;
    hostile_paths_never_reach_anything(shell, fx).await.context("hostile paths")?;
    path_parameters_only_where_a_route_allows_them(shell, fx).await.context("path parameters")?;
    routes_and_methods_are_enforced(shell, fx).await.context("routes and methods")?;
    the_token_parameter_cannot_be_sent(shell, fx).await.context("token parameter")?;
    cors_allows_only_configured_origins(shell, fx).await.context("CORS")?;
    limits_end_with_clear_errors(shell, fx).await.context("limits")
}

/// The upstream receives the path, query, token and key, and nothing of the visitor's.
pub async fn happy_path_forwards_only_what_it_should(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    fx.api.clear_requests();
    let reply = shell
        .get(
            SEARCH,
            &[
                ("Origin", ALLOWED_ORIGIN),
                ("Accept", "application/json"),
                ("Accept-Language", "fr"),
                ("Authorization", "Bearer visitor-token"),
                ("Cookie", "session=visitor-cookie"),
                ("X-Forwarded-For", "198.51.100.1"),
                ("Forwarded", "for=198.51.100.1"),
                ("Api-Key", "visitor-key"),
            ],
        )
        .await?;
    ensure!(reply.status == 200, "status {}: {}", reply.status, reply.text());
    let body = reply.json()?;
    ensure!(body["images"][0]["title"] == "cats 1", "unexpected body {body}");
    ensure!(reply.header("access-control-allow-origin") == Some(ALLOWED_ORIGIN), "no CORS header: {:?}", reply.headers);
    ensure!(
        reply.header("cache-control") == Some("public, max-age=60"),
        "route cache_control not set: {:?}",
        reply.header("cache-control")
    );
    ensure!(reply.header_all("vary").to_ascii_lowercase().contains("origin"), "no Vary: Origin");
    ensure!(reply.header("x-request-id").is_some(), "no request id");
    let csp = reply.header("content-security-policy").unwrap_or_default();
    ensure!(
        csp.contains("sandbox") && reply.header("x-content-type-options") == Some("nosniff"),
        "answers must be inert as pages"
    );
    let timing = reply.header("server-timing").context("no Server-Timing")?;
    ensure!(
        timing.contains("token;dur=") && timing.contains("desc=\"") && timing.contains("upstream;dur="),
        "Server-Timing {timing:?}"
    );

    let requests = fx.api.requests();
    ensure!(requests.len() == 1, "upstream saw {} requests", requests.len());
    let seen = &requests[0];
    ensure!(seen.uri == "/v3/search/images?phrase=cats", "upstream saw {}", seen.uri);
    let api = url::Url::parse(&fx.api.url())?;
    let host = format!("{}:{}", api.host_str().unwrap_or_default(), api.port().unwrap_or_default());
    let hosts: Vec<&str> =
        seen.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("host")).map(|(_, v)| v.as_str()).collect();
    ensure!(hosts == [host.as_str()], "upstream saw Host {hosts:?}, not {host}");
    let bearer = seen.header("authorization").unwrap_or_default().strip_prefix("Bearer ").unwrap_or_default();
    ensure!(fx.tokens.is_valid(bearer), "upstream did not get a live token");
    ensure!(seen.header("api-key") == Some(fx.key()), "upstream did not get the API key");
    ensure!(
        seen.header("accept-language") == Some("fr") && seen.header("accept") == Some("application/json"),
        "negotiation headers lost"
    );
    ensure!(
        seen.header("accept-encoding") == Some("identity"),
        "the upstream must be asked for a body the relay can scrub, got {:?}",
        seen.header("accept-encoding")
    );
    for name in ["cookie", "x-forwarded-for", "forwarded", "origin"] {
        ensure!(seen.header(name).is_none(), "visitor header {name} reached the upstream");
    }
    ensure!(
        !seen.headers.iter().any(|(_, v)| v.contains("visitor")),
        "a visitor value reached the upstream: {:?}",
        seen.headers
    );
    Ok(())
}

/// Cookies, hop-by-hop and injected headers stay behind; echoed credentials are redacted.
pub async fn responses_never_carry_credentials_or_cookies(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    let reply = shell.get("/api/relay/getty/cookie", &[]).await?;
    ensure!(reply.status == 200, "status {}", reply.status);
    ensure!(reply.header("set-cookie").is_none(), "Set-Cookie passed through");
    ensure!(reply.header("cache-control") == Some("no-store"), "a route without cache_control must be no-store");

    let reply = shell.get("/api/relay/getty/echo/whoami?x=1", &[]).await?;
    ensure!(reply.status == 200, "status {}", reply.status);
    let echoed = reply.json()?;
    ensure!(
        echoed["headers"]["authorization"] == "Bearer [REDACTED]",
        "token not redacted: {}",
        echoed["headers"]["authorization"]
    );
    ensure!(echoed["headers"]["api-key"] == "[REDACTED]", "key not redacted");
    ensure!(reply.header("authorization").is_none() && reply.header("api-key").is_none(), "injected headers echoed");
    fx.assert_no_secrets("the echo response", &reply.text())
}

/// Headers that would act on the site's own origin (wipe its storage, pin
/// HSTS, preload scripts, redirect, prompt for a password) never come back;
/// what an API client reads does.
pub async fn only_allow_listed_response_headers_come_back(shell: &Shell, _fx: &Fixture) -> anyhow::Result<()> {
    let reply = shell.get("/api/relay/getty/headers", &[]).await?;
    ensure!(reply.status == 200, "status {} {}", reply.status, reply.text());
    for name in [
        "clear-site-data",
        "strict-transport-security",
        "alt-svc",
        "nel",
        "report-to",
        "link",
        "refresh",
        "location",
        "www-authenticate",
    ] {
        ensure!(reply.header(name).is_none(), "{name} passed through: {:?}", reply.header(name));
    }
    for (name, value) in [
        ("content-type", "application/json"),
        ("etag", "\"v1\""),
        ("last-modified", "Sun, 29 Nov 2026 09:00:00 GMT"),
        ("retry-after", "7"),
        ("x-ratelimit-remaining", "41"),
        ("ratelimit-policy", "\"default\";q=100;w=60"),
    ] {
        ensure!(reply.header(name) == Some(value), "{name}: {:?}, expected {value:?}", reply.header(name));
    }
    Ok(())
}

/// The upstream echoes the token and key raw, percent-encoded (either case),
/// form-encoded, JSON-escaped and base64-encoded: every form is redacted, and
/// `Range` (which would let a caller fetch the echo in slices) is not
/// forwarded unless the route opts in.
pub async fn echoed_credentials_are_redacted_in_every_encoding(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    fx.api.clear_requests();
    let reply = shell.get("/api/relay/getty/reveal", &[("Range", "bytes=0-39")]).await?;
    ensure!(reply.status == 200, "status {} (Range must not reach the upstream): {}", reply.status, reply.text());
    let seen = fx.api.requests();
    ensure!(seen.len() == 1 && seen[0].header("range").is_none(), "Range was forwarded");
    let body = reply.json()?;
    for field in testkit::REVEALED {
        let value = body[field].as_str().unwrap_or_default();
        ensure!(value.contains("[REDACTED]"), "{field} was not redacted");
    }
    ensure!(reply.header("etag").is_none(), "an ETag holding the base64 token passed through");
    fx.assert_no_secrets("the encoded echo", &reply.text())?;

    fx.api.clear_requests();
    let reply = shell.get("/api/relay/getty/echo/ranged/file", &[("Range", "bytes=0-9")]).await?;
    ensure!(reply.status == 200, "ranged route: status {} {}", reply.status, reply.text());
    let seen = fx.api.requests();
    ensure!(
        seen.len() == 1 && seen[0].header("range") == Some("bytes=0-9"),
        "a route with forward_range must forward Range"
    );
    Ok(())
}

/// `;` path parameters reach the upstream only on a route with
/// `path_params`, and never behind a dot segment.
pub async fn path_parameters_only_where_a_route_allows_them(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    fx.api.clear_requests();
    let reply = shell.get("/api/relay/getty/echo/params/a;v=1/b", &[]).await?;
    ensure!(reply.status == 200, "opted-in route: status {} {}", reply.status, reply.text());
    let seen = fx.api.requests();
    ensure!(seen.len() == 1 && seen[0].path() == "/v3/echo/params/a;v=1/b", "upstream saw {:?}", seen);
    let reply = shell.get("/api/relay/getty/echo/a;v=1", &[]).await?;
    ensure!(reply.status == 400, "default route: status {} {}", reply.status, reply.text());
    ensure!(reply.error_code().as_deref() == Some("path_rejected"), "body {}", reply.text());
    ensure!(fx.api.requests().len() == 1, "a refused path parameter reached the upstream");
    Ok(())
}

/// Requests with these targets must be refused before reaching any upstream.
/// Each comes with the code the relay gives when it sees the target as sent;
/// where a dev server resolves dot segments first, each still lands outside
/// every route (see [`AFTER_NORMALISATION`]).
const HOSTILE: &[(&str, &str)] = &[
    ("/api/relay/getty/echo/../../admin", "path_rejected"),
    ("/api/relay/getty/./admin", "path_rejected"),
    ("/api/relay/getty/echo\\..\\..\\admin", "path_rejected"),
    ("/api/relay/getty/echo/%2e%2e/%2e%2e/admin", "path_rejected"),
    ("/api/relay/getty/echo/%2E%2e/admin", "path_rejected"),
    ("/api/relay/getty/echo/.%2e/admin", "path_rejected"),
    ("/api/relay/getty/echo/%252e%252e/admin", "path_rejected"),
    ("/api/relay/getty/echo/a%2fb", "path_rejected"),
    ("/api/relay/getty/echo/a%2F..%2F..%2Fadmin", "path_rejected"),
    ("/api/relay/getty/echo/a%5c..%5cadmin", "path_rejected"),
    ("/api/relay/getty/echo/a%252fb", "path_rejected"),
    ("/api/relay/getty/echo//{evil}/v3/echo/x", "path_rejected"),
    ("/api/relay/getty/echo/http://{evil}/v3/echo/x", "path_rejected"),
    ("/api/relay/getty/echo/http:%2f%2f{evil}/v3/echo/x", "path_rejected"),
    ("/api/relay/getty/echo/user@{evil}", "path_rejected"),
    ("/api/relay/getty/echo/%40{evil}", "path_rejected"),
    ("/api/relay/getty/echo/a%00b", "path_rejected"),
    ("/api/relay/getty/echo/a%0d%0aX-Injected:%201", "path_rejected"),
    ("/api/relay/getty/admin", "route_not_found"),
    ("/api/relay/getty/search/../../hidden/search/images", "path_rejected"),
    ("/api/relay/nope/search/images", "unknown_upstream"),
    ("/api/relay/hidden/search/images", "unknown_upstream"),
    ("/api/relay/%2e%2e/getty/echo/x", "path_rejected"),
    // Tomcat, Jetty and Spring strip `;` parameters, then resolve dot segments.
    ("/api/relay/getty/echo/..;/..;/admin", "path_rejected"),
    ("/api/relay/getty/echo/.;/admin", "path_rejected"),
    ("/api/relay/getty/echo/%2e%2e;/admin", "path_rejected"),
    ("/api/relay/getty/echo/..;jsessionid=x/..;/admin", "path_rejected"),
    ("/api/relay/getty/echo/..%3B/admin", "path_rejected"),
    ("/api/relay/getty/echo/params/..;/..;/admin", "path_rejected"),
    ("/api/relay/getty/echo/a;x=1/b", "path_rejected"),
];

/// Codes a target may get instead when a dev server resolved its dot segments first.
const AFTER_NORMALISATION: &[&str] = &["route_not_found", "unknown_upstream"];

/// No path can reach anything but the configured routes on the configured host.
pub async fn hostile_paths_never_reach_anything(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    fx.api.clear_requests();
    let evil = fx.evil.url().trim_start_matches("http://").trim_end_matches("/v3").to_owned();
    for (target, code) in HOSTILE {
        let target = target.replace("{evil}", &evil);
        let reply = shell.get(&target, &[]).await?;
        // `vercel dev` answers a `//` itself, redirecting to the path with its
        // slashes merged: a path on the same host, and nothing reached.
        let location = reply.header("location").unwrap_or_default();
        let redirected_here = shell.normalizes_paths
            && (300..400).contains(&reply.status)
            && location.starts_with('/')
            && !location.starts_with("//");
        ensure!(
            (400..500).contains(&reply.status) || redirected_here,
            "{target}: status {} {} (Location {location:?})",
            reply.status,
            reply.text()
        );
        // A platform's own HTTP parser may refuse raw bytes before the function runs.
        if let Some(got) = reply.error_code() {
            let normalised = shell.normalizes_paths && AFTER_NORMALISATION.contains(&got.as_str());
            ensure!(got == *code || normalised, "{target}: code {got}, expected {code}");
        }
        ensure!(fx.api.requests().is_empty(), "{target} reached the upstream: {:?}", fx.api.requests());
    }
    ensure!(fx.evil.requests().is_empty(), "the evil server was reached: {:?}", fx.evil.requests());

    // Host-like inputs elsewhere do not move the request either.
    let reply = shell
        .get(
            &format!("/api/relay/getty/echo/here?url=http://{evil}/v3/echo/x&next=//{evil}"),
            &[("X-Forwarded-Host", &evil), ("Forwarded", &format!("host={evil}"))],
        )
        .await?;
    ensure!(reply.status == 200, "status {}", reply.status);
    let seen = fx.api.requests();
    ensure!(
        seen.len() == 1 && seen[0].path() == "/v3/echo/here",
        "upstream saw {:?}",
        seen.iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    ensure!(fx.evil.requests().is_empty(), "the evil server was reached");
    Ok(())
}

/// 404 for unknown paths, 405 with `Allow` for other methods, JSON errors.
pub async fn routes_and_methods_are_enforced(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    fx.api.clear_requests();
    let reply = shell.send("DELETE", "/api/relay/getty/search/images", &[], b"").await?;
    ensure!(reply.status == 405, "DELETE: status {}", reply.status);
    ensure!(reply.header("allow") == Some("GET"), "Allow: {:?}", reply.header("allow"));
    ensure!(reply.error_code().as_deref() == Some("method_not_allowed"), "body {}", reply.text());
    ensure!(reply.header("content-type") == Some("application/json"), "error content type");
    let message = reply.json()?["error"]["message"].as_str().unwrap_or_default().to_owned();
    ensure!(message.contains("DELETE") && message.contains("GET"), "message {message:?}");
    let reply = shell.send("POST", "/api/relay/getty/search/images", &[], b"{}").await?;
    ensure!(reply.status == 405, "POST: status {}", reply.status);
    ensure!(fx.api.requests().is_empty(), "a refused method reached the upstream");
    Ok(())
}

/// Allowed origins get CORS headers and preflights; others get 403 and reach nothing.
pub async fn cors_allows_only_configured_origins(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    fx.api.clear_requests();
    let reply = shell.get(SEARCH, &[("Origin", "https://evil.example")]).await?;
    ensure!(reply.status == 403, "foreign origin: status {}", reply.status);
    ensure!(reply.error_code().as_deref() == Some("origin_forbidden"), "body {}", reply.text());
    ensure!(reply.header("access-control-allow-origin").is_none(), "CORS header for a foreign origin");
    ensure!(fx.api.requests().is_empty(), "a foreign origin reached the upstream");

    let preflight = [
        ("Origin", ALLOWED_ORIGIN),
        ("Access-Control-Request-Method", "GET"),
        ("Access-Control-Request-Headers", "content-type, authorization"),
    ];
    let reply = shell.send("OPTIONS", "/api/relay/getty/search/images", &preflight, b"").await?;
    ensure!(reply.status == 204, "preflight: status {} {}", reply.status, reply.text());
    ensure!(reply.header("access-control-allow-origin") == Some(ALLOWED_ORIGIN), "preflight origin");
    ensure!(
        reply.header("access-control-allow-methods") == Some("GET"),
        "preflight methods {:?}",
        reply.header("access-control-allow-methods")
    );
    ensure!(
        reply.header("access-control-allow-headers") == Some("content-type"),
        "preflight must not allow Authorization"
    );
    ensure!(reply.header("access-control-max-age").is_some(), "preflight max age");

    let reply = shell
        .send(
            "OPTIONS",
            "/api/relay/getty/search/images",
            &[("Origin", ALLOWED_ORIGIN), ("Access-Control-Request-Method", "DELETE")],
            b"",
        )
        .await?;
    ensure!(reply.status == 405, "preflight for DELETE: status {}", reply.status);
    let reply = shell
        .send(
            "OPTIONS",
            "/api/relay/getty/search/images",
            &[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")],
            b"",
        )
        .await?;
    ensure!(reply.status == 403, "foreign preflight: status {}", reply.status);

    // The site's own pages: Origin is the host they were served from.
    let same = format!("http://{}", shell.addr);
    let reply = shell.get(SEARCH, &[("Origin", &same)]).await?;
    ensure!(reply.status == 200, "same origin: status {} {}", reply.status, reply.text());
    ensure!(reply.header("access-control-allow-origin").is_none(), "same origin needs no CORS header");
    ensure!(fx.api.requests().len() == 1, "only the allowed requests reached the upstream");

    // <img> and <script> tags on other sites send no Origin; Fetch Metadata says where they come from.
    fx.api.clear_requests();
    for site in ["cross-site", "same-site"] {
        let tag = [("Sec-Fetch-Site", site), ("Sec-Fetch-Mode", "no-cors"), ("Sec-Fetch-Dest", "image")];
        let reply = shell.get(SEARCH, &tag).await?;
        ensure!(reply.status == 403, "{site} without Origin: status {} {}", reply.status, reply.text());
        ensure!(reply.error_code().as_deref() == Some("origin_forbidden"), "body {}", reply.text());
    }
    ensure!(fx.api.requests().is_empty(), "a cross-site request without Origin reached the upstream");
    for headers in [
        [("Sec-Fetch-Site", "cross-site"), ("Origin", ALLOWED_ORIGIN)],
        [("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "cors")],
        [("Sec-Fetch-Site", "none"), ("Sec-Fetch-Mode", "navigate")],
    ] {
        let reply = shell.get(SEARCH, &headers).await?;
        ensure!(reply.status == 200, "{headers:?}: status {} {}", reply.status, reply.text());
    }
    Ok(())
}

/// On an upstream that takes its token in the query, a visitor's parameter of
/// that name never reaches it, however a server might spell it: any case, after
/// a `;` (also an encoded one: `netlify dev` encodes a raw `;` it passes on),
/// percent-encoded. The guard answers before any token is fetched.
pub async fn the_token_parameter_cannot_be_sent(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    fx.api.clear_requests();
    let spellings = [
        "access_token=x",
        "ACCESS_TOKEN=x",
        "a=1;access_token=x",
        "a=1%3Baccess_token%3Dx",
        "a=1&Access_Token",
        "access%5Ftoken=x",
    ];
    for query in spellings {
        let reply = shell.get(&format!("/api/relay/queried/echo/q?{query}"), &[]).await?;
        ensure!(reply.status == 400, "?{query}: status {} {}", reply.status, reply.text());
        ensure!(reply.error_code().as_deref() == Some("query_rejected"), "?{query}: {}", reply.text());
    }
    ensure!(fx.api.requests().is_empty(), "a visitor's token parameter reached the upstream");
    Ok(())
}

/// Oversized bodies, oversized answers and slow upstreams end with clear errors, never a hang.
pub async fn limits_end_with_clear_errors(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    let small = vec![b'a'; 100];
    let reply = shell.send("POST", "/api/relay/getty/echo/body", &[("Content-Type", "text/plain")], &small).await?;
    ensure!(reply.status == 200, "small body: status {} {}", reply.status, reply.text());
    ensure!(reply.json()?["body"] == String::from_utf8_lossy(&small).as_ref(), "body not relayed");

    let big = vec![b'a'; MAX_REQUEST_BYTES + 1];
    fx.api.clear_requests();
    let reply = shell.send("POST", "/api/relay/getty/echo/body", &[("Content-Type", "text/plain")], &big).await?;
    ensure!(reply.status == 413, "big body: status {} {}", reply.status, reply.text());
    ensure!(reply.error_code().as_deref() == Some("body_too_large"), "body {}", reply.text());
    ensure!(fx.api.requests().is_empty(), "an oversized body reached the upstream");

    let reply = shell.get("/api/relay/getty/big?bytes=1000", &[]).await?;
    ensure!(
        reply.status == 200 && reply.body.len() == 1000,
        "1000 bytes: status {} len {}",
        reply.status,
        reply.body.len()
    );

    let too_big = MAX_RESPONSE_BYTES * 2;
    let reply = shell.get(&format!("/api/relay/getty/big?bytes={too_big}"), &[]).await?;
    // The relay reads up to 64 KiB of an answer before answering (relay::body),
    // more than the fixture's limit: every shell can still answer the error.
    ensure!(reply.status == 502, "oversized answer: status {}", reply.status);
    ensure!(reply.error_code().as_deref() == Some("response_too_large"), "body {}", reply.text());

    let started = Instant::now();
    let reply = shell.get("/api/relay/getty/slow?ms=20000", &[]).await?;
    ensure!(reply.status == 504, "slow upstream: status {} {}", reply.status, reply.text());
    ensure!(reply.error_code().as_deref() == Some("upstream_timeout"), "body {}", reply.text());
    let bound = Duration::from_secs(TIMEOUT_SECS + 8);
    ensure!(started.elapsed() < bound, "timeout took {:?}", started.elapsed());
    Ok(())
}

/// A revoked token costs one 401, one refresh and one retry, although it is
/// younger than the fixture's `min_token_age` (an hour): the API says
/// `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1). A 401
/// that a new token cannot cure (`insufficient_scope`) is the upstream's own
/// answer, and rotates nothing; nor does a revocation once the fixture's one
/// invalidation an hour (`INVALIDATIONS_PER_HOUR`) is spent.
pub async fn a_401_refreshes_the_token_once(shell: &Shell, fx: &Fixture) -> anyhow::Result<()> {
    let reply = shell.get(SEARCH, &[]).await?;
    ensure!(reply.status == 200, "warm-up: status {}", reply.status);
    let calls = fx.tokens.calls();
    fx.tokens.revoke_issued();
    fx.api.clear_requests();
    let reply = shell.get(SEARCH, &[]).await?;
    ensure!(reply.status == 200, "after revocation: status {} {}", reply.status, reply.text());
    ensure!(fx.tokens.calls() == calls + 1, "expected one refresh, got {}", fx.tokens.calls() - calls);
    ensure!(fx.api.requests().len() == 2, "expected the 401 and one retry, upstream saw {}", fx.api.requests().len());
    let reply = shell.get(SEARCH, &[]).await?;
    ensure!(reply.status == 200 && fx.tokens.calls() == calls + 1, "the new token is reused");

    let calls = fx.tokens.calls();
    fx.api.clear_requests();
    for i in 0..DENIED_REQUESTS {
        let reply = shell.get("/api/relay/getty/denied", &[]).await?;
        ensure!(reply.status == 401, "denied request {i}: status {} {}", reply.status, reply.text());
        ensure!(reply.json()?["error"] == "insufficient_scope", "not the upstream's own answer: {}", reply.text());
        ensure!(reply.header("www-authenticate").is_none(), "WWW-Authenticate passed through");
    }
    let fetched = fx.tokens.calls() - calls;
    ensure!(fetched == 0, "{DENIED_REQUESTS} refused requests fetched {fetched} tokens (budget spent: none expected)");
    ensure!(
        fx.api.requests().len() == DENIED_REQUESTS,
        "a kept token is not retried: upstream saw {} requests",
        fx.api.requests().len()
    );

    fx.api.reject_all_tokens(true);
    fx.api.clear_requests();
    let reply = shell.get(SEARCH, &[]).await;
    fx.api.reject_all_tokens(false);
    let reply = reply?;
    ensure!(reply.status == 401, "persistent 401: status {} {}", reply.status, reply.text());
    ensure!(reply.json()?["error"] == "invalid_token", "not the upstream's own answer: {}", reply.text());
    ensure!(
        fx.api.requests().len() == 1,
        "no retry once the budget is spent: upstream saw {}",
        fx.api.requests().len()
    );
    ensure!(fx.tokens.calls() == calls, "a persistent 401 fetched a token");
    Ok(())
}

/// `limited` allows a few requests per client IP and window, then 429 with `Retry-After`.
pub async fn rate_limit_counts_per_client(shell: &Shell, _fx: &Fixture) -> anyhow::Result<()> {
    let target = "/api/relay/limited/search/images?phrase=x";
    for i in 0..LIMITED_REQUESTS {
        let reply = shell.get_as(10, target).await?;
        ensure!(reply.status == 200, "request {i}: status {} {}", reply.status, reply.text());
    }
    let reply = shell.get_as(10, target).await?;
    ensure!(reply.status == 429, "over the limit: status {}", reply.status);
    ensure!(reply.error_code().as_deref() == Some("rate_limited"), "body {}", reply.text());
    let retry: u64 = reply.header("retry-after").context("no Retry-After")?.parse()?;
    ensure!((1..=60).contains(&retry), "Retry-After {retry}");
    let reply = shell.get_as(11, target).await?;
    ensure!(reply.status == 200, "another client: status {}", reply.status);
    let reply = shell.get_as(10, SEARCH).await?;
    ensure!(reply.status == 200, "another upstream: status {}", reply.status);
    Ok(())
}

/// A client-IP header that comes twice (Node joins the two into `"a, b"`)
/// counts its first address: the visitor is in `a`'s bucket, not in the one
/// all address-less visitors share, nor in `b`'s. Nothing to send where the
/// platform takes the connection's address.
pub async fn a_repeated_client_ip_header_counts_its_first_address(shell: &Shell, _fx: &Fixture) -> anyhow::Result<()> {
    let Visitor::Header(name) = shell.visitor else { return Ok(()) };
    let target = "/api/relay/limited/search/images?phrase=repeated";
    for i in 0..LIMITED_REQUESTS {
        let reply = shell.get_as(20, target).await?;
        ensure!(reply.status == 200, "request {i}: status {} {}", reply.status, reply.text());
    }
    let (first, second) = ("203.0.113.20", "203.0.113.21");
    let reply = shell.get(target, &[(name, first), (name, second)]).await?;
    ensure!(reply.status == 429, "{name} twice, first {first}: status {} {}", reply.status, reply.text());
    let reply = shell.get(target, &[(name, &format!("{first}, {second}"))]).await?;
    ensure!(reply.status == 429, "{name}: {first}, {second}: status {} {}", reply.status, reply.text());
    let reply = shell.get(target, &[(name, second), (name, first)]).await?;
    ensure!(reply.status == 200, "{name} twice, first {second}: status {} {}", reply.status, reply.text());
    Ok(())
}

/// The function's structured logs: one line per request with its fields, never a secret.
pub fn logs_are_structured_and_secret_free(
    lines: &[String],
    json: &[serde_json::Value],
    fx: &Fixture,
) -> anyhow::Result<()> {
    for line in lines {
        fx.assert_no_secrets("a log line", line)?;
    }
    let relayed =
        json.iter().find(|l| l["message"] == "relay request" && l["upstream"] == "getty" && l["status"] == 200);
    let line = relayed.context("no `relay request` log line for getty")?;
    for field in ["request_id", "method", "route", "cache", "token", "token_ms", "upstream_ms", "duration_ms"] {
        ensure!(line.get(field).is_some(), "log line lacks {field}: {line}");
    }
    ensure!(json.iter().any(|l| l["code"] == "path_rejected"), "refusals are logged with their code");
    Ok(())
}
