//! The load generator: HTTP/1.1 on keep-alive connections at a fixed
//! concurrency, one request in flight per connection (a closed loop, as `wrk`
//! does), with a warmup that is not recorded.
//!
//! Connections are opened before the clock starts, and each request's latency
//! runs from handing it to the connection until its whole body is read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::stats::Samples;

/// Where requests go: one server and one request, sent again and again.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Path and query, e.g. `/api/relay/api/search/images?phrase=cat`.
    pub path: String,
    /// Sent as `Authorization` (the direct calls carry the token themselves).
    pub authorization: Option<HeaderValue>,
    /// `GET` without a body, unless set by [`Target::post`].
    method: Method,
    body: Bytes,
}

impl Target {
    /// `GET path`.
    pub fn new(addr: SocketAddr, path: impl Into<String>) -> Self {
        Self { addr, path: path.into(), authorization: None, method: Method::GET, body: Bytes::new() }
    }

    /// `POST path` with `body`.
    pub fn post(addr: SocketAddr, path: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self { method: Method::POST, body: body.into(), ..Self::new(addr, path) }
    }

    pub fn with_authorization(mut self, value: HeaderValue) -> Self {
        self.authorization = Some(value);
        self
    }

    fn request(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut request =
            Request::builder().method(self.method.clone()).uri(&self.path).header(HOST, self.addr.to_string());
        if let Some(value) = &self.authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        Ok(request.body(Full::new(self.body.clone()))?)
    }
}

/// One answered request.
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub latency: Duration,
    pub body: Bytes,
}

/// A keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        // Small requests and answers: without this, Nagle's algorithm adds delay.
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors then
            // surface on the sender, where they are reported.
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, target: &Target) -> anyhow::Result<Reply> {
        let request = target.request()?;
        self.sender.ready().await.context("connection closed")?;
        let started = Instant::now();
        let response = self.sender.send_request(request).await.with_context(|| format!("GET {}", target.path))?;
        let (head, body) = response.into_parts();
        let body = body.collect().await.context("reading the body")?.to_bytes();
        Ok(Reply { status: head.status, headers: head.headers, latency: started.elapsed(), body })
    }
}

/// What one run at a fixed concurrency measured.
#[derive(Default)]
pub struct Measured {
    /// Latencies of the requests started after the warmup.
    pub samples: Samples,
    /// How long the recorded part lasted, until its last answer.
    pub elapsed: Duration,
    /// Every request sent, warmup included (to relate to server-side counters).
    pub sent: u64,
    /// Answers that were not 2xx, warmup included.
    pub failed: u64,
}

impl Measured {
    /// Recorded requests per second.
    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() { 0.0 } else { self.samples.len() as f64 / self.elapsed.as_secs_f64() }
    }

    /// Adds another run of the same target and concurrency.
    pub fn merge(&mut self, other: Measured) {
        self.samples.extend(other.samples);
        self.elapsed += other.elapsed;
        self.sent += other.sent;
        self.failed += other.failed;
    }
}

/// `concurrency` connections, each sending requests back to back for
/// `warmup + measure`; only requests started after the warmup are recorded.
pub async fn run(target: &Target, concurrency: usize, warmup: Duration, measure: Duration) -> anyhow::Result<Measured> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(Connection::open(target.addr).await?);
    }
    let recorded_from = Instant::now() + warmup;
    let end = recorded_from + measure;
    let mut workers = tokio::task::JoinSet::new();
    for mut connection in connections {
        let target = target.clone();
        workers.spawn(async move {
            let mut measured = Measured::default();
            loop {
                let started = Instant::now();
                if started >= end {
                    return anyhow::Ok(measured);
                }
                let reply = connection.send(&target).await?;
                measured.sent += 1;
                if !reply.status.is_success() {
                    measured.failed += 1;
                }
                if started >= recorded_from {
                    measured.samples.push(reply.latency);
                }
            }
        });
    }
    let mut total = Measured::default();
    while let Some(worker) = workers.join_next().await {
        total.merge(worker??);
    }
    total.elapsed = Instant::now().saturating_duration_since(recorded_from);
    Ok(total)
}

/// `n` requests at once, each on its own connection opened beforehand: a
/// stampede of clients. Answers come back in no particular order.
pub async fn burst(target: &Target, n: usize) -> anyhow::Result<Vec<Reply>> {
    let mut connections = Vec::with_capacity(n);
    for _ in 0..n {
        connections.push(Connection::open(target.addr).await?);
    }
    let go = Arc::new(tokio::sync::Barrier::new(n));
    let mut clients = tokio::task::JoinSet::new();
    for mut connection in connections {
        let (target, go) = (target.clone(), go.clone());
        clients.spawn(async move {
            go.wait().await;
            connection.send(&target).await
        });
    }
    let mut replies = Vec::with_capacity(n);
    while let Some(reply) = clients.join_next().await {
        replies.push(reply??);
    }
    Ok(replies)
}
