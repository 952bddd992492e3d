//! Reading token endpoint responses: size-capped bodies, status classes and
//! expiry fields that may be numbers or numeric strings.

#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{Failure, describe_transport};
use crate::capped::{self, Unread};
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
    let resp = req.timeout(timeout).send().await.map_err(|e| Failure::Transient(describe_transport(&e, timeout)))?;
    let status = resp.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Failure::Transient(format!("HTTP {status}")));
    }
    match capped::read(resp, MAX_TOKEN_RESPONSE_BYTES).await {
        Ok(body) => Ok((status, body)),
        Err(Unread::TooLarge) => {
            Err(Failure::Transient(format!("response larger than {MAX_TOKEN_RESPONSE_BYTES} bytes")))
        }
        Err(Unread::Transport(e)) => Err(Failure::Transient(describe_transport(&e, timeout))),
    }
}

/// RFC 6749 §5.2 error response.
#[derive(Debug, Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

/// Turns a non-success status into a rejection, quoting the OAuth error
/// code and description when the body is an RFC 6749 §5.2 error. Secrets
/// are scrubbed from the upstream's text before it enters a message.
///
/// The rejection is [`Failure::Refused`] (the credentials are bad, so the
/// previous secret may be tried) only when the endpoint says so in the
/// narrowest terms: HTTP 401 (RFC 9110 §15.5.2, "lacks valid authentication
/// credentials"), or an RFC 6749 §5.2 `invalid_client` error ("client
/// authentication failed"), which §5.2 lets a server send with a 400. Every
/// other rejection is final: a 403, or a 400 such as `invalid_scope` or
/// `unauthorized_client`, says something the other secret would not change.
pub(crate) fn rejection(upstream: &str, status: reqwest::StatusCode, body: &[u8], secrets: &[&str]) -> Failure {
    let oauth = serde_json::from_slice::<OAuthError>(body).ok();
    let refused =
        status == reqwest::StatusCode::UNAUTHORIZED || oauth.as_ref().is_some_and(|e| e.error == "invalid_client");
    let reason = match oauth {
        Some(e) => match e.error_description {
            Some(d) => format!("{} ({}), HTTP {}", e.error, d, status.as_u16()),
            None => format!("{}, HTTP {}", e.error, status.as_u16()),
        },
        None => format!("HTTP {status}"),
    };
    let err = Error::TokenRejected { upstream: upstream.to_owned(), reason: scrub(&reason, secrets) };
    if refused { Failure::Refused(err) } else { Failure::Final(err) }
}

/// A final "invalid response" failure.
pub(crate) fn invalid(upstream: &str, reason: impl Into<String>) -> Failure {
    Failure::Final(Error::TokenResponseInvalid { upstream: upstream.to_owned(), reason: reason.into() })
}

/// The longest token lifetime believed. Anything longer is far more likely a
/// value in the wrong unit (milliseconds where seconds are due) than meant.
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// `seconds` from now; `None` when not representable.
pub(crate) fn after(seconds: f64) -> Option<SystemTime> {
    SystemTime::now().checked_add(Duration::try_from_secs_f64(seconds).ok()?)
}

/// `seconds` after the Unix epoch; `None` when not representable.
pub(crate) fn unix(seconds: f64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(seconds).ok()?)
}

/// Accepts the expiry read from `field` only if it is in the future (a token
/// that arrives expired is never served) and within [`MAX_LIFETIME`].
pub(crate) fn usable(field: &str, expires_at: Option<SystemTime>) -> Result<SystemTime, String> {
    let at = expires_at.ok_or_else(|| format!("{field} is out of range"))?;
    match at.duration_since(SystemTime::now()) {
        Err(_) | Ok(Duration::ZERO) => Err(format!("{field} says the token has already expired")),
        Ok(lifetime) if lifetime > MAX_LIFETIME => {
            Err(format!("{field} is more than 10 years away (milliseconds where seconds are due?)"))
        }
        Ok(_) => Ok(at),
    }
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
    fn expiries_that_are_past_absurd_or_unrepresentable_are_refused() {
        let f = "\"expires_in\"";
        assert_eq!(usable(f, after(0.0)).unwrap_err(), "\"expires_in\" says the token has already expired");
        assert!(usable(f, unix(1.0)).unwrap_err().ends_with("already expired"));
        assert_eq!(usable(f, after(1e300)).unwrap_err(), "\"expires_in\" is out of range");
        assert_eq!(usable(f, unix(f64::MAX)).unwrap_err(), "\"expires_in\" is out of range");
        assert!(usable(f, after(1.7e12)).unwrap_err().contains("more than 10 years away"));
        assert!(usable(f, after(1800.0)).is_ok());
    }

    #[test]
    fn only_a_401_or_invalid_client_says_the_credentials_are_bad() {
        let refused = |status: u16, body: &str| {
            let status = reqwest::StatusCode::from_u16(status).unwrap();
            matches!(rejection("api", status, body.as_bytes(), &[]), Failure::Refused(_))
        };
        assert!(refused(401, ""), "a bare 401");
        assert!(refused(401, r#"{"error":"invalid_request"}"#), "any 401");
        assert!(refused(400, r#"{"error":"invalid_client"}"#), "invalid_client in a 400 (RFC 6749 §5.2)");
        assert!(refused(403, r#"{"error":"invalid_client"}"#), "invalid_client whatever the status");
        assert!(!refused(403, "forbidden"), "a 403 is not about the secret");
        assert!(!refused(400, r#"{"error":"invalid_scope"}"#));
        assert!(!refused(400, r#"{"error":"unauthorized_client"}"#), "authenticated, but not allowed this grant");
        assert!(!refused(400, r#"{"error":"invalid_grant"}"#));
        assert!(!refused(404, "not found"));
    }

    #[test]
    fn rejection_quotes_oauth_error_and_scrubs_secrets() {
        let body = br#"{"error":"invalid_client","error_description":"bad secret hunter2"}"#;
        let Failure::Refused(err) = rejection("getty", reqwest::StatusCode::UNAUTHORIZED, body, &["hunter2"]) else {
            panic!("a 401 refuses the credentials")
        };
        assert_eq!(err.code(), "token_rejected");
        assert_eq!(
            err.to_string(),
            "upstream \"getty\": token endpoint rejected the request: invalid_client (bad secret [REDACTED]), HTTP 401"
        );
    }
}
