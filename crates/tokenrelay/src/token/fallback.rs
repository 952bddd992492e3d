//! The previous secret: tried when, and only when, the token endpoint refuses
//! the current one.
//!
//! A secret is rotated in four steps (generate, deploy, verify, revoke: see
//! the README's rotation procedure). Between deploying the new secret and
//! revoking the old one, either may be the one the endpoint accepts: the new
//! one may be mistyped, or not yet active. So a source may name a previous
//! secret beside the current one, and [`retry::fetch`](super::retry::fetch)
//! sends it when the endpoint says the current credentials are bad (a 401,
//! or RFC 6749 §5.2 `invalid_client`: see [`response::rejection`](super::response::rejection)).
//! A timeout, a connection error, a 5xx or a 429 says nothing about the
//! secret: it is retried with the same secret, never the previous one.

use super::{MintedWith, Secret, Source, Token};
use crate::error::Error;

/// The secret to try after `refused` was refused, if any: the previous one,
/// once, after the current one.
pub(super) fn after_refusal(source: &Source, refused: Secret) -> Option<Secret> {
    (refused == Secret::Current && source.has_previous()).then_some(Secret::Previous)
}

/// `token`, marked with the secret that minted it. A token minted with the
/// previous secret is logged as such: that secret is still the one in use
/// and must not be revoked yet.
pub(super) fn minted(upstream: &str, token: Token, secret: Secret) -> Token {
    match secret {
        Secret::Current => token.minted(MintedWith::Current),
        Secret::Previous => {
            tracing::warn!(
                upstream,
                secret = MintedWith::Previous.as_str(),
                "the previous secret minted the token: the current one was refused, so the previous one is still in use; fix the current secret before revoking the previous one"
            );
            token.minted(MintedWith::Previous)
        }
    }
}

/// The error when `last` was refused: both refusals when the current secret
/// (`current`) was refused before it.
pub(super) fn refused(current: Option<Error>, last: Error) -> Error {
    match (current, last) {
        (Some(Error::TokenRejected { upstream, reason }), Error::TokenRejected { reason: previous, .. }) => {
            Error::TokenRejected { upstream, reason: format!("{reason}; the previous secret too: {previous}") }
        }
        (_, last) => last,
    }
}

/// The error when the attempts ran out, saying that the current secret was
/// refused (`current`) before the previous one met the failures of `last`.
pub(super) fn unavailable(current: Option<Error>, last: Error) -> Error {
    match (current, last) {
        (Some(Error::TokenRejected { reason: refused, .. }), Error::TokenUnavailable { upstream, reason }) => {
            Error::TokenUnavailable {
                upstream,
                reason: format!("the current secret was refused ({refused}); with the previous one, {reason}"),
            }
        }
        (_, last) => last,
    }
}
