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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;
    use testkit::{Behavior, TokenServer, TokenServerConfig};

    use super::*;
    use crate::param::Param;
    use crate::token::oauth2::{ClientAuth, ClientCredentials};
    use crate::token::retry;

    const NEW: &str = "secret-new-5d1e";
    const OLD: &str = "secret-old-a7c4";

    fn secret(name: &str, value: &str) -> Param {
        Param::Env { name: name.to_owned(), value: SecretString::from(value.to_owned()) }
    }

    /// An OAuth2 source on `server` whose current secret is [`NEW`], with [`OLD`] as its previous one if `previous`.
    fn source(server: &TokenServer, previous: bool) -> Source {
        Source::OAuth2(ClientCredentials {
            url: server.url().parse().unwrap(),
            client_id: Param::Literal("id".to_owned()),
            client_secret: secret("SECRET", NEW),
            previous_client_secret: previous.then(|| secret("SECRET_PREVIOUS", OLD)),
            auth: ClientAuth::Basic,
            scope: None,
            audience: None,
            extra: Vec::new(),
            default_lifetime: None,
            timeout: Duration::from_millis(300),
        })
    }

    async fn server(accepted: &[&str]) -> TokenServer {
        let server = TokenServer::start(TokenServerConfig::new("id", NEW)).await.unwrap();
        server.accept_secrets(accepted);
        server
    }

    async fn fetch(server: &TokenServer, previous: bool) -> Result<Token, Error> {
        retry::fetch(&source(server, previous), &reqwest::Client::new(), "api").await
    }

    #[tokio::test]
    async fn a_refused_current_secret_is_followed_by_the_previous_one_once() {
        let server = server(&[OLD]).await;
        let token = fetch(&server, true).await.unwrap();
        assert_eq!(token.minted_with(), MintedWith::Previous);
        assert!(server.is_valid(token.expose()));
        assert_eq!(server.secrets_sent(), [NEW, OLD]);

        server.accept_secrets(&[NEW, OLD]);
        assert_eq!(fetch(&server, true).await.unwrap().minted_with(), MintedWith::Current, "the current one first");
        assert_eq!(server.secrets_sent(), [NEW, OLD, NEW]);
    }

    #[tokio::test]
    async fn invalid_client_in_a_400_is_a_refusal_too() {
        let server = server(&[NEW, OLD]).await;
        let refusal = || Behavior::OAuthError { error: "invalid_client".into(), description: "unknown client".into() };
        server.set_behavior(refusal());
        let err = fetch(&server, true).await.unwrap_err();
        assert_eq!(err.code(), "token_rejected");
        assert_eq!(server.secrets_sent(), [NEW, OLD], "both tried: the stand-in refuses every secret here");
    }

    #[tokio::test]
    async fn failures_that_say_nothing_of_the_secret_never_send_the_previous_one() {
        let cases = [
            Behavior::Status(500),
            Behavior::Status(503),
            Behavior::Status(429),
            Behavior::Status(403),
            Behavior::Hang,
            Behavior::OAuthError { error: "invalid_scope".into(), description: "no such scope".into() },
            Behavior::OAuthError { error: "unauthorized_client".into(), description: "grant not allowed".into() },
        ];
        for behavior in cases {
            let server = server(&[OLD]).await;
            server.set_behavior(behavior.clone());
            let err = fetch(&server, true).await.unwrap_err();
            let sent = server.secrets_sent();
            assert!(!sent.is_empty() && sent.iter().all(|s| s == NEW), "{behavior:?}: sent {sent:?}, then {err}");
        }
    }

    #[tokio::test]
    async fn both_refused_is_one_rejection_naming_both_and_neither_value() {
        let server = server(&["another"]).await;
        let err = fetch(&server, true).await.unwrap_err();
        assert_eq!(err.code(), "token_rejected");
        let message = err.to_string();
        assert!(message.contains("; the previous secret too: invalid_client"), "{message}");
        assert!(!message.contains(NEW) && !message.contains(OLD), "{message}");
        assert_eq!(server.secrets_sent(), [NEW, OLD]);
    }

    #[tokio::test]
    async fn without_a_previous_secret_a_refusal_is_final_at_once() {
        let server = server(&[OLD]).await;
        assert_eq!(fetch(&server, false).await.unwrap_err().code(), "token_rejected");
        assert_eq!(server.secrets_sent(), [NEW]);
    }
}
