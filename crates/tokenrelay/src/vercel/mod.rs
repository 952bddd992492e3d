//! The Vercel function (feature `vercel`): a site's `api/relay.rs` is
//!
//! ```no_run
//! fn main() -> Result<(), tokenrelay::vercel::Error> {
//!     tokenrelay::vercel::run()
//! }
//! ```
//!
//! declared as a `[[bin]]` of the site's root `Cargo.toml`, where Vercel's
//! Rust builder (`@vercel/rust`) looks, and reached through the `vercel.json`
//! rewrite of `/api/relay/:path*` to `/api/relay`. `vercel_runtime` 2.x serves
//! HTTP on `127.0.0.1:$VERCEL_DEV_PORT` (default 3000); answers stream.
//!
//! An answer ends as soon as its body does, with `Content-Length` when the
//! body is complete (a cache hit, an error, an upstream answer read whole).
//! The request's chores (a token or stale answer's refresh, a rate-limit
//! sync) run as the invocation's background work, `wait_until`, which
//! vercel_runtime 2.4.1 drains before it tells the platform the invocation
//! `end`ed, bounded by the function's maximum duration. Nothing runs after `end`.
//! Its connections get `TCP_NODELAY` at the first request ([`nodelay`]), so
//! that a streamed answer's last chunk does not wait for the client's delayed ACK.

#[cfg(target_os = "linux")]
mod nodelay;

use http_body_util::BodyExt;
use vercel_runtime::{AppState, Request, Response, ResponseBody, service_fn};

use crate::platform::VERCEL;
use crate::relay::{Endpoint, MOUNT};

/// What the function returns when the runtime stops with an error.
pub use vercel_runtime::Error;

/// Set to `1` by Vercel's local tooling; then `./.env` is read as well.
const DEV_FLAG: &str = "VERCEL_DEV";
/// The port vercel_runtime serves on, as it reads it.
const PORT_VAR: &str = "VERCEL_DEV_PORT";
/// vercel_runtime's port when [`PORT_VAR`] is unset.
const DEFAULT_PORT: u16 = 3000;
/// The parameter of the vercel.json rewrite `/api/relay/:path*`: Vercel appends
/// what it matched to the query (`?path=getty%2Fsearch%2Fimages`).
const REWRITE_PARAM: &str = "path";

/// Serves the relay until the platform stops the process, on a Tokio runtime
/// of its own with one thread (see `shell::runtime`). The config is
/// `$TOKENRELAY_CONFIG` or `./tokenrelay.toml` (vercel.json's `includeFiles`
/// ships it beside the executable); an invalid one is answered with 500
/// `misconfigured` and logged.
pub fn run() -> Result<(), Error> {
    crate::shell::runtime()?.block_on(serve())
}

async fn serve() -> Result<(), Error> {
    let endpoint = Endpoint::from_env(&crate::shell::start(DEV_FLAG, "1"));
    vercel_runtime::run(service_fn(move |request: Request, state: AppState| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Error>(handle(&endpoint, request, &state).await) }
    }))
    .await
}

async fn handle(endpoint: &Endpoint, mut request: Request, state: &AppState) -> Response<ResponseBody> {
    // By the first request the runtime has bound its listener and accepted this connection.
    static NODELAY: std::sync::Once = std::sync::Once::new();
    NODELAY.call_once(serve_without_nagle);
    if let Some(uri) = without_rewrite_param(request.uri()) {
        *request.uri_mut() = uri;
    }
    let id = request.headers().get(&VERCEL.request_id_header).and_then(|v| v.to_str().ok()).map(str::to_owned);
    crate::shell::identify(&mut request, &VERCEL, id);
    let (response, chores) = endpoint.handle_apart(request).await;
    if let Some(chores) = chores {
        state.wait_until(chores);
    }
    response.map(|body| ResponseBody(body.map_err(|e| Box::new(e) as Error).boxed()))
}

/// `TCP_NODELAY` on the runtime's listener and connections (see [`nodelay`]).
fn serve_without_nagle() {
    let port = std::env::var(PORT_VAR).ok().and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT);
    #[cfg(target_os = "linux")]
    if let Err(error) = nodelay::serve_without_nagle(port) {
        tracing::warn!(%error, port, "could not set TCP_NODELAY; a streamed answer's last chunk may wait for the client's ACK");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = port;
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
