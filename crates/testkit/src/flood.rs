//! An endpoint that answers `GET` with a chunked JSON body of about `total`
//! bytes (`{"keys":[` and then whitespace, never closed), counting the bytes it hands to the
//! connection: a client that stops reading at a size cap leaves most of it
//! unsent, one that reads the whole body first takes all of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;

use crate::serve::Served;

/// Bytes per chunk.
const CHUNK: usize = 64 * 1024;

/// The flooding endpoint; stops when dropped.
pub struct Flood {
    served: Served,
    sent: Arc<AtomicUsize>,
}

impl Flood {
    /// Starts on a free port, answering `total` bytes to each request.
    pub async fn start(total: usize) -> anyhow::Result<Self> {
        let (stop, _) = Served::signal();
        let sent = Arc::new(AtomicUsize::new(0));
        let counted = sent.clone();
        let router = Router::new().route(
            "/flood",
            get(move || {
                let counted = counted.clone();
                let head = Bytes::from_static(b"{\"keys\":[");
                let chunks = (0..total.div_ceil(CHUNK)).map(move |i| {
                    let len = total.saturating_sub(i * CHUNK).min(CHUNK);
                    let chunk = if i == 0 { head.clone() } else { Bytes::from(vec![b' '; len]) };
                    counted.fetch_add(chunk.len(), Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(chunk)
                });
                async move {
                    ([("content-type", "application/json")], Body::from_stream(futures_util::stream::iter(chunks)))
                }
            }),
        );
        let served = Served::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), router, stop).await?;
        Ok(Self { served, sent })
    }

    /// The URL answering the flood.
    pub fn url(&self) -> String {
        format!("{}/flood", self.served.base_url())
    }

    /// Bytes handed to connections so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }
}
