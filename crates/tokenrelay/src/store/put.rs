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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Env, StoreSettings};
    use crate::store::{LOCAL_STORE_VAR, Read};

    #[tokio::test]
    async fn a_sealed_value_opens_only_under_its_own_key_and_a_plain_read_sees_it_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::from_pairs([(LOCAL_STORE_VAR, dir.path().to_str().unwrap())]);
        let settings = StoreSettings { allow_unencrypted: false, timeout: Duration::from_secs(2) };
        let store = Store::from_env(&env, &settings, reqwest::Client::new(), std::path::Path::new("t.toml")).unwrap();
        let ttl = Duration::from_secs(60);
        store.put("a", Write::Sealed(b"secret"), ttl).await.unwrap();
        let mut values = store.get(&[Read::sealed("a"), Read::plain("a"), Read::sealed("absent")]).await.unwrap();
        assert_eq!(values.opened().map(|o| o.plain).as_deref(), Some(&b"secret"[..]));
        let stored = values.plain().expect("the stored form");
        assert!(!stored.contains("secret"), "sealed at rest: {stored}");
        assert!(values.opened().is_none(), "absent");
        // The sealed form copied under another key does not open there: it reads as absent.
        store.put("b", Write::Plain(&stored), ttl).await.unwrap();
        assert!(store.get(&[Read::sealed("b")]).await.unwrap().opened().is_none());
    }
}
