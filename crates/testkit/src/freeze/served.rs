//! Functions that serve HTTP themselves ([`Served`]): the Vercel function as
//! its Rust runtime serves locally (`127.0.0.1:$VERCEL_DEV_PORT`), or a Node
//! server. The front forwards each request byte for byte and reads the whole
//! answer (the function closes an HTTP/1.0 connection after it) before
//! freezing the process.

use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{Freeze, Freezer, Function, Instance, READY_TIMEOUT, Request, Served};
use crate::Logs;

/// Ports taken between our check and the child's bind are retried this often.
const PORT_ATTEMPTS: usize = 5;
pub(super) struct ServedFunction {
    port: u16,
    freezer: Freezer,
}

impl Function for ServedFunction {
    async fn invoke(&self, request: Request) -> anyhow::Result<Vec<u8>> {
        let answer = exchange(self.port, &request.raw).await;
        self.freezer.freeze()?;
        answer
    }
}

async fn exchange(port: u16, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.context("connecting to the function")?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.context("reading the function's answer")?;
    Ok(answer)
}

/// Starts the process, waits until it answers its readiness ping, then freezes it.
pub(super) async fn start(
    served: &Served<'_>,
    env: &[(String, String)],
    freeze: Freeze,
    logs: &Logs,
) -> anyhow::Result<Instance<ServedFunction>> {
    let ServedProcess { child, port } = served.spawn(env, logs).await?;
    let freezer = Freezer::of(&child, freeze)?;
    freezer.freeze()?;
    let function = ServedFunction { port, freezer };
    Ok(Instance { function, freezer, turn: Default::default(), _child: child })
}

/// A running process of a [`Served`] function; killed when dropped.
pub struct ServedProcess {
    child: Child,
    /// Where it serves, on 127.0.0.1.
    pub port: u16,
}

impl Served<'_> {
    /// Starts a process on a free port with environment `env`, its output in
    /// `logs`, and waits until it answers its readiness ping.
    pub async fn spawn(&self, env: &[(String, String)], logs: &Logs) -> anyhow::Result<ServedProcess> {
        let program = self.program;
        let ping = format!("GET {} HTTP/1.0\r\n\r\n", self.ready_path);
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::free_port()?;
            let mut child = Command::new(program)
                .args(self.args)
                .env_clear()
                .envs(env.iter().cloned())
                .env(self.port_var, port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("spawning {}", program.display()))?;
            logs.capture(child.stdout.take().context("stdout")?);
            logs.capture(child.stderr.take().context("stderr")?);
            let ready = crate::wait_until("the function answers its readiness ping", READY_TIMEOUT, || async {
                exchange(port, ping.as_bytes()).await.is_ok_and(|answer| answer.get(8..13) == Some(b" 200 "))
            });
            tokio::select! {
                ready = ready => {
                    ready.with_context(|| logs.tail(20))?;
                    return Ok(ServedProcess { child, port });
                }
                // Exited before answering: most likely the port was taken meanwhile.
                status = child.wait() => eprintln!("{} exited with {status:?} before answering; retrying on another port", program.display()),
            }
        }
        bail!("{} did not start: {}", program.display(), logs.tail(20))
    }
}
