//! Reading token endpoint responses: size-capped bodies, status classes and
//! expiry fields that may be numbers or numeric strings.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{Failure, describe_transport};
use crate::error::Error;

/// Token responses are small; anything bigger is not a token response.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// A JSON number or a numeric string: Getty sends `"expires_in": "1800"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Seconds {
    Number(f64),
    Text(String),
}

impl Seconds {
    /// Reads a number of seconds from a JSON value.
    pub(crate) fn of(v: &serde_json::Value) -> Option<f64> {
        Seconds::deserialize(v).ok()?.value()
    }

    pub(crate) fn value(&self) -> Option<f64> {
        let v = match self {
            Seconds::Number(n) => *n,
            Seconds::Text(s) => s.trim().parse().ok()?,
        };
        (v.is_finite() && v >= 0.0).then_some(v)
    }
}

/// Sends a token request and reads its body, classifying transport failures
/// and 5xx/429 as transient.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(reqwest::StatusCode, Vec<u8>), Failure> {
    let mut resp =
        req.timeout(timeout).send().await.map_err(|e| Failure::Transient(describe_transport(&e, timeout)))?;
    let status = resp.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Failure::Transient(format!("HTTP {status}")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Failure::Transient(describe_transport(&e, timeout)))? {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err(Failure::Transient(format!("response larger than {MAX_TOKEN_RESPONSE_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// RFC 6749 §5.2 error response.
#[derive(Debug, Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

/// Turns a non-success status into a final rejection, quoting the OAuth
/// error code and description when the body is an RFC 6749 §5.2 error.
/// Secrets are scrubbed from the upstream's text before it enters a message.
pub(crate) fn rejection(upstream: &str, status: reqwest::StatusCode, body: &[u8], secrets: &[&str]) -> Failure {
    let reason = match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) => match e.error_description {
            Some(d) => format!("{} ({}), HTTP {}", e.error, d, status.as_u16()),
            None => format!("{}, HTTP {}", e.error, status.as_u16()),
        },
        Err(_) => format!("HTTP {status}"),
    };
    Failure::Final(Error::TokenRejected { upstream: upstream.to_owned(), reason: scrub(&reason, secrets) })
}

/// A final "invalid response" failure.
pub(crate) fn invalid(upstream: &str, reason: impl Into<String>) -> Failure {
    Failure::Final(Error::TokenResponseInvalid { upstream: upstream.to_owned(), reason: reason.into() })
}

/// Computes the expiry from a lifetime in seconds.
pub(crate) fn expires_in(seconds: f64) -> SystemTime {
    SystemTime::now() + Duration::from_secs_f64(seconds.min(u32::MAX as f64))
}

/// Replaces every occurrence of a secret in `text`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_owned(), |t, s| t.replace(s, "[REDACTED]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_numbers_and_numeric_strings() {
        let n: Seconds = serde_json::from_str("1800").unwrap();
        let s: Seconds = serde_json::from_str("\"1800\"").unwrap();
        let bad: Seconds = serde_json::from_str("\"soon\"").unwrap();
        assert_eq!(n.value(), Some(1800.0));
        assert_eq!(s.value(), Some(1800.0));
        assert_eq!(bad.value(), None);
    }

    #[test]
    fn rejection_quotes_oauth_error_and_scrubs_secrets() {
        let body = br#"{"error":"invalid_client","error_description":"bad secret hunter2"}"#;
        let Failure::Final(err) = rejection("getty", reqwest::StatusCode::UNAUTHORIZED, body, &["hunter2"]) else {
            panic!("a rejection is final")
        };
        assert_eq!(err.code(), "token_rejected");
        assert_eq!(
            err.to_string(),
            "upstream \"getty\": token endpoint rejected the request: invalid_client (bad secret [REDACTED]), HTTP 401"
        );
    }
}
