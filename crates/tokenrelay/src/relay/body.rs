//! The relay's response body: a buffer for the relay's own answers, or the
//! upstream's body streamed through, counted against the response size
//! limit and redacted of injected credentials on the way.

#![deny(clippy::arithmetic_side_effects)]

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use std::future::Future;

use futures_util::{Stream, StreamExt};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::error::{Kind, RelayError};
use super::scrub::Redactor;
use crate::broker::{self, SendError};

/// Upstream answers up to this size are read whole before the relay answers
/// (see [`Body::primed`]); longer ones stream from there.
const WHOLE_ANSWER_BYTES: usize = 64 * 1024;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, SendError>> + Send + Sync>>;

/// A response body, implementing [`http_body::Body`]. A streamed body ends
/// with an error if the upstream fails or exceeds the size limit midway; a
/// streaming shell then aborts the response, a buffering one answers the
/// error instead (see [`Relay::handle_buffered`](super::Relay::handle_buffered)).
pub struct Body {
    kind: BodyKind,
    /// The request's chores, awaited once the last byte is out or the body
    /// failed (its error then waits in `failed`).
    chores: Option<super::chores::Finish>,
    drained: bool,
    failed: Option<RelayError>,
}

enum BodyKind {
    Full(Option<Bytes>),
    Upstream(Box<UpstreamBody>),
}

/// Where a streamed body comes from and its limits, for the log line if it fails.
pub(super) struct Source {
    pub(super) request_id: String,
    pub(super) upstream: String,
    pub(super) timeout: Duration,
    pub(super) limit: u64,
}

struct UpstreamBody {
    stream: ByteStream,
    redactor: Redactor,
    source: Source,
    received: u64,
    done: bool,
    /// What [`Body::primed`] read ahead, as it came: served (redacted) first.
    ahead: Option<Bytes>,
}

impl Body {
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self { kind: BodyKind::Full((!bytes.is_empty()).then_some(bytes)), chores: None, drained: false, failed: None }
    }

    pub(super) fn upstream(body: broker::UpstreamBody, redactor: Redactor, source: Source) -> Self {
        let stream = Box::pin(body.into_data_stream());
        let body = UpstreamBody { stream, redactor, source, received: 0, done: false, ahead: None };
        Self { kind: BodyKind::Upstream(Box::new(body)), chores: None, drained: false, failed: None }
    }

    /// Reads the upstream body ahead, up to [`WHOLE_ANSWER_BYTES`], so that
    /// the shell's HTTP server writes the response head and body together:
    /// an answer that ends within the limit becomes a buffer of known length
    /// (sent with `Content-Length`), a longer one starts with what was read.
    /// Written apart, a small last write waits for the client's delayed ACK
    /// under Nagle's algorithm (RFC 896; 40 ms on Linux) on a server that does
    /// not set `TCP_NODELAY`, such as vercel_runtime's: measured at 40–50 ms
    /// per request on keep-alive connections for streamed upstream answers.
    /// A failure while reading ahead (too large, timed out) is the error of
    /// the whole answer, since nothing was sent yet. Event streams are left
    /// alone: each event must go out as it comes.
    pub(super) async fn primed(mut self, event_stream: bool) -> Result<Self, RelayError> {
        let BodyKind::Upstream(body) = &mut self.kind else { return Ok(self) };
        if event_stream {
            return Ok(self);
        }
        let mut read = Vec::new();
        let mut length = 0usize;
        loop {
            match std::future::poll_fn(|cx| body.poll_received(cx)).await {
                Some(Ok(chunk)) => {
                    length = length.saturating_add(chunk.len());
                    read.push(chunk);
                    if length >= WHOLE_ANSWER_BYTES {
                        body.ahead = Some(joined(read));
                        return Ok(self);
                    }
                }
                Some(Err(err)) => return Err(err),
                // Whole: redacted at once, and not copied when it came in one
                // chunk and holds no credential.
                None => return Ok(Body::full(body.redactor.redact_whole(joined(read)))),
            }
        }
    }
}

/// Chunks as one buffer: the chunk itself when there is one.
pub(super) fn joined(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    }
}

impl Body {
    /// Takes the whole body, when it is in memory and nothing is left to
    /// wait for (no chores: it has a known length), for a shell that can then
    /// send it in one piece with the head; the body is then at its end.
    /// `None` for any other body, left as it was, to stream.
    pub fn take_whole(&mut self) -> Option<Bytes> {
        match self {
            Body { kind: BodyKind::Full(bytes), chores: None, drained: false, failed: None } => {
                Some(bytes.take().unwrap_or_default())
            }
            _ => None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body::full(bytes)
    }
}

impl Body {
    /// This body, ending only once `chores` are done.
    pub(super) fn ending_after(mut self, chores: Option<super::chores::Finish>) -> Self {
        self.chores = chores;
        self
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            BodyKind::Full(b) => f.debug_struct("Body").field("bytes", &b.as_ref().map_or(0, Bytes::len)).finish(),
            BodyKind::Upstream(u) => f.debug_struct("Body").field("streaming_from", &u.source.upstream).finish(),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = RelayError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RelayError>>> {
        let this = self.get_mut();
        if !this.drained {
            let frame = match &mut this.kind {
                BodyKind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
                BodyKind::Upstream(body) => body.poll_chunk(cx).map(|c| c.map(|r| r.map(Frame::data))),
            };
            match ready!(frame) {
                Some(Err(e)) if this.chores.is_some() => this.failed = Some(e),
                None if this.chores.is_some() => {}
                frame => return Poll::Ready(frame),
            }
            this.drained = true;
        }
        if let Some(chores) = &mut this.chores {
            ready!(Pin::new(chores).poll(cx));
            this.chores = None;
        }
        Poll::Ready(this.failed.take().map(Err))
    }

    fn is_end_stream(&self) -> bool {
        let drained = match &self.kind {
            BodyKind::Full(bytes) => bytes.is_none(),
            BodyKind::Upstream(body) => body.done && body.ahead.is_none(),
        };
        drained && self.chores.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // With chores to finish, no length: the answer ends (last chunk, or
        // the connection closing) only once they are done, so that the
        // platform sees the request busy until then and freezes nothing early.
        if self.chores.is_some() {
            return SizeHint::default();
        }
        match &self.kind {
            BodyKind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Upstream(_) => SizeHint::default(),
        }
    }
}

impl UpstreamBody {
    /// The next chunk, redacted.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, RelayError>>> {
        loop {
            let chunk = match self.ahead.take() {
                Some(ahead) => ahead,
                None if self.done => return Poll::Ready(None),
                None => match ready!(self.poll_received(cx)) {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                    None => {
                        let rest = self.redactor.finish();
                        return Poll::Ready((!rest.is_empty()).then_some(Ok(rest)));
                    }
                },
            };
            let out = self.redactor.push(&chunk);
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(out)));
            }
        }
    }

    /// The next chunk as the upstream sent it, counted against the limit;
    /// `None` once the body ended (then `done`).
    fn poll_received(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, RelayError>>> {
        match ready!(self.stream.poll_next_unpin(cx)) {
            Some(Ok(chunk)) => {
                self.received = self.received.saturating_add(chunk.len() as u64);
                if self.received > self.source.limit {
                    return Poll::Ready(Some(Err(self.fail(Kind::ResponseTooLarge(self.source.limit).into()))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                let err = RelayError::from_send(&e, self.source.timeout);
                Poll::Ready(Some(Err(self.fail(err))))
            }
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn fail(&mut self, err: RelayError) -> RelayError {
        self.done = true;
        let o = &self.source;
        tracing::warn!(request_id = %o.request_id, upstream = %o.upstream, code = err.code(), bytes = self.received, "upstream body failed midway; response cut short");
        err
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;
    use http_body_util::BodyExt;

    use super::*;
    use crate::relay::scrub::{REDACTED, Scrubber};

    fn upstream(chunks: Vec<&'static [u8]>) -> Body {
        let frames = chunks.into_iter().map(|c| Ok::<_, SendError>(Frame::data(Bytes::from_static(c))));
        let body = BodyExt::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(frames)));
        let source =
            Source { request_id: "r".into(), upstream: "u".into(), timeout: Duration::from_secs(1), limit: 1 << 20 };
        Body::upstream(body, Scrubber::new(vec![b"secret".to_vec()]).stream(), source)
    }

    #[tokio::test]
    async fn a_small_streamed_answer_is_read_whole_and_redacted() {
        let body = upstream(vec![b"{\"a\":\"sec", b"ret\"}"]).primed(false).await.unwrap();
        let expected = b"{\"a\":\"[REDACTED]\"}";
        assert_eq!(body.size_hint().exact(), Some(expected.len() as u64), "known length: sent with Content-Length");
        assert_eq!(body.collect().await.unwrap().to_bytes(), &expected[..]);
    }

    #[tokio::test]
    async fn a_small_answer_in_one_chunk_is_not_copied() {
        static ANSWER: &[u8] = b"{\"a\":1}";
        let mut primed = upstream(vec![ANSWER]).primed(false).await.unwrap();
        assert_eq!(primed.take_whole().unwrap().as_ptr(), ANSWER.as_ptr());
    }

    #[tokio::test]
    async fn a_long_answer_streams_on_after_what_was_read() {
        static CHUNK: [u8; 40 * 1024] = [b'x'; 40 * 1024];
        let body = upstream(vec![b"secret ", &CHUNK, &CHUNK, b" sec", b"ret", &CHUNK]).primed(false).await.unwrap();
        assert_eq!(body.size_hint().exact(), None, "still streaming");
        assert!(!body.is_end_stream());
        let sent = body.collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), 3 * CHUNK.len() + 2 * (REDACTED.len() + 1), "what was read ahead is redacted too");
        assert!(sent.starts_with(b"[REDACTED] xx"));
        assert!(sent.windows(REDACTED.len() + 2).any(|w| w == b"x [REDACTED]"), "and what streams after it");
    }

    #[tokio::test]
    async fn only_a_complete_body_with_nothing_to_wait_for_is_whole() {
        let mut primed = upstream(vec![b"{\"a\":", b"1}"]).primed(false).await.unwrap();
        assert_eq!(primed.take_whole().unwrap(), &b"{\"a\":1}"[..]);
        assert!(primed.is_end_stream(), "taken");
        let mut streamed = upstream(vec![b"data: 1\n\n"]).primed(true).await.unwrap();
        assert!(streamed.take_whole().is_none(), "an event stream streams");
        let chores = crate::relay::chores::Chores::default();
        chores.add(async {});
        let mut pending = Body::full(Bytes::from_static(b"ok")).ending_after(chores.finish(Duration::from_secs(1)));
        assert!(pending.take_whole().is_none(), "a chore pending: the body ends after it");
        assert_eq!(pending.collect().await.unwrap().to_bytes(), &b"ok"[..]);
    }

    #[tokio::test]
    async fn an_event_stream_is_not_read_ahead() {
        let body = upstream(vec![b"data: 1\n\n"]).primed(true).await.unwrap();
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(body.collect().await.unwrap().to_bytes(), &b"data: 1\n\n"[..]);
    }
}
