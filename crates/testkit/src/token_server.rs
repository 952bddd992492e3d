//! A fake OAuth2 token endpoint (client-credentials grant, RFC 6749 §4.4), plus a
//! JSON-in/JSON-out token route for testing generic token sources.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value as Json, json};

use crate::serve::{Served, StopSignal};

/// How `expires_in` is written in token responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiresIn {
    /// `"expires_in": 1800` (RFC 6749).
    #[default]
    Number,
    /// `"expires_in": "1800"` (as some providers, e.g. Getty Images, send it).
    String,
    /// No `expires_in` field at all (it is only RECOMMENDED by RFC 6749).
    Omitted,
    /// This JSON text as `expires_in`, and as `expires_at` on the JSON route:
    /// for expiries that are past, absurd or malformed.
    Raw(&'static str),
}

impl ExpiresIn {
    /// The [`Raw`](Self::Raw) value, parsed.
    fn raw(self) -> Option<Json> {
        match self {
            ExpiresIn::Raw(text) => Some(serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_owned()))),
            _ => None,
        }
    }
}

/// What the token server expects and how it answers.
#[derive(Debug, Clone)]
pub struct TokenServerConfig {
    /// The only accepted client id.
    pub client_id: String,
    /// The only accepted client secret.
    pub client_secret: String,
    /// How long issued tokens stay valid (`expires_in` is its whole seconds).
    pub lifetime: Duration,
    /// How `expires_in` is written.
    pub expires_in: ExpiresIn,
    /// Whether tokens hold `/`, `+` and `=`, as base64 tokens do (Getty's):
    /// their percent-, form- and JSON-encoded forms then differ from the token.
    pub punctuated: bool,
}

impl TokenServerConfig {
    /// Accepts `client_id`/`client_secret`; tokens live 30 minutes.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            lifetime: Duration::from_secs(1800),
            expires_in: ExpiresIn::Number,
            punctuated: false,
        }
    }

    /// Sets how long issued tokens stay valid.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Issues tokens shaped like base64 text, with `/`, `+` and `=` in them.
    pub fn punctuated(mut self) -> Self {
        self.punctuated = true;
        self
    }

    /// Sets how `expires_in` is written.
    pub fn expires_in(mut self, format: ExpiresIn) -> Self {
        self.expires_in = format;
        self
    }
}

impl Default for TokenServerConfig {
    /// Client `test-client` with secret `test-secret`.
    fn default() -> Self {
        Self::new("test-client", "test-secret")
    }
}

/// How the token server answers, switchable while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Follows the protocol.
    #[default]
    Normal,
    /// Answers with this HTTP status and a plain-text body.
    Status(u16),
    /// Waits this long, then behaves normally.
    Delay(Duration),
    /// Never answers (until the server is dropped).
    Hang,
    /// Answers 200 with a body that is not JSON.
    Garbage,
    /// Answers 200 with JSON that lacks the token.
    MissingToken,
    /// Answers 400 with an RFC 6749 §5.2 error object.
    OAuthError {
        /// The `error` code, e.g. `invalid_scope`.
        error: String,
        /// The `error_description`.
        description: String,
    },
}

/// A running fake token endpoint on 127.0.0.1. Stops when dropped.
///
/// `POST /oauth2/token` takes a form-encoded `grant_type=client_credentials` with
/// client credentials in HTTP Basic auth (RFC 6749 §2.3.1) or in the
/// `client_id`/`client_secret` form fields. `POST /custom/token` takes
/// `{"key": id, "secret": secret}` and answers `{"data": {"token", "expires_at"}}`.
pub struct TokenServer {
    served: Served,
    state: Arc<TokenState>,
}

impl TokenServer {
    /// Starts on a free port.
    pub async fn start(config: TokenServerConfig) -> anyhow::Result<Self> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn start_on(config: TokenServerConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        let (stop, stop_signal) = Served::signal();
        let state = Arc::new(TokenState {
            config: config.clone(),
            behavior: Mutex::default(),
            held: Mutex::default(),
            calls: AtomicUsize::new(0),
            ledger: Ledger::default(),
            accepted: Mutex::new(vec![config.client_secret.clone()]),
            sent: Mutex::default(),
            last: Mutex::default(),
            stop: stop_signal,
        });
        let router = Router::new()
            .route("/oauth2/token", post(oauth2_token))
            .route("/custom/token", post(custom_token))
            .with_state(state.clone());
        let served = Served::spawn(addr, router, stop).await?;
        Ok(Self { served, state })
    }

    /// Full URL of the OAuth2 token endpoint, `http://127.0.0.1:PORT/oauth2/token`.
    pub fn url(&self) -> String {
        format!("{}/oauth2/token", self.served.base_url())
    }

    /// Full URL of the JSON token route, `http://127.0.0.1:PORT/custom/token`.
    pub fn custom_url(&self) -> String {
        format!("{}/custom/token", self.served.base_url())
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &TokenServerConfig {
        &self.state.config
    }

    /// Token requests received on either route, whatever their outcome.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Every token issued so far, oldest first.
    pub fn issued(&self) -> Vec<String> {
        self.state.ledger.all()
    }

    /// Whether `token` was issued here and has not expired yet.
    pub fn is_valid(&self, token: &str) -> bool {
        self.state.ledger.is_valid(token)
    }

    /// Revokes every token issued so far, as a provider does when it rotates
    /// keys early: the API answers 401 to them, tokens issued later are valid.
    pub fn revoke_issued(&self) {
        self.state.ledger.revoke_all();
    }

    /// The client secrets accepted from now on, every other one revoked (at
    /// first, only the configured `client_secret`): as a provider does while
    /// a secret rotates (two valid), or once one is revoked.
    pub fn accept_secrets(&self, secrets: &[&str]) {
        *lock(&self.state.accepted) = secrets.iter().map(|s| (*s).to_owned()).collect();
    }

    /// The client secret of every request that carried one, oldest first.
    pub fn secrets_sent(&self) -> Vec<String> {
        lock(&self.state.sent).clone()
    }

    /// Changes how the following requests are answered.
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.state.behavior) = behavior;
    }

    /// Form fields of the last request (JSON fields, as text, for `/custom/token`).
    pub fn last_form(&self) -> Vec<(String, String)> {
        lock(&self.state.last).form.clone()
    }

    /// The `Authorization` header of the last request, if it had one.
    pub fn last_authorization(&self) -> Option<String> {
        lock(&self.state.last).authorization.clone()
    }

    /// The raw body of the last request.
    pub fn last_body(&self) -> String {
        lock(&self.state.last).body.clone()
    }

    /// Holds the next token request (on either route) until the returned
    /// [`Hold`] is released or dropped, then answers it by the current behavior.
    pub fn hold_next(&self) -> Hold {
        let (release, held) = tokio::sync::oneshot::channel();
        *lock(&self.state.held) = Some(held);
        Hold(release)
    }

    pub(crate) fn state(&self) -> Arc<TokenState> {
        self.state.clone()
    }
}

/// A token request held by [`TokenServer::hold_next`].
pub struct Hold(tokio::sync::oneshot::Sender<()>);

impl Hold {
    /// Lets the held request be answered.
    pub fn release(self) {
        let _ = self.0.send(());
    }
}

pub(crate) struct TokenState {
    config: TokenServerConfig,
    behavior: Mutex<Behavior>,
    held: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    calls: AtomicUsize,
    ledger: Ledger,
    /// The client secrets accepted.
    accepted: Mutex<Vec<String>>,
    /// The client secret of every request, in order.
    sent: Mutex<Vec<String>>,
    last: Mutex<LastRequest>,
    stop: StopSignal,
}

impl TokenState {
    /// Whether `token` was issued here and has not expired yet.
    pub(crate) fn is_valid(&self, token: &str) -> bool {
        self.ledger.is_valid(token)
    }

    /// Whether `id` and `secret` are accepted.
    fn admits(&self, id: &str, secret: &str) -> bool {
        id == self.config.client_id && lock(&self.accepted).iter().any(|s| s == secret)
    }
}

#[derive(Default)]
struct LastRequest {
    form: Vec<(String, String)>,
    authorization: Option<String>,
    body: String,
}

/// Tokens issued, with their expiry.
#[derive(Default)]
struct Ledger(Mutex<Vec<(String, Instant)>>);

impl Ledger {
    fn issue(&self, lifetime: Duration, punctuated: bool) -> String {
        let token = if punctuated {
            format!("tok_{:014x}/{:014x}+==", fastrand::u64(..) >> 8, fastrand::u64(..) >> 8)
        } else {
            format!("tok_{:032x}", fastrand::u128(..))
        };
        lock(&self.0).push((token.clone(), Instant::now() + lifetime));
        token
    }

    fn all(&self) -> Vec<String> {
        lock(&self.0).iter().map(|(t, _)| t.clone()).collect()
    }

    fn is_valid(&self, token: &str) -> bool {
        let now = Instant::now();
        lock(&self.0).iter().any(|(t, expires)| t == token && now < *expires)
    }

    fn revoke_all(&self) {
        let now = Instant::now();
        for (_, expires) in lock(&self.0).iter_mut() {
            *expires = now;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a request that the current [`Behavior`] lets through is answered.
enum Answer {
    /// By the protocol, issuing a token.
    Token,
    /// By the protocol, but leaving the token out of the response.
    WithoutToken,
}

/// Counts and records a request, then applies the current [`Behavior`]:
/// `Err(response)` is the answer, `Ok` lets the route answer by the protocol.
async fn begin(
    state: &TokenState,
    headers: &HeaderMap,
    body: &Bytes,
    form: Vec<(String, String)>,
    secret: Option<String>,
) -> Result<Answer, Response> {
    state.calls.fetch_add(1, Ordering::SeqCst);
    lock(&state.sent).extend(secret);
    *lock(&state.last) = LastRequest {
        form,
        authorization: headers.get(header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        body: String::from_utf8_lossy(body).into_owned(),
    };
    let held = lock(&state.held).take();
    if let Some(held) = held {
        tokio::select! {
            _ = held => {}
            _ = state.stop.clone().stopped() => return Err(StatusCode::SERVICE_UNAVAILABLE.into_response()),
        }
    }
    let behavior = lock(&state.behavior).clone();
    match behavior {
        Behavior::Normal => Ok(Answer::Token),
        Behavior::MissingToken => Ok(Answer::WithoutToken),
        Behavior::Delay(delay) => {
            tokio::select! {
                _ = tokio::time::sleep(delay) => Ok(Answer::Token),
                _ = state.stop.clone().stopped() => Err(StatusCode::SERVICE_UNAVAILABLE.into_response()),
            }
        }
        Behavior::Hang => {
            state.stop.clone().stopped().await;
            Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
        Behavior::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err((status, format!("token server failure ({code})")).into_response())
        }
        Behavior::Garbage => Err((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Service temporarily unavailable</body></html>",
        )
            .into_response()),
        Behavior::OAuthError { error, description } => Err(oauth_error(StatusCode::BAD_REQUEST, &error, &description)),
    }
}

async fn oauth2_token(State(state): State<Arc<TokenState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let credentials = match basic_credentials(&headers) {
        Some(Ok(pair)) => Some(pair),
        Some(Err(())) => None,
        None => field("client_id").map(|id| (id.to_owned(), field("client_secret").unwrap_or_default().to_owned())),
    };
    let sent = credentials.as_ref().map(|(_, secret)| secret.clone());
    let answer = match begin(&state, &headers, &body, form.clone(), sent).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };

    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body must be application/x-www-form-urlencoded",
        );
    }

    let config = &state.config;
    if !credentials.is_some_and(|(id, secret)| state.admits(&id, &secret)) {
        let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"token\""));
        return response;
    }

    if field("grant_type") != Some("client_credentials") {
        return (StatusCode::BAD_REQUEST, no_store(), axum::Json(json!({ "error": "unsupported_grant_type" })))
            .into_response();
    }

    let lifetime = config.lifetime;
    let mut body = json!({ "token_type": "Bearer" });
    if let Answer::Token = answer {
        body["access_token"] = Json::String(state.ledger.issue(lifetime, state.config.punctuated));
    }
    match config.expires_in {
        ExpiresIn::Number => body["expires_in"] = json!(lifetime.as_secs()),
        ExpiresIn::String => body["expires_in"] = json!(lifetime.as_secs().to_string()),
        ExpiresIn::Omitted => {}
        ExpiresIn::Raw(_) => body["expires_in"] = config.expires_in.raw().unwrap_or_default(),
    }
    (StatusCode::OK, no_store(), axum::Json(body)).into_response()
}

async fn custom_token(State(state): State<Arc<TokenState>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Option<serde_json::Map<String, Json>> = serde_json::from_slice(&body).ok();
    let form = parsed
        .iter()
        .flatten()
        .map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k.clone(), text)
        })
        .collect();
    let sent = parsed.as_ref().and_then(|f| f.get("secret")).and_then(Json::as_str).map(str::to_owned);
    let answer = match begin(&state, &headers, &body, form, sent).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let Some(fields) = parsed else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_request", "message": "expected a JSON object" })),
        )
            .into_response();
    };
    let config = &state.config;
    let field = |name: &str| fields.get(name).and_then(Json::as_str).unwrap_or_default();
    if !state.admits(field("key"), field("secret")) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": "invalid_client", "message": "unknown key or secret" })),
        )
            .into_response();
    }
    let expires_at =
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().saturating_add(config.lifetime).as_secs();
    let mut data = json!({ "expires_at": config.expires_in.raw().unwrap_or_else(|| json!(expires_at)) });
    if let Answer::Token = answer {
        data["token"] = Json::String(state.ledger.issue(config.lifetime, config.punctuated));
    }
    (StatusCode::OK, axum::Json(json!({ "data": data }))).into_response()
}

/// Credentials from `Authorization: Basic ...`: `None` without such a header,
/// `Some(Err)` if it is malformed. Id and secret are form-urlencoded inside the
/// base64 (RFC 6749 §2.3.1), so they are decoded after splitting on `:`.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim()).map_err(|_| ());
    Some(decoded.and_then(|bytes| {
        let text = String::from_utf8(bytes).map_err(|_| ())?;
        let (id, secret) = text.split_once(':').ok_or(())?;
        Ok((form_decode(id)?, form_decode(secret)?))
    }))
}

fn form_decode(part: &str) -> Result<String, ()> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8().map(|s| s.into_owned()).map_err(|_| ())
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, no_store(), axum::Json(json!({ "error": error, "error_description": description }))).into_response()
}

/// RFC 6749 §5.1: token responses must not be cached.
fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")]
}
