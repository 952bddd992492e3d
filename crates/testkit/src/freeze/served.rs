//! Functions that serve HTTP themselves ([`Served`]): the Vercel function as
//! its Rust runtime serves locally (`127.0.0.1:$VERCEL_DEV_PORT`), or a Node
//! server. The front forwards each request byte for byte and reads the whole
//! answer (the function closes an HTTP/1.0 connection after it). It freezes a
//! Node server then, and the Vercel function at its runtime's `end`
//! ([`Ends::VercelIpc`]), which comes after the request's background work.
//! The runtime may say `end` before a streamed body's last byte (it waits for
//! the handler and the background work, not the body), so the platform must
//! see the answer through as well: the front freezes at whichever is later.

use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::vercel_ipc::{self, Ipc};
use super::{Ends, Freeze, Freezer, Function, Instance, READY_TIMEOUT, Request, Served};
use crate::Logs;

/// Ports taken between our check and the child's bind are retried this often.
const PORT_ATTEMPTS: usize = 5;
pub(super) struct ServedFunction {
    port: u16,
    freezer: Freezer,
    /// With [`Ends::VercelIpc`]; one invocation at a time holds it.
    ipc: Option<tokio::sync::Mutex<Ipc>>,
}

impl Function for ServedFunction {
    async fn invoke(&self, request: Request) -> anyhow::Result<Vec<u8>> {
        let Some(ipc) = &self.ipc else {
            let answer = exchange(self.port, &request.raw).await;
            self.freezer.freeze()?;
            return answer;
        };
        let raw = ipc.lock().await.invocation(&request.raw)?;
        let answer = exchange(self.port, &raw).await;
        if answer.is_err() {
            // It may never have reached the handler: no `end` to wait for.
            self.freezer.freeze()?;
        }
        answer
    }

    async fn settle(&self) -> anyhow::Result<()> {
        if let Some(ipc) = &self.ipc {
            let ended = ipc.lock().await.end().await;
            self.freezer.freeze()?;
            ended?;
        }
        Ok(())
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
    let ServedProcess { child, port, ipc } = served.spawn(env, logs).await?;
    let freezer = Freezer::of(&child, freeze)?;
    freezer.freeze()?;
    let function = ServedFunction { port, freezer, ipc: ipc.map(tokio::sync::Mutex::new) };
    Ok(Instance { function, freezer, turn: Default::default(), _child: child })
}

/// A running process of a [`Served`] function; killed when dropped.
pub struct ServedProcess {
    child: Child,
    /// Where it serves, on 127.0.0.1.
    pub port: u16,
    /// Its runtime's connection, with [`Ends::VercelIpc`].
    ipc: Option<Ipc>,
}

impl Served<'_> {
    /// Starts a process on a free port with environment `env`, its output in
    /// `logs`, and waits until it answers its readiness ping (and, with
    /// [`Ends::VercelIpc`], said on its IPC socket that it serves).
    pub async fn spawn(&self, env: &[(String, String)], logs: &Logs) -> anyhow::Result<ServedProcess> {
        let program = self.program;
        let ping = format!("GET {} HTTP/1.0\r\n\r\n", self.ready_path);
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::free_port()?;
            let listening = match self.ends {
                Ends::WithAnswer => None,
                Ends::VercelIpc => Some(vercel_ipc::Listening::bind()?),
            };
            let mut command = Command::new(program);
            command
                .args(self.args)
                .env_clear()
                .envs(env.iter().cloned())
                .env(self.port_var, port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            if let Some(listening) = &listening {
                command.env(vercel_ipc::PATH_VAR, listening.path());
            }
            let mut child = command.spawn().with_context(|| format!("spawning {}", program.display()))?;
            logs.capture(child.stdout.take().context("stdout")?);
            logs.capture(child.stderr.take().context("stderr")?);
            let ready = crate::wait_until("the function answers its readiness ping", READY_TIMEOUT, || async {
                exchange(port, ping.as_bytes()).await.is_ok_and(|answer| answer.get(8..13) == Some(b" 200 "))
            });
            tokio::select! {
                ready = ready => {
                    ready.with_context(|| logs.tail(20))?;
                    let ipc = match listening {
                        Some(listening) => Some(listening.accept(port, READY_TIMEOUT).await.with_context(|| logs.tail(20))?),
                        None => None,
                    };
                    return Ok(ServedProcess { child, port, ipc });
                }
                // Exited before answering: most likely the port was taken meanwhile.
                status = child.wait() => eprintln!("{} exited with {status:?} before answering; retrying on another port", program.display()),
            }
        }
        bail!("{} did not start: {}", program.display(), logs.tail(20))
    }
}
