//! `tokenrelay-bench hop`: the bare proxy hop of the relay's own stack, the
//! least any relay built on it can cost, as nginx is the least any relay can.
//! hyper's HTTP/1 server on a one-thread Tokio runtime, as vercel_runtime
//! serves the relay function; hyper-util's pooled client out, as the relay's
//! upstream calls go; the credentials as a fixed header; the answer streamed
//! back. No rule, no token, no log.
//!
//! Environment (set by the bench): `PORT` to listen on (127.0.0.1), and
//! `PROXY_ROUTES`, a JSON list of `{ prefix, origin, basePath, authorization }`:
//! `<prefix>/<rest>` goes to `<origin><basePath>/<rest>`, as for Node's bare
//! hop (bench/node-proxy/server.mjs).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HOST, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The variable holding the routes, for this hop and Node's.
pub const ROUTES_VAR: &str = "PROXY_ROUTES";

/// One route, as [`ROUTES_VAR`] lists it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Route {
    prefix: String,
    origin: String,
    base_path: String,
    authorization: String,
}

/// A route ready to serve: what to strip, and what replaces it.
struct Prepared {
    /// `<prefix>/`.
    prefix: String,
    /// `<origin><basePath>/`, without a doubled slash.
    target: String,
    host: HeaderValue,
    authorization: HeaderValue,
}

type Body = BoxBody<Bytes, hyper::Error>;

pub fn main(_args: &[String]) -> ExitCode {
    let run = || -> anyhow::Result<()> {
        let port: u16 = std::env::var("PORT").context("PORT is not set")?.parse().context("PORT")?;
        let routes: Vec<Route> =
            serde_json::from_str(&std::env::var(ROUTES_VAR).unwrap_or_else(|_| "[]".into())).context(ROUTES_VAR)?;
        let routes = routes.into_iter().map(prepare).collect::<anyhow::Result<Vec<_>>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(serve(SocketAddr::from(([127, 0, 0, 1], port)), Arc::new(routes)))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tokenrelay-bench hop: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn prepare(route: Route) -> anyhow::Result<Prepared> {
    let origin: Uri = route.origin.parse().with_context(|| format!("origin {:?}", route.origin))?;
    let host = origin.authority().with_context(|| format!("origin {:?} has no host", route.origin))?.as_str();
    Ok(Prepared {
        prefix: format!("{}/", route.prefix),
        target: format!("{}{}/", route.origin.trim_end_matches('/'), route.base_path.trim_end_matches('/')),
        host: HeaderValue::from_str(host)?,
        authorization: HeaderValue::from_str(&route.authorization)?,
    })
}

async fn serve(addr: SocketAddr, routes: Arc<Vec<Prepared>>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("hop listening on {addr}");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, routes) = (client.clone(), routes.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (client, routes) = (client.clone(), routes.clone());
                async move { Ok::<_, hyper::Error>(forward(&client, &routes, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// `request` sent on along its route, or 404 off every route, 502 when the upstream fails.
async fn forward(
    client: &Client<HttpConnector, Incoming>,
    routes: &[Prepared],
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some((route, rest)) = routes.iter().find_map(|r| Some((r, path.strip_prefix(&r.prefix)?))) else {
        return status(StatusCode::NOT_FOUND);
    };
    let Ok(uri) = format!("{}{rest}", route.target).parse::<Uri>() else {
        return status(StatusCode::BAD_REQUEST);
    };
    let (mut parts, body) = request.into_parts();
    parts.uri = uri;
    parts.headers.insert(HOST, route.host.clone());
    parts.headers.insert(AUTHORIZATION, route.authorization.clone());
    match client.request(Request::from_parts(parts, body)).await {
        Ok(answer) => answer.map(BodyExt::boxed),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}
