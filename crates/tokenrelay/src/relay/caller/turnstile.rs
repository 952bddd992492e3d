//! A Cloudflare Turnstile token, checked with siteverify
//! (developers.cloudflare.com/turnstile/get-started/server-side-validation):
//! the secret, the token and the visitor's address go in, `success` comes
//! back. A token is good once: a replayed one gets `timeout-or-duplicate`.

#![deny(clippy::arithmetic_side_effects)]

use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Longest a siteverify call may take.
const SITEVERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest token Cloudflare issues (its docs: 2048 characters).
const MAX_TOKEN_LEN: usize = 2048;

#[derive(serde::Deserialize)]
struct Verdict {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

/// Whether Cloudflare says `token` is a fresh, valid proof; the reason for a
/// refusal (its error codes, or why it could not be asked) for the log.
pub(super) async fn verify(
    http: &reqwest::Client,
    siteverify_url: &Url,
    secret: &SecretString,
    token: &str,
    ip: Option<IpAddr>,
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
    let verdict: Verdict = response.json().await.map_err(|_| "siteverify answer unreadable".to_owned())?;
    if verdict.success { Ok(()) } else { Err(verdict.error_codes.join(",")) }
}
