//! `tokenrelay-bench profile`: one relay instance (the relay binary, or with
//! `--js` the JS handler) under a fixed number of requests, for a profiler.
//! Figures per request that do not depend on how busy the machine is: the
//! relay process's CPU time per request here, and instructions per request
//! from a profiler run around the measured part.
//!
//! ```text
//! tokenrelay-bench profile [--relay-bin PATH] [--js fetch|node] [--js-handler PATH] [--nginx | --hop] [--api jwt|in-process|cached]
//!                          [-c N] [-n REQUESTS] [--warmup REQUESTS]
//!                          [--wrap 'CMD ARGS'] [--before 'SHELL {pid}'] [--after 'SHELL {pid}'] [--slowest K]
//! ```
//!
//! `--js fetch` profiles the JS handler as the bench's JS row serves it
//! (`createRelay` behind a Fetch API adapter), `--js node` as
//! `createNodeRelay`: tests/js/support/serve-relay.mjs, with the relay
//! binary's environment. It exits on SIGTERM, so `--wrap 'env
//! NODE_OPTIONS=--cpu-prof'` and `--after 'kill {pid}'` leave a CPU profile.
//! `--nginx` profiles the bench's nginx row instead, the same API behind
//! `proxy_pass` (`--api cached`: its `proxy_cache`): its master and workers
//! together are "the process", and `{pid}` is their ids, comma-separated
//! (as `strace -p` and `perf -p` take them). `--hop` profiles the relay
//! stack's bare hop (`tokenrelay-bench hop`) on nginx's routes, the floor
//! the relay's own work is measured from; it has no cache.
//!
//! `--wrap` starts the relay under a command (`valgrind --tool=callgrind
//! --collect-atstart=no`); `--before` and `--after` run through `sh -c`
//! around the measured requests, `{pid}` replaced by the relay's process id
//! (`callgrind_control -i on {pid}`, `perf record -g -p {pid} -o FILE &`).
//! The CPU time is given in all, then user and system apart.
//! Also printed: the slowest answers, each with when it came (seconds since the
//! measured part began) and its position, to find what the tail shares.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::header::HeaderValue;

use crate::load::{Connection, Target};
use crate::nginx::Nginx;
use crate::plan::{CACHE_TTL, MAIN_TOKEN_LIFETIME};
use crate::procs::{Cpu, Instance, Spec};
use crate::scenario::Functions;
use crate::scenario::hot_path::{JwtApi, NGINX_CACHED};
use crate::world::{JWT_UPSTREAM, SEARCH, UPSTREAM, World, jwt_upstream, relay_path};

const USAGE: &str =
    "usage: tokenrelay-bench profile [--relay-bin PATH] [--js fetch|node] [--js-handler PATH] [--nginx | --hop]
                        [--api jwt|in-process|cached] [-c N] [-n REQUESTS] [--warmup REQUESTS] [--wrap 'CMD ARGS'] [--before 'SHELL'] [--after 'SHELL'] [--slowest K]";

struct Options {
    relay: PathBuf,
    /// The JS handler's adapter (`fetch` or `node`) when it is profiled instead of the relay binary.
    js: Option<String>,
    js_handler: PathBuf,
    /// Whether the bench's nginx row is profiled instead of a relay.
    nginx: bool,
    /// Whether the relay stack's bare hop is profiled instead of a relay.
    hop: bool,
    jwt_api: PathBuf,
    jwt: bool,
    /// The in-process API's route with the response cache: memory hits after the first.
    cached: bool,
    concurrency: usize,
    requests: usize,
    warmup: usize,
    wrap: Vec<String>,
    before: Option<String>,
    after: Option<String>,
    slowest: usize,
}

pub fn main(args: &[String]) -> ExitCode {
    let run = || -> anyhow::Result<String> {
        let options = parse(args)?;
        let servers = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = servers.handle().clone();
        let report = client.block_on(profile(handle, &options));
        servers.shutdown_timeout(Duration::from_secs(2));
        report
    };
    match run() {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tokenrelay-bench profile: {err:#}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let mut options = Options {
        relay: std::env::current_exe()?.with_file_name("relay"),
        js: None,
        js_handler: repo.join("tests/js/support/serve-relay.mjs"),
        nginx: false,
        hop: false,
        jwt_api: repo.join("bench/jwt-api/server.mjs"),
        jwt: true,
        cached: false,
        concurrency: 1,
        requests: 5000,
        warmup: 500,
        wrap: Vec::new(),
        before: None,
        after: None,
        slowest: 10,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--relay-bin" => options.relay = value()?.into(),
            "--jwt-api" => options.jwt_api = value()?.into(),
            "--js" => {
                let adapter = value()?;
                anyhow::ensure!(adapter == "fetch" || adapter == "node", "--js takes fetch or node, not {adapter:?}");
                options.js = Some(adapter.clone());
            }
            "--js-handler" => options.js_handler = value()?.into(),
            "--nginx" => options.nginx = true,
            "--hop" => options.hop = true,
            "--api" => {
                (options.jwt, options.cached) = match value()?.as_str() {
                    "jwt" => (true, false),
                    "in-process" => (false, false),
                    "cached" => (false, true),
                    other => anyhow::bail!("--api takes jwt, in-process or cached, not {other:?}"),
                }
            }
            "-c" => options.concurrency = value()?.parse().context("-c takes a number")?,
            "-n" => options.requests = value()?.parse().context("-n takes a number")?,
            "--warmup" => options.warmup = value()?.parse().context("--warmup takes a number")?,
            "--wrap" => options.wrap = value()?.split_whitespace().map(str::to_owned).collect(),
            "--before" => options.before = Some(value()?.clone()),
            "--after" => options.after = Some(value()?.clone()),
            "--slowest" => options.slowest = value()?.parse().context("--slowest takes a number")?,
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    anyhow::ensure!(
        [options.nginx, options.hop, options.js.is_some()].iter().filter(|&&chosen| chosen).count() <= 1,
        "--nginx, --hop and --js each choose what is profiled: give one"
    );
    anyhow::ensure!(!(options.hop && options.cached), "--hop has no cache: not with --api cached");
    anyhow::ensure!(
        !options.nginx || options.wrap.is_empty(),
        "--wrap starts a relay under a command: not with --nginx"
    );
    if options.js.is_none() && !options.nginx && !options.hop {
        anyhow::ensure!(options.relay.is_file(), "relay binary {} not found", options.relay.display());
    }
    anyhow::ensure!(options.concurrency > 0 && options.requests > 0, "-c and -n must be at least 1");
    Ok(options)
}

async fn profile(servers: tokio::runtime::Handle, options: &Options) -> anyhow::Result<String> {
    let world = World::start(servers).await?;
    let main = world.upstream(MAIN_TOKEN_LIFETIME).await?;
    let jwt_api = Spec::node("jwt-api", &options.jwt_api, world.jwt_api_env(), world.dir()).start(None).await?.instance;
    let site = if options.cached { world.cached_site(&main, CACHE_TTL) } else { world.site(&main) };
    let site = site.upstream(jwt_upstream(&format!("http://{}", jwt_api.addr)));
    let config = world.write_config("profile", &site)?;
    let name = if options.jwt { JWT_UPSTREAM } else { UPSTREAM };
    let routes = if options.nginx || options.hop {
        let broker = world.broker(&config)?;
        let token = broker.token(UPSTREAM).await?;
        let jwt = JwtApi { addr: jwt_api.addr, token: broker.token(JWT_UPSTREAM).await?.expose().to_owned() };
        crate::proxy_routes(&main, token.expose(), &jwt)?
    } else {
        Vec::new()
    };
    let profiled = if options.nginx {
        let binary =
            crate::nginx::binary().context("nginx is not installed (scripts/bench.sh installs nginx-light)")?;
        Profiled::Nginx(Nginx::start(&binary, world.dir(), &routes).await?)
    } else {
        let functions = Functions {
            relay: Some(options.relay.clone()),
            js_handler: options.js_handler.clone(),
            ..Functions::default()
        };
        let mut spec = if options.hop {
            functions.rust_hop(&world, &routes)?
        } else {
            match options.js.as_deref() {
                Some("node") => functions.js_node_handler(&world, &config),
                Some(_) => functions.js_handler(&world, &config),
                None => functions.relay(&world, &config).context("no relay binary")?,
            }
        };
        if let Some((program, args)) = options.wrap.split_first() {
            let mut wrapped: Vec<OsString> = args.iter().map(OsString::from).collect();
            wrapped.push(std::mem::replace(&mut spec.program, program.into()).into());
            wrapped.append(&mut spec.args);
            spec.args = wrapped;
        }
        // A relay is ready once it relays; the hop has no token to warm, so once it listens.
        let probe = (!options.hop).then(relay_path);
        Profiled::Relay(spec.start(probe.as_deref()).await?.instance)
    };
    let addr = profiled.addr();
    let path = match &profiled {
        Profiled::Nginx(_) if options.cached => format!("{NGINX_CACHED}/api/relay/{UPSTREAM}{SEARCH}"),
        _ => format!("/api/relay/{name}{SEARCH}"),
    };
    let target = Target::new(addr, path);

    let mut connections = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        connections.push(Connection::open(addr).await?);
    }
    let per_connection = |total: usize| total.div_ceil(options.concurrency);
    send_all(&mut connections, &target, per_connection(options.warmup), None).await?;
    let pids = profiled.pids()?;
    let pid_list = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    hook(options.before.as_deref(), &pid_list).await?;
    let cpu_before = Cpu::of(&pids)?;
    let started = Instant::now();
    let answers = send_all(&mut connections, &target, per_connection(options.requests), Some(started)).await?;
    let elapsed = started.elapsed();
    let cpu = Cpu::of(&pids)?.since(cpu_before);
    hook(options.after.as_deref(), &pid_list).await?;

    let sent = answers.len();
    let latencies: crate::stats::Samples = answers.iter().map(|a| a.latency).collect();
    let p = latencies.percentiles().context("no answers")?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_request = |d: Duration| d.as_secs_f64() * 1e6 / sent as f64;
    let mut report = format!(
        "{sent} requests to {} through {} on {} connections in {:.2} s: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; \
         its CPU {:.1} µs per request (user {:.1}, system {:.1})\n",
        match (options.jwt, options.cached) {
            (true, _) => "the JWT-verifying API",
            (false, false) => "the in-process API",
            (false, true) => "the in-process API's cached route (memory hits)",
        },
        match (options.nginx, options.cached, options.js.as_deref()) {
            _ if options.hop => "the relay stack's bare hop",
            (true, true, _) => "nginx (proxy_cache)",
            (true, false, _) => "nginx (proxy_pass)",
            (false, _, Some("node")) => "the JS handler (createNodeRelay)",
            (false, _, Some(_)) => "the JS handler (createRelay)",
            (false, _, None) => "the relay",
        },
        options.concurrency,
        elapsed.as_secs_f64(),
        ms(p.p50),
        ms(p.p99),
        ms(p.max),
        per_request(cpu.total()),
        per_request(cpu.user),
        per_request(cpu.system),
    );
    let mut slowest: Vec<&Answer> = answers.iter().collect();
    slowest.sort_by_key(|a| std::cmp::Reverse(a.latency));
    for a in slowest.iter().take(options.slowest) {
        report += &format!(
            "  slow: {:.3} ms at {:.3} s, answer {} of connection {}, {}\n",
            ms(a.latency),
            a.at.as_secs_f64(),
            a.index,
            a.connection,
            a.length.as_deref().map_or("chunked".to_owned(), |l| format!("Content-Length {l}"))
        );
    }
    Ok(report)
}

/// One measured answer.
struct Answer {
    latency: Duration,
    /// When it was sent, since the measured part began.
    at: Duration,
    connection: usize,
    index: usize,
    /// Its `Content-Length`, if it had one.
    length: Option<String>,
}

/// `each` requests on every connection at once; every answer must be 2xx.
async fn send_all(
    connections: &mut [Connection],
    target: &Target,
    each: usize,
    since: Option<Instant>,
) -> anyhow::Result<Vec<Answer>> {
    let since = since.unwrap_or_else(Instant::now);
    let workers = connections.iter_mut().enumerate().map(|(connection, c)| async move {
        let mut answers = Vec::with_capacity(each);
        for index in 0..each {
            let at = since.elapsed();
            let reply = c.send(target).await?;
            anyhow::ensure!(reply.status.is_success(), "answer {index}: {}", reply.status);
            let length = reply.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v: &HeaderValue| v.to_str().ok());
            answers.push(Answer { latency: reply.latency, at, connection, index, length: length.map(str::to_owned) });
        }
        anyhow::Ok(answers)
    });
    let mut all = Vec::new();
    for answers in futures_util::future::join_all(workers).await {
        all.extend(answers?);
    }
    Ok(all)
}

/// What is profiled: a process of its own (a relay, or the stack's bare hop), or nginx.
enum Profiled {
    Relay(Instance),
    Nginx(Nginx),
}

impl Profiled {
    fn addr(&self) -> SocketAddr {
        match self {
            Profiled::Relay(relay) => relay.addr,
            Profiled::Nginx(nginx) => nginx.addr,
        }
    }

    /// Its processes: nginx's master and workers.
    fn pids(&self) -> anyhow::Result<Vec<u32>> {
        match self {
            Profiled::Relay(relay) => Ok(vec![relay.pid()]),
            Profiled::Nginx(nginx) => nginx.pids(),
        }
    }
}

/// Runs `command` through `sh -c` with `{pid}` replaced by `pids`, and waits for it.
async fn hook(command: Option<&str>, pids: &str) -> anyhow::Result<()> {
    let Some(command) = command else { return Ok(()) };
    let command = command.replace("{pid}", pids);
    let status = tokio::process::Command::new("sh").arg("-c").arg(&command).status().await?;
    anyhow::ensure!(status.success(), "{command:?} exited with {status}");
    Ok(())
}
