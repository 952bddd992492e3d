//! A Cloudflare Turnstile token, checked with siteverify
//! (developers.cloudflare.com/turnstile/get-started/server-side-validation):
//! the secret, the token and the visitor's address go in, `success`, the
//! `hostname` the widget was solved on and its `action` come back. A token is
//! good once: a replayed one gets `timeout-or-duplicate`. A token solved on
//! another site (how tokens are farmed) or for another widget's action is
//! refused although siteverify says `success`.

#![deny(clippy::arithmetic_side_effects)]

use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::capped;

/// Longest a siteverify call may take.
const SITEVERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest token Cloudflare issues (its docs: 2048 characters).
const MAX_TOKEN_LEN: usize = 2048;
/// Largest siteverify answer read: Cloudflare's is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// The error codes Cloudflare documents for siteverify (server-side
/// validation, "Error codes"). Only these reach the log: anything else in an
/// answer is logged as [`UNKNOWN_CODE`], so a stand-in or proxy that echoes
/// what it was sent (the secret) cannot put it there.
const ERROR_CODES: [&str; 7] = [
    "missing-input-secret",
    "invalid-input-secret",
    "missing-input-response",
    "invalid-input-response",
    "bad-request",
    "timeout-or-duplicate",
    "internal-error",
];
/// What an error code outside [`ERROR_CODES`] is logged as.
const UNKNOWN_CODE: &str = "unknown";

#[derive(serde::Deserialize)]
struct Verdict {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
    hostname: Option<String>,
    action: Option<String>,
}

/// What a good token must have been solved for.
pub(super) struct Expected<'a> {
    /// The host names it may have been solved on (lower case).
    pub(super) hostnames: &'a [String],
    /// The widget's `action`, when the route names one.
    pub(super) action: Option<&'a str>,
}

/// Whether Cloudflare says `token` is a fresh, valid proof for `expected`;
/// the reason for a refusal for the log, built only from fixed words and
/// [`ERROR_CODES`], never from the answer's own text.
pub(super) async fn verify(
    http: &reqwest::Client,
    siteverify_url: &Url,
    secret: &SecretString,
    token: &str,
    ip: Option<IpAddr>,
    expected: &Expected<'_>,
) -> Result<(), String> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err("token missing or too long".to_owned());
    }
    let ip = ip.map(|ip| ip.to_string());
    let mut form = vec![("secret", secret.expose_secret()), ("response", token)];
    if let Some(ip) = &ip {
        form.push(("remoteip", ip));
    }
    let response = http
        .post(siteverify_url.clone())
        .form(&form)
        .timeout(SITEVERIFY_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("siteverify unreachable: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("siteverify answered {}", response.status()));
    }
    let unreadable = || "siteverify answer unreadable".to_owned();
    let body = capped::read(response, MAX_ANSWER_BYTES).await.map_err(|_| unreadable())?;
    let verdict: Verdict = serde_json::from_slice(&body).map_err(|_| unreadable())?;
    if !verdict.success {
        return Err(known_codes(&verdict.error_codes));
    }
    let solved_on = verdict.hostname.as_deref().unwrap_or_default();
    if !expected.hostnames.iter().any(|h| h.eq_ignore_ascii_case(solved_on)) {
        return Err("hostname_mismatch".to_owned());
    }
    if expected.action.is_some_and(|a| verdict.action.as_deref() != Some(a)) {
        return Err("action_mismatch".to_owned());
    }
    Ok(())
}

/// `codes` as the log may show them: each one Cloudflare documents, anything else [`UNKNOWN_CODE`].
fn known_codes(codes: &[String]) -> String {
    let mut shown: Vec<&str> = Vec::new();
    for code in codes {
        let code = ERROR_CODES.iter().copied().find(|k| k == code).unwrap_or(UNKNOWN_CODE);
        if !shown.contains(&code) {
            shown.push(code);
        }
    }
    if shown.is_empty() { "refused without error codes".to_owned() } else { shown.join(",") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_documented_error_codes_are_shown() {
        let codes = |c: &[&str]| known_codes(&c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(codes(&["timeout-or-duplicate"]), "timeout-or-duplicate");
        assert_eq!(codes(&["the-secret-itself", "invalid-input-secret", "x y", "\n"]), "unknown,invalid-input-secret");
        assert_eq!(codes(&[]), "refused without error codes");
    }
}
