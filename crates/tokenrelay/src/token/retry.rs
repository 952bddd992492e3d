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

#[cfg(test)]
mod tests {
    //! The fallback rule (`fallback`) as `fetch` applies it, against the token endpoint stand-in.

    use secrecy::SecretString;
    use testkit::{Behavior, TokenServer, TokenServerConfig};

    use super::*;
    use crate::param::Param;
    use crate::token::MintedWith;
    use crate::token::oauth2::{ClientAuth, ClientCredentials};

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

    async fn fetch_from(server: &TokenServer, previous: bool) -> Result<Token, Error> {
        fetch(&source(server, previous), &reqwest::Client::new(), "api").await
    }

    #[tokio::test]
    async fn a_refused_current_secret_is_followed_by_the_previous_one_once() {
        let server = server(&[OLD]).await;
        let token = fetch_from(&server, true).await.unwrap();
        assert_eq!(token.minted_with(), MintedWith::Previous);
        assert!(server.is_valid(token.expose()));
        assert_eq!(server.secrets_sent(), [NEW, OLD]);

        server.accept_secrets(&[NEW, OLD]);
        assert_eq!(
            fetch_from(&server, true).await.unwrap().minted_with(),
            MintedWith::Current,
            "the current one first"
        );
        assert_eq!(server.secrets_sent(), [NEW, OLD, NEW]);
    }

    #[tokio::test]
    async fn invalid_client_in_a_400_is_a_refusal_too() {
        let server = server(&[NEW, OLD]).await;
        let refusal = || Behavior::OAuthError { error: "invalid_client".into(), description: "unknown client".into() };
        server.set_behavior(refusal());
        let err = fetch_from(&server, true).await.unwrap_err();
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
            let err = fetch_from(&server, true).await.unwrap_err();
            let sent = server.secrets_sent();
            assert!(!sent.is_empty() && sent.iter().all(|s| s == NEW), "{behavior:?}: sent {sent:?}, then {err}");
        }
    }

    #[tokio::test]
    async fn both_refused_is_one_rejection_naming_both_and_neither_value() {
        let server = server(&["another"]).await;
        let err = fetch_from(&server, true).await.unwrap_err();
        assert_eq!(err.code(), "token_rejected");
        let message = err.to_string();
        assert!(message.contains("; the previous secret too: invalid_client"), "{message}");
        assert!(!message.contains(NEW) && !message.contains(OLD), "{message}");
        assert_eq!(server.secrets_sent(), [NEW, OLD]);
    }

    #[tokio::test]
    async fn without_a_previous_secret_a_refusal_is_final_at_once() {
        let server = server(&[OLD]).await;
        assert_eq!(fetch_from(&server, false).await.unwrap_err().code(), "token_rejected");
        assert_eq!(server.secrets_sent(), [NEW]);
    }
}
