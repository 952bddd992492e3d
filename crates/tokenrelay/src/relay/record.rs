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
        // One set of fields at either level; a failed request's line adds its detail.
        macro_rules! line {
            ($level:ident, $message:literal $(, $detail:ident)?) => {
                tracing::$level!(
                    request_id,
                    method,
                    upstream,
                    route,
                    status = status.as_u16(),
                    code,
                    $($detail,)?
                    cache,
                    token,
                    token_ms,
                    upstream_ms,
                    duration_ms,
                    $message
                )
            };
        }
        if status.is_server_error() {
            let detail = error.and_then(RelayError::detail).map(ToString::to_string);
            line!(warn, "relay request failed", detail);
        } else {
            line!(info, "relay request");
        }
    }
}

#[cfg(all(test, feature = "logging"))]
mod tests {
    use super::*;
    use crate::relay::error::Kind;
    use crate::relay::logging::json_lines;

    #[test]
    fn a_failed_request_is_a_warning_with_its_detail_and_a_refused_one_an_info_line() {
        let failed = RelayError::from(Kind::Misconfigured(crate::Error::InvalidEnv {
            name: "API_CLIENT_ID".into(),
            reason: "is empty".into(),
        }));
        let refused = RelayError::from(Kind::UnknownUpstream("nope".into()));
        let record = Record { upstream: Some(Cow::Borrowed("api")), route: Some("/search/**"), ..Record::default() };
        let lines = json_lines(|| {
            for error in [&failed, &refused] {
                record.log("r1", &http::Method::GET, error.status(), Some(error), Instant::now());
            }
        });
        let [warned, informed] = lines.as_slice() else { panic!("two lines: {lines:?}") };
        assert_eq!(warned["level"], "WARN");
        assert_eq!(warned["message"], "relay request failed");
        assert_eq!(warned["status"], 500);
        assert_eq!(warned["detail"], "environment variable API_CLIENT_ID: is empty");
        assert_eq!(informed["level"], "INFO");
        assert_eq!(informed["message"], "relay request");
        assert_eq!(informed["code"], refused.code());
        assert!(informed.get("detail").is_none(), "{informed}");
        for line in [warned, informed] {
            assert_eq!([&line["upstream"], &line["route"], &line["method"]], ["api", "/search/**", "GET"], "{line}");
        }
    }
}
