//! Bounded retries with exponential backoff and full jitter.

use std::time::Duration;

use super::{Failure, Secret, Source, Token, fallback};
use crate::error::Error;

/// How many times a transient failure is tried in all.
pub(crate) const ATTEMPTS: u32 = 3;
/// First backoff; each later one doubles, and a random part of it is slept
/// ("full jitter") so instances that failed together do not retry together.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(200);

/// The most slept before `attempt` (1-based after the first): doubling from [`BACKOFF_BASE`].
fn ceiling(attempt: u32) -> Duration {
    BACKOFF_BASE * 2u32.pow(attempt - 1)
}

/// The most slept between attempts, in all.
pub(crate) fn max_backoff() -> Duration {
    (1..ATTEMPTS).map(ceiling).sum()
}

/// The longest [`fetch`] takes when every attempt runs into `timeout`.
pub(crate) fn worst_case(timeout: Duration) -> Duration {
    timeout.saturating_mul(ATTEMPTS).saturating_add(max_backoff())
}

/// Fetches a token, retrying transient failures up to [`ATTEMPTS`] times
/// in all. A refusal of the current secret switches to the previous one at
/// once, within the same attempts ([`fallback`]), so a previous secret never
/// lengthens the worst-case fetch. The final error names the upstream and the
/// last cause, never a secret.
pub(crate) async fn fetch(source: &Source, http: &reqwest::Client, upstream: &str) -> Result<Token, Error> {
    let mut secret = Secret::Current;
    let mut refusal: Option<Error> = None;
    let mut last = String::new();
    let mut backoff = 0;
    let mut failures = 0;
    for attempt in 0..ATTEMPTS {
        if backoff > 0 {
            tokio::time::sleep(ceiling(backoff).mul_f64(fastrand::f64())).await;
        }
        match source.fetch_once(http, upstream, secret).await {
            Ok(token) => return Ok(fallback::minted(upstream, token, secret)),
            Err(Failure::Final(err)) => return Err(err),
            Err(Failure::Refused(err)) => match fallback::after_refusal(source, secret) {
                Some(previous) => {
                    tracing::warn!(
                        upstream,
                        code = err.code(),
                        "the token endpoint refused the current secret; trying the previous one"
                    );
                    refusal = Some(err);
                    secret = previous;
                    backoff = 0;
                }
                None => return Err(fallback::refused(refusal, err)),
            },
            Err(Failure::Transient(cause)) => {
                tracing::warn!(upstream, attempt = attempt + 1, cause = %cause, "token endpoint failed");
                last = cause;
                backoff += 1;
                failures += 1;
            }
        }
    }
    Err(fallback::unavailable(
        refusal,
        Error::TokenUnavailable {
            upstream: upstream.to_owned(),
            reason: format!("token endpoint failed {failures} times, last: {last}"),
        },
    ))
}
