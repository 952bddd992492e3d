//! Stampedes: many cold instances wanting the token at the same moment.
//!
//! - Across processes: worker processes of fully separate brokers (see
//!   [`crate::worker`]) hit an empty store at once, then again at the moment
//!   the token expires, then once more warm (the baseline for added latency).
//!   Every instance uses its token on the API, which rejects expired tokens.
//! - In one function process: simultaneous cold requests to a fresh relay
//!   process and to the Node baseline, with an empty store.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::load::{self, Target};
use crate::plan::Plan;
use crate::procs::{INHERITED_VARS, Spec};
use crate::stats::{Percentiles, Samples};
use crate::worker::{API_URL_VAR, Record};
use crate::world::{Upstream, World, addr_of, relay_path};

/// Head start given to every worker before a phase's common start time.
const GO_DELAY: Duration = Duration::from_millis(150);
/// Longest a worker may take to build its brokers, or to finish a phase.
const WORKER_TIMEOUT: Duration = Duration::from_secs(60);

/// One moment every instance asked for the token.
#[derive(Debug)]
pub struct Phase {
    pub token_calls: usize,
    pub store_requests: u64,
    pub records: Vec<Record>,
}

impl Phase {
    /// Requests served with a token the API rejected, or with none.
    pub fn expired(&self) -> usize {
        self.records.iter().filter(|r| r.status != 200).count()
    }

    /// Token plus API call, per instance.
    pub fn latency(&self) -> Option<Percentiles> {
        self.records.iter().map(|r| Duration::from_micros(r.total_us)).collect::<Samples>().percentiles()
    }

    fn latest_expiry_ms(&self) -> Option<u64> {
        self.records.iter().map(|r| r.expires_at_ms).max().filter(|&ms| ms > 0)
    }
}

/// The cross-process stampede.
#[derive(Debug)]
pub struct Stampede {
    pub processes: usize,
    pub instances: usize,
    pub empty: Phase,
    pub expiry: Phase,
    pub warm: Phase,
}

pub async fn across_processes(world: &World, exe: &Path, plan: &Plan) -> anyhow::Result<Stampede> {
    let upstream = world.upstream(plan.stampede_lifetime).await?;
    let margin = plan.stampede_margin;
    let site = world.site(&upstream).cache(|c| c.safety_margin(margin).refresh_window(margin));
    let config = world.write_config("stampede", &site)?;
    world.flush_store().await?;
    for addr in [upstream.api_addr()?, addr_of(&upstream.tokens.url())?, addr_of(&world.upstash.url())?] {
        prime_listener(addr, plan.stampede_total()).await;
    }

    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for i in 0..plan.stampede_processes {
        workers.push(Worker::spawn(world, exe, &config, &upstream, plan.stampede_instances, i, lines_tx.clone())?);
    }
    drop(lines_tx);
    let mut ready = 0;
    while ready < workers.len() {
        match tokio::time::timeout(WORKER_TIMEOUT, lines.recv()).await {
            Ok(Some(line)) if line == "ready" => ready += 1,
            Ok(Some(line)) => bail!("a stampede worker said {line:?} before it was ready"),
            Ok(None) | Err(_) => {
                let log = std::fs::read_to_string(world.dir().join("stampede-worker-0.log")).unwrap_or_default();
                bail!("stampede workers did not start; the first one said:\n{log}")
            }
        }
    }

    let empty = phase(world, &upstream, &mut workers, &mut lines, "empty", SystemTime::now() + GO_DELAY).await?;
    // The instances stop serving the token `margin` before it expires, the
    // moment the store drops it too: all of them rotate at once.
    let expiry_ms = empty.latest_expiry_ms().context("no instance got a token from an empty store")?;
    let valid_until = UNIX_EPOCH + Duration::from_millis(expiry_ms) - plan.stampede_margin;
    let expiry_at = valid_until.max(SystemTime::now() + GO_DELAY);
    let expiry = phase(world, &upstream, &mut workers, &mut lines, "expiry", expiry_at).await?;
    let warm = phase(world, &upstream, &mut workers, &mut lines, "warm", SystemTime::now() + GO_DELAY).await?;

    for worker in &mut workers {
        let _ = worker.stdin.write_all(b"quit\n").await;
    }
    Ok(Stampede { processes: plan.stampede_processes, instances: plan.stampede_total(), empty, expiry, warm })
}

/// Opens and drops `n` connections to `addr` at once. The first burst of
/// connections a fresh loopback listener gets loses some SYNs on this kernel
/// (TCP timeouts, no listen overflow), which costs those clients the 1 s
/// initial retransmission timeout; later bursts do not. The stampede's token
/// endpoint and API are fresh, unlike a real provider's, so they get that
/// burst before the stampede instead of during it (and so does Upstash REST,
/// which has not seen such a burst yet either).
async fn prime_listener(addr: SocketAddr, n: usize) {
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..n {
        connects.spawn(tokio::net::TcpStream::connect(addr));
    }
    while connects.join_next().await.is_some() {}
}

struct Worker {
    _child: Child,
    stdin: ChildStdin,
}

impl Worker {
    fn spawn(
        world: &World,
        exe: &Path,
        config: &Path,
        upstream: &Upstream,
        instances: usize,
        index: usize,
        lines: mpsc::UnboundedSender<String>,
    ) -> anyhow::Result<Worker> {
        let log = world.dir().join(format!("stampede-worker-{index}.log"));
        let mut child = Command::new(exe)
            .args(["instances", "--count", &instances.to_string()])
            .env_clear()
            .envs(INHERITED_VARS.iter().filter_map(|k| Some((k, std::env::var_os(k)?))))
            .envs(world.relay_env(config))
            .env(API_URL_VAR, upstream.api.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} instances", exe.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        tokio::spawn(async move {
            let mut out = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = out.next_line().await {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Worker { _child: child, stdin })
    }
}

async fn phase(
    world: &World,
    upstream: &Upstream,
    workers: &mut [Worker],
    lines: &mut mpsc::UnboundedReceiver<String>,
    name: &str,
    at: SystemTime,
) -> anyhow::Result<Phase> {
    world.upstash.reset_counts();
    let calls_before = upstream.tokens.calls();
    let at_ms = at.duration_since(UNIX_EPOCH)?.as_millis();
    for worker in workers.iter_mut() {
        worker.stdin.write_all(format!("go {name} {at_ms}\n").as_bytes()).await?;
    }
    let mut records = Vec::new();
    let mut done = 0;
    while done < workers.len() {
        let line = tokio::time::timeout(WORKER_TIMEOUT, lines.recv())
            .await
            .ok()
            .flatten()
            .with_context(|| format!("stampede workers stopped answering in phase {name}"))?;
        if line == "done" {
            done += 1;
        } else {
            records.push(serde_json::from_str(&line).with_context(|| format!("a worker said {line:?}"))?);
        }
    }
    let phase = Phase {
        token_calls: upstream.tokens.calls() - calls_before,
        store_requests: world.upstash.requests(),
        records,
    };
    Ok(phase)
}

/// Simultaneous cold requests to one fresh function process, empty store.
#[derive(Debug)]
pub struct Burst {
    pub requests: usize,
    pub token_calls: usize,
    /// Answers other than 2xx.
    pub failed: usize,
    pub latency: Option<Percentiles>,
}

pub async fn burst(world: &World, upstream: &Upstream, spec: &Spec, n: usize) -> anyhow::Result<Burst> {
    let started = spec.start(None).await?;
    world.flush_store().await?;
    let calls_before = upstream.tokens.calls();
    let replies = load::burst(&Target::new(started.instance.addr, relay_path()), n).await?;
    upstream.api.clear_requests();
    Ok(Burst {
        requests: replies.len(),
        token_calls: upstream.tokens.calls() - calls_before,
        failed: replies.iter().filter(|r| !r.status.is_success()).count(),
        latency: replies.iter().map(|r| r.latency).collect::<Samples>().percentiles(),
    })
}
