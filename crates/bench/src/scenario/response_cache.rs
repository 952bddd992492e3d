//! `tokenrelay-bench cache`: the shared response cache. Four relay
//! processes on one store answer 1,000 requests over 10 distinct URLs within
//! one `ttl` (upstream calls: target 10), then the latency of an answer from
//! the instance's memory, from the shared store (another instance's fill),
//! and of a miss, against a direct call to the API.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::load::{Connection, Target};
use crate::plan::MAIN_TOKEN_LIFETIME;
use crate::procs::Instance;
use crate::scenario::Functions;
use crate::stats::Samples;
use crate::world::{UPSTREAM, World, relay_path_for};

const PROCESSES: usize = 4;
const REQUESTS: usize = 1000;
const DISTINCT: usize = 10;
/// Connections per process during the 1,000 requests.
const CONNECTIONS_PER_PROCESS: usize = 4;
/// Requests per latency row.
const SAMPLES: usize = 200;
const TTL: Duration = Duration::from_secs(300);

/// Runs the scenario and returns its markdown.
pub async fn run(world: &World, relay_bin: &Path) -> anyhow::Result<String> {
    let upstream = world.upstream(MAIN_TOKEN_LIFETIME).await?;
    let config = world.write_config("cache", &world.cached_site(&upstream, TTL))?;
    let functions = Functions { relay: Some(relay_bin.to_owned()), ..Functions::default() };
    let spec = functions.relay(world, &config).context("relay spec")?;
    let mut instances: Vec<Instance> = Vec::new();
    for _ in 0..PROCESSES {
        instances.push(spec.start(None).await?.instance);
    }
    let calls = |prefix: &str| upstream.api.requests().iter().filter(|r| r.uri.contains(prefix)).count();

    // 1,000 requests over 10 URLs, spread over every process and connection.
    let connections = PROCESSES * CONNECTIONS_PER_PROCESS;
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let addr = instances[c % PROCESSES].addr;
        tasks.spawn(async move {
            let mut connection = Connection::open(addr).await?;
            let mut ok = 0;
            for i in (c..REQUESTS).step_by(connections) {
                let path = relay_path_for(&format!("/search/images?phrase=spread{}", i % DISTINCT));
                ok += usize::from(connection.send(&Target::new(addr, path)).await?.status.is_success());
            }
            anyhow::Ok(ok)
        });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        answered += done??;
    }
    let spread_time = started.elapsed();
    let spread_calls = calls("phrase=spread");

    // Latencies, one request at a time.
    let token = world.broker(&config)?.token(UPSTREAM).await?;
    let direct = upstream.direct(token.expose(), "/search/images?phrase=direct")?;
    let direct = sequential(&direct, SAMPLES, |_| None).await?;
    let (a, b) = (instances[0].addr, instances[1].addr);
    let url = |i: usize| relay_path_for(&format!("/search/images?phrase=latency{i}"));
    let miss = sequential(&Target::new(a, url(0)), SAMPLES, |i| Some(url(i))).await?;
    let store_hit = sequential(&Target::new(b, url(0)), SAMPLES, |i| Some(url(i))).await?;
    let memory_hit = sequential(&Target::new(b, url(0)), SAMPLES, |_| None).await?;
    ensure!(calls("phrase=latency") == SAMPLES, "the hits reached the upstream: {} calls", calls("phrase=latency"));

    let ms = |s: &Samples| {
        s.percentiles().map_or_else(|| "-".to_owned(), |p| format!("{:.2} / {:.2}", ms(p.p50), ms(p.p99)))
    };
    Ok(format!(
        "### Response cache\n\n\
         {REQUESTS} requests over {DISTINCT} distinct URLs, {PROCESSES} relay processes on one store, {connections} connections, \
         within one `ttl` ({}): **{spread_calls} upstream calls** (target {DISTINCT}); {answered} answered 2xx in {:.2} s.\n\n\
         | one request at a time ({SAMPLES} each) | p50 / p99 ms |\n| --- | --- |\n\
         | direct call to the API | {} |\n\
         | relay, miss (store read, fill lock, upstream call, fenced write) | {} |\n\
         | relay, hit from the shared store (filled by another process) | {} |\n\
         | relay, hit from the process's memory | {} |\n",
        humantime::format_duration(TTL),
        spread_time.as_secs_f64(),
        ms(&direct),
        ms(&miss),
        ms(&store_hit),
        ms(&memory_hit),
    ))
}

/// `n` requests one after another on one connection: `target`, or the path
/// `vary(i)` returns for request `i`.
async fn sequential(target: &Target, n: usize, vary: impl Fn(usize) -> Option<String>) -> anyhow::Result<Samples> {
    let mut connection = Connection::open(target.addr).await?;
    let mut samples = Samples::default();
    for i in 0..n {
        let mut t = target.clone();
        if let Some(path) = vary(i) {
            t.path = path;
        }
        let reply = connection.send(&t).await?;
        ensure!(reply.status.is_success(), "{} answered {}", t.path, reply.status);
        samples.push(reply.latency);
    }
    Ok(samples)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
