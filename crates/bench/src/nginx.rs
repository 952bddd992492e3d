//! nginx as the physical-limit row: one proxy hop and nothing else, i.e.
//! `proxy_pass` to the same API over keep-alive upstream connections with
//! the credentials as a fixed header. What tokenrelay adds beyond that is
//! its own cost. Debian's `nginx-light` (installed by scripts/bench.sh).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// Where Debian puts the binary (root's PATH has it, other users' may not).
const NGINX_PATHS: [&str; 2] = ["/usr/sbin/nginx", "/usr/bin/nginx"];
/// Idle keep-alive connections each worker keeps to an upstream.
const UPSTREAM_KEEPALIVE: usize = 64;
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping master may take to stop its workers.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// One location: `prefix` (e.g. `/api/relay/api`) proxied to `upstream` +
/// `base_path`, with `Authorization: authorization`.
pub struct Route {
    pub prefix: String,
    pub upstream: SocketAddr,
    pub base_path: String,
    pub authorization: String,
    /// Whether nginx keeps `200` answers in its `proxy_cache` ([`CACHE_VALID`]),
    /// saying `X-Cache-Status: HIT` for a hit: the row the relay's memory
    /// hits are held against.
    pub cache: bool,
}

/// How long nginx's `proxy_cache` keeps a `200` answer: the whole run.
const CACHE_VALID: &str = "5m";

/// A running nginx; stopped (master and workers) when dropped.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
}

/// The nginx binary, if installed.
pub fn binary() -> Option<PathBuf> {
    NGINX_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl Nginx {
    /// Starts nginx on a free port with `routes`, its files in `dir`.
    pub async fn start(binary: &Path, dir: &Path, routes: &[Route]) -> anyhow::Result<Nginx> {
        let port = testkit::free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, addr, routes)).with_context(|| format!("writing {}", conf.display()))?;
        let log = std::fs::File::create(dir.join("stderr.log"))?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let nginx = Nginx { child, addr };
        testkit::wait_until("nginx accepts connections", START_TIMEOUT, || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await
        .with_context(|| std::fs::read_to_string(dir.join("error.log")).unwrap_or_default())?;
        Ok(nginx)
    }
}

impl Nginx {
    /// The master's process id, then its workers'.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let master = self.child.id().context("nginx has exited")?;
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))?;
        Ok(std::iter::once(master).chain(children.split_whitespace().filter_map(|p| p.parse().ok())).collect())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops the workers too. SIGKILL, which
        // `kill_on_drop` sends next, would orphan them (with their ports and
        // CPU, into the next run): so the master is given time to exit first.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            let until = std::time::Instant::now() + STOP_TIMEOUT;
            while std::time::Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Workers as many as cores (`auto`: the relay's function has one thread
/// since issue 28's third pass, so at 8 and 32 connections nginx may use
/// both cores where it uses one), no access log (nginx's own work is the
/// yardstick), HTTP/1.1 with `Connection: ""` so that upstream connections
/// are kept alive, and a cache zone for the routes that cache.
fn config(dir: &Path, addr: SocketAddr, routes: &[Route]) -> String {
    let dir = dir.display();
    let mut upstreams = String::new();
    let mut locations = String::new();
    for (i, r) in routes.iter().enumerate() {
        upstreams += &format!("  upstream u{i} {{ server {}; keepalive {UPSTREAM_KEEPALIVE}; }}\n", r.upstream);
        let cache = if r.cache {
            format!(
                "      proxy_cache hot;\n      proxy_cache_valid 200 {CACHE_VALID};\n      \
                 add_header X-Cache-Status $upstream_cache_status;\n"
            )
        } else {
            String::new()
        };
        locations += &format!(
            "    location {prefix}/ {{\n      proxy_pass http://u{i}{base}/;\n      proxy_http_version 1.1;\n      \
             proxy_set_header Connection \"\";\n      proxy_set_header Authorization \"{auth}\";\n{cache}    }}\n",
            prefix = r.prefix,
            base = r.base_path.trim_end_matches('/'),
            auth = r.authorization,
        );
    }
    format!(
        "daemon off;\nworker_processes auto;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  \
         fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n  \
         proxy_cache_path {dir}/cache keys_zone=hot:1m;\n  keepalive_requests 1000000;\n{upstreams}  server {{\n    listen {addr};\n{locations}  }}\n}}\n"
    )
}
