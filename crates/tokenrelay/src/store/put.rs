//! Writing one key: plainly, or fenced by a [`Lease`] on its lock; and
//! deleting a sealed value only while it is still the one read.

use std::time::Duration;

use super::{Backend, Backends, Lease, Opened, Store, StoreError};

/// A value to store. No `Debug`: it may be a token's plaintext.
#[derive(Clone, Copy)]
pub(crate) enum Write<'a> {
    /// Kept as it is: a cooldown, a failure, a purge record.
    Plain(&'a str),
    /// Sealed under its key: a token, a cached answer, a key set.
    Sealed(&'a [u8]),
}

impl Store {
    /// Stores `value` under `key` for `ttl`, whatever it held.
    pub(crate) async fn put(&self, key: &str, value: Write<'_>, ttl: Duration) -> Result<(), StoreError> {
        let value = self.text(key, value);
        on_backend!(self, b => b.set(key, &value, ttl))
    }

    /// Fenced write: stores `value` under `key` for `ttl` and releases the
    /// lease's lock, only while it still holds it; returns whether it stored.
    /// A writer whose lease ran out (another instance may hold the lock and
    /// have stored a newer value) writes nothing. On a store error the lease
    /// is released ([`Lease::fenced_write_done`]).
    pub(crate) async fn put_fenced(
        &self,
        key: &str,
        value: Write<'_>,
        ttl: Duration,
        mut lease: Lease,
    ) -> Result<bool, StoreError> {
        let value = self.text(key, value);
        lease.sending_fenced_write();
        let written = on_backend!(self, b => b.set_fenced(key, &value, ttl, lease.lock(), lease.owner()));
        lease.fenced_write_done(written).await
    }

    /// Deletes `key` only while the store still holds `held`, as it was read.
    pub(crate) async fn delete_if(&self, key: &str, held: &Opened) -> Result<bool, StoreError> {
        on_backend!(self, b => b.delete_if(key, &held.sealed))
    }

    fn text(&self, key: &str, value: Write<'_>) -> String {
        match value {
            Write::Plain(text) => text.to_owned(),
            Write::Sealed(plain) => self.sealer.seal(key, plain),
        }
    }
}
