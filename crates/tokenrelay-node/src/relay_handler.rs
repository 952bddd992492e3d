//! `RelayHandler`: the browse-time relay inside a JavaScript server, behind
//! the package's `tokenrelay/fetch` (`createRelay`), which converts a Fetch
//! API `Request` into a [`RelayRequest`] and the [`RelayAnswer`] back into a
//! `Response`.
//!
//! The relay is the core's [`Endpoint`], as in the Vercel and Netlify
//! functions: same rules, error codes and log lines (JSON on stderr). It runs
//! on napi's one Tokio runtime per process. The config is loaded at the first
//! request, not when the handler is made: frameworks import route modules
//! while building, where the relay's secrets are not set.
//!
//! Nothing runs after the answer: the body's last chunk is read only once
//! the request's chores are done (the core's lifecycle rule).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use tokenrelay::Env;
use tokenrelay::relay::{Body, ClientIp, Endpoint, Mount, Relay, RequestId};
use tokenrelay_site::{Site, SiteOptions, StoreChoice};
use tokio::sync::Mutex;

use crate::error::AddonError;

/// Options of `createRelay`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct RelayOptions {
    /// The config file, relative to `cwd`. Default: `$TOKENRELAY_CONFIG`, else `tokenrelay.toml`.
    pub config_path: Option<String>,
    /// The site's directory, where the config and `.env` are looked up. Default: the current directory.
    pub cwd: Option<String>,
    /// Variables that override the process environment; `""` unsets one.
    pub env: Option<HashMap<String, String>>,
    /// Where the relay answers in the site's URL space. Default: `/api/relay`.
    pub mount: Option<String>,
}

/// One request, as the JavaScript side read it.
#[napi(object)]
pub struct RelayRequest {
    pub method: String,
    /// The path and query, as received (`/api/relay/getty/search?phrase=cats`).
    pub target: String,
    /// Header names and values, alternating.
    pub headers: Vec<String>,
    /// At most `maxRequestBytes + 1` bytes: the relay answers 413 past its limit.
    pub body: Option<Buffer>,
    /// The visitor's address, from a source the platform vouches for.
    pub client_ip: Option<String>,
    /// The platform's id of the request, for the log line.
    pub request_id: Option<String>,
}

/// The relay of one site, loaded at its first request.
#[napi]
pub struct RelayHandler {
    env: Env,
    mount: Mount,
    endpoint: OnceLock<Endpoint>,
}

#[napi]
impl RelayHandler {
    /// Checks the options and reads the site's environment; the config
    /// itself is loaded by the first request.
    #[napi(constructor)]
    pub fn new(options: Option<RelayOptions>) -> napi::Result<Self> {
        Self::create(options.unwrap_or_default()).map_err(AddonError::into_napi)
    }

    /// The largest request body the relay takes (`relay.max_request_bytes`).
    #[napi(getter)]
    pub fn max_request_bytes(&self) -> f64 {
        self.endpoint().max_request_bytes() as f64
    }

    /// Answers one request; every failure is an answer with the relay's
    /// error code, never a rejection.
    #[napi]
    pub async fn handle(&self, request: RelayRequest) -> RelayAnswer {
        let endpoint = self.endpoint().clone();
        let answer = match http_request(request) {
            Ok(request) => endpoint.handle(request).await,
            // What a Fetch API `Request` cannot hold (a malformed header
            // value, say): the relay refuses a target outside its mount.
            Err(_) => endpoint.handle(http::Request::new(Full::<Bytes>::default())).await,
        };
        let (parts, body) = answer.into_parts();
        let mut headers = Vec::with_capacity(parts.headers.len() * 2);
        for (name, value) in &parts.headers {
            headers.push(name.as_str().to_owned());
            headers.push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        RelayAnswer { status: parts.status.as_u16(), headers, body: Mutex::new(Some(body)) }
    }
}

impl RelayHandler {
    fn create(options: RelayOptions) -> Result<Self, AddonError> {
        let mount = match options.mount.as_deref() {
            Some(path) => Mount::new(path).map_err(|why| AddonError::invalid_option("mount", why))?,
            None => Mount::default(),
        };
        let site = Site::resolve(
            SiteOptions::of(&options.config_path, &options.cwd, &options.env),
            StoreChoice::AsConfigured,
        )?;
        tokenrelay::relay::init_logging();
        Ok(Self { env: site.env, mount, endpoint: OnceLock::new() })
    }

    /// The relay, or why there is none (then every request gets 500 `misconfigured`, as on the platforms).
    fn endpoint(&self) -> &Endpoint {
        self.endpoint.get_or_init(|| Relay::from_env(&self.env).map(|r| r.mounted_at(self.mount.clone())).into())
    }
}

fn http_request(request: RelayRequest) -> Result<http::Request<Full<Bytes>>, http::Error> {
    let mut builder = http::Request::builder().method(request.method.as_str()).uri(request.target.as_str());
    for pair in request.headers.chunks_exact(2) {
        builder = builder.header(pair[0].as_str(), pair[1].as_str());
    }
    let body = request.body.map(|b| Bytes::copy_from_slice(&b)).unwrap_or_default();
    let mut http = builder.body(Full::new(body))?;
    if let Some(ip) = request.client_ip.as_deref().and_then(|ip| ip.trim().parse::<IpAddr>().ok()) {
        http.extensions_mut().insert(ClientIp(ip));
    }
    if let Some(id) = request.request_id {
        http.extensions_mut().insert(RequestId(id));
    }
    Ok(http)
}

/// The relay's answer: status and headers at once, the body read chunk by chunk.
#[napi]
pub struct RelayAnswer {
    status: u16,
    headers: Vec<String>,
    body: Mutex<Option<Body>>,
}

#[napi]
impl RelayAnswer {
    #[napi(getter)]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Header names and values, alternating (`set-cookie` may repeat).
    #[napi(getter)]
    pub fn headers(&self) -> Vec<String> {
        self.headers.clone()
    }

    /// The body's next chunk; `null` once it has ended. Rejects when the
    /// upstream failed or went over a limit midway: the response must then
    /// be aborted, not ended.
    #[napi]
    pub async fn read(&self) -> napi::Result<Option<Buffer>> {
        let mut body = self.body.lock().await;
        while let Some(current) = body.as_mut() {
            match current.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data.to_vec().into()));
                    }
                }
                Some(Err(err)) => {
                    *body = None;
                    return Err(AddonError::new(err.code(), err.to_string()).into_napi());
                }
                None => *body = None,
            }
        }
        Ok(None)
    }

    /// Drops the body (the visitor went away): the upstream call ends with it.
    #[napi]
    pub fn cancel(&self) {
        if let Ok(mut body) = self.body.try_lock() {
            body.take();
        }
    }
}
