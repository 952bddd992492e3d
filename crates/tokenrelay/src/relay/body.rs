//! The relay's response body: a buffer for the relay's own answers, or the
//! upstream's body streamed through, counted against the response size
//! limit and redacted of injected credentials on the way.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body::{Frame, SizeHint};

use super::error::{Kind, RelayError};
use super::scrub::Redactor;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send + Sync>>;

/// A response body, implementing [`http_body::Body`]. A streamed body ends
/// with an error if the upstream fails or exceeds the size limit midway; a
/// streaming shell then aborts the response, a buffering one answers the
/// error instead (see [`Relay::handle_buffered`](super::Relay::handle_buffered)).
pub struct Body {
    kind: BodyKind,
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
}

impl Body {
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self { kind: BodyKind::Full((!bytes.is_empty()).then_some(bytes)) }
    }

    pub(super) fn upstream(response: reqwest::Response, redactor: Redactor, source: Source) -> Self {
        let stream = Box::pin(response.bytes_stream());
        Self { kind: BodyKind::Upstream(Box::new(UpstreamBody { stream, redactor, source, received: 0, done: false })) }
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
        match &mut self.get_mut().kind {
            BodyKind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Upstream(body) => body.poll_chunk(cx).map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Full(bytes) => bytes.is_none(),
            BodyKind::Upstream(body) => body.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Upstream(_) => SizeHint::default(),
        }
    }
}

impl UpstreamBody {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, RelayError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(self.stream.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => {
                    self.received += chunk.len() as u64;
                    if self.received > self.source.limit {
                        return Poll::Ready(Some(Err(self.fail(Kind::ResponseTooLarge(self.source.limit).into()))));
                    }
                    let out = self.redactor.push(&chunk);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Some(Err(e)) => {
                    let err = RelayError::from_transport(&e, self.source.timeout);
                    return Poll::Ready(Some(Err(self.fail(err))));
                }
                None => {
                    self.done = true;
                    let rest = self.redactor.finish();
                    return Poll::Ready((!rest.is_empty()).then_some(Ok(rest)));
                }
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
