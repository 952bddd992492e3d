//! Work a request makes due, done inside that request's lifetime.
//!
//! Serverless platforms may freeze an instance the moment it has answered
//! (Lambda, so Netlify) or suspend it after `end` (Vercel, vercel/vercel#17351),
//! so nothing may be left for after the invocation. A request's chores (a token
//! refresh inside `refresh_window`, a rate-limit sync past its interval, a
//! stale entry's refresh) start at once on the runtime, run alongside the
//! upstream call, and are awaited ([`Finish`]) until done or their deadline
//! passed: by the answer's body, which ends only then
//! ([`Relay::handle`](super::Relay::handle)), or on Vercel by the runtime,
//! which holds `end` until its background work is done, so that the answer
//! ends at once ([`Relay::handle_apart`](super::Relay::handle_apart)). A chore
//! past the deadline goes on only if the process does: whatever it holds in
//! the store expires with its lease.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;

/// The chores of one request.
#[derive(Debug, Default)]
pub(super) struct Chores {
    started: Mutex<Vec<JoinHandle<()>>>,
}

impl Chores {
    /// Starts `chore` now, alongside the request.
    pub(super) fn add(&self, chore: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(chore);
        self.started.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
    }

    /// Waits for every chore, for at most `deadline`; `None` when there are none.
    pub(super) fn finish(self, deadline: Duration) -> Option<Finish> {
        let pending = self.started.into_inner().unwrap_or_else(PoisonError::into_inner);
        (!pending.is_empty()).then(|| Finish { pending, deadline: Box::pin(tokio::time::sleep(deadline)) })
    }
}

/// A request's chores being waited for: by the answer's body once its last
/// byte is out, or as the invocation's background work.
#[derive(Debug)]
pub(crate) struct Finish {
    pending: Vec<JoinHandle<()>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Future for Finish {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.pending.retain_mut(|h| Pin::new(h).poll(cx).is_pending());
        if self.pending.is_empty() {
            return Poll::Ready(());
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            tracing::warn!(chores = self.pending.len(), "request chores passed their deadline; answering without them");
            self.pending.clear();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn chores_run_alongside_and_are_awaited_by_finish() {
        let chores = Chores::default();
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let flag = done.clone();
        chores.add(async move {
            rx.await.ok();
            flag.store(true, Ordering::SeqCst);
        });
        tx.send(()).unwrap(); // the request's own work goes on meanwhile
        chores.finish(Duration::from_secs(5)).unwrap().await;
        assert!(done.load(Ordering::SeqCst), "finish returns once the chore is done");
    }

    #[tokio::test(start_paused = true)]
    async fn finish_gives_up_at_the_deadline() {
        let chores = Chores::default();
        chores.add(std::future::pending());
        let started = tokio::time::Instant::now();
        chores.finish(Duration::from_secs(3)).unwrap().await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(Chores::default().finish(Duration::from_secs(3)).is_none(), "nothing to wait for");
    }
}
