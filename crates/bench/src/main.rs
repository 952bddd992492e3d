//! `tokenrelay-bench`: starts everything on loopback (redis-server behind the
//! Upstash REST protocol, a token endpoint and the API it serves, the relay
//! binary, the Node baseline), measures, and prints a markdown table.
//!
//! ```text
//! tokenrelay-bench [--quick] [--relay-bin PATH] [--baseline PATH] [--addon-bench PATH]
//!                  [--out FILE] [--readme FILE]
//! tokenrelay-bench load URL [-c N] [-d SECS] [-w SECS] [-H 'Authorization: …']
//! ```
//!
//! The second form is the load generator alone, against any server.
//!
//! `scripts/bench.sh` builds what it needs and runs it; see bench/README.md.

mod cli_load;
mod load;
mod machine;
mod plan;
mod procs;
mod report;
mod scenario;
mod stats;
mod worker;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::plan::{BASELINE_MARGIN, MAIN_TOKEN_LIFETIME, Plan};
use crate::scenario::{Functions, addon, cold_start, hot_path, rotation, stampede, store_trip};
use crate::world::{Cache, UPSTREAM, World, relay_path};

/// The Vercel function's binary name, looked for next to this binary.
const RELAY_BIN: &str = "relay";
/// Threads of the runtime the local servers run on (Upstash REST, token
/// endpoint, API), apart from the load generator's single thread.
const SERVER_THREADS: usize = 2;

const USAGE: &str = "usage: tokenrelay-bench [--quick] [--relay-bin PATH] [--baseline PATH] [--addon-bench PATH]
                        [--out FILE] [--readme FILE]
  --quick        every scenario, briefly: a smoke test (exits 1 if a correctness figure is off)
  --relay-bin    the compiled Vercel function (default: `relay` next to this binary)
  --baseline     the Node baseline's server (default: bench/node-baseline/server.mjs)
  --addon-bench  the addon's build-time bench (default: bench/addon.mjs)
  --out          also write the report to FILE
  --readme       replace the results block of FILE (bench/README.md) with the report";

pub struct Options {
    plan: Plan,
    relay_bin: Option<PathBuf>,
    baseline: PathBuf,
    addon_bench: PathBuf,
    out: Option<PathBuf>,
    readme: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("instances") => return worker::main(&args[1..]),
        Some("load") => return cli_load::main(&args[1..]),
        _ => {}
    }
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("tokenrelay-bench: {err:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(&options) {
        Ok(report) => {
            print!("{}", report.markdown);
            let broken = report.broken_invariants();
            if options.plan.quick && !broken.is_empty() {
                eprintln!("tokenrelay-bench: correctness figures off: {}", broken.join("; "));
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tokenrelay-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let repo = std::fs::canonicalize(&repo).unwrap_or(repo);
    let exe_dir = std::env::current_exe()?.parent().map(PathBuf::from).unwrap_or_default();
    let mut options = Options {
        plan: Plan::full(),
        relay_bin: Some(exe_dir.join(RELAY_BIN)).filter(|p| p.is_file()),
        baseline: repo.join("bench/node-baseline/server.mjs"),
        addon_bench: repo.join("bench/addon.mjs"),
        out: None,
        readme: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().map(PathBuf::from).with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => options.plan = Plan::quick(),
            "--relay-bin" => options.relay_bin = Some(value()?),
            "--baseline" => options.baseline = value()?,
            "--addon-bench" => options.addon_bench = value()?,
            "--out" => options.out = Some(value()?),
            "--readme" => options.readme = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    if let Some(relay) = &options.relay_bin {
        anyhow::ensure!(relay.is_file(), "--relay-bin {} is not a file", relay.display());
    }
    Ok(options)
}

/// The servers get a runtime of their own; the load generator runs on this
/// thread alone.
fn bench(options: &Options) -> anyhow::Result<report::Report> {
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_THREADS)
        .thread_name("bench-servers")
        .enable_all()
        .build()?;
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = client.block_on(run(servers.handle().clone(), options));
    servers.shutdown_timeout(Duration::from_secs(2));
    let report = report?;
    if let Some(out) = &options.out {
        std::fs::write(out, &report.markdown).with_context(|| format!("writing {}", out.display()))?;
    }
    if let Some(readme) = &options.readme {
        report::replace_block(readme, &report.markdown)?;
    }
    Ok(report)
}

async fn run(servers: tokio::runtime::Handle, options: &Options) -> anyhow::Result<report::Report> {
    let plan = &options.plan;
    progress("starting redis-server, Upstash REST, token endpoint, API, functions");
    let machine = machine::describe().await;
    let world = World::start(servers).await?;
    let main = world.upstream(MAIN_TOKEN_LIFETIME).await?;
    let config = world.write_config("main", &main, Cache::default())?;
    let functions =
        Functions { relay: options.relay_bin.clone(), node: "node".into(), baseline: options.baseline.clone() };
    let relay_spec = functions.relay(&world, &config);
    let node_spec = functions.baseline(&world, &main, BASELINE_MARGIN);
    if relay_spec.is_none() {
        progress("relay binary not found: its figures are left out (build it, or pass --relay-bin)");
    }

    // Long-running instances for the hot path; their first requests put each
    // function's token in the store, for the cold starts.
    let relay = match &relay_spec {
        Some(spec) => Some(spec.start(Some(&relay_path())).await?.instance),
        None => None,
    };
    let node = node_spec.start(Some(&relay_path())).await?.instance;
    let token = world.broker(&config)?.token(UPSTREAM).await?;

    progress("cold starts");
    let specs: Vec<_> = relay_spec.iter().chain([&node_spec]).collect();
    let mut cold = cold_start::run(&world, &specs, plan.cold_starts).await?;
    let node_cold = cold.pop().unwrap_or_default();
    let relay_cold = cold.pop();

    progress("hot path");
    let hot = hot_path::run(&world, &main, token.expose(), relay.as_ref(), &node, plan).await?;
    let store_trip = store_trip::run(&world, plan).await?;
    let peak_rss =
        report::PeakRss { relay: relay.as_ref().map(|r| r.peak_rss_kib()).transpose()?, node: node.peak_rss_kib()? };
    drop((relay, node));

    progress("cold bursts");
    let relay_burst = match &relay_spec {
        Some(spec) => Some(stampede::burst(&world, &main, spec, plan.burst).await?),
        None => None,
    };
    let node_burst = stampede::burst(&world, &main, &node_spec, plan.burst).await?;

    progress("rotation under load");
    let (relay_rotation, node_rotation) = rotation::run(&world, &functions, plan).await?;

    progress("stampede across processes");
    let exe = std::env::current_exe()?;
    let stampede = stampede::across_processes(&world, &exe, plan).await?;

    progress("build time (addon)");
    let addon = addon::run(&options.addon_bench, world.dir(), plan).await;

    progress("done");
    Ok(report::Report::new(report::Results {
        machine,
        plan: plan.clone(),
        relay_cold,
        node_cold,
        hot,
        store_trip,
        peak_rss,
        relay_burst,
        node_burst,
        relay_rotation,
        node_rotation,
        stampede,
        addon,
    }))
}

fn progress(what: &str) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    eprintln!("tokenrelay-bench: [{:>5.1} s] {what}", elapsed.as_secs_f64());
}
