//! One cached answer (`relay::cache`): the sealed entry, the fill lock of the
//! one instance asking the upstream, and its upstream's purge record, which
//! is read with every entry.

use std::time::Duration;

use super::{KeyNamer, PREFIX};
use crate::store::{Lease, Read, Store, StoreError, Values};

/// The keys of one cached answer and of its upstream's purge record.
#[derive(Debug, Clone)]
pub(crate) struct CacheKeys {
    /// The sealed entry; also the associated data it is sealed under.
    pub(crate) entry: String,
    /// The fill lock, held by the one instance asking the upstream.
    pub(crate) lock: String,
    /// The upstream's purges (path prefix → when), read with every entry.
    pub(crate) purges: String,
    /// Serialises writers of the purge record.
    pub(crate) purges_lock: String,
}

/// One cached answer's shared state, opened.
#[derive(Debug, Default)]
pub(crate) struct CacheState {
    /// The entry's plaintext; `None` when absent or when it cannot be opened.
    pub(crate) entry: Option<Vec<u8>>,
    /// The upstream's purge record.
    pub(crate) purges: Option<String>,
    /// Whether an instance holds the fill lock.
    pub(crate) filling: bool,
}

impl CacheKeys {
    /// Keys for the answer `identity` (the deployment's base URL, credentials
    /// and injected values, then method, path, query, headers: hashed, since
    /// it holds secrets and a query can hold what a visitor typed) of
    /// `upstream`. The purge record is the upstream's, named by its name only:
    /// a purge covers the answers of every deployment of that name.
    pub(crate) fn new(namer: &KeyNamer, upstream: &str, identity: &str) -> Self {
        let entry = format!("{PREFIX}:cache:{upstream}:{}", namer.hash(identity));
        let purges = format!("{PREFIX}:cache:{upstream}:purges");
        CacheKeys { lock: format!("{entry}:lock"), purges_lock: format!("{purges}:lock"), entry, purges }
    }

    /// What a lookup fetches: the entry, the purge record and the fill lock.
    pub(crate) fn reads(&self) -> [Read<'_>; 3] {
        [Read::sealed(&self.entry), Read::plain(&self.purges), Read::plain(&self.lock)]
    }

    /// Takes the state out of `values`, read as [`CacheKeys::reads`] asked.
    pub(crate) fn state(values: &mut Values) -> CacheState {
        CacheState {
            entry: values.opened().map(|o| o.plain),
            purges: values.plain(),
            filling: values.plain().is_some(),
        }
    }

    /// Reads a cached answer, its upstream's purges and whether a fill is
    /// under way, in one round trip.
    pub(crate) async fn read(&self, store: &Store) -> Result<CacheState, StoreError> {
        Ok(Self::state(&mut store.get(&self.reads()).await?))
    }

    /// Takes the fill lock unless another instance holds it, then reads the
    /// answer and purges, in one round trip ([`Store::take`]).
    pub(crate) async fn take(&self, store: &Store, lease: Duration) -> Result<(Option<Lease>, CacheState), StoreError> {
        let (lease, mut values) =
            store.take(&self.lock, lease, &[Read::sealed(&self.entry), Read::plain(&self.purges)]).await?;
        let (entry, purges) = (values.opened().map(|o| o.plain), values.plain());
        // Whoever won, the lock is held now.
        Ok((lease, CacheState { entry, purges, filling: true }))
    }

    /// Takes the purge record's lock and reads the record, in one round trip.
    pub(crate) async fn take_purges(
        &self,
        store: &Store,
        lease: Duration,
    ) -> Result<(Option<Lease>, Option<String>), StoreError> {
        let (lease, mut values) = store.take(&self.purges_lock, lease, &[Read::plain(&self.purges)]).await?;
        Ok((lease, values.plain()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_hide_the_request_and_share_the_upstream_purge_record() {
        let n = KeyNamer::new(b"secret-a");
        let a = CacheKeys::new(&n, "api", "GET\n/search\nq=secret+words");
        let b = CacheKeys::new(&n, "api", "GET\n/search\nq=other");
        assert_ne!(a.entry, b.entry);
        assert_eq!(a.purges, b.purges);
        assert!(!a.entry.contains("secret") && a.entry.starts_with("tokenrelay:v1:cache:api:"), "{}", a.entry);
        assert_eq!(a.lock, format!("{}:lock", a.entry));
        let other_store = CacheKeys::new(&KeyNamer::new(b"secret-b"), "api", "GET\n/search\nq=secret+words");
        assert_ne!(other_store.entry, a.entry, "keyed");
    }
}
