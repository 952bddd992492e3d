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
//!
//! A panic in the relay (a bug) stops at this boundary, for the answer's
//! head and for each chunk of its body: the request gets 500
//! `internal_error` and the Node process serves on. Header values cross as
//! Node and the Fetch API hold them, one character per byte (Latin-1), so
//! that any byte the relay passes or receives survives the way over.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Once, OnceLock};

use bytes::Bytes;
use futures_util::FutureExt;
use http::HeaderValue;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use napi::bindgen_prelude::{Buffer, BufferSlice, JsValue, ToNapiValue};
use napi_derive::napi;
use tokenrelay::Env;
use tokenrelay::relay::{Body, ClientIp, Endpoint, Mount, Relay, RelayCode, RequestId};
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
    /// The body could not be read to its end (the visitor went away midway,
    /// or sent a malformed one): the relay answers 400 `body_unreadable`.
    pub body_unreadable: Option<bool>,
    /// The visitor's address, from a source the platform vouches for: the
    /// header's value as received, of which the relay takes the first
    /// address ([`ClientIp::first_of`]).
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
    /// error code, never a rejection, a panic included.
    #[napi]
    pub async fn handle(&self, request: RelayRequest) -> RelayAnswer {
        let endpoint = self.endpoint().clone();
        let answer = unwinding(async move {
            match http_request(request) {
                Ok(request) => endpoint.handle(request).await,
                // What no HTTP request can hold (a header name with a space,
                // a character past Latin-1): the relay refuses a target outside its mount.
                Err(_) => endpoint.handle(http::Request::new(Full::<Bytes>::default())).await,
            }
        })
        .await;
        let (parts, mut body) = answer.into_parts();
        // A complete body crosses with the head, in one crossing, instead
        // of one `read` per chunk and one for its end.
        let whole = body.take_whole().map(WholeBody);
        let body = whole.is_none().then(|| RelayBody { body: Mutex::new(Some(body)) });
        RelayAnswer { status: parts.status.as_u16(), headers: HeaderList(parts.headers), whole, body }
    }
}

/// Replaces Rust's panic report on stderr (the message, and a backtrace
/// with `RUST_BACKTRACE`) with one log line naming where: a message may quote
/// any value it was handed. The panic itself is caught by [`unwinding`] and
/// [`next_chunk`]. Set once per process, for the addon's Rust code only.
fn log_panics_quietly() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
            tracing::error!(location = location.as_deref().unwrap_or("unknown"), "panicked; the message is not logged");
        }));
    });
}

/// The answer `handle` makes, or 500 `internal_error` if it panics.
async fn unwinding(handle: impl Future<Output = http::Response<Body>>) -> http::Response<Body> {
    // Unwind safety: a panicked request's state is dropped with it; the
    // relay shares only what stays usable (see the rate limiter's tallies).
    AssertUnwindSafe(handle).catch_unwind().await.unwrap_or_else(|_| Endpoint::panicked())
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
        log_panics_quietly();
        Ok(Self { env: site.env, mount, endpoint: OnceLock::new() })
    }

    /// The relay, or why there is none (then every request gets 500 `misconfigured`, as on the platforms).
    fn endpoint(&self) -> &Endpoint {
        self.endpoint.get_or_init(|| Relay::from_env(&self.env).map(|r| r.mounted_at(self.mount.clone())).into())
    }
}

/// A request body as the relay reads it: the bytes, or a read that fails.
type RequestBody = BoxBody<Bytes, std::io::Error>;

fn http_request(request: RelayRequest) -> Result<http::Request<RequestBody>, http::Error> {
    let mut builder = http::Request::builder().method(request.method.as_str()).uri(request.target.as_str());
    for pair in request.headers.chunks_exact(2) {
        builder = builder.header(pair[0].as_str(), latin1(&pair[1])?);
    }
    let body = if request.body_unreadable == Some(true) {
        let failed = std::io::Error::other("the request body could not be read to its end");
        StreamBody::new(futures_util::stream::iter([Err(failed)])).boxed()
    } else {
        let bytes = request.body.map(|b| Bytes::copy_from_slice(&b)).unwrap_or_default();
        Full::new(bytes).map_err(|never| match never {}).boxed()
    };
    let mut http = builder.body(body)?;
    if let Some(ip) = request.client_ip.as_deref().and_then(ClientIp::first_of) {
        http.extensions_mut().insert(ip);
    }
    if let Some(id) = request.request_id {
        http.extensions_mut().insert(RequestId(id));
    }
    Ok(http)
}

/// A header value as Node and the Fetch API hold it, one character per
/// byte. A string past Latin-1 did not come from the wire: it goes as UTF-8.
fn latin1(value: &str) -> Result<HeaderValue, http::Error> {
    let bytes: Option<Vec<u8>> = value.chars().map(|c| u8::try_from(c).ok()).collect();
    match bytes {
        Some(bytes) => Ok(HeaderValue::from_bytes(&bytes)?),
        None => Ok(HeaderValue::from_str(value)?),
    }
}

/// The relay's answer: status and headers at once, and the body whole with
/// them when it was complete ([`Body::take_whole`]), else a [`RelayBody`]
/// to read chunk by chunk. A plain object, not a class: it crosses in one
/// conversion, with no wrapper to finalize.
#[napi(object, object_from_js = false)]
pub struct RelayAnswer {
    pub status: u16,
    /// Header names and values, alternating (`set-cookie` may repeat).
    #[napi(ts_type = "Array<string>")]
    pub headers: HeaderList,
    /// The whole body, when it came with the answer.
    #[napi(ts_type = "Buffer")]
    pub whole: Option<WholeBody>,
    /// The body to read, when it streams.
    pub body: Option<RelayBody>,
}

/// An answer's headers as they cross to JS: names and values alternating,
/// each a one-byte string made straight from the header's bytes (one
/// character per byte, as Node and the Fetch API hold them).
pub struct HeaderList(http::HeaderMap);

impl ToNapiValue for HeaderList {
    unsafe fn to_napi_value(env: napi::sys::napi_env, list: Self) -> napi::Result<napi::sys::napi_value> {
        let env = napi::Env::from_raw(env);
        let mut array = env.create_array(u32::try_from(list.0.len() * 2).unwrap_or(u32::MAX))?;
        for (i, (name, value)) in (0u32..).step_by(2).zip(&list.0) {
            array.set(i, env.create_string_latin1(name.as_str().as_bytes())?)?;
            array.set(i + 1, env.create_string_latin1(value.as_bytes())?)?;
        }
        Ok(array.raw())
    }
}

/// A complete body as it crosses to JS: a Buffer holding a copy, which the
/// engine owns (no finalizer to run, unlike a Buffer over Rust's memory).
pub struct WholeBody(Bytes);

impl ToNapiValue for WholeBody {
    unsafe fn to_napi_value(env: napi::sys::napi_env, body: Self) -> napi::Result<napi::sys::napi_value> {
        Ok(BufferSlice::copy_from(&napi::Env::from_raw(env), &body.0)?.raw())
    }
}

/// The body of an answer that streams, read chunk by chunk.
#[napi]
pub struct RelayBody {
    body: Mutex<Option<Body>>,
}

#[napi]
impl RelayBody {
    /// The body's next chunk; `null` once it has ended. Rejects when the
    /// upstream failed or went over a limit midway: the response must then
    /// be aborted, not ended.
    #[napi]
    pub async fn read(&self) -> napi::Result<Option<Buffer>> {
        let mut body = self.body.lock().await;
        let chunk = next_chunk(&mut body).await.map_err(AddonError::into_napi)?;
        Ok(chunk.map(|data| data.to_vec().into()))
    }

    /// Drops the body (the visitor went away): the upstream call ends with it.
    #[napi]
    pub fn cancel(&self) {
        if let Ok(mut body) = self.body.try_lock() {
            body.take();
        }
    }
}

/// The next non-empty chunk of `body`, `None` at its end; the body is
/// dropped once it ended, failed or panicked (then 500 `internal_error`).
async fn next_chunk<B>(body: &mut Option<B>) -> Result<Option<Bytes>, AddonError>
where
    B: http_body::Body<Data = Bytes, Error = tokenrelay::relay::RelayError> + Unpin,
{
    while let Some(current) = body.as_mut() {
        match AssertUnwindSafe(current.frame()).catch_unwind().await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok(Some(data));
                }
            }
            Ok(Some(Err(err))) => {
                *body = None;
                return Err(AddonError::new(err.code(), err.to_string()));
            }
            Ok(None) => *body = None,
            Err(_) => {
                *body = None;
                let code = RelayCode::InternalError.as_str();
                tracing::error!(code, "the relay panicked in an answer's body; the answer is aborted");
                return Err(AddonError::new(code, "the relay failed midway through the answer; see the function logs"));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body::Frame;
    use tokenrelay::relay::RelayError;

    use super::*;

    /// A body that yields one chunk, then panics: a bug midway through an answer.
    struct PanicsAfterOneChunk(bool);

    impl http_body::Body for PanicsAfterOneChunk {
        type Data = Bytes;
        type Error = RelayError;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RelayError>>> {
            assert!(!self.0, "a bug in the relay");
            self.0 = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
        }
    }

    #[tokio::test]
    async fn a_panic_while_answering_is_a_500_internal_error() {
        let answer = unwinding(async { panic!("a bug in the relay") }).await;
        assert_eq!(answer.status(), 500);
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
    }

    #[tokio::test]
    async fn a_panic_in_the_body_aborts_it_with_internal_error() {
        let mut body = Some(PanicsAfterOneChunk(false));
        assert_eq!(next_chunk(&mut body).await.unwrap().as_deref(), Some(&b"first"[..]));
        let err = next_chunk(&mut body).await.unwrap_err();
        assert_eq!(err.code(), "internal_error");
        assert!(body.is_none(), "the panicked body is dropped");
        assert_eq!(next_chunk(&mut body).await.unwrap(), None, "later reads find the end");
    }

    #[test]
    fn header_values_cross_byte_for_byte() {
        assert_eq!(latin1("caf\u{e9}").unwrap().as_bytes(), b"caf\xe9");
        assert_eq!(latin1("\u{2603}").unwrap().as_bytes(), "\u{2603}".as_bytes());
        assert!(latin1("a\nb").is_err(), "a line break would split the header");
    }
}
