//! Function processes run as serverless platforms run them: frozen from the
//! moment they answered until their next request thaws them.
//!
//! AWS Lambda (Netlify's functions) freezes an execution environment once its
//! handler returned and thaws it only for the next invocation
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>);
//! Vercel may suspend an instance once its invocation `end`ed (vercel/vercel#17351):
//! its runtime says so once the answer is out and the background work the
//! function registered (`wait_until`) is done.
//! Work a function leaves for after that (a spawned refresh, a timer)
//! therefore does not run until the next request, if ever. A [`Front`] makes
//! that happen locally: an HTTP server on 127.0.0.1 over N function
//! processes that, for each request, picks an instance, thaws it (`SIGCONT`),
//! hands the request over, and freezes it again (`SIGSTOP`) as soon as its
//! invocation is over: when its answer is complete, or for the Vercel
//! function at its runtime's `end` (and not before the answer is complete),
//! after the caller has its answer. The instance takes its next request only then.
//!
//! - [`Front::vercel`], [`Front::served`]: processes serving HTTP on a port
//!   given in their environment (the Vercel function's `$VERCEL_DEV_PORT`, a
//!   Node server's); the request is forwarded byte for byte and the whole
//!   answer read back. The Vercel function gets the platform's invocation
//!   ids and reports its `end` on `$VERCEL_IPC_PATH` ([`Ends::VercelIpc`]).
//! - [`Front::lambda`]: custom-runtime `bootstrap`s, each with a Lambda
//!   Runtime API stand-in of its own; the request becomes the API Gateway v1
//!   event Netlify sends, and the bootstrap is frozen when it posts its response.
//!
//! The front speaks HTTP/1.0, one request per connection (as `relay-e2e`'s
//! client does), so that an answer's end is the connection's end.

mod http;
mod lambda;
mod served;
mod vercel_ipc;

pub use served::ServedProcess;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::Logs;
use http::Request;

/// How long one invocation may take, from thaw to complete answer.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fresh process gets to be ready (serving, or polling for an event).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether instances are frozen between requests. `Off` runs the same front
/// and processes without signals: the figure to compare against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freeze {
    On,
    Off,
}

/// Sends the freeze and thaw signals to one process (nothing with [`Freeze::Off`]).
#[derive(Clone, Copy, Debug)]
struct Freezer {
    pid: Pid,
    mode: Freeze,
}

impl Freezer {
    fn of(child: &Child, mode: Freeze) -> anyhow::Result<Self> {
        let id = child.id().context("the function process has already exited")?;
        let pid = Pid::from_raw(i32::try_from(id)?).context("pid 0")?;
        Ok(Self { pid, mode })
    }

    /// `SIGSTOP`: the process runs nothing, not even its timers, until thawed.
    fn freeze(self) -> anyhow::Result<()> {
        self.signal(Signal::STOP)
    }

    /// `SIGCONT`.
    fn thaw(self) -> anyhow::Result<()> {
        self.signal(Signal::CONT)
    }

    fn signal(self, signal: Signal) -> anyhow::Result<()> {
        if self.mode == Freeze::On {
            kill_process(self.pid, signal).with_context(|| format!("signalling the function process {signal:?}"))?;
        }
        Ok(())
    }

    /// `SIGKILL`, which ends a stopped process too.
    fn kill(self) {
        let _ = kill_process(self.pid, Signal::KILL);
    }
}

/// One platform's way of handing a request to a thawed function process.
trait Function: Send + Sync + 'static {
    /// Hands `request` over and returns the whole answer as HTTP/1.0 bytes,
    /// having frozen the process as soon as that answer was complete, unless
    /// the invocation ends later ([`settle`](Self::settle)).
    fn invoke(&self, request: Request) -> impl Future<Output = anyhow::Result<Vec<u8>>> + Send;

    /// Returns once the invocation that answered last is over, the process frozen.
    fn settle(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A function process and the way to reach it; one request at a time, as
/// a Lambda execution environment takes them.
struct Instance<F> {
    function: F,
    freezer: Freezer,
    turn: tokio::sync::Mutex<()>,
    /// Owned so that it is killed on drop (`kill_on_drop`), stopped or not.
    _child: Child,
}

impl<F: Function> Instance<F> {
    /// One invocation: the answer to `request` goes to `caller` as soon as it
    /// is complete; the instance is frozen and free for the next one once the
    /// invocation is over.
    async fn serve(&self, request: Request, caller: &mut TcpStream) {
        let _turn = self.turn.lock().await;
        let answer = self.invoke(request).await;
        let answered = answer.is_ok();
        reply(caller, answer).await;
        if answered {
            let settled = tokio::time::timeout(INVOCATION_TIMEOUT, self.function.settle()).await;
            let settled = settled.unwrap_or_else(|_| Err(anyhow::anyhow!("no end within {INVOCATION_TIMEOUT:?}")));
            if let Err(err) = settled {
                eprintln!("freeze front: after the answer: {err:#}");
                let _ = self.freezer.freeze();
            }
        }
    }

    async fn invoke(&self, request: Request) -> anyhow::Result<Vec<u8>> {
        self.freezer.thaw()?;
        let answer = tokio::time::timeout(INVOCATION_TIMEOUT, self.function.invoke(request)).await;
        match answer {
            Ok(answer) => answer,
            Err(_) => {
                self.freezer.freeze()?;
                anyhow::bail!("no answer within {INVOCATION_TIMEOUT:?}")
            }
        }
    }
}

/// A function process that serves HTTP itself, on the port its environment names.
#[derive(Clone, Copy, Debug)]
pub struct Served<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    /// The variable the port goes in.
    pub port_var: &'a str,
    /// A path the process answers with 200 once it is ready.
    pub ready_path: &'a str,
    /// When the platform takes an invocation to be over.
    pub ends: Ends,
}

/// When the invocation of a [`Served`] function is over, for the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    /// With its answer's last byte.
    WithAnswer,
    /// At the `end` that `vercel_runtime` sends on `$VERCEL_IPC_PATH` once
    /// the answer's handler returned and its background work drained.
    VercelIpc,
}

impl<'a> Served<'a> {
    /// The Vercel function `binary`: `$VERCEL_DEV_PORT`, ready when the
    /// runtime answers `/_vercel/ping`, over when its runtime says `end`.
    pub fn vercel(binary: &'a Path) -> Self {
        Self {
            program: binary,
            args: &[],
            port_var: "VERCEL_DEV_PORT",
            ready_path: "/_vercel/ping",
            ends: Ends::VercelIpc,
        }
    }
}

/// An HTTP front over function processes that are frozen between requests.
/// Kills every process when dropped.
pub struct Front {
    addr: SocketAddr,
    instance_addrs: Vec<SocketAddr>,
    freezers: Vec<Freezer>,
    tasks: Vec<JoinHandle<()>>,
    /// The processes stay ours (not reaped, their pids not reused) until
    /// the freezers have killed them.
    _instances: Arc<dyn Send + Sync>,
}

impl Front {
    /// `instances` processes of the Vercel function `binary` (serving HTTP on
    /// `127.0.0.1:$VERCEL_DEV_PORT`) with environment `env`, their output in `logs`.
    pub async fn vercel(
        binary: &Path,
        env: &[(String, String)],
        instances: usize,
        freeze: Freeze,
        logs: &Logs,
    ) -> anyhow::Result<Self> {
        Self::served(&Served::vercel(binary), env, instances, freeze, logs).await
    }

    /// `instances` processes of `served` with environment `env`, their output in `logs`.
    pub async fn served(
        served: &Served<'_>,
        env: &[(String, String)],
        instances: usize,
        freeze: Freeze,
        logs: &Logs,
    ) -> anyhow::Result<Self> {
        let mut started = Vec::new();
        for _ in 0..instances {
            started.push(served::start(served, env, freeze, logs).await?);
        }
        Self::serve(started).await
    }

    /// `instances` Lambda custom-runtime `bootstrap`s (the Netlify function
    /// `binary`), each polling a Runtime API stand-in of its own.
    pub async fn lambda(
        binary: &Path,
        env: &[(String, String)],
        instances: usize,
        freeze: Freeze,
        logs: &Logs,
    ) -> anyhow::Result<Self> {
        let mut started = Vec::new();
        for _ in 0..instances {
            started.push(lambda::start(binary, env, freeze, logs).await?);
        }
        Self::serve(started).await
    }

    /// `127.0.0.1:PORT` that spreads requests over the instances, round robin.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:PORT` that sends every request to instance `i`.
    pub fn instance_addr(&self, i: usize) -> String {
        self.instance_addrs[i].to_string()
    }

    /// How many instances there are.
    pub fn instances(&self) -> usize {
        self.instance_addrs.len()
    }

    async fn serve<F: Function>(instances: Vec<Instance<F>>) -> anyhow::Result<Self> {
        let freezers = instances.iter().map(|i| i.freezer).collect();
        let instances = Arc::new(instances);
        let mut tasks = Vec::new();
        let (addr, task) = listen(instances.clone(), None).await?;
        tasks.push(task);
        let mut instance_addrs = Vec::new();
        for i in 0..instances.len() {
            let (addr, task) = listen(instances.clone(), Some(i)).await?;
            tasks.push(task);
            instance_addrs.push(addr);
        }
        Ok(Self { addr, instance_addrs, freezers, tasks, _instances: instances })
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for freezer in &self.freezers {
            freezer.kill();
        }
    }
}

/// Accepts connections on a fresh loopback port, each request going to
/// instance `pinned`, or to the next one in turn.
async fn listen<F: Function>(
    instances: Arc<Vec<Instance<F>>>,
    pinned: Option<usize>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the front")?;
    let addr = listener.local_addr()?;
    let next = AtomicUsize::new(0);
    let task = tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let i = pinned.unwrap_or_else(|| next.fetch_add(1, Ordering::Relaxed) % instances.len());
            let instances = instances.clone();
            tokio::spawn(async move { exchange(stream, peer, &instances[i]).await });
        }
    });
    Ok((addr, task))
}

/// One request and its answer.
async fn exchange<F: Function>(mut stream: TcpStream, peer: SocketAddr, instance: &Instance<F>) {
    match Request::read(&mut stream, peer).await {
        Ok(request) => instance.serve(request, &mut stream).await,
        Err(err) => reply(&mut stream, Err(err.context("reading the request"))).await,
    }
}

/// Sends the answer and closes; a failure is answered 502 with what went wrong.
async fn reply(stream: &mut TcpStream, answer: anyhow::Result<Vec<u8>>) {
    let answer = answer.unwrap_or_else(|err| {
        let text = format!("freeze front: {err:#}");
        format!("HTTP/1.0 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}", text.len())
            .into_bytes()
    });
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}
