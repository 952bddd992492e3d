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
//! A fenced write or a compare-and-delete the store refuses (a store that
//! runs no scripts) does not leave the lock to its lease either: the lock is
//! then deleted with a plain `DEL`, but only where that cannot drop another
//! instance's lease (see [`let_go`]). A store that cannot even do that is
//! failing, and its callers already degrade as in an outage.
//!
//! [`Backoff`] paces a caller that waits for another instance's work: full
//! jitter around an exponentially growing pause, within a deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Backend, Backends, StoreError};

/// A lock this instance holds in the store until it is released.
pub(crate) struct Lease {
    backend: Arc<Backends>,
    lock: String,
    owner: String,
    /// No sooner than this, the lock expires in the store: the lease's
    /// length counted from before the `SET NX` that took it was sent.
    expires: Instant,
    /// Cleared once a fenced write or a release let it go.
    held: bool,
    /// A fenced write was sent whose outcome is unknown: it may have
    /// released the lock, which another instance may hold by now.
    in_doubt: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("lock", &self.lock).finish_non_exhaustive()
    }
}

impl Lease {
    /// A candidate for `lock`, held for `lease` if the `SET NX` about to be sent wins it.
    pub(super) fn new(backend: Arc<Backends>, lock: &str, lease: Duration) -> Self {
        let expires = Instant::now() + lease;
        Self { backend, lock: lock.to_owned(), owner: owner(), expires, held: true, in_doubt: false }
    }

    /// The random value that proves this instance holds the lock.
    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    pub(super) fn lock(&self) -> &str {
        &self.lock
    }

    /// Marks a candidate that lost: another owner holds the lock.
    pub(super) fn settled(mut self) {
        self.held = false;
    }

    /// Marks the fenced write that consumes this lease as about to be sent:
    /// until its answer comes back, it may have released the lock.
    pub(super) fn sending_fenced_write(&mut self) {
        self.in_doubt = true;
    }

    /// Settles the lease with what its fenced write came back with: it ran
    /// (it stored, or refused because another owner holds the lock), or it
    /// failed, and the lock is released now, inside the request, rather than
    /// left to its lease.
    pub(super) async fn fenced_write_done(mut self, written: Result<bool, StoreError>) -> Result<bool, StoreError> {
        match written {
            Ok(stored) => {
                self.held = false;
                Ok(stored)
            }
            Err(e) => {
                self.in_doubt = !did_not_run(&e);
                self.release().await;
                Err(e)
            }
        }
    }

    /// Releases the lock now, if this instance still holds it.
    pub(crate) async fn release(mut self) {
        self.held = false;
        if let Err(e) = let_go(&self.backend, &self.lock, &self.owner, self.plain_delete_until()).await {
            tracing::warn!(error = %e, "could not release a store lock; it expires with its lease");
        }
    }

    /// Until when a plain `DEL` may release the lock: never once a fenced
    /// write may have released it already.
    fn plain_delete_until(&self) -> Option<Instant> {
        (!self.in_doubt).then_some(self.expires)
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
        let until = self.plain_delete_until();
        let (backend, lock, owner) =
            (self.backend.clone(), std::mem::take(&mut self.lock), std::mem::take(&mut self.owner));
        runtime.spawn(async move {
            if let_go(&backend, &lock, &owner, until).await.is_err() {
                tracing::warn!("could not release the lock of a cancelled request; it expires with its lease");
            }
        });
    }
}

/// Deletes `lock` while `owner` holds it: by compare-and-delete, a script.
/// Where the store refuses it, by a plain `DEL`, only if that lands while
/// the lease surely runs (sent within the store's timeout before
/// `plain_until`): until then no one else can hold the lock, since it has
/// not expired and only its owner deletes it. Past that, or with no
/// `plain_until`, the lock is left to expire: the `DEL` could drop the
/// lease of whoever took the lock since.
async fn let_go(backend: &Backends, lock: &str, owner: &str, plain_until: Option<Instant>) -> Result<(), StoreError> {
    let b = match backend {
        Backends::Local(b) => return b.delete_if(lock, owner).await.map(drop),
        Backends::Upstash(b) => b,
    };
    match b.delete_if(lock, owner).await {
        Err(e) if did_not_run(&e) && plain_until.is_some_and(|t| Instant::now() + b.timeout() < t) => {
            tracing::warn!(error = %e, "the store refused the compare-and-delete; deleting the lock while its lease surely runs");
            b.command(&["DEL", lock]).await.map(drop)
        }
        other => other.map(drop),
    }
}

/// Whether the store answered `e` without running the command: a Redis
/// error reply (a refused script never runs; ours fail on nothing once
/// running). A timeout or a lost connection leaves that unknown.
fn did_not_run(e: &StoreError) -> bool {
    matches!(e, StoreError::Redis(_))
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

/// A store whose Redis refuses every script: the lock still goes with the request.
#[cfg(test)]
mod refusing_scripts;

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
