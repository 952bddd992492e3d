//! Function processes under test (the relay binary, the JS handler, the Node
//! baseline): started the way a platform starts an instance, timed from spawn to the
//! first relayed answer, and measured for peak memory.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::load::{self, Target};

/// How long an instance gets to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to try connecting when the instance has not said it listens.
const CONNECT_POLL: Duration = Duration::from_millis(2);
/// Clock ticks per second of /proc CPU times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;
/// Environment variables a process under test inherits (the rest is set explicitly).
pub const INHERITED_VARS: [&str; 3] = ["PATH", "HOME", "TMPDIR"];

/// How to start one kind of function instance.
#[derive(Clone)]
pub struct Spec {
    /// `relay`, `js` or `node`, for logs and errors.
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// The variable that tells it which port to listen on.
    pub port_var: &'static str,
    /// Where its stdout and stderr go.
    pub log_dir: PathBuf,
}

/// A running instance; killed when dropped.
pub struct Instance {
    child: Child,
    pub addr: SocketAddr,
    pid: u32,
    log: PathBuf,
}

/// A started instance and how its start went.
pub struct Started {
    pub instance: Instance,
    /// From spawning the process to the first relayed answer, read in full.
    pub first_answer: Duration,
    /// Peak resident memory at that point.
    pub peak_rss_kib: u64,
}

impl Spec {
    /// `node script`, listening on `$PORT`.
    pub fn node(name: &'static str, script: &Path, env: Vec<(String, String)>, log_dir: &Path) -> Spec {
        Spec {
            name,
            program: "node".into(),
            args: vec![script.into()],
            env,
            port_var: "PORT",
            log_dir: log_dir.to_owned(),
        }
    }

    /// Spawns an instance on a free port and, as soon as it listens (it prints
    /// a line containing `listening`, or a connect succeeds), sends it `probe`;
    /// without a probe, being connectable is enough.
    pub async fn start(&self, probe: Option<&str>) -> anyhow::Result<Started> {
        let port = testkit::free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = self.log_dir.join(format!("{}-{port}.log", self.name));
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(INHERITED_VARS.iter().filter_map(|k| Some((k, std::env::var_os(k)?))))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(self.port_var, port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true);

        let spawned_at = Instant::now();
        let mut child = command.spawn().with_context(|| format!("starting {}", self.program.display()))?;
        let pid = child.id().context("the process exited at once")?;
        let listening = Arc::new(Notify::new());
        let stdout = child.stdout.take().context("no stdout")?;
        tokio::spawn(copy_stdout(stdout, log.with_extension("out"), listening.clone()));
        let mut instance = Instance { child, addr, pid, log };

        let target = probe.map(|path| Target::new(addr, path));
        let deadline = spawned_at + START_TIMEOUT;
        loop {
            tokio::select! {
                _ = listening.notified() => {}
                _ = tokio::time::sleep(CONNECT_POLL) => {}
            }
            if let Ok(mut connection) = load::Connection::open(addr).await {
                if let Some(target) = &target {
                    let reply = connection.send(target).await?;
                    if !reply.status.is_success() {
                        bail!(
                            "{} answered its first request {} with {}: {}\n{}",
                            self.name,
                            target.path,
                            reply.status,
                            String::from_utf8_lossy(&reply.body),
                            instance.log_tail()
                        );
                    }
                }
                let first_answer = spawned_at.elapsed();
                let peak_rss_kib = instance.peak_rss_kib()?;
                return Ok(Started { instance, first_answer, peak_rss_kib });
            }
            if let Some(status) = instance.child.try_wait()? {
                bail!("{} exited with {status} before answering\n{}", self.name, instance.log_tail());
            }
            if Instant::now() >= deadline {
                bail!("{} did not answer within {START_TIMEOUT:?}\n{}", self.name, instance.log_tail());
            }
        }
    }
}

impl Instance {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Peak resident set size so far (`VmHWM` in `/proc/<pid>/status`).
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid, "VmHWM")
    }

    /// CPU time used so far, user and system.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        Cpu::of(&[self.pid]).map(Cpu::total)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "last lines of its log ({}):\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// CPU time used by processes so far, user and system apart.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu {
    pub user: Duration,
    pub system: Duration,
}

impl Cpu {
    /// The sum over `pids`.
    pub fn of(pids: &[u32]) -> anyhow::Result<Cpu> {
        let mut ticks = (0, 0);
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            // Fields after the command name, which is in parentheses and may hold spaces:
            // state is field 3, utime 14 and stime 15 (proc(5)).
            let fields: Vec<&str> =
                stat.rsplit_once(')').context("malformed /proc/<pid>/stat")?.1.split_whitespace().collect();
            let field =
                |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).context("malformed /proc/<pid>/stat");
            ticks = (ticks.0 + field(14)?, ticks.1 + field(15)?);
        }
        let time = |t: u64| Duration::from_secs_f64(t as f64 / USER_HZ);
        Ok(Cpu { user: time(ticks.0), system: time(ticks.1) })
    }

    pub fn total(self) -> Duration {
        self.user + self.system
    }

    /// What was used since `before`.
    pub fn since(self, before: Cpu) -> Cpu {
        Cpu { user: self.user.saturating_sub(before.user), system: self.system.saturating_sub(before.system) }
    }
}

/// A `kB` field of `/proc/<pid>/status`, e.g. `VmHWM` (peak RSS).
pub fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (this benchmark needs Linux)"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Copies the instance's stdout to `path`, and signals the first line that
/// says it listens (`Dev server listening: PORT` from vercel_runtime,
/// `node-baseline listening` from the baseline, `serve-relay fetch listening` from
/// the JS handler).
async fn copy_stdout(stdout: tokio::process::ChildStdout, path: PathBuf, listening: Arc<Notify>) {
    use tokio::io::AsyncWriteExt as _;
    let Ok(mut out) = tokio::fs::File::create(&path).await else { return };
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut said = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if !said && line.contains("listening") {
            said = true;
            listening.notify_one();
        }
        let _ = out.write_all(format!("{line}\n").as_bytes()).await;
    }
}
