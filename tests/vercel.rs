//! The compiled Vercel function (`api/relay.rs`), run as Vercel runs it: a
//! process serving HTTP on `127.0.0.1:$VERCEL_DEV_PORT`, several of them
//! sharing one store, against real Redis, token endpoint and API; and the
//! output of `vercel build`, run the same way.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use relay_e2e::cache_checks::QueryPassing;
use relay_e2e::frozen::vercel_rewrite;
use relay_e2e::scenarios::{self, Crowd, Figures};
use relay_e2e::{Fixture, LIMITED_REQUESTS, Logs, Shell, TokenSchedule, UpstashServer, Visitor, bounded, checks};
use testkit::freeze::{Served, ServedProcess};
use tokio::process::Command;

/// Processes sharing the store, as concurrent Vercel instances would.
const INSTANCES: usize = 4;

/// A process of the compiled function, as Vercel's runtime serves it; killed when dropped.
async fn start_function(env: &[(String, String)], logs: &Logs) -> anyhow::Result<ServedProcess> {
    Served::vercel(Path::new(env!("CARGO_BIN_EXE_relay"))).spawn(env, logs).await
}

#[tokio::test]
async fn vercel_function_relays_and_enforces_every_rule() {
    bounded(Duration::from_secs(180), async {
        let fx = Fixture::start().await?;
        let logs = Logs::default();
        let mut functions = Vec::new();
        for _ in 0..INSTANCES {
            functions.push(start_function(&fx.env(), &logs).await?);
        }
        let shell =
            Shell::new(format!("127.0.0.1:{}", functions[0].port), Visitor::Header("x-real-ip"), false, vercel_rewrite);
        let shells: Vec<Shell> = functions.iter().map(|f| shell.at(format!("127.0.0.1:{}", f.port))).collect();

        checks::one_token_for_many_requests(&shells, &fx, 200).await.context("one token for many requests")?;
        checks::request_rules(&shell, &fx).await?;
        checks::a_401_refreshes_the_token_once(&shells[1], &fx).await.context("401 refresh")?;
        checks::rate_limit_counts_per_client(&shells[2], &fx).await.context("rate limit")?;
        checks::a_repeated_client_ip_header_counts_its_first_address(&shells[2], &fx)
            .await
            .context("repeated client-IP header")?;
        relay_e2e::secret_checks::a_refused_current_secret_falls_back_to_the_previous_one(&shells, &fx, &logs)
            .await
            .context("secret rotation")?;
        relay_e2e::cache_checks::response_cache(&shells, &fx, QueryPassing::Raw).await.context("response cache")?;
        relay_e2e::cache_checks::stale_while_revalidate_serves_at_once_and_refreshes_once(&shells, &fx)
            .await
            .context("stale-while-revalidate")?;

        fx.assert_no_secrets("the responses", &shell.transcript())?;
        checks::logs_are_structured_and_secret_free(&logs.lines(), &logs.json_lines(), &fx).context("logs")?;
        Ok(())
    })
    .await;
}

/// Routes with `caller` serve only a caller with a login's JWT, a Turnstile
/// token or the relay session either earned (`relay::caller`).
#[tokio::test]
async fn vercel_function_asks_callers_for_proof() {
    bounded(Duration::from_secs(90), async {
        let fx = Fixture::start().await?;
        let callers = relay_e2e::caller_checks::Callers::start(&fx).await?;
        let logs = Logs::default();
        let mut env = fx.env();
        env.extend(callers.env());
        let function = start_function(&env, &logs).await?;
        let shell =
            Shell::new(format!("127.0.0.1:{}", function.port), Visitor::Header("x-real-ip"), false, vercel_rewrite);
        relay_e2e::caller_checks::jwt_caller(&shell, &fx, &callers).await.context("JWT caller")?;
        relay_e2e::caller_checks::turnstile_caller(&shell, &callers).await.context("Turnstile caller")?;
        relay_e2e::caller_checks::turnstile_sessions_open_only_their_widgets_routes(&shell, &callers)
            .await
            .context("Turnstile widgets")?;
        relay_e2e::caller_checks::turnstile_checks_hostname_and_action(&shell)
            .await
            .context("Turnstile hostname and action")?;
        relay_e2e::caller_checks::siteverify_answers_stay_out_of_the_log(&shell).await.context("siteverify answers")?;
        relay_e2e::caller_checks::an_oversized_jwks_is_refused_unread(&shell, &callers)
            .await
            .context("oversized JWKS")?;
        relay_e2e::caller_checks::per_caller_rate_limit(&shell, &callers).await.context("per-caller rate limit")?;
        relay_e2e::caller_checks::failed_proofs_spend_the_address_limit(&shell, &callers)
            .await
            .context("failed proofs")?;
        relay_e2e::caller_checks::fresh_turnstile_callers_share_their_address_limit(&shell, &callers)
            .await
            .context("fresh Turnstile callers")?;
        fx.assert_no_secrets("the responses", &shell.transcript())?;
        relay_e2e::caller_checks::logs_name_causes_and_no_secrets(&logs, &fx, &callers).context("logs")?;
        Ok(())
    })
    .await;
}

/// Through a store that refuses Upstash's script flag, as plain Redis behind
/// serverless-redis-http does: 4 processes, 120 requests at once then 60 in
/// turn, all answered 200 within 3 s, with at most one token fetch per
/// process. `-- --nocapture` prints the figures.
#[tokio::test]
async fn a_crowd_through_a_plain_redis_proxy_gets_one_token_fast() {
    bounded(Duration::from_secs(90), async {
        let fx = Fixture::start_on(UpstashServer::Srh, TokenSchedule::default()).await?;
        let logs = Logs::default();
        let mut functions = Vec::new();
        for _ in 0..INSTANCES {
            functions.push(start_function(&fx.env(), &logs).await?);
        }
        let shell =
            Shell::new(format!("127.0.0.1:{}", functions[0].port), Visitor::Header("x-real-ip"), false, vercel_rewrite);
        let shells: Vec<Shell> = functions.iter().map(|f| shell.at(format!("127.0.0.1:{}", f.port))).collect();
        let figures = scenarios::stampede_on(&shells, &fx, Crowd::default()).await;
        println!("{figures}");
        figures.meets_target().with_context(|| logs.tail(20))?;
        // The fenced write stores through the proxy, so the other processes use its token.
        ensure!(figures.fetches == 1, "one token fetch in all: {figures}");
        let noticed = logs.lines().iter().filter(|l| l.contains("refuses Upstash's script flag")).count();
        ensure!((1..=INSTANCES).contains(&noticed), "each process notices the refusal at most once: {noticed} times");
        Ok(())
    })
    .await;
}

/// An instance counts a client's first request of the window in the store,
/// then decides alone and adds its counts in the background: another instance
/// meeting the client for the first time sees the shared count at once, and
/// blocks in memory from then on (the bound `relay::rate_limit` documents).
#[tokio::test]
async fn instances_share_rate_limit_counts_through_the_store() {
    bounded(Duration::from_secs(60), async {
        let fx = Fixture::start().await?;
        let logs = Logs::default();
        let a = start_function(&fx.env(), &logs).await?;
        let b = start_function(&fx.env(), &logs).await?;
        let shell = Shell::new(format!("127.0.0.1:{}", a.port), Visitor::Header("x-real-ip"), false, vercel_rewrite);
        let other = shell.at(format!("127.0.0.1:{}", b.port));
        let target = "/api/relay/limited/search/images";
        let synced = |total: u64| {
            let fx = &fx;
            async move {
                let counted = || async { shared_count(fx).await == total };
                testkit::wait_until(&format!("the store counts {total}"), Duration::from_secs(10), counted).await
            }
        };

        let mut statuses = Vec::new();
        for _ in 0..=LIMITED_REQUESTS {
            statuses.push(shell.get_as(20, target).await?.status);
        }
        ensure!(statuses == [200, 200, 200, 429], "one instance blocks on its own count: {statuses:?}");
        synced(u64::from(LIMITED_REQUESTS)).await?;

        let reply = other.get_as(20, target).await?;
        ensure!(
            reply.status == 429,
            "b counts its first request of the client in the store and sees a's: {}",
            reply.status
        );
        synced(u64::from(LIMITED_REQUESTS) + 1).await?;
        let reply = other.get_as(20, target).await?;
        ensure!(reply.status == 429, "b then blocks in memory: {}", reply.status);
        synced(u64::from(LIMITED_REQUESTS) + 1).await?;
        ensure!(shell.get_as(20, target).await?.status == 429, "a still blocks");
        ensure!(other.get_as(21, target).await?.status == 200, "another client is not limited");
        Ok(())
    })
    .await;
}

/// The sum of the `limited` upstream's shared rate counters, read straight from Redis.
async fn shared_count(fx: &Fixture) -> u64 {
    let mut total = 0;
    for key in fx.upstash.redis_keys("tokenrelay:v1:rate:limited:*").await {
        total += fx.upstash.redis_get(&key).await.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

/// A streamed (chunked) upstream answer goes out with its head in one write:
/// written apart, the body waited for the client's delayed ACK under Nagle's
/// algorithm, 40 ms or more per request on a keep-alive connection.
#[tokio::test]
async fn streamed_answers_are_not_held_back_on_keep_alive_connections() {
    bounded(Duration::from_secs(60), async {
        let fx = Fixture::start().await?;
        let logs = Logs::default();
        let function = start_function(&fx.env(), &logs).await?;
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        let url = format!("http://127.0.0.1:{}{}", function.port, vercel_rewrite("/api/relay/getty/big?bytes=200"));
        let mut took = Vec::new();
        for _ in 0..9 {
            let started = std::time::Instant::now();
            let reply = client.get(&url).header("x-real-ip", "203.0.113.30").send().await?;
            ensure!(reply.status() == 200, "status {}", reply.status());
            ensure!(reply.bytes().await?.len() == 200, "whole body");
            took.push(started.elapsed());
        }
        took.sort();
        ensure!(took[4] < Duration::from_millis(25), "median {:?} (all {took:?})", took[4]);
        Ok(())
    })
    .await;
}

/// An answer that makes a rate-limit sync due (one every 500 ms on a busy
/// instance) is as complete as any other: sent with `Content-Length`, its
/// sync left to the runtime's background work. Sent chunked until the sync
/// was done, its last chunk waited for the client's delayed ACK (40 ms).
#[tokio::test]
async fn answers_carrying_a_chore_have_a_length_on_keep_alive_connections() {
    bounded(Duration::from_secs(60), async {
        let fx = Fixture::start().await?;
        let logs = Logs::default();
        let function = start_function(&fx.env(), &logs).await?;
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        let url = format!("http://127.0.0.1:{}{}", function.port, vercel_rewrite("/api/relay/cached/echo/fresh/kept"));
        let mut took = Vec::new();
        let started = std::time::Instant::now();
        // Three sync intervals of a busy instance.
        while started.elapsed() < Duration::from_millis(1600) {
            let sent = std::time::Instant::now();
            let reply = client.get(&url).header("x-real-ip", "203.0.113.31").send().await?;
            ensure!(reply.status() == 200, "status {}", reply.status());
            ensure!(reply.content_length().is_some(), "answer {} sent without Content-Length", took.len() + 1);
            reply.bytes().await?;
            took.push(sent.elapsed());
        }
        took.sort();
        println!("{} keep-alive answers, median {:?}, slowest {:?}", took.len(), took[took.len() / 2], took.last());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_misconfigured_function_answers_500_without_details() {
    bounded(Duration::from_secs(60), async {
        let fx = Fixture::start().await?;
        let logs = Logs::default();
        // The API secret is missing: the config cannot be resolved.
        let env: Vec<_> = fx.env().into_iter().filter(|(k, _)| k != "GETTY_API_SECRET").collect();
        let function = start_function(&env, &logs).await?;
        let shell =
            Shell::new(format!("127.0.0.1:{}", function.port), Visitor::Header("x-real-ip"), false, vercel_rewrite);
        let reply = shell.get("/api/relay/getty/search/images", &[]).await?;
        anyhow::ensure!(reply.status == 500, "status {}", reply.status);
        anyhow::ensure!(reply.error_code().as_deref() == Some("missing_env"), "body {}", reply.text());
        anyhow::ensure!(!reply.text().contains("GETTY_API_SECRET"), "the response names the variable");
        let logged =
            || async { logs.lines().iter().any(|l| l.contains("GETTY_API_SECRET") && l.contains("missing_env")) };
        testkit::wait_until("the log says what is missing", Duration::from_secs(5), logged)
            .await
            .with_context(|| logs.tail(10))?;
        fx.assert_no_secrets("the response", &reply.text())
    })
    .await;
}

/// `vercel build` as Vercel's build image runs it (`VERCEL_BUILD_IMAGE` makes
/// @vercel/rust use plain `cargo build --release`; offline, with the
/// project link of [`OfflineLink`]): one Rust function with the config
/// beside it, only `public/` as static files, the rewrite in the routes, and
/// an executable that relays.
#[tokio::test]
async fn vercel_build_outputs_a_working_function_and_only_public_files() {
    bounded(Duration::from_secs(1500), async {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let vercel = root.join("node_modules/.bin/vercel");
        ensure!(vercel.exists(), "{} is missing: run `npm install` in the repository root", vercel.display());
        // `vercel build` runs `cargo build --release --bin relay`: warm, seconds; cold, ten minutes.
        let built = root.join("target/release/relay");
        ensure!(
            built.exists(),
            "{} is missing: the test command's build phase makes it (`cargo build --release --bin relay --locked`, scripts/test.sh)",
            built.display()
        );
        // vercel.json's build command prefetches the token and renders the
        // example site into public/, against the fixture's API.
        let fx = Fixture::start().await?;
        let _link = OfflineLink::place(root)?;
        let build = Command::new(&vercel)
            .args(["build", "--yes"])
            .current_dir(root)
            // Its cargo must see what scripts/test.sh's did, to find the function built.
            .env_clear()
            .envs(testkit::toolchain_env())
            .envs(fx.env())
            .env("VERCEL_TELEMETRY_DISABLED", "1")
            .env("NO_UPDATE_NOTIFIER", "1")
            .env("VERCEL_BUILD_IMAGE", "1")
            .kill_on_drop(true)
            .output()
            .await
            .context("running vercel build")?;
        let said = format!("{}{}", String::from_utf8_lossy(&build.stdout), String::from_utf8_lossy(&build.stderr));
        ensure!(build.status.success(), "vercel build failed: {said}");

        let output = root.join(".vercel/output");
        let read = |p: &str| -> anyhow::Result<serde_json::Value> {
            Ok(serde_json::from_str(&std::fs::read_to_string(output.join(p)).with_context(|| p.to_owned())?)?)
        };
        let function = read("functions/api/relay.func/.vc-config.json")?;
        ensure!(
            function["runtime"] == "executable" && function["runtimeLanguage"] == "rust",
            "not a Rust function: {function}"
        );
        ensure!(function["supportsResponseStreaming"] == true, "streaming is off: {function}");
        ensure!(function["filePathMap"]["tokenrelay.toml"] == "tokenrelay.toml", "config not included: {function}");
        let executable = root.join(function["filePathMap"]["executable"].as_str().context("no executable")?);

        let mut statics: Vec<String> = walk(&output.join("static"))?;
        let mut public: Vec<String> = walk(&root.join("public"))?;
        statics.sort();
        public.sort();
        ensure!(statics == public, "static output {statics:?} is not exactly public/ {public:?}");

        let config = read("config.json")?;
        let rewrite = config["routes"].as_array().into_iter().flatten().find(|r| r["dest"] == "/api/relay?path=$1");
        ensure!(rewrite.is_some(), "the /api/relay/:path* rewrite is missing: {config}");

        ensure!(public.contains(&"index.html".to_owned()), "the site build rendered no page: {public:?}");

        let logs = Logs::default();
        let function = Served::vercel(&executable).spawn(&fx.env(), &logs).await?;
        let shell =
            Shell::new(format!("127.0.0.1:{}", function.port), Visitor::Header("x-real-ip"), false, vercel_rewrite);
        checks::happy_path_forwards_only_what_it_should(&shell, &fx).await.context("happy path")?;
        checks::hostile_paths_never_reach_anything(&shell, &fx).await.context("hostile paths")?;
        Ok(())
    })
    .await;
}

/// The project link `vercel build` reads its settings from
/// (`.vercel/project.json`, normally written by `vercel link`). A clone is
/// linked to no project, so the test puts a hand-written one in place for the
/// build, offline, and removes it afterwards; a checkout already linked keeps
/// its own.
struct OfflineLink(Option<std::path::PathBuf>);

impl OfflineLink {
    fn place(root: &Path) -> anyhow::Result<Self> {
        let link = root.join(".vercel/project.json");
        if link.exists() {
            return Ok(Self(None));
        }
        std::fs::create_dir_all(root.join(".vercel"))?;
        std::fs::copy(root.join("tests/fixtures/vercel/project.json"), &link).context("placing the project link")?;
        Ok(Self(Some(link)))
    }
}

impl Drop for OfflineLink {
    fn drop(&mut self) {
        if let Some(link) = &self.0 {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// Files below `dir`, as paths relative to it.
fn walk(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.is_dir() {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            out.extend(walk(&path)?.into_iter().map(|p| format!("{name}/{p}")));
        } else {
            out.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    Ok(out)
}
