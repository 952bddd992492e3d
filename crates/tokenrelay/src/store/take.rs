//! Taking a lease on a lock, and reading in the same round trip.

use std::time::Duration;

use super::{Backend, Backends, Lease, Read, Store, StoreError, Values};

impl Store {
    /// Takes `lock` for `lease` unless another instance holds it, then reads
    /// `reads`, in one round trip: when the lock is won, the read shows the
    /// state after winning it, so what the previous holder stored is never
    /// made again. The lease is let go by a fenced write
    /// ([`Store::put_fenced`]), by [`Lease::release`], or on drop.
    pub(crate) async fn take(
        &self,
        lock: &str,
        lease: Duration,
        reads: &[Read<'_>],
    ) -> Result<(Option<Lease>, Values), StoreError> {
        let candidate = Lease::new(self.backend.clone(), lock, lease);
        let keys: Vec<&str> = reads.iter().map(|r| r.key).collect();
        let (won, stored) = on_backend!(self, b => b.lock_and_read(lock, candidate.owner(), lease, &keys))?;
        let lease = if won {
            Some(candidate)
        } else {
            candidate.settled();
            None
        };
        Ok((lease, self.values(reads, stored)))
    }
}
