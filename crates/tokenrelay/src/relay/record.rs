//! What is known about one request as it goes, and its one log line.

use std::borrow::Cow;
use std::time::Instant;

use super::chores::Chores;
use super::error::RelayError;
use super::timing::Timing;

/// What is known about a request so far, for the log line. Names are
/// borrowed from the config where they can be: no copy per request.
#[derive(Default)]
pub(super) struct Record<'a> {
    pub(super) upstream: Option<Cow<'a, str>>,
    pub(super) route: Option<&'a str>,
    pub(super) timing: Timing,
    /// Work the request made due, done before its answer ends.
    pub(super) chores: Chores,
}

impl Record<'_> {
    /// One line per request: ids, names, durations and outcomes, never a value.
    pub(super) fn log(
        &self,
        request_id: &str,
        method: &http::Method,
        status: http::StatusCode,
        error: Option<&RelayError>,
        started: Instant,
    ) {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let method = method.as_str();
        let upstream = self.upstream.as_deref().unwrap_or("-");
        let route = self.route.unwrap_or("-");
        let token = self.timing.token.map_or("-", |(_, o)| o.as_str());
        let token_ms = self.timing.token.map_or(0.0, |(d, _)| ms(d));
        let upstream_ms = self.timing.upstream.map_or(0.0, ms);
        let cache = self.timing.cache.map_or("-", |(_, o)| o);
        let duration_ms = ms(started.elapsed());
        let code = error.map_or("-", RelayError::code);
        let detail = error.and_then(RelayError::detail).map(ToString::to_string);
        if status.is_server_error() {
            tracing::warn!(
                request_id,
                method,
                upstream,
                route,
                status = status.as_u16(),
                code,
                detail,
                cache,
                token,
                token_ms,
                upstream_ms,
                duration_ms,
                "relay request failed"
            );
        } else {
            tracing::info!(
                request_id,
                method,
                upstream,
                route,
                status = status.as_u16(),
                code,
                cache,
                token,
                token_ms,
                upstream_ms,
                duration_ms,
                "relay request"
            );
        }
    }
}
