//! Caller proof (`caller` on a route): a login's JWT from a real third-party
//! issuer (`oauth2-mock-server`, run by node from
//! `tests/fixtures/caller/issuer.mjs`), a Turnstile token checked with a
//! siteverify stand-in (one per widget secret), and the relay session cookie
//! either earns.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use testkit::config::{Caller, Per, RateLimit, SiteConfig, Turnstile, UpstreamConfig, env, oauth2, route};
use testkit::{Flood, Siteverify};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Fixture, Logs, Reply, Shell};

/// The audience the `signed` upstream's tokens must carry.
const AUDIENCE: &str = "tokenrelay-e2e";
/// The Turnstile secret, as the `challenged` upstream reads it from the environment.
const TURNSTILE_SECRET: &str = "turnstile-secret-e2e";
/// Another widget's secret, guarding one route of the `widgets` upstream.
const TURNSTILE_SECRET_2: &str = "turnstile-secret-e2e-2";
/// The `hoarding` upstream's JWKS: this many bytes, 256 times the relay's cap.
const FLOOD_BYTES: usize = 64 * 1024 * 1024;
/// The `challenged` upstream's session lifetime: short, so expiry is seen.
const SESSION_SECS: u64 = 2;
/// Requests per caller in the `counted` upstream's window.
const PER_CALLER: u32 = 2;
/// Requests per address (or per caller) in the `costly` and `tallied`
/// upstreams' windows.
const PER_ADDRESS: usize = 3;
/// How long node gets to start the issuer.
const ISSUER_READY: Duration = Duration::from_secs(20);
/// The issuer script, from the repository root.
const ISSUER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/caller/issuer.mjs");

/// Where the callers' proofs are checked.
struct Urls<'a> {
    jwks: &'a str,
    issuer: &'a str,
    siteverify: &'a str,
    /// The second widget's siteverify.
    second: &'a str,
    /// The `hoarding` upstream's JWKS.
    flood: &'a str,
}

/// `fx`'s config with the callers' upstreams. `signed` asks for a login's JWT,
/// `challenged` for a Turnstile token; `counted` asks for a JWT and limits
/// each caller to [`PER_CALLER`] requests; `open` is `signed` without the
/// proof, to compare with. `widgets` guards routes with two widgets'
/// secrets, an action and a host name of its own; `hoarding` asks for a JWT
/// whose issuer's JWKS never ends. `costly` asks for a Turnstile token or a
/// JWT and limits each address to [`PER_ADDRESS`] requests; `tallied` asks
/// for a Turnstile token and limits each caller to as many.
fn with_callers(fx: &Fixture, urls: &Urls) -> SiteConfig {
    let upstream = |name: &str| {
        UpstreamConfig::new(name, fx.api.url(), oauth2(fx.tokens.url(), "GETTY_API_KEY", "GETTY_API_SECRET"))
    };
    let getty_shaped = |name: &str| upstream(name).relay(|r| r.header("Api-Key", env("GETTY_API_KEY")));
    let login = Caller::jwt(urls.jwks, urls.issuer, AUDIENCE);
    let widget = || Turnstile::new("TURNSTILE_SECRET").siteverify_url(urls.siteverify);
    fx.site()
        .upstream(getty_shaped("open").relay(|r| r.route("/echo/**")))
        .upstream(getty_shaped("signed").relay(|r| r.route(route("/echo/**").caller(login.clone()))))
        .upstream(upstream("counted").relay(|r| {
            r.rate_limit(RateLimit::new(PER_CALLER, Duration::from_secs(3600)).per(Per::Caller))
                .route(route("/echo/**").caller(login.clone()))
        }))
        .upstream(getty_shaped("challenged").relay(|r| {
            let session = Duration::from_secs(SESSION_SECS);
            r.route(route("/echo/**").caller(Caller::turnstile(widget()).session(session)))
        }))
        .upstream(upstream("widgets").relay(|r| {
            let second = Turnstile::new("TURNSTILE_SECRET_2").siteverify_url(urls.second);
            r.route(route("/echo/second/**").caller(Caller::turnstile(second)))
                .route(route("/echo/acted/**").caller(Caller::turnstile(widget().action("search"))))
                .route(route("/echo/hosted/**").caller(Caller::turnstile(widget().hostnames(["www.example.com"]))))
                .route(route("/echo/**").caller(Caller::turnstile(widget())))
        }))
        .upstream(
            upstream("hoarding")
                .relay(|r| r.route(route("/echo/**").caller(Caller::jwt(urls.flood, urls.issuer, AUDIENCE)))),
        )
        .upstream(upstream("costly").relay(|r| {
            r.rate_limit(RateLimit::new(PER_ADDRESS as u32, Duration::from_secs(3600)))
                .route(route("/echo/human/**").caller(Caller::turnstile(widget())))
                .route(route("/echo/**").caller(login.clone()))
        }))
        .upstream(upstream("tallied").relay(|r| {
            r.rate_limit(RateLimit::new(PER_ADDRESS as u32, Duration::from_secs(3600)).per(Per::Caller))
                .route(route("/echo/**").caller(Caller::turnstile(widget())))
        }))
}

/// The login provider and the siteverify stand-in; stop when dropped.
pub struct Callers {
    _issuer: Child,
    issuer: String,
    control: String,
    pub siteverify: Siteverify,
    /// The second widget's siteverify, accepting [`TURNSTILE_SECRET_2`].
    second: Siteverify,
    /// The `hoarding` upstream's JWKS.
    flood: Flood,
}

impl Callers {
    /// Starts both and adds the `signed` and `challenged` upstreams to `fx`'s
    /// config; start the functions after this.
    pub async fn start(fx: &Fixture) -> anyhow::Result<Self> {
        let mut child = Command::new("node")
            .arg(ISSUER_SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node (the caller tests need node and `npm ci`'s oauth2-mock-server)")?;
        let stdout = child.stdout.take().context("issuer stdout")?;
        let line = tokio::time::timeout(ISSUER_READY, BufReader::new(stdout).lines().next_line())
            .await
            .context("the issuer did not start in time")??
            .context("the issuer exited before it listened: is oauth2-mock-server installed (npm ci)?")?;
        let ready: Value = serde_json::from_str(&line).with_context(|| format!("issuer said {line}"))?;
        let field = |name: &str| ready[name].as_str().map(str::to_owned).with_context(|| format!("{name} in {line}"));
        let (issuer, jwks, control) = (field("issuer")?, field("jwks")?, field("control")?);
        let siteverify = Siteverify::start(TURNSTILE_SECRET).await?;
        let second = Siteverify::start(TURNSTILE_SECRET_2).await?;
        let flood = Flood::start(FLOOD_BYTES).await?;
        let urls = Urls {
            jwks: &jwks,
            issuer: &issuer,
            siteverify: &siteverify.url(),
            second: &second.url(),
            flood: &flood.url(),
        };
        with_callers(fx, &urls).write(&fx.config_path())?;
        Ok(Self { _issuer: child, issuer, control, siteverify, second, flood })
    }

    /// What the functions need besides [`Fixture::env`].
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TURNSTILE_SECRET".into(), TURNSTILE_SECRET.into()),
            ("TURNSTILE_SECRET_2".into(), TURNSTILE_SECRET_2.into()),
        ]
    }

    /// A token signed by key `kid` with `claims` over the issuer's defaults.
    async fn sign(&self, kid: &str, claims: Value, expires_in: i64) -> anyhow::Result<String> {
        let body = json!({ "kid": kid, "claims": claims, "expiresIn": expires_in });
        let reply = reqwest::Client::new().post(format!("{}/sign", self.control)).json(&body).send().await?;
        ensure!(reply.status().is_success(), "signing failed: {}", reply.text().await?);
        Ok(reply.text().await?)
    }

    /// A valid token for `sub`, signed with `kid`.
    async fn login(&self, kid: &str, sub: &str) -> anyhow::Result<String> {
        self.sign(kid, json!({ "aud": AUDIENCE, "sub": sub }), 600).await
    }
}

/// The `name=value` of a reply's session cookie, as a browser sends it back.
/// Latencies of the same request made three ways, in interleaved rounds so
/// that machine noise hits them alike: on a route without proof, with a
/// login's JWT (checked on every request: no cookie is sent back), and with
/// the relay session that JWT earned.
#[derive(Debug, Default)]
pub struct ProofCost {
    pub open: Vec<Duration>,
    pub jwt: Vec<Duration>,
    pub session: Vec<Duration>,
}

/// Measures [`ProofCost`] over `rounds` rounds, the JWT signed with key
/// `kid` (`rs`, `es` or `ed`); every answer must be a 200.
pub async fn proof_cost(shell: &Shell, callers: &Callers, kid: &str, rounds: usize) -> anyhow::Result<ProofCost> {
    let jwt = callers.login(kid, "bench").await?;
    let bearer = format!("Bearer {jwt}");
    let first = shell.get("/api/relay/signed/echo/bench", &[("Authorization", &bearer)]).await?;
    ensure!(first.status == 200, "the JWT passes: {} {}", first.status, first.text());
    let cookie = session_cookie(&first)?;
    let mut cost = ProofCost::default();
    let (jwt, session) = ([("Authorization", bearer.as_str())], [("Cookie", cookie.as_str())]);
    for _ in 0..rounds {
        let ways = [
            ("/api/relay/open/echo/bench", &[][..], &mut cost.open),
            ("/api/relay/signed/echo/bench", &jwt[..], &mut cost.jwt),
            ("/api/relay/signed/echo/bench", &session[..], &mut cost.session),
        ];
        for (target, headers, latencies) in ways {
            let started = std::time::Instant::now();
            let reply = shell.get(target, headers).await?;
            latencies.push(started.elapsed());
            ensure!(reply.status == 200, "{target}: {} {}", reply.status, reply.text());
        }
    }
    Ok(cost)
}

fn session_cookie(reply: &Reply) -> anyhow::Result<String> {
    let set = reply.header("set-cookie").with_context(|| format!("no Set-Cookie in {}", reply.status))?;
    Ok(set.split(';').next().unwrap_or_default().to_owned())
}

fn refused(reply: &Reply, what: &str) -> anyhow::Result<()> {
    ensure!(
        reply.status == 401 && reply.error_code().as_deref() == Some("caller_unauthorized"),
        "{what}: expected 401 caller_unauthorized, got {} {}",
        reply.status,
        reply.text()
    );
    ensure!(reply.header("set-cookie").is_none(), "{what}: a refusal sets no session");
    Ok(())
}

/// Valid tokens of every accepted algorithm pass; expired, foreign-audience,
/// foreign-issuer, unknown-key and `alg=none` tokens are refused; a passing
/// token earns a session that needs no token; the visitor's token and
/// cookie never reach the upstream.
pub async fn jwt_caller(shell: &Shell, fx: &Fixture, callers: &Callers) -> anyhow::Result<()> {
    let target = "/api/relay/signed/echo/me";
    refused(&shell.get(target, &[]).await?, "no token")?;
    for kid in ["rs", "es", "ed"] {
        let jwt = callers.login(kid, "alice").await?;
        let reply = shell.get(target, &[("Authorization", &format!("Bearer {jwt}"))]).await?;
        ensure!(reply.status == 200, "a valid {kid} token passes: {} {}", reply.status, reply.text());
        let cookie = session_cookie(&reply)?;
        let set = reply.header("set-cookie").unwrap_or_default();
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/api/relay/signed"] {
            ensure!(set.contains(attr), "session cookie lacks {attr}: {set}");
        }
        let upstream = reply.json()?;
        let seen = upstream["headers"].to_string();
        ensure!(!seen.contains(&jwt), "the visitor's JWT reached the upstream: {seen}");
        let again = shell.get(target, &[("Cookie", &cookie)]).await?;
        ensure!(again.status == 200, "the session needs no token: {} {}", again.status, again.text());
        let seen = again.json()?["headers"].to_string();
        ensure!(!seen.contains("tokenrelay_session"), "the session cookie reached the upstream: {seen}");
    }
    let issuer = callers.issuer.as_str();
    let bad = [
        ("expired", callers.sign("rs", json!({ "aud": AUDIENCE, "sub": "a" }), -120).await?),
        ("wrong audience", callers.sign("rs", json!({ "aud": "someone-else", "sub": "a" }), 600).await?),
        (
            "wrong issuer",
            callers.sign("rs", json!({ "aud": AUDIENCE, "sub": "a", "iss": format!("{issuer}/other") }), 600).await?,
        ),
        ("unknown kid", callers.sign("stray", json!({ "aud": AUDIENCE, "sub": "a" }), 600).await?),
        ("alg=none", unsigned(&callers.login("rs", "a").await?)?),
    ];
    for (what, jwt) in bad {
        refused(&shell.get(target, &[("Authorization", &format!("Bearer {jwt}"))]).await?, what)?;
    }
    for r in fx.api.requests().iter().filter(|r| r.path().starts_with("/v3/echo/me")) {
        let auth = r.header("authorization").unwrap_or_default();
        ensure!(
            auth.starts_with("Bearer tok_"),
            "the upstream got the visitor's Authorization, not the relay's token: {auth}"
        );
        ensure!(r.header("cookie").is_none(), "a cookie reached the upstream");
    }
    let forged = "tokenrelay_session=v1.9999999999.c3ViamVjdA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    refused(&shell.get(target, &[("Cookie", forged)]).await?, "forged session")?;
    Ok(())
}

/// The same claims under `{"alg":"none"}` and without a signature (RFC 7519 §6).
fn unsigned(jwt: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    let claims = jwt.split('.').nth(1).context("a JWT has three parts")?;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    Ok(format!("{header}.{claims}."))
}

/// A Turnstile token passes once (its replay is refused because siteverify
/// says `timeout-or-duplicate`), earns a session until it expires, and never
/// reaches the upstream; a tampered session is refused.
pub async fn turnstile_caller(shell: &Shell, callers: &Callers) -> anyhow::Result<()> {
    let target = "/api/relay/challenged/echo/search";
    refused(&shell.get(target, &[]).await?, "no token")?;
    refused(&shell.get(target, &[("CF-Turnstile-Response", "fail-1")]).await?, "failing token")?;
    let token = format!("{}{:016x}", Siteverify::PASSING, fastrand::u64(..));
    let reply = shell.get(target, &[("CF-Turnstile-Response", &token)]).await?;
    ensure!(reply.status == 200, "a passing token passes: {} {}", reply.status, reply.text());
    let seen = reply.json()?["headers"].to_string();
    ensure!(!seen.contains(&token), "the Turnstile token reached the upstream: {seen}");
    ensure!(!seen.to_lowercase().contains("cf-turnstile-response"), "the proof header reached the upstream: {seen}");
    let calls = callers.siteverify.calls();
    let call = calls.last().context("siteverify was asked")?;
    ensure!(call.get("secret").map(String::as_str) == Some(TURNSTILE_SECRET), "the secret is sent");
    ensure!(call.get("response") == Some(&token), "the token is sent");
    refused(&shell.get(target, &[("CF-Turnstile-Response", &token)]).await?, "replayed token")?;

    let cookie = session_cookie(&reply)?;
    let again = shell.get(target, &[("Cookie", &cookie)]).await?;
    ensure!(again.status == 200, "the session needs no token: {} {}", again.status, again.text());
    let mut tampered = cookie.clone();
    let last = tampered.pop().context("cookie value")?;
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    refused(&shell.get(target, &[("Cookie", &tampered)]).await?, "tampered session")?;
    let expired = || async { shell.get(target, &[("Cookie", &cookie)]).await.is_ok_and(|r| r.status == 401) };
    testkit::wait_until("the session expires", Duration::from_secs(SESSION_SECS + 3), expired).await?;
    refused(&shell.get(target, &[("Cookie", &cookie)]).await?, "expired session")?;
    Ok(())
}

/// A fresh passing token of the stand-ins, with `suffix` (`@host`, `#action`).
fn passing(suffix: &str) -> String {
    format!("{}{:016x}{suffix}", Siteverify::PASSING, fastrand::u64(..))
}

/// A session is bound to the widget that earned it: a cookie earned with
/// one secret is refused on a route of the same upstream guarded by another
/// secret (or the same secret with an action), and still opens its own.
pub async fn turnstile_sessions_open_only_their_widgets_routes(shell: &Shell, callers: &Callers) -> anyhow::Result<()> {
    let (first, second, acted) =
        ("/api/relay/widgets/echo/first", "/api/relay/widgets/echo/second/x", "/api/relay/widgets/echo/acted/x");
    let earned = shell.get(first, &[("CF-Turnstile-Response", &passing(""))]).await?;
    ensure!(earned.status == 200, "the first widget's token passes: {} {}", earned.status, earned.text());
    let cookie = session_cookie(&earned)?;
    refused(&shell.get(second, &[("Cookie", &cookie)]).await?, "the first widget's session on the second's route")?;
    refused(&shell.get(acted, &[("Cookie", &cookie)]).await?, "a session without the action on the action's route")?;
    let again = shell.get(first, &[("Cookie", &cookie)]).await?;
    ensure!(again.status == 200, "the session still opens its own route: {} {}", again.status, again.text());
    let other = shell.get(second, &[("CF-Turnstile-Response", &passing(""))]).await?;
    ensure!(other.status == 200, "the second widget's token passes: {} {}", other.status, other.text());
    let asked = callers.second.calls().last().and_then(|c| c.get("secret").cloned());
    ensure!(asked.as_deref() == Some(TURNSTILE_SECRET_2), "the second widget's secret goes to its siteverify");
    refused(&shell.get(first, &[("Cookie", &session_cookie(&other)?)]).await?, "the second widget's session")?;
    Ok(())
}

/// Siteverify's `success` is not enough: the token must have been solved on
/// the request's own host (or one of the route's `hostnames`) and, where the
/// route names one, for its action.
pub async fn turnstile_checks_hostname_and_action(shell: &Shell) -> anyhow::Result<()> {
    let (plain, acted, hosted) =
        ("/api/relay/widgets/echo/plain", "/api/relay/widgets/echo/acted/x", "/api/relay/widgets/echo/hosted/x");
    let turnstile = |token: String| [("CF-Turnstile-Response", token)];
    let get = |target: &'static str, token: String| async move {
        let headers = turnstile(token);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        shell.get(target, &headers).await
    };
    refused(&get(plain, passing("@evil.example")).await?, "a token solved on another site")?;
    refused(&get(acted, passing("")).await?, "a token without the route's action")?;
    refused(&get(acted, passing("#login")).await?, "a token for another action")?;
    let reply = get(acted, passing("#search")).await?;
    ensure!(reply.status == 200, "a token for the route's action passes: {} {}", reply.status, reply.text());
    refused(&get(hosted, passing("")).await?, "a token solved on the request's host, not the listed one")?;
    let reply = get(hosted, passing("@www.example.com")).await?;
    ensure!(reply.status == 200, "a token solved on a listed host passes: {} {}", reply.status, reply.text());
    Ok(())
}

/// A siteverify answer that echoes the secret in `error-codes` is refused,
/// and what reaches the log is `unknown` (see [`logs_name_causes_and_no_secrets`]).
pub async fn siteverify_answers_stay_out_of_the_log(shell: &Shell) -> anyhow::Result<()> {
    let token = format!("{}1", Siteverify::ECHOING);
    refused(&shell.get("/api/relay/challenged/echo/x", &[("CF-Turnstile-Response", &token)]).await?, "echoing")
}

/// A JWKS larger than the relay's cap is refused once the cap is read, not
/// after the whole of it: the issuer's endless stand-in has sent a fraction.
pub async fn an_oversized_jwks_is_refused_unread(shell: &Shell, callers: &Callers) -> anyhow::Result<()> {
    let bearer = format!("Bearer {}", callers.login("rs", "alice").await?);
    refused(&shell.get("/api/relay/hoarding/echo/x", &[("Authorization", &bearer)]).await?, "an oversized JWKS")?;
    let sent = callers.flood.sent();
    ensure!(sent < FLOOD_BYTES / 4, "the relay took {sent} of the JWKS's {FLOOD_BYTES} bytes before refusing it");
    Ok(())
}

/// With `per = "caller"`, two people behind one address (these requests
/// carry none: they share the address-less bucket) have a limit each, and a
/// session counts as its caller.
pub async fn per_caller_rate_limit(shell: &Shell, callers: &Callers) -> anyhow::Result<()> {
    let target = "/api/relay/counted/echo/limited";
    let alice = format!("Bearer {}", callers.login("rs", "alice").await?);
    let first = shell.get(target, &[("Authorization", &alice)]).await?;
    ensure!(first.status == 200, "alice's first request: {} {}", first.status, first.text());
    let session = session_cookie(&first)?;
    for n in 2..=PER_CALLER {
        let reply = shell.get(target, &[("Cookie", &session)]).await?;
        ensure!(reply.status == 200, "alice's request {n} within her limit: {}", reply.status);
    }
    let over = shell.get(target, &[("Authorization", &alice)]).await?;
    ensure!(over.status == 429, "alice is over her limit, token or session: {}", over.status);
    let bob = format!("Bearer {}", callers.login("es", "bob").await?);
    let reply = shell.get(target, &[("Authorization", &bob)]).await?;
    ensure!(reply.status == 200, "bob, from the same address, has his own limit: {} {}", reply.status, reply.text());
    Ok(())
}

/// A proof costs the address that sends it: on `costly`, one address's
/// bogus Turnstile tokens are refused with 429 once its [`PER_ADDRESS`]
/// requests are spent, and siteverify is asked at most that often; its bad
/// JWTs likewise, also on `counted`, which counts logins per caller; another
/// address is not held back. Run it on one instance
/// (see [`per_caller_rate_limit`]).
pub async fn failed_proofs_spend_the_address_limit(shell: &Shell, callers: &Callers) -> anyhow::Result<()> {
    let asked_before = callers.siteverify.calls().len();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let bogus = format!("bogus-{i}");
        statuses
            .push(shell.get_from(61, "/api/relay/costly/echo/human/x", &[("CF-Turnstile-Response", &bogus)]).await?);
    }
    limited_after("20 bogus Turnstile tokens", &statuses, PER_ADDRESS)?;
    let asked = callers.siteverify.calls().len() - asked_before;
    ensure!(asked <= PER_ADDRESS, "siteverify was asked {asked} times for one address's {PER_ADDRESS} requests");

    let mut statuses = Vec::new();
    for i in 0..30 {
        let bearer = format!("Bearer not.a-jwt.{i}");
        statuses.push(shell.get_from(62, "/api/relay/costly/echo/me", &[("Authorization", &bearer)]).await?);
    }
    limited_after("30 bad JWTs", &statuses, PER_ADDRESS)?;

    // Counting logins per caller, `counted` still counts a failed JWT against its address.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let bearer = format!("Bearer not.a-jwt.{i}");
        statuses.push(shell.get_from(65, "/api/relay/counted/echo/me", &[("Authorization", &bearer)]).await?);
    }
    limited_after("6 bad JWTs under per = \"caller\"", &statuses, PER_CALLER as usize)?;

    let other =
        shell.get_from(63, "/api/relay/costly/echo/human/x", &[("CF-Turnstile-Response", &passing(""))]).await?;
    ensure!(other.status == 200, "another address's proof is checked: {} {}", other.status, other.text());
    Ok(())
}

/// The first `allowed` replies are refused with 401, every later one with 429.
fn limited_after(what: &str, replies: &[Reply], allowed: usize) -> anyhow::Result<()> {
    for (i, reply) in replies.iter().enumerate() {
        if i < allowed {
            refused(reply, &format!("{what}: request {i}"))?;
        } else {
            ensure!(
                reply.status == 429 && reply.error_code().as_deref() == Some("rate_limited"),
                "{what}: request {i} past the address's limit: {} {}",
                reply.status,
                reply.text()
            );
        }
    }
    Ok(())
}

/// With `per = "caller"` on a Turnstile route, every fresh token would be a
/// fresh caller: the route keeps its per-address limit, so one address's
/// [`PER_ADDRESS`] tokens pass and the rest are refused unchecked. Run it on
/// one instance (see [`per_caller_rate_limit`]).
pub async fn fresh_turnstile_callers_share_their_address_limit(shell: &Shell, callers: &Callers) -> anyhow::Result<()> {
    let asked_before = callers.siteverify.calls().len();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let token = passing("");
        let reply = shell.get_from(64, "/api/relay/tallied/echo/x", &[("CF-Turnstile-Response", &token)]).await?;
        statuses.push(reply.status);
    }
    let passed = statuses.iter().filter(|s| **s == 200).count();
    ensure!(passed <= PER_ADDRESS, "{passed} of 10 fresh tokens from one address passed: {statuses:?}");
    ensure!(statuses[PER_ADDRESS..].iter().all(|s| *s == 429), "the rest are rate limited: {statuses:?}");
    let asked = callers.siteverify.calls().len() - asked_before;
    ensure!(asked <= PER_ADDRESS, "siteverify was asked {asked} times for one address's {PER_ADDRESS} requests");
    Ok(())
}

/// Refusals are logged with their cause; no log line holds a secret, the
/// Turnstile secret included.
pub fn logs_name_causes_and_no_secrets(logs: &Logs, fx: &Fixture, callers: &Callers) -> anyhow::Result<()> {
    for line in logs.lines() {
        fx.assert_no_secrets("a log line", &line)?;
        ensure!(!line.contains(TURNSTILE_SECRET), "the Turnstile secret is in a log line: {line}");
        ensure!(!line.contains(&callers.issuer) || !line.contains("eyJ"), "a JWT is in a log line: {line}");
    }
    let json = logs.json_lines();
    for cause in [
        "jwt_unknown_kid",
        "jwt_invalid",
        "timeout-or-duplicate",
        "unknown,invalid-input-response",
        "hostname_mismatch",
    ] {
        ensure!(
            json.iter().any(|l| l["message"] == "caller refused" && l["cause"] == cause),
            "no refusal logged as {cause}"
        );
    }
    ensure!(json.iter().any(|l| l["code"] == "caller_unauthorized"), "refusals are logged with their code");
    ensure!(json.iter().any(|l| l["why"] == "JWKS too large"), "the oversized JWKS is logged as such");
    Ok(())
}
