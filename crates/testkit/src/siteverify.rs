//! A stand-in for Cloudflare Turnstile's siteverify
//! (developers.cloudflare.com/turnstile/get-started/server-side-validation):
//! `POST /turnstile/v0/siteverify` with form fields `secret`, `response` and
//! `remoteip`. A response starting with [`Siteverify::PASSING`] succeeds once;
//! its replay fails with `timeout-or-duplicate`, as Cloudflare's does.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Form, State};
use axum::routing::post;
use axum::{Json, Router};

use crate::serve::Served;

/// The siteverify stand-in; stops when dropped.
pub struct Siteverify {
    served: Served,
    state: Arc<SiteverifyState>,
}

struct SiteverifyState {
    secret: String,
    seen: Mutex<HashSet<String>>,
    calls: Mutex<Vec<BTreeMap<String, String>>>,
}

impl Siteverify {
    /// Tokens that pass (once) start with this.
    pub const PASSING: &'static str = "pass-";

    /// Starts on a free port, accepting only `secret`.
    pub async fn start(secret: &str) -> anyhow::Result<Self> {
        let (stop, _) = Served::signal();
        let state =
            Arc::new(SiteverifyState { secret: secret.to_owned(), seen: Mutex::default(), calls: Mutex::default() });
        let router = Router::new().route("/turnstile/v0/siteverify", post(siteverify)).with_state(state.clone());
        let served = Served::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), router, stop).await?;
        Ok(Self { served, state })
    }

    /// The URL to configure as `siteverify_url`.
    pub fn url(&self) -> String {
        format!("{}/turnstile/v0/siteverify", self.served.base_url())
    }

    /// The form of every call so far, oldest first.
    pub fn calls(&self) -> Vec<BTreeMap<String, String>> {
        self.state.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

async fn siteverify(
    State(state): State<Arc<SiteverifyState>>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Json<serde_json::Value> {
    state.calls.lock().unwrap_or_else(PoisonError::into_inner).push(form.clone());
    let response = form.get("response").cloned().unwrap_or_default();
    let error = if form.get("secret") != Some(&state.secret) {
        Some("invalid-input-secret")
    } else if !response.starts_with(Siteverify::PASSING) {
        Some("invalid-input-response")
    } else if !state.seen.lock().unwrap_or_else(PoisonError::into_inner).insert(response) {
        Some("timeout-or-duplicate")
    } else {
        None
    };
    Json(serde_json::json!({ "success": error.is_none(), "error-codes": error.into_iter().collect::<Vec<_>>() }))
}
