//! A local stand-in for a Slack or Discord incoming webhook: `POST /hook`
//! with a JSON body. It records every body it accepted and answers `204`,
//! as Discord does (Slack answers `200 ok`; the relay treats any 2xx as
//! delivered). It can be told to fail its next deliveries with `500`, to
//! show that a failed delivery is retried.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};

use crate::serve::Served;

/// The webhook stand-in; stops when dropped.
pub struct WebhookReceiver {
    served: Served,
    state: Arc<Received>,
}

#[derive(Default)]
struct Received {
    accepted: Mutex<Vec<serde_json::Value>>,
    /// Deliveries to refuse with 500 before accepting again.
    failing: AtomicUsize,
    refused: AtomicUsize,
}

impl WebhookReceiver {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let (stop, _) = Served::signal();
        let state = Arc::new(Received::default());
        let router = Router::new().route("/hook", post(receive)).with_state(state.clone());
        let served = Served::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), router, stop).await?;
        Ok(Self { served, state })
    }

    /// The URL to configure as the webhook.
    pub fn url(&self) -> String {
        format!("{}/hook", self.served.base_url())
    }

    /// Every body accepted so far, oldest first.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.state.accepted.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Refuses the next `n` deliveries with 500.
    pub fn fail_next(&self, n: usize) {
        self.state.failing.store(n, Ordering::SeqCst);
    }

    /// How many deliveries were refused.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

async fn receive(State(state): State<Arc<Received>>, Json(body): Json<serde_json::Value>) -> StatusCode {
    let failing = state.failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if failing.is_ok() {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    state.accepted.lock().unwrap_or_else(PoisonError::into_inner).push(body);
    StatusCode::NO_CONTENT
}
