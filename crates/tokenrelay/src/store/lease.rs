//! Locks in the store and waiting on them: one helper for token rotation,
//! cache fills and purges.
//!
//! A [`Lease`] is a lock taken with `SET NX PX` and a random owner. It is
//! released by a fenced write that consumes it, by [`Lease::release`], or,
//! when the request holding it is cancelled (a visitor who hangs up drops
//! the handler's future), by its `Drop`, which starts the compare-and-delete
//! at once: waiters never poll a dead lock until its lease runs out. A
//! process frozen while holding one cannot release it, which is why no
//! request ends while it holds a lease (see the README's lifecycle rule); the
//! lease bounds what a crash costs.
//!
//! [`Backoff`] paces a caller that waits for another instance's work: full
//! jitter around an exponentially growing pause, within a deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Backend, Backends};

/// A lock this instance holds in the store until it is released.
pub(crate) struct Lease {
    backend: Arc<Backends>,
    lock: String,
    owner: String,
    /// Cleared once a fenced write or a release let it go.
    held: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("lock", &self.lock).finish_non_exhaustive()
    }
}

impl Lease {
    pub(super) fn new(backend: Arc<Backends>, lock: &str) -> Self {
        Self { backend, lock: lock.to_owned(), owner: owner(), held: true }
    }

    /// The random value that proves this instance holds the lock.
    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    pub(super) fn lock(&self) -> &str {
        &self.lock
    }

    /// Marks it released by a fenced write that consumed it: stored (the
    /// script deleted the lock) or refused (another owner holds it now).
    pub(super) fn settled(mut self) {
        self.held = false;
    }

    /// Releases the lock now, if this instance still holds it.
    pub(crate) async fn release(mut self) {
        self.held = false;
        if let Err(e) = delete_if(&self.backend, &self.lock, &self.owner).await {
            tracing::warn!(error = %e, "could not release a store lock; it expires with its lease");
        }
    }
}

impl Drop for Lease {
    /// Dropped while held: the request holding it was cancelled. The release
    /// starts at once on the runtime, without waiting for the lease to run out.
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (backend, lock, owner) =
            (self.backend.clone(), std::mem::take(&mut self.lock), std::mem::take(&mut self.owner));
        runtime.spawn(async move {
            if delete_if(&backend, &lock, &owner).await.is_err() {
                tracing::warn!("could not release the lock of a cancelled request; it expires with its lease");
            }
        });
    }
}

async fn delete_if(backend: &Backends, lock: &str, owner: &str) -> Result<bool, super::StoreError> {
    match backend {
        Backends::Upstash(b) => b.delete_if(lock, owner).await,
        Backends::Local(b) => b.delete_if(lock, owner).await,
    }
}

/// A fresh lock owner: 128 random bits, so that no other instance (or
/// another call in this one) can release or fence-write through a lock it
/// does not hold.
fn owner() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Pauses between looks at the store while another instance works: each
/// pause drawn from half to one and a half times a base that doubles from
/// `first` up to `max`, and none past the deadline.
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    /// Pauses from `first` up to `max`, for at most `within` from now.
    pub(crate) fn new(first: Duration, max: Duration, within: Duration) -> Self {
        Self { base: first, max, deadline: Instant::now() + within }
    }

    /// Sleeps the next pause (cut at the deadline); `false`, without
    /// sleeping, once the deadline has passed.
    pub(crate) async fn wait(&mut self) -> bool {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(self.base.mul_f64(0.5 + fastrand::f64()).min(left)).await;
        self.base = (self.base * 2).min(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_to_its_cap_and_stops_at_the_deadline() {
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(40), Duration::from_secs(1));
        let mut pauses = Vec::new();
        loop {
            let before = tokio::time::Instant::now();
            if !backoff.wait().await {
                break;
            }
            pauses.push(before.elapsed());
        }
        assert!(pauses[0] >= Duration::from_millis(5) && pauses[0] <= Duration::from_millis(15), "{pauses:?}");
        assert!(pauses.iter().all(|p| *p <= Duration::from_millis(60)), "capped: {pauses:?}");
        assert!(pauses.len() > 10, "keeps looking until the deadline: {pauses:?}");
        assert!(started.elapsed() <= Duration::from_secs(1) + Duration::from_millis(1), "never past the deadline");
    }
}
