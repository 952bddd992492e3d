//! The Vercel function behind `/api/relay/<upstream>/<path>` (vercel.json
//! rewrites `/api/relay/:path*` here). Adaptation only: hyper types in and
//! out, the platform's client IP and request id, and the query parameter the
//! rewrite appends; everything else is `tokenrelay::relay`.
//!
//! vercel_runtime 2.x serves HTTP on `127.0.0.1:$VERCEL_DEV_PORT` (default
//! 3000), which is also how the tests run the compiled binary.

use std::sync::Arc;

use http_body_util::BodyExt;
use tokenrelay::Env;
use tokenrelay::relay::{self, ClientIp, MOUNT, Relay, RequestId};
use vercel_runtime::{Error, Request, Response, ResponseBody, run, service_fn};

/// Set by Vercel's local tooling; then `./.env` is read as well.
const DEV_FLAG: &str = "VERCEL_DEV";
/// Vercel sets it from the connection, replacing whatever the client sent.
const CLIENT_IP_HEADER: &str = "x-real-ip";
/// Vercel's id of the request.
const REQUEST_ID_HEADER: &str = "x-vercel-id";
/// The parameter of the vercel.json rewrite `/api/relay/:path*`: Vercel appends
/// what it matched to the query (`?path=getty%2Fsearch%2Fimages`).
const REWRITE_PARAM: &str = "path";

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay::init_logging();
    let env = if std::env::var(DEV_FLAG).as_deref() == Ok("1") { Env::local() } else { Env::process() };
    let relay = Arc::new(Relay::from_env(&env));
    run(service_fn(move |request: Request| {
        let relay = relay.clone();
        async move { Ok::<_, Error>(handle(&relay, request).await) }
    }))
    .await
}

async fn handle(relay: &Result<Relay, tokenrelay::Error>, mut request: Request) -> Response<ResponseBody> {
    if let Some(uri) = without_rewrite_param(request.uri()) {
        *request.uri_mut() = uri;
    }
    if let Some(ip) = ClientIp::from_header(request.headers(), CLIENT_IP_HEADER) {
        request.extensions_mut().insert(ip);
    }
    if let Some(id) = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()) {
        let id = RequestId(id.to_owned());
        request.extensions_mut().insert(id);
    }
    let response = match relay {
        Ok(relay) => relay.handle(request).await,
        Err(err) => relay::misconfigured(err),
    };
    response.map(|body| ResponseBody(body.map_err(|e| Box::new(e) as Error).boxed()))
}

/// The URI without the parameter the rewrite appended: the last query
/// parameter, when it is `path=` followed by exactly the path below the
/// mount. A visitor's own `path` parameter is left alone.
fn without_rewrite_param(uri: &http::Uri) -> Option<http::Uri> {
    let rest = uri.path().strip_prefix(MOUNT)?.strip_prefix('/')?;
    let query = uri.query()?;
    let (kept, last) = query.rsplit_once('&').map_or(("", query), |(k, l)| (k, l));
    let (name, value) = url::form_urlencoded::parse(last.as_bytes()).next()?;
    let rest = percent_encoding::percent_decode_str(rest).decode_utf8().ok()?;
    if name != REWRITE_PARAM || value != rest {
        return None;
    }
    let path_and_query = if kept.is_empty() { uri.path().to_owned() } else { format!("{}?{kept}", uri.path()) };
    path_and_query.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(uri: &str) -> Option<String> {
        without_rewrite_param(&uri.parse().unwrap()).map(|u| u.to_string())
    }

    #[test]
    fn the_appended_rewrite_parameter_is_removed() {
        assert_eq!(
            strip("/api/relay/getty/search/images?path=getty%2Fsearch%2Fimages").unwrap(),
            "/api/relay/getty/search/images"
        );
        assert_eq!(
            strip("/api/relay/getty/search/images?phrase=cats&path=getty%2Fsearch%2Fimages").unwrap(),
            "/api/relay/getty/search/images?phrase=cats"
        );
    }

    #[test]
    fn a_visitors_own_path_parameter_is_kept() {
        assert!(strip("/api/relay/getty/search/images?path=other").is_none());
        assert!(strip("/api/relay/getty/search/images?path=getty%2Fsearch%2Fimages&page=2").is_none());
        assert!(strip("/api/relay/getty/search/images").is_none());
    }
}
