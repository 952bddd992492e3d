//! The front's side of HTTP/1.0: one request read whole, kept both as the
//! bytes that arrived (forwarded as they are) and parsed (turned into events).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest request head the front reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a caller may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as it arrived.
#[derive(Debug)]
pub(crate) struct Request {
    /// Every byte of it: head and body.
    pub(crate) raw: Vec<u8>,
    pub(crate) method: String,
    /// The request target, exactly as sent.
    pub(crate) target: String,
    /// Names as sent, in order, repeated ones repeated.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// The connection's other end: the visitor, as the platform sees it.
    pub(crate) peer: SocketAddr,
}

impl Request {
    /// Reads the head and a `Content-Length` body.
    pub(crate) async fn read(stream: &mut TcpStream, peer: SocketAddr) -> anyhow::Result<Self> {
        tokio::time::timeout(READ_TIMEOUT, Self::read_whole(stream, peer))
            .await
            .with_context(|| format!("no whole request within {READ_TIMEOUT:?}"))?
    }

    async fn read_whole(stream: &mut TcpStream, peer: SocketAddr) -> anyhow::Result<Self> {
        let mut raw = Vec::new();
        let head_end = loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            ensure!(raw.len() <= MAX_HEAD_BYTES, "request head over {MAX_HEAD_BYTES} bytes");
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await?;
            ensure!(n > 0, "connection closed before the end of the request head");
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("bad request line {request_line:?}");
        };
        // Only then is the end of the answer the end of the connection.
        ensure!(version == "HTTP/1.0", "the front speaks HTTP/1.0 only, got {version}");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map(|(_, value)| value.parse::<usize>())
            .transpose()
            .context("bad Content-Length")?
            .unwrap_or(0);
        let body_start = head_end + 4;
        while raw.len() < body_start + length {
            let mut chunk = vec![0; body_start + length - raw.len()];
            let n = stream.read(&mut chunk).await?;
            ensure!(n > 0, "connection closed before the end of the body");
            raw.extend_from_slice(&chunk[..n]);
        }
        let body = raw[body_start..].to_vec();
        Ok(Self { method: method.to_owned(), target: target.to_owned(), headers, body, raw, peer })
    }
}
