//! A stand-in for Cloudflare Turnstile's siteverify
//! (developers.cloudflare.com/turnstile/get-started/server-side-validation):
//! `POST /turnstile/v0/siteverify` with form fields `secret`, `response` and
//! `remoteip`. A response starting with [`Siteverify::PASSING`] succeeds once;
//! its replay fails with `timeout-or-duplicate`, as Cloudflare's does. A
//! success reports the widget's `hostname` ([`Siteverify::HOSTNAME`], or the
//! one after `@` in the token) and `action` (empty, or the one after `#`):
//! `pass-1@evil.example#login`. A response starting with
//! [`Siteverify::ECHOING`] fails with the secret it was sent among its error
//! codes, as a careless proxy might.

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
    /// Tokens that fail with the secret echoed in `error-codes` start with this.
    pub const ECHOING: &'static str = "echo-";
    /// Where a passing token was solved unless it says otherwise: the
    /// loopback address the tests reach the relay on.
    pub const HOSTNAME: &'static str = "127.0.0.1";

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
    if response.starts_with(Siteverify::ECHOING) {
        let echoed = [form.get("secret").cloned().unwrap_or_default(), "invalid-input-response".to_owned()];
        return Json(serde_json::json!({ "success": false, "error-codes": echoed }));
    }
    let (rest, action) = response.split_once('#').unwrap_or((&response, ""));
    let hostname = rest.split_once('@').map_or(Siteverify::HOSTNAME, |(_, h)| h).to_owned();
    let action = action.to_owned();
    let error = if form.get("secret") != Some(&state.secret) {
        Some("invalid-input-secret")
    } else if !response.starts_with(Siteverify::PASSING) {
        Some("invalid-input-response")
    } else if !state.seen.lock().unwrap_or_else(PoisonError::into_inner).insert(response) {
        Some("timeout-or-duplicate")
    } else {
        None
    };
    let errors: Vec<_> = error.into_iter().collect();
    if errors.is_empty() {
        return Json(
            serde_json::json!({ "success": true, "error-codes": errors, "hostname": hostname, "action": action }),
        );
    }
    Json(serde_json::json!({ "success": false, "error-codes": errors }))
}
