//! `tokenrelay-bench`: starts everything on loopback (redis-server behind the
//! Upstash REST protocol, a token endpoint and the API it serves, the
//! JWT-verifying API, nginx when installed, the relay binary, the bare hops of
//! the relay's stack and of Node, the JS handler over `tokenrelay/fetch`, the
//! Node baseline), measures, and prints a markdown table.
//!
//! ```text
//! tokenrelay-bench [--quick] [--relay-bin PATH] [--js-handler PATH] [--baseline PATH]
//!                  [--node-proxy PATH] [--addon-bench PATH] [--jwt-api PATH] [--out FILE] [--readme FILE]
//! tokenrelay-bench load URL [-c N] [-d SECS] [-w SECS] [-H 'Authorization: …']
//! tokenrelay-bench cache [--relay-bin PATH]
//! tokenrelay-bench freeze [--quick] [--relay-bin PATH]
//! tokenrelay-bench caller [--quick] [--relay-bin PATH]
//! tokenrelay-bench profile [--relay-bin PATH] [--api jwt|in-process|cached] [-c N] [-n REQUESTS] [--wrap CMD] …
//! tokenrelay-bench hop     # the relay stack's bare hop, as the bench starts it (`hop`)
//! ```
//!
//! The second form is the load generator alone, against any server; the
//! third measures the response cache alone (`scenario::response_cache`); the
//! fourth the relay with instances frozen between requests, as serverless
//! platforms run them, against the same load awake (`scenario::freeze`); the
//! fifth what proving the caller (a login's JWT, a relay session) adds to a
//! request (`scenario::caller`); the sixth one instance under a fixed
//! number of requests, for a profiler (`profile`).
//!
//! `scripts/bench.sh` builds what it needs and runs it; see bench/README.md.

mod cli_load;
mod hop;
mod load;
mod machine;
mod nginx;
mod plan;
mod procs;
mod profile;
mod report;
mod scenario;
mod stats;
mod worker;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::plan::{BASELINE_MARGIN, CACHE_TTL, MAIN_TOKEN_LIFETIME, Plan};
use crate::procs::{Instance, Spec};
use crate::scenario::{Functions, addon, cold_start, hot_path, rotation, stampede, store_trip};
use crate::world::{JWT_UPSTREAM, SEARCH, UPSTREAM, World, jwt_upstream, relay_path};

/// The Vercel function's binary name, looked for next to this binary.
const RELAY_BIN: &str = "relay";
/// The Node addon the JS handler loads (napi's build), from the repository's root.
const NODE_ADDON: &str = "crates/tokenrelay-node/tokenrelay.linux-x64-gnu.node";
/// Threads of the runtime the local servers run on (Upstash REST, token
/// endpoint, API), apart from the load generator's single thread.
const SERVER_THREADS: usize = 2;

const USAGE: &str = "usage: tokenrelay-bench [--quick] [--relay-bin PATH] [--js-handler PATH] [--baseline PATH]
                        [--node-proxy PATH] [--addon-bench PATH] [--jwt-api PATH] [--out FILE] [--readme FILE]
  --quick        every scenario, briefly: a smoke test (exits 1 if a correctness figure is off)
  --relay-bin    the compiled Vercel function (default: `relay` next to this binary)
  --js-handler   the JS handler's server (default: tests/js/support/serve-relay.mjs; needs the addon built)
  --baseline     the Node baseline's server (default: bench/node-baseline/server.mjs)
  --node-proxy   Node's bare proxy hop (default: bench/node-proxy/server.mjs)
  --addon-bench  the addon's build-time bench (default: bench/addon.mjs)
  --jwt-api      the realistic upstream's server (default: bench/jwt-api/server.mjs)
  --out          also write the report to FILE
  --readme       replace the results block of FILE (bench/README.md) with the report";

pub struct Options {
    plan: Plan,
    relay_bin: Option<PathBuf>,
    js_handler: PathBuf,
    /// The addon the JS handler loads.
    node_addon: PathBuf,
    baseline: PathBuf,
    node_proxy: PathBuf,
    addon_bench: PathBuf,
    jwt_api: PathBuf,
    out: Option<PathBuf>,
    readme: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("instances") => return worker::main(&args[1..]),
        Some("load") => return cli_load::main(&args[1..]),
        Some("profile") => return profile::main(&args[1..]),
        Some("hop") => return hop::main(&args[1..]),
        Some("cache") => return cache_main(&args[1..]),
        Some("freeze") => return relay_scenario_main("freeze", &args[1..], scenario::freeze::run),
        Some("caller") => return relay_scenario_main("caller", &args[1..], scenario::caller::run),
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

/// `tokenrelay-bench cache [--relay-bin PATH]`: the response cache scenario alone.
fn cache_main(args: &[String]) -> ExitCode {
    let run = || -> anyhow::Result<String> {
        let relay = match args {
            [flag, path] if flag == "--relay-bin" => PathBuf::from(path),
            [] => std::env::current_exe()?.with_file_name(RELAY_BIN),
            _ => anyhow::bail!("usage: tokenrelay-bench cache [--relay-bin PATH]"),
        };
        anyhow::ensure!(relay.is_file(), "relay binary {} not found (build it, or pass --relay-bin)", relay.display());
        let servers =
            tokio::runtime::Builder::new_multi_thread().worker_threads(SERVER_THREADS).enable_all().build()?;
        let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = servers.handle().clone();
        let report = client.block_on(async move {
            let world = World::start(handle).await?;
            scenario::response_cache::run(&world, &relay).await
        });
        servers.shutdown_timeout(Duration::from_secs(2));
        report
    };
    match run() {
        Ok(markdown) => {
            print!("{markdown}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tokenrelay-bench cache: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tokenrelay-bench NAME [--quick] [--relay-bin PATH]`: one scenario on
/// the Vercel function, `run(relay binary, quick)` giving its markdown.
fn relay_scenario_main<F, Fut>(name: &str, args: &[String], run: F) -> ExitCode
where
    F: FnOnce(PathBuf, bool) -> Fut,
    Fut: Future<Output = anyhow::Result<String>>,
{
    let usage = format!("usage: tokenrelay-bench {name} [--quick] [--relay-bin PATH]");
    let report = || -> anyhow::Result<String> {
        let mut quick = false;
        let mut relay = std::env::current_exe()?.with_file_name(RELAY_BIN);
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "--quick" => quick = true,
                "--relay-bin" => relay = args.next().context("--relay-bin needs a value")?.into(),
                other => anyhow::bail!("unknown argument {other:?}; {usage}"),
            }
        }
        anyhow::ensure!(relay.is_file(), "relay binary {} not found (build it, or pass --relay-bin)", relay.display());
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(SERVER_THREADS).enable_all().build()?;
        runtime.block_on(run(relay, quick))
    };
    match report() {
        Ok(markdown) => {
            print!("{markdown}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tokenrelay-bench {name}: {err:#}");
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
        js_handler: repo.join("tests/js/support/serve-relay.mjs"),
        node_addon: repo.join(NODE_ADDON),
        baseline: repo.join("bench/node-baseline/server.mjs"),
        node_proxy: repo.join("bench/node-proxy/server.mjs"),
        addon_bench: repo.join("bench/addon.mjs"),
        jwt_api: repo.join("bench/jwt-api/server.mjs"),
        out: None,
        readme: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().map(PathBuf::from).with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => options.plan = Plan::quick(),
            "--relay-bin" => options.relay_bin = Some(value()?),
            "--js-handler" => options.js_handler = value()?,
            "--baseline" => options.baseline = value()?,
            "--node-proxy" => options.node_proxy = value()?,
            "--addon-bench" => options.addon_bench = value()?,
            "--jwt-api" => options.jwt_api = value()?,
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
    anyhow::ensure!(
        options.node_addon.is_file(),
        "the JS handler needs the Node addon, and {} is missing: build it with `bash scripts/build-linux.sh addon`",
        options.node_addon.display()
    );
    progress("starting redis-server, Upstash REST, token endpoint, API, functions");
    let machine = machine::describe().await;
    let world = World::start(servers).await?;
    let main = world.upstream(MAIN_TOKEN_LIFETIME).await?;
    let jwt_api = Spec::node("jwt-api", &options.jwt_api, world.jwt_api_env(), world.dir()).start(None).await?.instance;
    let site = world.site(&main).upstream(jwt_upstream(&format!("http://{}", jwt_api.addr)));
    let config = world.write_config("main", &site)?;
    let functions = Functions {
        relay: options.relay_bin.clone(),
        js_handler: options.js_handler.clone(),
        baseline: options.baseline.clone(),
        node_proxy: options.node_proxy.clone(),
    };
    let relay_spec = functions.relay(&world, &config);
    // A second relay whose API route caches, for the memory-hit rows.
    let cached_site = world.cached_site(&main, CACHE_TTL).upstream(jwt_upstream(&format!("http://{}", jwt_api.addr)));
    let cached_spec = functions.relay(&world, &world.write_config("cached", &cached_site)?);
    let js_spec = functions.js_handler(&world, &config);
    let js_node_spec = functions.js_node_handler(&world, &config);
    let node_spec = functions.baseline(&world, &main, BASELINE_MARGIN);
    if relay_spec.is_none() {
        progress("relay binary not found: its figures are left out (build it, or pass --relay-bin)");
    }

    // Long-running instances for the hot path; their first requests put each
    // function's token in the store, for the cold starts.
    let relay = match &relay_spec {
        Some(spec) => Some(start_warm(spec).await?),
        None => None,
    };
    let cached = match &cached_spec {
        Some(spec) => Some(start_warm(spec).await?),
        None => None,
    };
    let js = start_warm(&js_spec).await?;
    let js_node = start_warm(&js_node_spec).await?;
    let node = node_spec.start(Some(&relay_path())).await?.instance;
    let broker = world.broker(&config)?;
    let token = broker.token(UPSTREAM).await?;
    let jwt = hot_path::JwtApi { addr: jwt_api.addr, token: broker.token(JWT_UPSTREAM).await?.expose().to_owned() };
    let routes = proxy_routes(&main, token.expose(), &jwt)?;
    let rust_hop = functions.rust_hop(&world, &routes)?.start(None).await?.instance;
    let node_proxy = functions.node_proxy(&world, &routes).start(None).await?.instance;
    let nginx = match nginx::binary() {
        Some(binary) => Some(nginx::Nginx::start(&binary, world.dir(), &routes).await?),
        None => {
            progress("nginx not installed: its rows are left out (scripts/bench.sh installs nginx-light)");
            None
        }
    };

    progress("cold starts");
    let specs: Vec<_> = relay_spec.iter().chain([&js_spec, &node_spec]).collect();
    let mut cold = cold_start::run(&world, &specs, plan.cold_starts).await?;
    let node_cold = cold.pop().unwrap_or_default();
    let js_cold = cold.pop().unwrap_or_default();
    let relay_cold = cold.pop();

    progress("hot path");
    let servers = hot_path::Servers {
        upstream: &main,
        token: token.expose(),
        jwt: Some(&jwt),
        nginx: nginx.as_ref(),
        relay: relay.as_ref(),
        cached: cached.as_ref(),
        rust_hop: &rust_hop,
        node_proxy: &node_proxy,
        js: &js,
        js_node: &js_node,
        node: &node,
    };
    let hot = hot_path::run(&world, &servers, plan).await?;
    let store_trip = store_trip::run(&world, plan).await?;
    let peak_rss = report::PeakRss {
        relay: relay.as_ref().map(Instance::peak_rss_kib).transpose()?,
        js: js.peak_rss_kib()?,
        node: node.peak_rss_kib()?,
    };
    drop((relay, cached, rust_hop, node_proxy, js, js_node, node, nginx, jwt_api));

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
        js_cold,
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

/// Starts a long-running instance for the hot path, its tokens for both APIs
/// in its memory.
async fn start_warm(spec: &Spec) -> anyhow::Result<Instance> {
    let instance = spec.start(Some(&relay_path())).await?.instance;
    let jwt_path = format!("/api/relay/{JWT_UPSTREAM}{SEARCH}");
    let reply = load::Connection::open(instance.addr).await?.send(&load::Target::new(instance.addr, jwt_path)).await?;
    anyhow::ensure!(
        reply.status.is_success(),
        "{} answered {} through the JWT API: {}",
        spec.name,
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    Ok(instance)
}

fn progress(what: &str) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    eprintln!("tokenrelay-bench: [{:>5.1} s] {what}", elapsed.as_secs_f64());
}

/// The one-hop proxies' routes (nginx's and the bare hops'): the in-process
/// API with `token` and the JWT-verifying API with its own, each below its
/// relay path with its token as a fixed header; and, for nginx alone, the
/// in-process API through its `proxy_cache`, below [`hot_path::NGINX_CACHED`].
fn proxy_routes(main: &world::Upstream, token: &str, jwt: &hot_path::JwtApi) -> anyhow::Result<Vec<nginx::Route>> {
    let bearer = |token: &str| format!("Bearer {token}");
    let api_path = reqwest::Url::parse(&main.api.url())?.path().to_owned();
    Ok(vec![
        nginx::Route {
            prefix: format!("/api/relay/{UPSTREAM}"),
            upstream: main.api_addr()?,
            base_path: api_path.clone(),
            authorization: bearer(token),
            cache: false,
        },
        nginx::Route {
            prefix: format!("{}/api/relay/{UPSTREAM}", hot_path::NGINX_CACHED),
            upstream: main.api_addr()?,
            base_path: api_path,
            authorization: bearer(token),
            cache: true,
        },
        nginx::Route {
            prefix: format!("/api/relay/{JWT_UPSTREAM}"),
            upstream: jwt.addr,
            base_path: String::new(),
            authorization: bearer(&jwt.token),
            cache: false,
        },
    ])
}
