//! Bounded retries with exponential backoff and full jitter.

use std::time::Duration;

use super::{Failure, Source, Token};
use crate::error::Error;

/// How many times a transient failure is tried in all.
pub(crate) const ATTEMPTS: u32 = 3;
/// First backoff; each later one doubles, and a random part of it is slept
/// ("full jitter") so instances that failed together do not retry together.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(200);

/// Fetches a token, retrying transient failures up to [`ATTEMPTS`] times.
/// The final error names the upstream and the last cause, never a secret.
pub(crate) async fn fetch(source: &Source, http: &reqwest::Client, upstream: &str) -> Result<Token, Error> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let ceiling = BACKOFF_BASE * 2u32.pow(attempt - 1);
            tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
        }
        match source.fetch_once(http, upstream).await {
            Ok(token) => return Ok(token),
            Err(Failure::Final(err)) => return Err(err),
            Err(Failure::Transient(cause)) => {
                tracing::warn!(upstream, attempt = attempt + 1, cause = %cause, "token endpoint failed");
                last = cause;
            }
        }
    }
    Err(Error::TokenUnavailable {
        upstream: upstream.to_owned(),
        reason: format!("token endpoint failed {ATTEMPTS} times, last: {last}"),
    })
}
