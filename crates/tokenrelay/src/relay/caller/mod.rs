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

use base64::Engine as _;
use hmac::Mac as _;
use http::HeaderValue;
use http::header::{self, HeaderMap, HeaderName};
use secrecy::ExposeSecret as _;

use super::error::Kind;
use super::{Mount, RelayError};
use crate::config::relay::{CallerPolicy, Proof};
use crate::store::keys::session::subject as hashed_subject;
use crate::store::{SessionKey, Store};

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

    /// The caller of a request on `upstream` under `policy` by its valid
    /// relay session, if it brings one: a signed cookie, checked without a
    /// network call (so before the rate limit, which may count per caller).
    pub(super) fn session(
        &self,
        store: &Store,
        upstream: &str,
        policy: &CallerPolicy,
        headers: &HeaderMap,
    ) -> Option<Admitted> {
        let binding = binding(&policy.proof, store.session_key());
        let sessions = session::Sessions { key: store.session_key(), mount: &self.mount, upstream, binding: &binding };
        let subject = sessions.check(headers, SystemTime::now())?;
        Some(Admitted { subject, set_cookie: None })
    }

    /// Admits the caller of a request that brought no valid session by the
    /// proof it brings (a JWKS or siteverify call may be made: the rate
    /// limit admits the attempt first), or refuses it with
    /// `caller_unauthorized` (the cause is logged only).
    pub(super) async fn prove(
        &self,
        http: &reqwest::Client,
        store: &Store,
        upstream: &str,
        policy: &CallerPolicy,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<Admitted, RelayError> {
        let binding = binding(&policy.proof, store.session_key());
        let sessions = session::Sessions { key: store.session_key(), mount: &self.mount, upstream, binding: &binding };
        let now = SystemTime::now();
        let proven = match &policy.proof {
            Proof::Jwt { jwks_url, issuer, audience } => match bearer(headers) {
                Some(token) => self
                    .jwks
                    .verify(http, store, jwks_url, issuer, audience, token)
                    .await
                    .map_err(|r| r.as_str().to_owned()),
                None => Err("no session and no bearer token".to_owned()),
            },
            Proof::Turnstile { secret, siteverify_url, hostnames, action } => {
                let token = headers.get(&TURNSTILE_HEADER).and_then(|v| v.to_str().ok());
                let own_host: Vec<String> = request_host(headers).into_iter().collect();
                let hostnames = if hostnames.is_empty() { &own_host } else { hostnames };
                let expected = turnstile::Expected { hostnames, action: action.as_deref() };
                match token {
                    // A Turnstile session has no login: its subject is its own random id.
                    Some(token) => turnstile::verify(http, siteverify_url, secret, token, ip, &expected)
                        .await
                        .map(|()| format!("{:032x}", fastrand::u128(..))),
                    None => Err("no session and no turnstile token".to_owned()),
                }
            }
        };
        match proven {
            Ok(subject) => {
                let subject = hashed_subject(store.namer(), &subject);
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

/// What a relay session is bound to, so that a session earned under one
/// proof is not valid under another: for a JWT its issuer and audience; for
/// Turnstile a keyed hash of the secret (which widget's sitekey; the secret
/// never enters the session's text in clear) with the expected host names
/// and action.
fn binding(proof: &Proof, key: &SessionKey) -> String {
    match proof {
        Proof::Jwt { issuer, audience, .. } => format!("jwt\n{issuer}\n{audience}"),
        Proof::Turnstile { secret, hostnames, action, .. } => {
            let secret = key.mac().chain_update(b"turnstile secret\n").chain_update(secret.expose_secret()).finalize();
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.into_bytes());
            format!("turnstile\n{secret}\n{}\n{}", hostnames.join(","), action.as_deref().unwrap_or_default())
        }
    }
}

/// The host the request was sent to, without its port, from `Host` (the
/// platforms pass the visitor's): where a Turnstile widget on the site's own
/// pages was solved.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let authority: http::uri::Authority = headers.get(header::HOST)?.to_str().ok()?.parse().ok()?;
    Some(authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase())
}

/// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turnstile(secret: &str, action: Option<&str>) -> Proof {
        Proof::Turnstile {
            secret: secret.to_owned().into(),
            siteverify_url: "https://challenges.cloudflare.com/turnstile/v0/siteverify".parse().unwrap(),
            hostnames: Vec::new(),
            action: action.map(str::to_owned),
        }
    }

    #[test]
    fn a_turnstile_session_is_bound_to_its_secret_and_action_never_naming_the_secret() {
        let key = SessionKey::derive(b"k");
        let one = binding(&turnstile("ts-secret-1", None), &key);
        assert_eq!(one, binding(&turnstile("ts-secret-1", None), &key), "stable across requests and instances");
        assert_ne!(one, binding(&turnstile("ts-secret-2", None), &key), "another widget's secret");
        assert_ne!(one, binding(&turnstile("ts-secret-1", Some("search")), &key), "another action");
        assert_ne!(one, binding(&turnstile("ts-secret-1", None), &SessionKey::derive(b"k2")), "keyed");
        assert!(!one.contains("ts-secret-1"), "{one}");
    }

    #[test]
    fn the_request_host_is_read_without_its_port() {
        let host = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
            request_host(&h)
        };
        assert_eq!(host("WWW.Example.com:8443").as_deref(), Some("www.example.com"));
        assert_eq!(host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host("a b"), None);
    }
}
