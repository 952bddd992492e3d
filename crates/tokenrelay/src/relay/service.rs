//! The relay as a [`tower::Service`](tower_service::Service), and the one
//! type a platform shell serves whether or not its config loaded.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::chores::Finish;
use super::error::{misconfigured, panicked};
use super::{Body, Relay};
use crate::config::Env;

/// What [`Relay`]'s and [`Endpoint`]'s `call` return.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<B> Service<Request<B>> for Relay
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    /// Every failure is an answer ([`super::RelayError`]), never a service error.
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let relay = self.clone();
        Box::pin(async move { Ok(relay.handle(request).await) })
    }
}

/// The relay a platform function serves: ready, or misconfigured and then
/// answering every request with 500 `misconfigured` (the cause is logged,
/// never sent). A function must start either way: a process that exits on a
/// bad config gives the visitor the platform's opaque error page instead.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The config and store settings are valid.
    Ready(Relay),
    /// They are not; every request is answered with this error's 500.
    Misconfigured(crate::Error),
}

impl Endpoint {
    /// The relay of `env` ([`Relay::from_env`]), or why there is none.
    pub fn from_env(env: &Env) -> Self {
        Relay::from_env(env).into()
    }

    /// See [`Relay::max_request_bytes`]; none while misconfigured (every
    /// request is refused before its body is read).
    pub fn max_request_bytes(&self) -> u64 {
        match self {
            Self::Ready(relay) => relay.max_request_bytes(),
            Self::Misconfigured(_) => 0,
        }
    }

    /// Answers one request; see [`Relay::handle`].
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (response, chores) = self.handle_apart(request).await;
        response.map(|body| body.ending_after(chores))
    }

    /// Answers one request, its chores apart; see [`Relay::handle_apart`].
    pub(crate) async fn handle_apart<B>(&self, request: Request<B>) -> (Response<Body>, Option<Finish>)
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self {
            Self::Ready(relay) => relay.handle_apart(request).await,
            Self::Misconfigured(err) => (misconfigured(err), None),
        }
    }

    /// The answer to a request whose [`handle`](Self::handle) panicked (a
    /// bug), for a shell that catches the panic to keep its process serving:
    /// 500 `internal_error`, logged without the panic's message.
    pub fn panicked() -> Response<Body> {
        panicked()
    }

    /// Answers one request with the whole body; see [`Relay::handle_buffered`].
    pub async fn handle_buffered<B>(&self, request: Request<B>) -> Response<Bytes>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self {
            Self::Ready(relay) => relay.handle_buffered(request).await,
            Self::Misconfigured(err) => misconfigured(err),
        }
    }
}

impl From<crate::Result<Relay>> for Endpoint {
    fn from(result: crate::Result<Relay>) -> Self {
        result.map_or_else(Self::Misconfigured, Self::Ready)
    }
}

impl<B> Service<Request<B>> for Endpoint
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let endpoint = self.clone();
        Box::pin(async move { Ok(endpoint.handle(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_misconfigured_endpoint_answers_500_without_the_cause() {
        let env = Env::from_pairs([("TOKENRELAY_CONFIG", "/nonexistent/tokenrelay.toml")]);
        let mut endpoint = Endpoint::from_env(&env);
        assert!(matches!(endpoint, Endpoint::Misconfigured(_)));
        let request = Request::get("/api/relay/getty/x").body(Full::new(Bytes::new())).unwrap();
        let response = endpoint.call(request).await.unwrap();
        assert_eq!(response.status(), 500);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"config_unreadable\""), "{text}");
        assert!(!text.contains("nonexistent"), "the answer names the cause: {text}");
    }
}
