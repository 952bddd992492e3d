//! The token endpoint failure that the lock holder shares through the store,
//! so that other instances fail fast for the cooldown instead of fetching.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A token endpoint failure as shared through the store (never a secret:
/// error reasons are built from codes and statuses and scrubbed).
#[derive(Serialize, Deserialize)]
struct SharedFailure {
    code: String,
    reason: String,
}

/// `err` as stored for the other instances.
pub(super) fn encode(err: &Error) -> String {
    let shared = SharedFailure { code: err.code().to_owned(), reason: reason_of(err) };
    serde_json::to_string(&shared).unwrap_or_default()
}

/// The human reason inside a token error, without the upstream prefix.
fn reason_of(err: &Error) -> String {
    match err {
        Error::TokenRejected { reason, .. }
        | Error::TokenResponseInvalid { reason, .. }
        | Error::TokenUnavailable { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Rebuilds the error another instance shared.
pub(super) fn decode(upstream: &str, raw: &str) -> Option<Error> {
    let f: SharedFailure = serde_json::from_str(raw).ok()?;
    let upstream = upstream.to_owned();
    let reason = format!("{} (shared by another instance; retried after the cooldown)", f.reason);
    Some(match f.code.as_str() {
        "token_rejected" => Error::TokenRejected { upstream, reason },
        "token_response_invalid" => Error::TokenResponseInvalid { upstream, reason },
        _ => Error::TokenUnavailable { upstream, reason },
    })
}
