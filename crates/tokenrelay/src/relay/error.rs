//! Every way a relayed request can fail, and the one place that maps each to
//! an HTTP status and a JSON body `{ "error": { "code", "message" } }`.
//!
//! Messages name the cause and never contain a secret or the outgoing URL
//! (which may carry the token as a query parameter).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::error::Error;

crate::stable_codes! {
    /// The codes only the relay answers with (besides the core's
    /// [`ErrorCode`](crate::ErrorCode)s of token and config failures).
    pub enum RelayCode {
        /// No route of the upstream matches the path.
        RouteNotFound = "route_not_found",
        /// The route does not allow the method.
        MethodNotAllowed = "method_not_allowed",
        /// The path is refused as sent.
        PathRejected = "path_rejected",
        /// The query is refused (the token's own parameter).
        QueryRejected = "query_rejected",
        /// Another origin, or a cross-site request without an allowed one.
        OriginForbidden = "origin_forbidden",
        /// The route needs a caller proof that was missing or invalid.
        CallerUnauthorized = "caller_unauthorized",
        /// The client's rate limit is spent for this window.
        RateLimited = "rate_limited",
        /// The site's budget of upstream calls is spent for this window.
        BudgetExhausted = "budget_exhausted",
        /// The upstream asked every caller to wait.
        UpstreamCoolingDown = "upstream_cooling_down",
        /// The request body is over `max_request_bytes`.
        BodyTooLarge = "body_too_large",
        /// The request body could not be read.
        BodyUnreadable = "body_unreadable",
        /// A `GET` or `HEAD` carried a body.
        BodyNotAllowed = "body_not_allowed",
        /// The upstream's answer is over `max_response_bytes`.
        ResponseTooLarge = "response_too_large",
        /// The upstream did not answer within `relay.timeout`.
        UpstreamTimeout = "upstream_timeout",
        /// The upstream could not be reached.
        UpstreamUnreachable = "upstream_unreachable",
        /// The relay failed on this request (a bug: it panicked); the process serves on.
        InternalError = "internal_error",
    }
}

/// Why the relay refused or failed a request. [`code`](RelayError::code) is
/// stable; the message says what to change.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}")]
pub struct RelayError {
    kind: Kind,
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Kind {
    #[error("no relay route here: paths look like /api/relay/<upstream>/<path>")]
    NotMounted,
    #[error("unknown upstream \"{0}\"")]
    UnknownUpstream(String),
    #[error("upstream \"{0}\" has no route for this path")]
    RouteNotFound(String),
    #[error("method {method} is not allowed here; allowed: {}", list(allowed))]
    MethodNotAllowed { method: Method, allowed: Vec<Method> },
    #[error("path rejected: {0}")]
    PathRejected(String),
    #[error("query rejected: {0}")]
    QueryRejected(String),
    #[error("origin not allowed: add it to [relay] allowed_origins to call this relay from another site")]
    OriginForbidden,
    #[error(
        "cross-site request without an allowed Origin (Sec-Fetch-Site): only pages of allowed origins may call this relay"
    )]
    CrossSiteForbidden,
    /// The cause (expired, wrong audience, replayed…) goes to the log only.
    #[error("this route needs proof of the caller: sign in, or complete the challenge, and retry")]
    CallerUnauthorized,
    #[error("too many requests; retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("the site's budget of calls to this upstream is spent; retry after {}s", retry_after.as_secs())]
    BudgetExhausted { retry_after: Duration },
    #[error("the upstream asked to be called again later; retry after {}s", retry_after.as_secs())]
    UpstreamCoolingDown { retry_after: Duration },
    #[error("request body is larger than the limit of {0} bytes (relay.max_request_bytes)")]
    BodyTooLarge(u64),
    #[error("request body could not be read")]
    BodyUnreadable,
    /// RFC 9110 §9.3.1: a body on `GET` has no defined meaning, so an answer to
    /// one could not be told apart from the body-less request's.
    #[error("a {0} request may not carry a body: put the parameters in the query")]
    BodyNotAllowed(Method),
    #[error("upstream response is larger than the limit of {0} bytes (relay.max_response_bytes)")]
    ResponseTooLarge(u64),
    #[error("upstream did not answer within {} (relay.timeout)", humantime::format_duration(*.0))]
    UpstreamTimeout(Duration),
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// Details go to the log only: the browser learns the code.
    #[error("could not obtain an access token for this upstream; see the function logs")]
    Token(Error),
    #[error("the relay is not configured correctly; see the function logs")]
    Misconfigured(Error),
    #[error("the relay failed on this request; see the function logs")]
    Internal,
}

impl From<Kind> for RelayError {
    fn from(kind: Kind) -> Self {
        Self { kind }
    }
}

impl RelayError {
    /// Whether no token could be had for the call.
    pub(crate) fn is_token(&self) -> bool {
        matches!(self.kind, Kind::Token(_))
    }

    /// A stable machine-readable code, e.g. `path_rejected`: a
    /// [`RelayCode`], or the core [`Error`]'s code for token and config failures.
    pub fn code(&self) -> &'static str {
        let code = match &self.kind {
            Kind::NotMounted | Kind::RouteNotFound(_) => RelayCode::RouteNotFound,
            Kind::UnknownUpstream(_) => return crate::ErrorCode::UnknownUpstream.as_str(),
            Kind::MethodNotAllowed { .. } => RelayCode::MethodNotAllowed,
            Kind::PathRejected(_) => RelayCode::PathRejected,
            Kind::QueryRejected(_) => RelayCode::QueryRejected,
            Kind::OriginForbidden | Kind::CrossSiteForbidden => RelayCode::OriginForbidden,
            Kind::CallerUnauthorized => RelayCode::CallerUnauthorized,
            Kind::RateLimited { .. } => RelayCode::RateLimited,
            Kind::BudgetExhausted { .. } => RelayCode::BudgetExhausted,
            Kind::UpstreamCoolingDown { .. } => RelayCode::UpstreamCoolingDown,
            Kind::BodyTooLarge(_) => RelayCode::BodyTooLarge,
            Kind::BodyUnreadable => RelayCode::BodyUnreadable,
            Kind::BodyNotAllowed(_) => RelayCode::BodyNotAllowed,
            Kind::ResponseTooLarge(_) => RelayCode::ResponseTooLarge,
            Kind::UpstreamTimeout(_) => RelayCode::UpstreamTimeout,
            Kind::UpstreamUnreachable(_) => RelayCode::UpstreamUnreachable,
            Kind::Internal => RelayCode::InternalError,
            Kind::Token(e) | Kind::Misconfigured(e) => return e.code(),
        };
        code.as_str()
    }

    /// Tells `alerts` what this refusal of a request to `upstream` (a
    /// configured one; `None` when the request named none) means: probing
    /// (an unknown upstream or route, a rejected path), or a token endpoint
    /// failing.
    pub(crate) fn alert(&self, upstream: Option<&str>, alerts: &crate::alerts::Alerts) {
        match (&self.kind, upstream) {
            (Kind::NotMounted | Kind::UnknownUpstream(_) | Kind::RouteNotFound(_) | Kind::PathRejected(_), _) => {
                alerts.probed(upstream);
            }
            (
                Kind::Token(
                    Error::TokenUnavailable { .. } | Error::TokenRejected { .. } | Error::TokenResponseInvalid { .. },
                ),
                Some(upstream),
            ) => alerts.token_failing(upstream),
            _ => {}
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match &self.kind {
            Kind::NotMounted | Kind::UnknownUpstream(_) | Kind::RouteNotFound(_) => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Kind::PathRejected(_) | Kind::QueryRejected(_) | Kind::BodyUnreadable | Kind::BodyNotAllowed(_) => {
                StatusCode::BAD_REQUEST
            }
            Kind::OriginForbidden | Kind::CrossSiteForbidden => StatusCode::FORBIDDEN,
            Kind::CallerUnauthorized => StatusCode::UNAUTHORIZED,
            Kind::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Kind::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::ResponseTooLarge(_) | Kind::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            Kind::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Kind::Token(Error::TokenUnavailable { .. })
            | Kind::BudgetExhausted { .. }
            | Kind::UpstreamCoolingDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Token(_) => StatusCode::BAD_GATEWAY,
            Kind::Misconfigured(_) | Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error of an upstream call that got no answer, or whose answer's
    /// body failed ([`UpstreamClient::send`](crate::broker::UpstreamClient)),
    /// described without its URL.
    pub(crate) fn from_send(e: &crate::broker::SendError, timeout: Duration) -> Self {
        match e {
            crate::broker::SendError::TimedOut => Kind::UpstreamTimeout(timeout).into(),
            e if e.is_connect() => Kind::UpstreamUnreachable("connection failed".to_owned()).into(),
            e => Kind::UpstreamUnreachable(format!("request failed: {e}")).into(),
        }
    }

    /// Whether the upstream (or its token endpoint) failed or may not be
    /// called (budget spent, cooling down), rather than the request: what
    /// `stale_if_error` covers.
    pub(crate) fn is_upstream_failure(&self) -> bool {
        matches!(
            self.kind,
            Kind::UpstreamTimeout(_)
                | Kind::UpstreamUnreachable(_)
                | Kind::Token(_)
                | Kind::BudgetExhausted { .. }
                | Kind::UpstreamCoolingDown { .. }
        )
    }

    /// The underlying core error with its full reason, for the log.
    pub(crate) fn detail(&self) -> Option<&Error> {
        match &self.kind {
            Kind::Token(e) | Kind::Misconfigured(e) => Some(e),
            _ => None,
        }
    }

    /// The JSON error response, in any body type made from bytes.
    pub(crate) fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let body = serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut response = Response::new(B::from(Bytes::from(body.to_string())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        match &self.kind {
            Kind::MethodNotAllowed { allowed, .. } => {
                if let Ok(v) = HeaderValue::from_str(&list(allowed)) {
                    headers.insert(header::ALLOW, v);
                }
            }
            // RFC 9110 §10.2.3: delay-seconds, rounded up so a client never retries early.
            Kind::RateLimited { retry_after }
            | Kind::BudgetExhausted { retry_after }
            | Kind::UpstreamCoolingDown { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        response
    }
}

fn list(methods: &[Method]) -> String {
    methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}

/// Answers every request of a process whose relay could not be built
/// (invalid config, missing variables): 500 with the error's code, and the
/// details in the log only.
pub(crate) fn misconfigured<B: From<Bytes>>(err: &Error) -> Response<B> {
    tracing::error!(code = err.code(), error = %err, "relay is not configured; answering 500");
    RelayError::from(Kind::Misconfigured(err.clone())).to_response()
}

/// Answers a request whose handling panicked, once a shell's panic boundary
/// caught it: 500 `internal_error`. The log line is fixed: a panic's message
/// may quote any value it was handed.
pub(crate) fn panicked<B: From<Bytes>>() -> Response<B> {
    tracing::error!(code = RelayCode::InternalError.as_str(), "the relay panicked on a request; answering 500");
    RelayError::from(Kind::Internal).to_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn json(e: RelayError) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let (parts, body) = e.to_response::<http_body_util::Full<Bytes>>().into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn rate_limited_says_when_to_retry_rounded_up() {
        let (status, headers, body) = json(Kind::RateLimited { retry_after: Duration::from_millis(1200) }.into()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "2");
        assert_eq!(body["error"]["code"], "rate_limited");
    }

    #[tokio::test]
    async fn budget_and_cooldown_are_503s_that_say_when_to_retry() {
        let retry_after = Duration::from_secs(30);
        for (kind, code) in [
            (Kind::BudgetExhausted { retry_after }, "budget_exhausted"),
            (Kind::UpstreamCoolingDown { retry_after }, "upstream_cooling_down"),
        ] {
            let e = RelayError::from(kind);
            assert!(e.is_upstream_failure(), "stale_if_error covers {code}");
            let (status, headers, body) = json(e).await;
            assert_eq!(
                (status, &headers[header::RETRY_AFTER], &body["error"]["code"]),
                (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from(30), &serde_json::json!(code))
            );
        }
    }

    #[tokio::test]
    async fn method_not_allowed_lists_the_allowed_methods() {
        let e = Kind::MethodNotAllowed { method: Method::DELETE, allowed: vec![Method::GET, Method::HEAD] };
        let (status, headers, body) = json(e.into()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
        assert_eq!(body["error"]["message"], "method DELETE is not allowed here; allowed: GET, HEAD");
    }

    #[tokio::test]
    async fn a_panicked_request_is_a_500_internal_error() {
        let (parts, body) = panicked::<http_body_util::Full<Bytes>>().into_parts();
        let body: serde_json::Value = serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal_error");
        assert_eq!(parts.headers[header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn token_errors_keep_their_reason_out_of_the_response() {
        let e = Error::TokenRejected { upstream: "getty".into(), reason: "invalid_client: bad credentials".into() };
        let (status, _, body) = json(Kind::Token(e).into()).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["error"]["code"], "token_rejected");
        assert!(!body.to_string().contains("invalid_client"), "{body}");
    }
}
