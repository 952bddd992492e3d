//! The platform's side of `vercel_runtime`'s IPC: a Unix socket at
//! `$VERCEL_IPC_PATH` carrying NUL-terminated JSON messages. The runtime
//! connects when it starts, sends `server-started` once it serves HTTP, and
//! for each request that carries the platform's
//! `x-vercel-internal-invocation-id` and `x-vercel-internal-request-id`, sends
//! `end` once its invocation is over: its handler returned and the background
//! work it registered (`wait_until`) drained (vercel_runtime 2.4.1,
//! `src/lib.rs` and `tests/request_lifecycle.rs`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The variable the runtime reads the socket's path from.
pub(crate) const PATH_VAR: &str = "VERCEL_IPC_PATH";
const INVOCATION_ID_HEADER: &str = "x-vercel-internal-invocation-id";
const REQUEST_ID_HEADER: &str = "x-vercel-internal-request-id";

/// A socket for one function process to connect to.
pub(crate) struct Listening {
    listener: UnixListener,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Listening {
    pub(crate) fn bind() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("vercel-ipc-").tempdir().context("creating the IPC directory")?;
        let path = dir.path().join("ipc.sock");
        let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        Ok(Self { listener, path, _dir: dir })
    }

    /// Where the process connects: the value of [`PATH_VAR`].
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The process's connection, once it said it serves HTTP on `port`.
    pub(crate) async fn accept(self, port: u16, timeout: Duration) -> anyhow::Result<Ipc> {
        let Self { listener, _dir, .. } = self;
        let accepted = tokio::time::timeout(timeout, listener.accept()).await;
        let (stream, _) = accepted.context("the function did not connect to $VERCEL_IPC_PATH")??;
        let mut ipc = Ipc { frames: BufReader::new(stream), invocations: 0, _dir };
        let started = tokio::time::timeout(timeout, ipc.frame()).await.context("no server-started message")??;
        ensure!(started["type"] == "server-started", "first IPC message: {started}");
        ensure!(started["payload"]["httpPort"] == port, "server-started on another port: {started}");
        Ok(ipc)
    }
}

/// A function process's IPC connection, one invocation at a time.
pub(crate) struct Ipc {
    frames: BufReader<UnixStream>,
    /// Invocations so far; the last one's request id.
    invocations: u64,
    _dir: tempfile::TempDir,
}

impl Ipc {
    /// `raw`, an HTTP request, with the ids of a new invocation, as the
    /// platform sends it.
    pub(crate) fn invocation(&mut self, raw: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.invocations += 1;
        let id = self.invocations;
        let line_end = raw.windows(2).position(|w| w == b"\r\n").context("no request line")? + 2;
        let ids = format!("{INVOCATION_ID_HEADER}: invocation-{id}\r\n{REQUEST_ID_HEADER}: {id}\r\n");
        Ok([&raw[..line_end], ids.as_bytes(), &raw[line_end..]].concat())
    }

    /// Waits for the `end` of the last invocation.
    pub(crate) async fn end(&mut self) -> anyhow::Result<()> {
        loop {
            let frame = self.frame().await?;
            // Another message, or a late `end` of an invocation given up on.
            if frame["type"] == "end" && frame["payload"]["context"]["requestId"] == self.invocations {
                ensure!(frame["payload"]["error"].is_null(), "the invocation ended with an error: {frame}");
                return Ok(());
            }
        }
    }

    async fn frame(&mut self) -> anyhow::Result<Json> {
        let mut frame = Vec::new();
        self.frames.read_until(0, &mut frame).await.context("reading the IPC socket")?;
        ensure!(frame.pop() == Some(0), "the function closed its IPC connection");
        serde_json::from_slice(&frame).context("an IPC message that is not JSON")
    }
}
