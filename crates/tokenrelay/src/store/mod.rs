//! The shared store: Upstash Redis over REST when configured, else an
//! embedded local file store ([`choose`]). Both implement the few operations
//! of [`Backend`]; [`Store`] offers them as a handful of primitives, one file
//! each, that seal what they write and open what they read, each value under
//! its own key ([`seal`]):
//!
//! - [`get`](Store::get): the values of many keys, in one round trip;
//! - [`put`](Store::put), and the fenced [`put_fenced`](Store::put_fenced),
//!   which writes only while a [`Lease`] holds its lock, and lets it go;
//! - [`take`](Store::take): a lease on a lock, and a read in the same trip;
//! - [`count`](Store::count): additions to shared counters, and a read, in
//!   one round trip (a cold request's only one).
//!
//! What a key holds is its owner's business: [`keys`] names each kind of
//! key, one file each, and says how its values read.

/// Runs one [`Backend`] operation on whichever backend is in use.
macro_rules! on_backend {
    ($store:expr, $b:ident => $call:expr) => {
        match &*$store.backend {
            Backends::Upstash($b) => $call.await,
            Backends::Local($b) => $call.await,
        }
    };
}

mod choose;
mod count;
mod get;
pub(crate) mod keys;
mod lease;
mod local;
mod put;
pub(crate) mod seal;
mod take;
pub(crate) mod upstash;

use std::sync::Arc;
use std::time::Duration;

pub use choose::{ENCRYPTION_KEY_VAR, LOCAL_STORE_VAR, UPSTASH_VARS, VERCEL_KV_VARS};
pub(crate) use get::{Opened, Read, Values};
pub(crate) use keys::KeyNamer;
pub(crate) use keys::cache::{CacheKeys, CacheState};
pub(crate) use keys::session::SessionKey;
pub(crate) use keys::token::{TokenKeys, TokenState, secret_tag};
pub(crate) use lease::{Backoff, Lease};
use local::LocalStore;
pub(crate) use put::Write;
use seal::Sealer;
use upstash::UpstashClient;

/// Why a store operation failed. Never holds a secret: the Upstash token is
/// only ever sent as a header.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("timed out")]
    Timeout,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("redis error: {0}")]
    Redis(String),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("local store: {0}")]
    Io(String),
}

impl StoreError {
    pub(crate) fn transport(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            StoreError::Timeout
        } else if e.is_connect() {
            StoreError::Transport("connection failed".to_owned())
        } else {
            // The source, not the error itself: reqwest's Display includes the URL.
            StoreError::Transport(
                std::error::Error::source(e).map_or_else(|| "request failed".to_owned(), ToString::to_string),
            )
        }
    }
}

/// The operations every backend implements, each atomic in its backend, so
/// that one instance's read-modify-write never interleaves with another's.
pub(crate) trait Backend {
    /// The values of `keys`, `None` where absent or expired.
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>, StoreError>;

    /// Deletes `key` only while it still holds `expected`.
    async fn delete_if(&self, key: &str, expected: &str) -> Result<bool, StoreError>;

    /// Takes `lock` for `owner` unless someone holds it, for `lease`; then
    /// reads `keys`, so that a winner sees the state after winning.
    async fn lock_and_read(
        &self,
        lock: &str,
        owner: &str,
        lease: Duration,
        keys: &[&str],
    ) -> Result<(bool, Vec<Option<String>>), StoreError>;

    /// Fenced write: only while `owner` still holds `lock`, stores `value`
    /// under `key` for `ttl` and releases the lock; returns whether it did.
    /// A writer whose lease ran out (another instance may hold the lock and
    /// have stored a newer value) writes nothing.
    async fn set_fenced(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        lock: &str,
        owner: &str,
    ) -> Result<bool, StoreError>;

    /// Stores `value` under `key` for `ttl`, whatever it held.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Adds each count to its counter (created with the count's `ttl`) and
    /// reads `keys`, in one round trip: the new totals in order, and the
    /// values as [`Backend::mget`] gives them.
    async fn count_and_read(
        &self,
        counts: &[Count],
        keys: &[&str],
    ) -> Result<(Vec<u64>, Vec<Option<String>>), StoreError>;
}

/// An addition to a shared counter ([`Store::count`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) key: String,
    pub(crate) add: u64,
    /// How long a counter this addition creates lives.
    pub(crate) ttl: Duration,
}

enum Backends {
    Upstash(UpstashClient),
    Local(LocalStore),
}

/// The store in use. It seals every sealed value it writes and opens every
/// one it reads, so callers only see plaintext.
pub(crate) struct Store {
    /// Shared with the [`Lease`]s it hands out, which release themselves.
    backend: Arc<Backends>,
    sealer: Sealer,
    namer: KeyNamer,
    session: SessionKey,
}

impl Store {
    /// Names keys under the store's secret (see [`keys`]).
    pub(crate) fn namer(&self) -> &KeyNamer {
        &self.namer
    }

    /// The key relay session cookies are signed with, derived from the store's secret.
    pub(crate) fn session_key(&self) -> &SessionKey {
        &self.session
    }
}
