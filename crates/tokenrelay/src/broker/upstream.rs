//! The client of the relay's upstream calls: hyper-util's pooled client over
//! rustls, with the broker's reqwest client's settings (the same roots, TLS
//! versions and ALPN, `TCP_NODELAY`, keep-alive probes, idle pool,
//! `User-Agent` and `Accept`, the proxies the environment names; the connect
//! timeout, as reqwest's, bounds the whole connection: TCP, the proxy's
//! tunnel and the TLS handshake), and no redirect layer.
//!
//! A proxy is taken from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//! `NO_PROXY` (or their lowercase names) when the client is built, as reqwest
//! reads them for the token endpoint; the call goes through a `CONNECT`
//! tunnel, with the proxy's user info as `Proxy-Authorization: Basic`. A
//! plain `http://` upstream is tunnelled too, to its port (80 unless given).
//!
//! reqwest's redirect layer runs even with `redirect::Policy::none()`: it
//! turns each request's URI into a string and parses it back into a `Url`,
//! twice; that was about a sixth of a relayed request's instructions. The
//! relay never follows a redirect, so its calls skip the layer. The answer
//! is hyper's, its body boxed ([`UpstreamResponse`]); the token endpoint,
//! the store and the alerts keep reqwest's client.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HeaderValue, USER_AGENT};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::CONNECT_TIMEOUT;

/// reqwest's defaults, kept: idle pooled connections close after this…
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// …and TCP keep-alive probes start after this idle time, this far apart, this many.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
const USER_AGENT_VALUE: &str = concat!("tokenrelay/", env!("CARGO_PKG_VERSION"));

/// The relay's upstream client; clones share its connection pool.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamClient {
    client: Client<Connector, Full<Bytes>>,
}

/// Connects to an upstream, straight or through the proxy that `proxies`
/// names for it; over TLS for `https://`; all of it within `timeout`.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    tls: Arc<rustls::ClientConfig>,
    proxies: Arc<Matcher>,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    /// Names no proxy: its URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connecting = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

impl Service<http::Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let connect = self.connect(dst);
        let timeout = self.timeout;
        Box::pin(async move {
            let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out");
            tokio::time::timeout(timeout, connect).await.map_err(|_| timed_out())?
        })
    }
}

impl Connector {
    /// The connection to `dst`, unbounded in time.
    fn connect(&self, dst: http::Uri) -> Connecting {
        let Some(proxy) = self.proxies.intercept(&dst) else {
            let mut direct = HttpsConnector::from((self.tcp.clone(), self.tls.clone()));
            return Box::pin(async move { direct.call(dst).await });
        };
        let mut tunnel = Tunnel::new(proxy.uri().clone(), self.tcp.clone());
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        if dst.scheme() == Some(&http::uri::Scheme::HTTPS) {
            let mut tls = HttpsConnector::from((tunnel, self.tls.clone()));
            return Box::pin(async move { tls.call(dst).await });
        }
        Box::pin(async move { Ok(MaybeHttpsStream::Http(tunnel.call(with_http_port(dst)?).await?)) })
    }
}

/// Plain HTTP's port, which a tunnel must ask the proxy for by number.
const HTTP_PORT: u16 = 80;

/// The plain-HTTP `dst` with its port spelled out ([`HTTP_PORT`] when it has
/// none): a tunnel asks the proxy for port 443 unless told.
fn with_http_port(dst: http::Uri) -> Result<http::Uri, BoxError> {
    if dst.port().is_some() {
        return Ok(dst);
    }
    let host = dst.host().ok_or("the upstream URL has no host")?;
    let mut parts = dst.clone().into_parts();
    parts.authority = Some(format!("{host}:{HTTP_PORT}").parse()?);
    Ok(http::Uri::from_parts(parts)?)
}

/// An upstream's answer: its head, and its body as it comes.
pub(crate) type UpstreamResponse = http::Response<UpstreamBody>;

/// The body of an [`UpstreamResponse`]; it fails with [`SendError::TimedOut`]
/// once the call's deadline passes, or [`SendError::Body`].
pub(crate) type UpstreamBody = BoxBody<Bytes, SendError>;

/// The length of `response`'s body as its head declared it (`Content-Length`), if it did.
pub(crate) fn declared_length(response: &UpstreamResponse) -> Option<u64> {
    response.body().size_hint().exact()
}

/// Why an upstream call got no answer, or no whole answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No answer (head, or the rest of the body) within the call's timeout.
    TimedOut,
    /// Connecting, or the exchange, failed.
    Transport(hyper_util::client::legacy::Error),
    /// The answer's body broke off.
    Body(BoxError),
}

impl SendError {
    /// Whether the connection could not be made.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, SendError::Transport(e) if e.is_connect())
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::TimedOut => f.write_str("timed out"),
            // The client error and its cause (as reqwest's source shows it); neither holds the URL.
            SendError::Transport(e) => match e.source() {
                Some(cause) => write!(f, "{e}: {cause}"),
                None => write!(f, "{e}"),
            },
            SendError::Body(e) => write!(f, "the answer's body failed: {e}"),
        }
    }
}

impl UpstreamClient {
    /// Builds the client, trusting the Web PKI's roots (webpki-roots, as
    /// reqwest's `rustls-tls`); `Err` when the TLS settings are refused.
    pub(crate) fn new() -> Result<Self, rustls::Error> {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        Self::with(roots, Matcher::from_env())
    }

    /// The client of [`new`](Self::new), trusting `roots` and going through `proxies` instead.
    fn with(roots: rustls::RootCertStore, proxies: Matcher) -> Result<Self, rustls::Error> {
        Self::connecting_within(CONNECT_TIMEOUT, roots, proxies)
    }

    /// The client of [`with`](Self::with), whose connections must be made within `timeout`.
    fn connecting_within(
        timeout: Duration,
        roots: rustls::RootCertStore,
        proxies: Matcher,
    ) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        // Also per TCP attempt: hyper-util shares it out among a host's
        // addresses, so that a dead first address leaves time for the next.
        // The Connector bounds the whole connection within the same time.
        http.set_connect_timeout(Some(timeout));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_keepalive_interval(Some(TCP_KEEPALIVE));
        http.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        // reqwest's choice: a crypto provider the process installed, else ring.
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = Connector { tcp: http, tls: Arc::new(tls), proxies: Arc::new(proxies), timeout };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client })
    }

    /// Sends `request`; the whole answer, head and body, must come within
    /// `timeout` (a body still coming then ends with [`SendError::TimedOut`]).
    pub(crate) async fn send(
        &self,
        mut request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<UpstreamResponse, SendError> {
        let headers = request.headers_mut();
        headers.entry(USER_AGENT).or_insert(HeaderValue::from_static(USER_AGENT_VALUE));
        headers.entry(ACCEPT).or_insert(HeaderValue::from_static("*/*"));
        let deadline = Instant::now() + timeout;
        let response = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Ok(sent) => sent.map_err(SendError::Transport)?,
            Err(_) => return Err(SendError::TimedOut),
        };
        Ok(response.map(|body| Deadline { body, sleep: Box::pin(tokio::time::sleep_until(deadline)) }.boxed()))
    }
}

/// A body that fails with `TimedOut` once its deadline passes.
struct Deadline<B> {
    body: B,
    sleep: Pin<Box<Sleep>>,
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = SendError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, SendError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(|e| SendError::Body(e.into()))));
        }
        ready!(self.sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err(SendError::TimedOut)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    /// An upstream on loopback that reads one request, then writes `answer`
    /// and holds the connection open; gives back what it was sent.
    async fn upstream(answer: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let n = socket.read(&mut request).await.unwrap();
            socket.write_all(answer).await.unwrap();
            tokio::time::sleep(TIMEOUT * 3).await;
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (addr, served)
    }

    fn get(addr: SocketAddr) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = format!("http://{addr}/x?q=1").parse().unwrap();
        request
    }

    #[tokio::test]
    async fn an_answer_comes_whole_with_the_default_headers_reqwest_sent() {
        let (addr, served) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let response = UpstreamClient::new().unwrap().send(get(addr), TIMEOUT).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(declared_length(&response), Some(2), "Content-Length");
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
        let request = served.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /x?q=1 http/1.1\r\n"), "{request}");
        assert!(request.contains(&format!("host: {addr}\r\n")), "{request}");
        assert!(request.contains(&format!("user-agent: {USER_AGENT_VALUE}\r\n")), "{request}");
        assert!(request.contains("accept: */*\r\n"), "{request}");
    }

    #[tokio::test]
    async fn no_head_within_the_timeout_is_a_timeout() {
        let (addr, _served) = upstream(b"").await;
        let sent = UpstreamClient::new().unwrap().send(get(addr), TIMEOUT).await;
        assert!(matches!(sent, Err(SendError::TimedOut)), "{sent:?}");
    }

    #[tokio::test]
    async fn a_body_still_coming_at_the_timeout_ends_in_a_timeout_error() {
        let (addr, _served) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\npart").await;
        let response = UpstreamClient::new().unwrap().send(get(addr), TIMEOUT).await.unwrap();
        let error = response.into_body().collect().await.expect_err("the body never ends");
        assert!(matches!(error, SendError::TimedOut), "{error:?}");
    }

    /// An HTTPS upstream on loopback with the test CA's certificate for
    /// 127.0.0.1 (tests/fixtures/tls): answers one request with 200 `ok`.
    async fn tls_upstream() -> SocketAddr {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert = CertificateDer::from_pem_slice(include_bytes!("../../tests/fixtures/tls/localhost.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("../../tests/fixtures/tls/localhost.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            // A handshake the client refuses ends here, with nothing served.
            let Ok(mut tls) = acceptor.accept(socket).await else { return };
            let mut request = vec![0; 4096];
            let _ = tls.read(&mut request).await;
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            let _ = tls.flush().await;
            tokio::time::sleep(TIMEOUT * 3).await;
        });
        addr
    }

    fn get_over_tls(addr: SocketAddr) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = format!("https://{addr}/x").parse().unwrap();
        request
    }

    #[tokio::test]
    async fn an_https_upstream_is_answered_over_tls_it_verified() {
        let client = UpstreamClient::with(test_ca(), Matcher::builder().build()).unwrap();
        let response = client.send(get_over_tls(tls_upstream().await), TIMEOUT).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
    }

    /// A server on loopback that accepts connections and never says a word.
    async fn silent_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_tls_handshake_or_proxy_tunnel_that_stalls_is_a_connect_error_at_the_connect_timeout() {
        let silent = silent_server().await;
        let direct = Matcher::builder().build();
        let through_silent_proxy = Matcher::builder().https(format!("http://{silent}")).build();
        for (proxies, what) in [(direct, "the TLS handshake"), (through_silent_proxy, "the proxy's tunnel")] {
            let client = UpstreamClient::connecting_within(TIMEOUT, test_ca(), proxies).unwrap();
            let error = client.send(get_over_tls(silent), TIMEOUT * 10).await.expect_err(what);
            assert!(error.is_connect(), "{what}: {error:?}");
            assert!(error.to_string().contains("connecting timed out"), "{what}: {error}");
        }
    }

    #[tokio::test]
    async fn an_https_upstream_whose_certificate_no_root_vouches_for_is_refused() {
        let sent = UpstreamClient::new().unwrap().send(get_over_tls(tls_upstream().await), TIMEOUT).await;
        let error = sent.expect_err("a certificate the Web PKI does not vouch for");
        assert!(matches!(error, SendError::Transport(_)), "{error:?}");
        assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");
    }

    /// A `CONNECT` proxy on loopback: opens one tunnel and gives back the
    /// head it was asked with.
    async fn connect_proxy() -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = tokio::spawn(async move {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0];
                client.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let target = head.split(' ').nth(1).unwrap().to_owned();
            let mut upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
            client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.unwrap();
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
            head
        });
        (addr, asked)
    }

    /// What the proxy was asked, failing the test if it never was.
    async fn asked_of(asked: tokio::task::JoinHandle<String>) -> String {
        tokio::time::timeout(TIMEOUT, asked).await.expect("the proxy was never asked").unwrap()
    }

    fn test_ca() -> rustls::RootCertStore {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(include_bytes!("../../tests/fixtures/tls/ca.pem")).unwrap()).unwrap();
        roots
    }

    #[tokio::test]
    async fn an_https_upstream_is_reached_through_the_https_proxy_with_its_credentials() {
        let (proxy, asked) = connect_proxy().await;
        let upstream = tls_upstream().await;
        let proxies = Matcher::builder().https(format!("http://user:p%40ss@{proxy}")).build();
        let client = UpstreamClient::with(test_ca(), proxies).unwrap();
        let response = client.send(get_over_tls(upstream), TIMEOUT).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok", "TLS to the upstream, through the tunnel");
        let head = asked_of(asked).await.to_ascii_lowercase();
        assert!(head.starts_with(&format!("connect {upstream} http/1.1\r\n")), "{head}");
        assert!(head.contains("proxy-authorization: basic dxnlcjpwqhnz\r\n"), "user:p@ss: {head}");
    }

    #[tokio::test]
    async fn an_http_upstream_is_tunnelled_to_its_port_and_no_proxy_is_honoured() {
        let (proxy, asked) = connect_proxy().await;
        let (addr, served) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let client =
            UpstreamClient::with(test_ca(), Matcher::builder().http(format!("http://{proxy}")).build()).unwrap();
        let response = client.send(get(addr), TIMEOUT).await.unwrap();
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
        assert!(asked_of(asked).await.starts_with(&format!("CONNECT {addr} HTTP/1.1\r\n")));
        assert!(served.await.unwrap().starts_with("GET /x?q=1 HTTP/1.1\r\n"), "origin-form inside the tunnel");

        let (proxy, asked) = connect_proxy().await;
        let (addr, served) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let proxies = Matcher::builder().http(format!("http://{proxy}")).no("127.0.0.1").build();
        let response = UpstreamClient::with(test_ca(), proxies).unwrap().send(get(addr), TIMEOUT).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(served.await.unwrap().starts_with("GET /x?q=1 HTTP/1.1\r\n"), "straight to the upstream");
        asked.abort();
    }

    #[test]
    fn a_tunnel_is_asked_for_the_schemes_port_unless_the_url_gives_one() {
        let port = |url: &str| with_http_port(url.parse().unwrap()).unwrap().to_string();
        assert_eq!(port("http://api.example.com/v1/x?q=1"), "http://api.example.com:80/v1/x?q=1");
        assert_eq!(port("http://api.example.com:8080/v1"), "http://api.example.com:8080/v1");
        assert_eq!(port("http://[::1]/v1"), "http://[::1]:80/v1");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let error = UpstreamClient::new().unwrap().send(get(addr), TIMEOUT).await.expect_err("nobody listens");
        assert!(error.is_connect(), "{error:?}");
    }
}
