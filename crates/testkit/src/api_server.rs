//! A fake third-party API that accepts only live tokens from a [`TokenServer`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value as Json, json};

use crate::TokenServer;
use crate::serve::{Served, StopSignal};
use crate::token_server::TokenState;

/// Largest request body recorded.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Chunk size of `/v3/big` responses.
const CHUNK: [u8; 16 * 1024] = [b'x'; 16 * 1024];

/// One request as the API received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/v3/search/images?phrase=cats`.
    pub uri: String,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split_once('?').map_or(&self.uri, |(path, _)| path)
    }
}

/// A running fake API on 127.0.0.1, under `/v3`. Stops when dropped.
///
/// Every route requires `Authorization: Bearer <token>` with a token that the
/// [`TokenServer`] issued and that has not expired; otherwise 401
/// `{"error":"invalid_token"}`. Routes: `GET /v3/search/images?phrase=`,
/// `ANY /v3/echo/*rest` (answers with the request as JSON; `?status=N` and
/// `?cache_control=V` set the answer's status and `Cache-Control`,
/// `?set-<name>=V` adds header `<name>: V`, `?delay_ms=N` delays it, as a
/// slow API would), `GET /v3/big?bytes=N`
/// (N bytes, streamed), `GET /v3/slow?ms=N`, `GET /v3/cookie` (sets a cookie),
/// `GET /v3/reveal` (the credentials it received in [`REVEALED`] encodings,
/// honouring `Range`), `GET /v3/headers` (headers that act on the origin
/// serving them, beside ordinary API headers), `GET /v3/denied` (always 401,
/// as for a resource the credentials may not see), `GET /v3/busy` (always 429
/// with `Retry-After: 30`, as an API over its own limit).
pub struct ApiServer {
    served: Served,
    state: Arc<ApiState>,
}

impl ApiServer {
    /// Starts on a free port, trusting tokens from `tokens`.
    pub async fn start(tokens: &TokenServer) -> anyhow::Result<Self> {
        Self::start_on(tokens, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`, trusting tokens from `tokens`.
    pub async fn start_on(tokens: &TokenServer, addr: SocketAddr) -> anyhow::Result<Self> {
        let (stop, stop_signal) = Served::signal();
        let state = Arc::new(ApiState {
            tokens: tokens.state(),
            reject_all: AtomicBool::new(false),
            failing: AtomicU16::new(0),
            recorded: Mutex::default(),
            stop: stop_signal,
        });
        let v3 = Router::new()
            .route("/search/images", get(search_images))
            .route("/echo/{*rest}", any(echo))
            .route("/big", get(big))
            .route("/slow", get(slow))
            .route("/cookie", get(cookie))
            .route("/reveal", get(reveal))
            .route("/headers", get(origin_headers))
            .route("/denied", get(denied))
            .route("/busy", get(busy))
            .fallback(not_found);
        let router = Router::new()
            .nest("/v3", v3)
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(state.clone(), record_and_authorize))
            .with_state(state.clone());
        let served = Served::spawn(addr, router, stop).await?;
        Ok(Self { served, state })
    }

    /// Base URL of the API, `http://127.0.0.1:PORT/v3`.
    pub fn url(&self) -> String {
        format!("{}/v3", self.served.base_url())
    }

    /// Every request received so far (including rejected ones), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.recorded).clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        lock(&self.state.recorded).clear();
    }

    /// While `Some(status)`, answers `status` to every authorized request, as
    /// if the API were failing.
    pub fn fail_with(&self, status: Option<u16>) {
        self.state.failing.store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// While `true`, answers 401 to every request, as if all tokens were revoked.
    pub fn reject_all_tokens(&self, reject: bool) {
        self.state.reject_all.store(reject, Ordering::SeqCst);
    }
}

struct ApiState {
    tokens: Arc<TokenState>,
    reject_all: AtomicBool,
    /// A status answered to every authorized request, 0 for none.
    failing: AtomicU16,
    recorded: Mutex<Vec<RecordedRequest>>,
    stop: StopSignal,
}

type Shared = Arc<ApiState>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records the request, then lets it through only with a live bearer token.
async fn record_and_authorize(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            let message = format!("cannot read body: {err}");
            return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": message }))).into_response();
        }
    };
    lock(&state.recorded).push(RecordedRequest {
        method: parts.method.to_string(),
        uri: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    });

    let token =
        parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let authorized = !state.reject_all.load(Ordering::SeqCst) && token.is_some_and(|t| state.tokens.is_valid(t.trim()));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""))],
            axum::Json(json!({ "error": "invalid_token" })),
        )
            .into_response();
    }
    if let Ok(status) = StatusCode::from_u16(state.failing.load(Ordering::SeqCst)) {
        return (status, axum::Json(json!({ "error": "failing" }))).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

async fn search_images(Query(query): Query<HashMap<String, String>>) -> Response {
    let phrase = query.get("phrase").map(String::as_str).unwrap_or_default();
    let images: Vec<Json> = (1..=3).map(|i| json!({ "id": i.to_string(), "title": format!("{phrase} {i}") })).collect();
    axum::Json(json!({ "result_count": images.len(), "images": images })).into_response()
}

async fn echo(
    State(state): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut header_map = Map::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match header_map.get_mut(name.as_str()) {
            Some(Json::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                header_map.insert(name.as_str().to_owned(), Json::String(value));
            }
        }
    }
    let answer = axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": header_map,
        "body": String::from_utf8_lossy(&body),
    }));
    let knobs: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    if let Some(ms) = knobs.get("delay_ms").and_then(|ms| ms.parse().ok()) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = state.stop.clone().stopped() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    let status = knobs.get("status").and_then(|s| s.parse().ok()).and_then(|s| StatusCode::from_u16(s).ok());
    let mut response = (status.unwrap_or(StatusCode::OK), answer).into_response();
    if let Some(v) = knobs.get("cache_control").and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    for (name, value) in knobs.iter().filter_map(|(k, v)| Some((k.strip_prefix("set-")?, v))) {
        if let (Ok(name), Ok(value)) = (header::HeaderName::try_from(name), HeaderValue::from_str(value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

async fn big(Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(total) = query.get("bytes").and_then(|b| b.parse::<usize>().ok()) else {
        return bad_request("bytes must be a number");
    };
    let chunks = (0..total.div_ceil(CHUNK.len())).map(move |i| {
        let len = (total - i * CHUNK.len()).min(CHUNK.len());
        Ok::<_, Infallible>(Bytes::from_static(&CHUNK[..len]))
    });
    ([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(futures_util::stream::iter(chunks)))
        .into_response()
}

async fn slow(State(state): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(ms) = query.get("ms").and_then(|m| m.parse::<u64>().ok()) else {
        return bad_request("ms must be a number");
    };
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => axum::Json(json!({ "slept_ms": ms })).into_response(),
        _ = state.stop.clone().stopped() => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn cookie() -> Response {
    ([(header::SET_COOKIE, "session=stand-in; Path=/; HttpOnly")], axum::Json(json!({ "cookie": "set" })))
        .into_response()
}

/// The fields of a `/v3/reveal` answer: each holds the bearer token or the
/// `Api-Key` as an API might echo it.
pub const REVEALED: [&str; 12] = [
    "token",
    "token_percent_upper",
    "token_percent_lower",
    "token_form",
    "token_json_slash",
    "token_json_u002f",
    "token_json_u002F",
    "bearer_base64",
    "bearer_base64url",
    "token_base64",
    "key_base64",
    "key_percent_upper",
];

/// Credentials echoed in several encodings, in a JSON body written by hand
/// (so that each escape is exactly as listed); `Range: bytes=a-b` gets that slice.
async fn reveal(headers: HeaderMap) -> Response {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).unwrap_or_default().to_owned();
    let bearer = text(header::AUTHORIZATION);
    let token = bearer.strip_prefix("Bearer ").unwrap_or_default().to_owned();
    let key = text(header::HeaderName::from_static("api-key"));
    let percent = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let values = [
        token.clone(),
        percent(&token),
        percent(&token).to_ascii_lowercase(),
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect(),
        token.replace('/', "\\/"),
        token.replace('/', "\\u002f"),
        token.replace('/', "\\u002F"),
        STANDARD.encode(&bearer),
        URL_SAFE.encode(format!("x{bearer}")),
        STANDARD.encode(format!("xy{token}")),
        STANDARD.encode(&key),
        percent(&key),
    ];
    let fields: Vec<String> =
        REVEALED.iter().zip(&values).map(|(name, value)| format!("\"{name}\":\"{value}\"")).collect();
    let body = format!("{{{}}}", fields.join(","));
    let range = text(header::RANGE);
    let slice = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .filter(|(a, b)| a <= b && *b < body.len());
    let etag = format!("\"{}\"", STANDARD.encode(&token));
    match slice {
        Some((a, b)) => (
            StatusCode::PARTIAL_CONTENT,
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::CONTENT_RANGE, format!("bytes {a}-{b}/{}", body.len())),
                (header::ETAG, etag),
            ],
            body[a..=b].to_owned(),
        )
            .into_response(),
        None => ([(header::CONTENT_TYPE, "application/json".to_owned()), (header::ETAG, etag)], body).into_response(),
    }
}

/// Headers that act on the site serving them, beside ones an API client reads.
async fn origin_headers() -> Response {
    let mut response = axum::Json(json!({ "headers": "sent" })).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("clear-site-data", "\"cache\", \"cookies\", \"storage\""),
        ("strict-transport-security", "max-age=63072000; includeSubDomains; preload"),
        ("alt-svc", "h3=\":443\"; ma=86400"),
        ("nel", "{\"report_to\":\"default\",\"max_age\":31536000}"),
        (
            "report-to",
            "{\"group\":\"default\",\"max_age\":31536000,\"endpoints\":[{\"url\":\"https://evil.example/r\"}]}",
        ),
        ("link", "<https://evil.example/x.js>; rel=preload; as=script"),
        ("refresh", "0; url=https://evil.example/"),
        ("location", "https://evil.example/"),
        ("www-authenticate", "Basic realm=\"api\""),
        ("etag", "\"v1\""),
        ("last-modified", "Sun, 29 Nov 2026 09:00:00 GMT"),
        ("retry-after", "7"),
        ("x-ratelimit-remaining", "41"),
        ("ratelimit-policy", "\"default\";q=100;w=60"),
    ] {
        headers.append(header::HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
}

async fn denied() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"insufficient_scope\""))],
        axum::Json(json!({ "error": "insufficient_scope" })),
    )
        .into_response()
}

async fn busy() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, HeaderValue::from_static("30"))],
        axum::Json(json!({ "error": "too_many_requests" })),
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "not_found" }))).into_response()
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": message }))).into_response()
}
