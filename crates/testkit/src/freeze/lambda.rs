//! The Netlify function as AWS Lambda runs it: a custom-runtime `bootstrap`
//! long-polls the Runtime API for an event and posts its answer back
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>). Each
//! bootstrap gets a stand-in of that API of its own. A request to the front
//! becomes the API Gateway v1 ("REST API") proxy event Netlify sends, and the
//! bootstrap is frozen the moment it posts its response, before the front
//! even sees it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::{Freeze, Freezer, Function, INVOCATION_TIMEOUT, Instance, READY_TIMEOUT, Request};
use crate::Logs;
use crate::serve::{Served, StopSignal};

const PREFIX: &str = "/2018-06-01/runtime";
/// Netlify sets it from the connection, replacing whatever the visitor sent.
const CLIENT_IP_HEADER: &str = "x-nf-client-connection-ip";
/// Response headers the front writes itself.
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// What the bootstrap posted for one invocation.
type Outcome = anyhow::Result<String>;

pub(super) struct Lambda {
    runtime: Arc<Runtime>,
    _served: Served,
}

/// The Runtime API's state for one bootstrap.
struct Runtime {
    events: mpsc::UnboundedSender<Event>,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// The bootstrap has asked for its first event: it is initialised.
    polled: AtomicBool,
    init_error: Mutex<Option<String>>,
    freezer: OnceLock<Freezer>,
    stop: StopSignal,
}

struct Event {
    id: String,
    body: String,
}

impl Function for Lambda {
    async fn invoke(&self, request: Request) -> anyhow::Result<Vec<u8>> {
        let id = format!("{:032x}", fastrand::u128(..));
        let (answered, answer) = oneshot::channel();
        lock(&self.runtime.pending).insert(id.clone(), answered);
        let body = event(&request).to_string();
        self.runtime.events.send(Event { id, body }).map_err(|_| anyhow!("the runtime API stopped"))?;
        let answer = answer.await.context("the runtime API stopped")??;
        render(&answer)
    }

    /// Frozen when it posted its answer.
    async fn settle(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts a Runtime API and the bootstrap polling it; freezes the bootstrap
/// once it has asked for its first event.
pub(super) async fn start(
    binary: &Path,
    env: &[(String, String)],
    freeze: Freeze,
    logs: &Logs,
) -> anyhow::Result<Instance<Lambda>> {
    let (stop, stop_signal) = Served::signal();
    let (events, queue) = mpsc::unbounded_channel();
    let runtime = Arc::new(Runtime {
        events,
        queue: tokio::sync::Mutex::new(queue),
        pending: Mutex::default(),
        polled: AtomicBool::new(false),
        init_error: Mutex::default(),
        freezer: OnceLock::new(),
        stop: stop_signal,
    });
    let router = Router::new()
        .route(&format!("{PREFIX}/invocation/next"), get(next))
        .route(&format!("{PREFIX}/invocation/{{id}}/response"), post(response))
        .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
        .route(&format!("{PREFIX}/init/error"), post(init_error))
        .with_state(runtime.clone());
    let served = Served::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), router, stop).await?;
    let api = served.base_url().trim_start_matches("http://").to_owned();
    let task_root = binary.parent().unwrap_or(Path::new("/"));
    // The variables Lambda sets for a custom runtime (lambda_runtime's Config
    // reads them; it panics without AWS_LAMBDA_FUNCTION_NAME).
    let mut child = Command::new(binary)
        .current_dir(task_root)
        .env_clear()
        .envs(env.iter().cloned())
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "relay")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/relay")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stand-in")
        .env("LAMBDA_TASK_ROOT", task_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    logs.capture(child.stdout.take().context("stdout")?);
    logs.capture(child.stderr.take().context("stderr")?);
    let freezer = Freezer::of(&child, freeze)?;
    let _ = runtime.freezer.set(freezer);
    let initialised = crate::wait_until("the bootstrap polls for an event", READY_TIMEOUT, || async {
        runtime.polled.load(Ordering::SeqCst) || lock(&runtime.init_error).is_some()
    });
    tokio::select! {
        initialised = initialised => initialised.with_context(|| logs.tail(20))?,
        status = child.wait() => bail!("the bootstrap exited with {status:?} before polling: {}", logs.tail(20)),
    }
    if let Some(reported) = lock(&runtime.init_error).clone() {
        bail!("the bootstrap reported an init error: {reported}");
    }
    freezer.freeze()?;
    Ok(Instance { function: Lambda { runtime, _served: served }, freezer, turn: Default::default(), _child: child })
}

/// `GET /invocation/next`: the next event, when there is one.
async fn next(State(runtime): State<Arc<Runtime>>) -> Response {
    runtime.polled.store(true, Ordering::SeqCst);
    let mut queue = runtime.queue.lock().await;
    let event = tokio::select! {
        event = queue.recv() => event,
        _ = runtime.stop.clone().stopped() => None,
    };
    let Some(event) = event else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let deadline = SystemTime::now() + INVOCATION_TIMEOUT;
    let deadline_ms = deadline.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis();
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("lambda-runtime-aws-request-id", event.id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:relay".to_owned()),
        ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".to_owned()),
    ];
    let mut response = event.body.into_response();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    response
}

async fn response(State(runtime): State<Arc<Runtime>>, UrlPath(id): UrlPath<String>, body: String) -> StatusCode {
    answered(&runtime, &id, Ok(body))
}

async fn error(State(runtime): State<Arc<Runtime>>, UrlPath(id): UrlPath<String>, body: String) -> StatusCode {
    answered(&runtime, &id, Err(anyhow!("the function reported an error: {body}")))
}

async fn init_error(State(runtime): State<Arc<Runtime>>, body: String) -> StatusCode {
    *lock(&runtime.init_error) = Some(body);
    StatusCode::ACCEPTED
}

/// The invocation is over: the bootstrap is frozen before anything else
/// happens, as Lambda freezes an environment whose handler returned.
fn answered(runtime: &Runtime, id: &str, outcome: Outcome) -> StatusCode {
    let frozen = runtime.freezer.get().map_or(Ok(()), |freezer| freezer.freeze());
    let Some(waiting) = lock(&runtime.pending).remove(id) else { return StatusCode::NOT_FOUND };
    let _ = waiting.send(frozen.and(outcome));
    StatusCode::ACCEPTED
}

/// The API Gateway v1 proxy event Netlify sends for `request` (the fields
/// `tokenrelay::netlify` reads, as `netlify dev` fills them, plus the
/// visitor's address in `x-nf-client-connection-ip`).
fn event(request: &Request) -> Json {
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    let mut multi_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &request.headers {
        let name = name.to_ascii_lowercase();
        if name != CLIENT_IP_HEADER {
            multi_headers.entry(name).or_default().push(value.clone());
        }
    }
    multi_headers.insert(CLIENT_IP_HEADER.to_owned(), vec![request.peer.ip().to_string()]);
    let headers: BTreeMap<&String, &String> =
        multi_headers.iter().filter_map(|(name, values)| Some((name, values.last()?))).collect();
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()).into_owned() {
        params.entry(name).or_default().push(value);
    }
    let single: BTreeMap<&String, &String> =
        params.iter().filter_map(|(name, values)| Some((name, values.last()?))).collect();
    let (body, is_base64_encoded) = match std::str::from_utf8(&request.body) {
        _ if request.body.is_empty() => (Json::Null, false),
        Ok(text) => (Json::String(text.to_owned()), false),
        Err(_) => (Json::String(BASE64.encode(&request.body)), true),
    };
    json!({
        "path": path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "rawQuery": query,
        "queryStringParameters": single,
        "multiValueQueryStringParameters": params,
        "body": body,
        "isBase64Encoded": is_base64_encoded,
    })
}

/// The function's answer (`statusCode`, headers, a string body).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status_code: u16,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    multi_value_headers: HashMap<String, Vec<String>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

/// The answer as the HTTP/1.0 response Netlify's edge would send.
fn render(text: &str) -> anyhow::Result<Vec<u8>> {
    let answer: Answer = serde_json::from_str(text).context("the function's answer is not API Gateway's shape")?;
    let body = answer.body.unwrap_or_default();
    let body = if answer.is_base64_encoded { BASE64.decode(&body).context("a bad base64 body")? } else { body.into() };
    let status = StatusCode::from_u16(answer.status_code).context("a bad statusCode")?;
    let mut out = format!("HTTP/1.0 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or_default());
    let single = answer.headers.iter().map(|(name, value)| (name, std::slice::from_ref(value)));
    let multi = answer.multi_value_headers.iter().map(|(name, values)| (name, values.as_slice()));
    for (name, values) in single.chain(multi) {
        if FRAMING.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        for value in values {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    Ok(bytes)
}
