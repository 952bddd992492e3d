//! A stand-in for the Vercel REST API (vercel.com/docs/rest-api), as much of
//! it as `vercel dev` asks for in a linked project (`.vercel/project.json`
//! with `orgId` and `projectId`), given with the CLI's global `--api <url>`
//! and `--token <token>` options:
//!
//! - `GET /v2/user`: the account behind the token (CLI 64 always asks; CLI 48
//!   only for a personal org);
//! - `GET /teams/<orgId>`: the team the project belongs to;
//! - `GET /v9/projects/<projectId>`: the project;
//! - `GET /v3/env/pull/<projectId>[/<target>]`: the project's Development
//!   variables, which `vercel dev` hands to the functions.
//!
//! Every call is recorded. A call with another token is refused with 403, an
//! unknown one with 404, each in the API's error shape and printed on stderr,
//! so that a failing test says what the CLI asked for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::serve::Served;

/// The Vercel API stand-in; stops when dropped.
pub struct VercelApi {
    served: Served,
    state: Arc<ApiState>,
}

/// What the stand-in serves: the linked project and the variables it pulls.
#[derive(Clone, Debug)]
pub struct VercelProject {
    /// `orgId` of `.vercel/project.json`: a team id (`team_…`).
    pub org_id: String,
    /// `projectId` of `.vercel/project.json`.
    pub project_id: String,
    /// The token the CLI must send (`--token`).
    pub token: String,
    /// The project's Development variables, as `vercel env pull` would get them.
    pub env: BTreeMap<String, String>,
    /// The project's framework setting (`nextjs`, …; `None`: Other), which
    /// decides what `vercel dev` runs.
    pub framework: Option<String>,
}

impl VercelProject {
    /// A project of team `team_tokenrelay_local`, with no variables yet.
    pub fn new(project_id: &str, token: &str) -> Self {
        Self {
            org_id: "team_tokenrelay_local".to_owned(),
            project_id: project_id.to_owned(),
            token: token.to_owned(),
            env: BTreeMap::new(),
            framework: None,
        }
    }

    /// Sets the project's framework (`nextjs`, …).
    pub fn framework(mut self, framework: &str) -> Self {
        self.framework = Some(framework.to_owned());
        self
    }

    /// Adds a Development variable.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    /// `.vercel/project.json` linking a directory to this project.
    pub fn link_json(&self) -> String {
        format!("{}\n", json!({ "orgId": self.org_id, "projectId": self.project_id }))
    }
}

/// One call the CLI made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VercelCall {
    /// `GET`, …
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Whether the stand-in knows the call (and the token was right).
    pub answered: bool,
}

struct ApiState {
    project: VercelProject,
    calls: Mutex<Vec<VercelCall>>,
}

impl ApiState {
    fn record(&self, request: &Request, answered: bool) {
        let target = request.uri().path_and_query().map_or_else(|| request.uri().to_string(), ToString::to_string);
        let call = VercelCall { method: request.method().to_string(), target, answered };
        if !answered {
            eprintln!("vercel API stand-in: not answered: {} {}", call.method, call.target);
        }
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).push(call);
    }

    fn authorized(&self, request: &Request) -> bool {
        let sent = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        sent == Some(format!("Bearer {}", self.project.token).as_str())
    }
}

impl VercelApi {
    /// Starts on a free loopback port.
    pub async fn start(project: VercelProject) -> anyhow::Result<Self> {
        Self::start_on(project, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn start_on(project: VercelProject, addr: SocketAddr) -> anyhow::Result<Self> {
        let (stop, _) = Served::signal();
        let state = Arc::new(ApiState { project, calls: Mutex::default() });
        let router = Router::new()
            .route("/v2/user", get(user))
            .route("/teams/{org_id}", get(team))
            .route("/v9/projects/{project_id}", get(project_of))
            .route("/v3/env/pull/{project_id}", get(env_pull))
            .route("/v3/env/pull/{project_id}/{target}", get(env_pull_target))
            .fallback(unknown)
            .layer(axum::middleware::from_fn_with_state(state.clone(), check_token))
            .with_state(state.clone());
        let served = Served::spawn(addr, router, stop).await?;
        Ok(Self { served, state })
    }

    /// The base URL to pass as `--api`.
    pub fn url(&self) -> String {
        self.served.base_url()
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<VercelCall> {
        self.state.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The calls it did not answer, one a line, for a failing test's message.
    pub fn unanswered(&self) -> String {
        let calls = self.calls();
        let lines: Vec<_> =
            calls.iter().filter(|c| !c.answered).map(|c| format!("{} {}", c.method, c.target)).collect();
        if lines.is_empty() { "(none)".to_owned() } else { lines.join("\n") }
    }
}

/// The Vercel API's error body (`{"error":{"code","message"}}`).
fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

async fn check_token(State(state): State<Arc<ApiState>>, request: Request, next: axum::middleware::Next) -> Response {
    if !state.authorized(&request) {
        state.record(&request, false);
        return error(StatusCode::FORBIDDEN, "forbidden", "Not authorized: the stand-in's token was not sent".into());
    }
    next.run(request).await
}

async fn user(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    state.record(&request, true);
    Json(json!({ "user": { "id": "user_tokenrelay_local", "username": "tokenrelay-local", "email": "dev@example.com" } }))
        .into_response()
}

async fn team(State(state): State<Arc<ApiState>>, Path(org_id): Path<String>, request: Request) -> Response {
    let known = org_id == state.project.org_id;
    state.record(&request, known);
    if !known {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no team {org_id}"));
    }
    Json(json!({ "id": org_id, "slug": "tokenrelay-local", "name": "tokenrelay local" })).into_response()
}

async fn project_of(State(state): State<Arc<ApiState>>, Path(project_id): Path<String>, request: Request) -> Response {
    let known = project_id == state.project.project_id;
    state.record(&request, known);
    if !known {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no project {project_id}"));
    }
    let project = &state.project;
    Json(json!({ "id": project_id, "name": "tokenrelay-local", "accountId": project.org_id, "framework": project.framework }))
        .into_response()
}

async fn env_pull(State(state): State<Arc<ApiState>>, Path(project_id): Path<String>, request: Request) -> Response {
    let known = project_id == state.project.project_id;
    state.record(&request, known);
    if !known {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no project {project_id}"));
    }
    Json(json!({ "env": state.project.env })).into_response()
}

async fn env_pull_target(
    State(state): State<Arc<ApiState>>,
    Path((project_id, _target)): Path<(String, String)>,
    request: Request,
) -> Response {
    env_pull(State(state), Path(project_id), request).await
}

async fn unknown(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    state.record(&request, false);
    let message = format!("the stand-in does not know {} {}", request.method(), request.uri());
    error(StatusCode::NOT_FOUND, "not_found", message)
}
