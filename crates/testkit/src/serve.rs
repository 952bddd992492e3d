//! Running an axum router on a loopback port for the life of a handle.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Resolves once the owning server is being dropped; lets slow or hanging
/// handlers give up so that shutdown never waits on them.
#[derive(Clone)]
pub(crate) struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Waits until the server stops.
    pub(crate) async fn stopped(mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// A router being served; stops when dropped.
pub(crate) struct Served {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Served {
    /// A stop signal to hand to handlers before the router is built.
    pub(crate) fn signal() -> (watch::Sender<bool>, StopSignal) {
        let (tx, rx) = watch::channel(false);
        (tx, StopSignal(rx))
    }

    /// Binds `addr` and serves `router` in a background task.
    pub(crate) async fn spawn(addr: SocketAddr, router: Router, stop: watch::Sender<bool>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let mut stopped = stop.subscribe();
        // As real servers do (nginx, Node): a streamed answer's last write is
        // small, and under Nagle's algorithm it would wait for a delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "test server stopped");
            }
        });
        Ok(Self { addr, stop })
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
