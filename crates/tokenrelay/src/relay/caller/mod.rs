//! Caller proof: on a route with `caller`, the relay serves only a caller
//! that proves it is the site's visitor, with its login's JWT
//! (`Authorization: Bearer <jwt>`, `jwt`) or a Cloudflare Turnstile token
//! (the [`TURNSTILE_HEADER`] header, `turnstile`). Either proof earns a
//! relay session cookie (`session`), and later calls with a valid one need
//! no new proof. None of these headers reaches the upstream: `headers`
//! forwards an allow-list only.
//!
//! What it stops: a JWT stops strangers (not a logged-in abuser); Turnstile
//! stops scripts (not a human farm). Rate limits and budgets bound both.

#![deny(clippy::arithmetic_side_effects)]

mod jwt;
mod session;
mod turnstile;

use std::net::IpAddr;
use std::time::SystemTime;

use http::HeaderValue;
use http::header::{self, HeaderMap, HeaderName};

use super::error::Kind;
use super::{Mount, RelayError};
use crate::config::relay::{CallerPolicy, Proof};
use crate::store::Store;

/// The request header carrying a Turnstile token, named like the form field
/// Cloudflare's widget fills (`cf-turnstile-response`).
pub const TURNSTILE_HEADER: HeaderName = HeaderName::from_static("cf-turnstile-response");

/// The caller as proven: who, and the session cookie to set when the proof
/// was new.
#[derive(Debug)]
pub(super) struct Admitted {
    /// The keyed hash of the login's `sub`, or of a Turnstile session's own
    /// random id; never the subject in clear.
    pub(super) subject: String,
    pub(super) set_cookie: Option<HeaderValue>,
}

/// Checks callers; holds the JWKS of the routes' issuers. One per relay.
#[derive(Debug, Default)]
pub(super) struct Gate {
    jwks: jwt::Jwks,
    /// Where the relay answers: the session cookies' path starts there.
    mount: Mount,
}

impl Gate {
    pub(super) fn new(mount: Mount) -> Self {
        Self { jwks: jwt::Jwks::default(), mount }
    }

    /// Admits the caller of a request on `upstream` under `policy`, or
    /// refuses it with `caller_unauthorized` (the cause is logged only).
    pub(super) async fn admit(
        &self,
        http: &reqwest::Client,
        store: &Store,
        upstream: &str,
        policy: &CallerPolicy,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<Admitted, RelayError> {
        let binding = policy.proof.binding();
        let sessions = session::Sessions { key: store.session_key(), mount: &self.mount, upstream, binding: &binding };
        let now = SystemTime::now();
        if let Some(subject) = sessions.check(headers, now) {
            return Ok(Admitted { subject, set_cookie: None });
        }
        let proven = match &policy.proof {
            Proof::Jwt { jwks_url, issuer, audience } => match bearer(headers) {
                Some(token) => self
                    .jwks
                    .verify(http, store, jwks_url, issuer, audience, token)
                    .await
                    .map_err(|r| r.as_str().to_owned()),
                None => Err("no session and no bearer token".to_owned()),
            },
            Proof::Turnstile { secret, siteverify_url } => {
                let token = headers.get(&TURNSTILE_HEADER).and_then(|v| v.to_str().ok());
                match token {
                    // A Turnstile session has no login: its subject is its own random id.
                    Some(token) => turnstile::verify(http, siteverify_url, secret, token, ip)
                        .await
                        .map(|()| format!("{:032x}", fastrand::u128(..))),
                    None => Err("no session and no turnstile token".to_owned()),
                }
            }
        };
        match proven {
            Ok(subject) => {
                let subject = store.subject(&subject);
                let set_cookie = sessions.issue(&subject, policy.session, now);
                Ok(Admitted { subject, set_cookie })
            }
            Err(cause) => {
                tracing::info!(upstream, cause, "caller refused");
                Err(Kind::CallerUnauthorized.into())
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}
