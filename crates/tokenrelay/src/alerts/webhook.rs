//! Posting an event to the incoming webhook: one JSON `POST` within a
//! timeout. Any 2xx is delivered (Slack answers `200 ok`, Discord `204`).

use std::time::Duration;

use super::event::Event;
use crate::config::alerts::Webhook;

/// Why a delivery failed. Never holds the URL: who holds it can post to the channel.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("the webhook answered HTTP {0}")]
    Status(u16),
    #[error("the webhook did not answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("the webhook could not be reached: {0}")]
    Transport(String),
}

/// Posts `event` to `webhook` with `http`, within `timeout`.
pub(crate) async fn post(
    http: &reqwest::Client,
    webhook: &Webhook,
    event: &Event,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let sent = http.post(webhook.expose()).json(&event.body()).timeout(timeout).send().await;
    match sent {
        Ok(answer) if answer.status().is_success() => Ok(()),
        Ok(answer) => Err(DeliveryError::Status(answer.status().as_u16())),
        Err(e) if e.is_timeout() => Err(DeliveryError::Timeout(timeout)),
        // The source only: reqwest's own Display names the URL.
        Err(e) => Err(DeliveryError::Transport(
            std::error::Error::source(&e).map_or_else(|| "request failed".to_owned(), ToString::to_string),
        )),
    }
}
