//! The 401 retry: on a 401, invalidate the token (compare-and-delete, so a
//! late 401 never drops a newer token) and call once more, through every
//! layer below, so the retry is admitted and counted as a call of its own.
//!
//! When the broker keeps the token (too young, or the upstream's
//! invalidation budget is spent: see [`Broker::invalidate`]), when the key is
//! static, or when the fresh token is refused too, the upstream's own 401 is
//! the answer: a new token cannot cure it, and rotating on every request
//! would let any visitor hammer the token endpoint. A 401 that says the token
//! itself is no longer accepted (`WWW-Authenticate: Bearer
//! error="invalid_token"`, RFC 6750 §3.1, read by `challenge`) drops it
//! whatever its age, within the same hourly budget
//! ([`Broker::invalidate_revoked`]).
//!
//! Request bodies are buffered (bounded by `relay.max_request_bytes`) before
//! the first call, so every request is replayable; the second call is the
//! only retry.

use std::future::Future;

use http::StatusCode;

use super::{Call, ColdPlan, ColdRead, Cx, Exchange};
use crate::broker::Broker;
use crate::relay::challenge;
use crate::relay::error::{Kind, RelayError};
use crate::relay::outgoing::Outgoing;
use crate::token::{Provenance, Token};

/// Who decides whether a refused token is dropped: the [`Broker`].
pub(in crate::relay) trait Invalidate: Send + Sync {
    /// Drops `token` of `upstream` unless the broker keeps it; `revoked` when
    /// the upstream said the token itself is no longer accepted.
    fn invalidate(
        &self,
        upstream: &str,
        token: &Token,
        revoked: bool,
    ) -> impl Future<Output = crate::Result<bool>> + Send;
}

impl Invalidate for Broker {
    async fn invalidate(&self, upstream: &str, token: &Token, revoked: bool) -> crate::Result<bool> {
        if revoked {
            self.invalidate_revoked(upstream, token).await
        } else {
            Broker::invalidate(self, upstream, token).await
        }
    }
}

/// Calls `inner` once more with a fresh token after a 401.
#[derive(Clone)]
pub(in crate::relay) struct RetryOn401<S, I = Broker> {
    inner: S,
    tokens: I,
}

impl<S, I> RetryOn401<S, I> {
    pub(in crate::relay) fn new(inner: S, tokens: I) -> Self {
        Self { inner, tokens }
    }
}

impl<S: Call, I: Invalidate> Call for RetryOn401<S, I> {
    async fn call(&self, out: &Outgoing<'_>, cx: &mut Cx<'_>) -> Result<Exchange, RelayError> {
        let name = out.upstream.name();
        let first = self.inner.call(out, cx).await?;
        if first.response.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        // A static key cannot be refreshed: retrying would send the same key.
        let dropped = match first.token.outcome() {
            Provenance::Static => false,
            _ => {
                let revoked = challenge::token_revoked(first.response.headers());
                // Boxed: a 401's store trip stays out of every warm call's future.
                Box::pin(self.tokens.invalidate(name, &first.token, revoked)).await.map_err(Kind::Token)?
            }
        };
        if !dropped {
            tracing::info!(upstream = name, "upstream answered 401 and the token was kept; passing the 401 on");
            return Ok(first);
        }
        tracing::info!(upstream = name, "upstream answered 401; token invalidated, retrying once");
        let fresh = self.inner.call(out, cx).await?;
        if fresh.response.status() == StatusCode::UNAUTHORIZED {
            tracing::warn!(upstream = name, "upstream refused a fresh token too; passing its 401 on");
        }
        Ok(fresh)
    }

    fn plan<'a>(&'a self, out: &Outgoing<'_>, plan: &mut ColdPlan<'a>) {
        self.inner.plan(out, plan);
    }

    fn learn(&self, out: &Outgoing<'_>, read: &mut ColdRead) {
        self.inner.learn(out, read);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http::Method;

    use super::*;
    use crate::relay::call::stand_in::{self, Canned, Trace, Upstream};

    const OK: Canned = (200, &[], "ok");
    const REFUSED: Canned = (401, &[], "no");
    const REVOKED: Canned = (401, &[("www-authenticate", "Bearer error=\"invalid_token\"")], "revoked");

    /// Drops a token (or keeps it) as told, recording each request.
    #[derive(Default)]
    struct Tokens {
        drops: bool,
        asked: Mutex<Vec<bool>>,
    }

    impl Invalidate for Tokens {
        async fn invalidate(&self, _upstream: &str, _token: &Token, revoked: bool) -> crate::Result<bool> {
            self.asked.lock().unwrap().push(revoked);
            Ok(self.drops)
        }
    }

    async fn status_after(upstream: &Upstream, tokens: &Tokens) -> u16 {
        let dir = tempfile::tempdir().unwrap();
        let broker = stand_in::broker(dir.path(), r#"routes = [{ path = "/x" }]"#);
        let out = stand_in::outgoing(&broker, &["x"], Method::GET);
        let retry = RetryOn401::new(upstream.clone(), tokens);
        retry.call(&out, &mut Trace::default().cx()).await.unwrap().response.status().as_u16()
    }

    impl<T: Invalidate> Invalidate for &T {
        async fn invalidate(&self, upstream: &str, token: &Token, revoked: bool) -> crate::Result<bool> {
            (*self).invalidate(upstream, token, revoked).await
        }
    }

    #[tokio::test]
    async fn a_401_invalidates_the_token_and_calls_once_more() {
        let (upstream, tokens) = (Upstream::answering(&[REFUSED, OK]), Tokens { drops: true, ..Tokens::default() });
        assert_eq!(status_after(&upstream, &tokens).await, 200);
        assert_eq!(upstream.calls(), 2, "the retry is a second call through the layers below");
        assert_eq!(*tokens.asked.lock().unwrap(), [false]);
    }

    #[tokio::test]
    async fn a_kept_token_passes_the_401_on_without_a_retry() {
        let (upstream, tokens) = (Upstream::answering(&[REFUSED, OK]), Tokens::default());
        assert_eq!(status_after(&upstream, &tokens).await, 401);
        assert_eq!(upstream.calls(), 1);
        assert_eq!(tokens.asked.lock().unwrap().len(), 1, "the broker was asked and kept it");
    }

    #[tokio::test]
    async fn a_static_key_is_never_invalidated() {
        let key = Token::new("static-key", None).from(Provenance::Static);
        let upstream = Upstream::answering(&[REFUSED, OK]).with_token(key);
        let tokens = Tokens { drops: true, ..Tokens::default() };
        assert_eq!(status_after(&upstream, &tokens).await, 401);
        assert_eq!(upstream.calls(), 1);
        assert!(tokens.asked.lock().unwrap().is_empty(), "nothing to refresh");
    }

    #[tokio::test]
    async fn a_revoked_token_is_dropped_as_revoked_and_a_second_401_is_the_answer() {
        let (upstream, tokens) =
            (Upstream::answering(&[REVOKED, REFUSED]), Tokens { drops: true, ..Tokens::default() });
        assert_eq!(status_after(&upstream, &tokens).await, 401);
        assert_eq!(upstream.calls(), 2, "one retry, never two");
        assert_eq!(*tokens.asked.lock().unwrap(), [true], "the challenge said the token is revoked");
    }
}
