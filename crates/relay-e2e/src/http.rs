//! A deliberately dumb HTTP client: the request line is sent byte for byte
//! (an ordinary client would normalise `..` and `%2e` away before the relay
//! could refuse them), HTTP/1.0 so that every answer is close-delimited, and
//! every answer is kept for the final secret scan.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one exchange may take; the relay's own timeout is shorter.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a test poses as different visitors.
#[derive(Clone, Copy, Debug)]
pub enum Visitor {
    /// The platform trusts this header (set by its edge in production).
    Header(&'static str),
    /// The platform takes the connection's address: connect from another
    /// loopback address (127.0.0.0/8 is all loopback on Linux).
    SourceAddress,
}

/// How a platform shell is reached.
#[derive(Clone)]
pub struct Shell {
    /// `127.0.0.1:PORT` of the function (or of the dev server in front of it).
    pub addr: String,
    /// How the platform learns the visitor's IP address.
    pub visitor: Visitor,
    /// Whether a dev server in front normalises dot segments before the
    /// function sees them (`netlify dev` parses URLs with WHATWG rules).
    pub normalizes_paths: bool,
    /// What the platform does to the URL on its way to the function (Vercel
    /// appends the rewrite's parameter).
    pub rewrite: fn(&str) -> String,
    transcript: Arc<Mutex<String>>,
}

impl Shell {
    pub fn new(addr: String, visitor: Visitor, normalizes_paths: bool, rewrite: fn(&str) -> String) -> Self {
        Self { addr, visitor, normalizes_paths, rewrite, transcript: Arc::default() }
    }

    /// The same platform at another address (another process), sharing the transcript.
    pub fn at(&self, addr: String) -> Self {
        Self { addr, ..self.clone() }
    }

    /// Sends `method target` with `headers` and `body`, exactly as given
    /// (after the platform's rewrite), and reads the whole answer.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        self.exchange(method, target, headers, body, None).await
    }

    /// `GET target` as visitor number `n` (1-254), whose address the platform sees.
    pub async fn get_as(&self, n: u8, target: &str) -> anyhow::Result<Reply> {
        self.get_from(n, target, &[]).await
    }

    /// `GET target` with `headers`, as visitor number `n` (see [`get_as`](Self::get_as)).
    pub async fn get_from(&self, n: u8, target: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        self.exchange("GET", target, headers, b"", Some(n)).await
    }

    async fn exchange(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        visitor: Option<u8>,
    ) -> anyhow::Result<Reply> {
        let target = (self.rewrite)(target);
        let mut request = format!("{method} {target} HTTP/1.0\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        let mut source = None;
        match (visitor, self.visitor) {
            (Some(n), Visitor::Header(name)) => request.push_str(&format!("{name}: 203.0.113.{n}\r\n")),
            (Some(n), Visitor::SourceAddress) => source = Some(std::net::Ipv4Addr::new(127, 0, 0, n)),
            (None, _) => {}
        }
        if !body.is_empty() {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let exchange = async {
            let mut stream =
                connect(&self.addr, source).await.with_context(|| format!("connecting to {}", self.addr))?;
            stream.write_all(request.as_bytes()).await?;
            stream.write_all(body).await?;
            let mut raw = Vec::new();
            // A connection reset after a partial answer still leaves what was read.
            let read = stream.read_to_end(&mut raw).await;
            anyhow::Ok((raw, read.err()))
        };
        let (raw, read_error) = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{method} {target}: no answer within {EXCHANGE_TIMEOUT:?}"))??;
        let reply = Reply::parse(&raw, read_error.is_some()).with_context(|| format!("{method} {target}"))?;
        if let Ok(mut t) = self.transcript.lock() {
            t.push_str(&String::from_utf8_lossy(&raw));
            t.push('\n');
        }
        Ok(reply)
    }

    /// `GET target` with `headers`.
    pub async fn get(&self, target: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        self.send("GET", target, headers, b"").await
    }

    /// Everything every shell at this platform answered so far.
    pub fn transcript(&self) -> String {
        self.transcript.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

async fn connect(addr: &str, source: Option<std::net::Ipv4Addr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else { return TcpStream::connect(addr).await };
    let target = tokio::net::lookup_host(addr).await?.next().ok_or(std::io::ErrorKind::AddrNotAvailable)?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    socket.connect(target).await
}

/// The body of a chunked message (RFC 9112 §7.1), and whether its last chunk arrived.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else { return (body, false) };
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16) else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        let start = line_end + 2;
        let Some(chunk) = raw.get(start..start + size) else {
            body.extend_from_slice(&raw[start.min(raw.len())..]);
            return (body, false);
        };
        body.extend_from_slice(chunk);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The connection failed before the answer was complete.
    pub cut_short: bool,
}

impl Reply {
    fn parse(raw: &[u8], cut_short: bool) -> anyhow::Result<Self> {
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            bail!("no complete response head in {} bytes", raw.len());
        };
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect::<Vec<(String, String)>>();
        let rest = &raw[split + 4..];
        // Some servers answer HTTP/1.0 requests chunked all the same (netlify dev does).
        let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let (body, complete) = if chunked { dechunk(rest) } else { (rest.to_vec(), true) };
        Ok(Self { status, headers, body, cut_short: cut_short || !complete })
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, joined with ", ".
    pub fn header_all(&self, name: &str) -> String {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("body is not JSON: {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `error.code` of a relay error body.
    pub fn error_code(&self) -> Option<String> {
        self.json().ok()?.pointer("/error/code")?.as_str().map(str::to_owned)
    }
}
