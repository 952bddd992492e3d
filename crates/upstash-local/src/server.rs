//! The HTTP side: routes, authentication, counters and the running-server handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::command::{self, BodyError, Command, ScriptFlags};
use crate::reply::{Encoding, entry_json, to_json};
use crate::store::{Store, StoreError, Timeouts};

/// Largest request body accepted (Upstash's own limit is in the same range).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Configuration for an Upstash-compatible server in front of one Redis.
#[derive(Debug, Clone)]
pub struct UpstashLocal {
    redis_url: String,
    token: String,
    timeouts: Timeouts,
    script_flags: ScriptFlags,
}

impl UpstashLocal {
    /// A server for `redis_url` that accepts `Authorization: Bearer <token>`.
    pub fn new(redis_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            token: token.into(),
            timeouts: Timeouts::default(),
            script_flags: ScriptFlags::default(),
        }
    }

    /// Forwards scripts to Redis unchanged, as serverless-redis-http (SRH)
    /// does, instead of dropping Upstash's `allow-key-locking` flag: Redis
    /// then refuses a script that carries it, and a client can be tested
    /// against what SRH or any plain-Redis REST proxy does.
    pub fn forward_script_flags(mut self) -> Self {
        self.script_flags = ScriptFlags::Forward;
        self
    }

    /// How long to wait when connecting to Redis (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// How long to wait for Redis to answer (default 10 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.response = timeout;
        self
    }

    /// Serves on `listener` in a background task until the handle is dropped.
    ///
    /// Fails only if the Redis URL is invalid; an unreachable Redis is logged and
    /// retried on each request.
    pub async fn start(self, listener: TcpListener) -> anyhow::Result<Handle> {
        let store = Store::new(&self.redis_url, self.timeouts, self.script_flags)
            .map_err(|e| anyhow::anyhow!("invalid redis url {:?}: {e}", self.redis_url))?;
        if let Err(err) = store.ping().await {
            tracing::warn!(redis = %self.redis_url, error = %err, "redis not reachable yet");
        }
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState { store, token: self.token.clone(), counts: Arc::default() });
        let counts = state.counts.clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router(state))
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "upstash-local server stopped");
            }
        });
        Ok(Handle { addr, token: self.token, counts, stop: Some(stop_tx), task: Some(task) })
    }

    /// Binds `addr` (use port 0 for a free port) and serves on it.
    pub async fn bind(self, addr: SocketAddr) -> anyhow::Result<Handle> {
        let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        self.start(listener).await
    }
}

/// Starts a server on `listener` for `redis_url` with the given bearer token.
pub async fn start(listener: TcpListener, redis_url: &str, token: String) -> anyhow::Result<Handle> {
    UpstashLocal::new(redis_url, token).start(listener).await
}

/// A running server. Dropping it stops the server.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    token: String,
    counts: Arc<Counts>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Handle {
    /// Base URL for clients, e.g. `http://127.0.0.1:8079`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// HTTP requests received, whatever their outcome.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// Redis commands forwarded to Redis; each pipeline or transaction entry counts once.
    pub fn commands(&self) -> u64 {
        self.counts.commands.load(Ordering::Relaxed)
    }

    /// HTTP requests that added to a counter: an `INCRBY`, alone or in a
    /// script (`EVAL`), anywhere in the request. A round trip that adds to
    /// several counters counts once.
    pub fn counting_requests(&self) -> u64 {
        self.counts.counting.load(Ordering::Relaxed)
    }

    /// Sets every counter back to zero.
    pub fn reset_counts(&self) {
        self.counts.requests.store(0, Ordering::Relaxed);
        self.counts.commands.store(0, Ordering::Relaxed);
        self.counts.counting.store(0, Ordering::Relaxed);
    }

    /// Stops accepting requests and waits (up to 5 s) for in-flight ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    commands: AtomicU64,
    counting: AtomicU64,
}

impl Counts {
    /// Counts `commands` of one request, and the request among those that
    /// add to a counter if one of them does.
    fn served(&self, commands: &[Command]) {
        self.commands.fetch_add(commands.len() as u64, Ordering::Relaxed);
        if commands.iter().any(adds_to_a_counter) {
            self.counting.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `INCRBY`, or a script that calls it.
fn adds_to_a_counter(command: &Command) -> bool {
    let name = command.name().to_ascii_uppercase();
    let mentions = |arg: &Vec<u8>| arg.windows(6).any(|w| w.eq_ignore_ascii_case(b"INCRBY"));
    name == "INCRBY" || (name == "EVAL" && command.0.get(1).is_some_and(mentions))
}

struct AppState {
    store: Store,
    token: String,
    counts: Arc<Counts>,
}

type Shared = Arc<AppState>;

/// A request body, or why it could not be read.
type RawBody = Result<Bytes, BytesRejection>;

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", post(single))
        .route("/pipeline", post(pipeline))
        .route("/multi-exec", post(multi_exec))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count_and_authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Counts every request and rejects those without the right bearer token.
async fn count_and_authorize(State(state): State<Shared>, request: Request, next: Next) -> Response {
    state.counts.requests.fetch_add(1, Ordering::Relaxed);
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if presented != Some(state.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    next.run(request).await
}

async fn single(State(state): State<Shared>, headers: HeaderMap, body: RawBody) -> Response {
    let encoding = encoding(&headers);
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unreadable(rejection),
    };
    let command = match command::parse_single(&body) {
        Ok(command) => command,
        Err(err) => return bad_body(err),
    };
    state.counts.served(std::slice::from_ref(&command));
    match state.store.run(&command).await {
        Ok(Ok(value)) => ok(json!({ "result": to_json(value, encoding) })),
        Ok(Err(message)) => error(StatusCode::BAD_REQUEST, &message),
        Err(err) => store_error(err),
    }
}

async fn pipeline(state: State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    batch(state, headers, body, false).await
}

async fn multi_exec(state: State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    batch(state, headers, body, true).await
}

async fn batch(State(state): State<Shared>, headers: HeaderMap, body: Bytes, atomic: bool) -> Response {
    let encoding = encoding(&headers);
    let commands = match command::parse_pipeline(&body) {
        Ok(commands) => commands,
        Err(err) => return bad_body(err),
    };
    state.counts.served(&commands);
    match state.store.run_batch(&commands, atomic).await {
        Ok(outcomes) => ok(Json::Array(outcomes.into_iter().map(|outcome| entry_json(outcome, encoding)).collect())),
        Err(err) => store_error(err),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found: use POST /, POST /pipeline or POST /multi-exec")
}

fn encoding(headers: &HeaderMap) -> Encoding {
    Encoding::from_header(headers.get("upstash-encoding").map(|v| v.as_bytes()))
}

fn ok(body: Json) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// A body that could not be read at all (too large, connection cut).
fn unreadable(rejection: BytesRejection) -> Response {
    error(rejection.status(), &rejection.body_text())
}

fn bad_body(err: BodyError) -> Response {
    error(StatusCode::BAD_REQUEST, &err.to_string())
}

fn store_error(err: StoreError) -> Response {
    match err {
        StoreError::Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
        StoreError::Rejected(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}
