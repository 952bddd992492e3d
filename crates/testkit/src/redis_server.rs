//! A throwaway `redis-server` process on a free loopback port.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::wait::free_port;

/// How long a fresh redis-server gets to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports to try when the one picked is taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// Environment variable naming the redis-server binary (default `redis-server` on PATH).
const BIN_ENV: &str = "REDIS_SERVER_BIN";

/// A `redis-server` that keeps nothing on disk, listening on 127.0.0.1.
///
/// Killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-redis-")
            .tempdir()
            .context("creating a working directory for redis-server")?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match launch(port, dir.path()).await {
                Ok(child) => {
                    return Ok(Self { port, dir, child: Some(child) });
                }
                // Most likely someone took the port between our check and redis's bind.
                Err(Launch::Exited(status)) => {
                    last_error = Some(anyhow::anyhow!(
                        "redis-server on port {port} exited with {status}: {}",
                        log_tail(dir.path())
                    ));
                }
                Err(Launch::Failed(err)) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// The port redis-server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the process is currently started (between [`stop`](Self::stop) and
    /// [`restart`](Self::restart) it is not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills redis-server and waits for it to exit. Its data is lost.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().context("killing redis-server")?;
            child.wait().await.context("waiting for redis-server to exit")?;
        }
        Ok(())
    }

    /// Starts redis-server again on the same port (stopping it first if needed),
    /// empty, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        match launch(self.port, self.dir.path()).await {
            Ok(child) => {
                self.child = Some(child);
                Ok(())
            }
            Err(Launch::Exited(status)) => {
                bail!("redis-server could not restart on port {} ({status}): {}", self.port, log_tail(self.dir.path()))
            }
            Err(Launch::Failed(err)) => Err(err),
        }
    }
}

enum Launch {
    /// The process exited before answering (e.g. the port was taken).
    Exited(ExitStatus),
    Failed(anyhow::Error),
}

async fn launch(port: u16, dir: &Path) -> Result<Child, Launch> {
    let bin = std::env::var(BIN_ENV).unwrap_or_else(|_| "redis-server".to_owned());
    let mut child = Command::new(&bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--logfile", "redis.log"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {bin} (set {BIN_ENV} to override)"))
        .map_err(Launch::Failed)?;
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("polling redis-server").map_err(Launch::Failed)? {
            return Err(Launch::Exited(status));
        }
        // Check the answering server is ours, not another one that owns the port.
        if pid.is_some() && server_pid(port).await == pid {
            return Ok(child);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Launch::Failed(anyhow::anyhow!(
                "redis-server on port {port} did not answer within {READY_TIMEOUT:?}: {}",
                log_tail(dir)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `process_id` that the server on `port` reports, if one answers.
async fn server_pid(port: u16) -> Option<u32> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_millis(500))
        .set_response_timeout(Duration::from_millis(500));
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await.ok()?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.ok()?;
    info.lines().find_map(|line| line.strip_prefix("process_id:")).and_then(|pid| pid.trim().parse().ok())
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n");
    if tail.is_empty() { "(no log)".to_owned() } else { tail }
}
