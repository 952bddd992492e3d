//! Reading many keys in one round trip: plain values as stored, sealed ones
//! opened under their key.

use super::{Backend, Backends, StoreError};
use crate::store::Store;

/// A key to read, and whether its value is sealed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read<'a> {
    pub(super) key: &'a str,
    pub(super) sealed: bool,
}

impl<'a> Read<'a> {
    /// A value kept as it is: a counter, a cooldown, a lock, a record.
    pub(crate) fn plain(key: &'a str) -> Self {
        Self { key, sealed: false }
    }

    /// A value sealed under its key: a token, a cached answer, a key set.
    pub(crate) fn sealed(key: &'a str) -> Self {
        Self { key, sealed: true }
    }

    /// Each of `keys`, plain.
    pub(crate) fn plain_all(keys: &[&'a str]) -> Vec<Self> {
        keys.iter().copied().map(Self::plain).collect()
    }
}

/// A sealed value, opened, with the form it was read in so that it can be
/// deleted only while the store still holds exactly that value
/// ([`Store::delete_if`]). No `Debug`: it holds a token's plaintext.
pub(crate) struct Opened {
    pub(super) sealed: String,
    /// The plaintext that was sealed.
    pub(crate) plain: Vec<u8>,
}

/// One value read, as its [`Read`] asked.
enum Value {
    Plain(String),
    Opened(Opened),
}

/// The values of the keys read, in the order asked; each owner takes its own
/// in turn. Absent, expired and unopenable values are `None`.
pub(crate) struct Values(std::vec::IntoIter<Option<Value>>);

impl Values {
    /// The next value, read plain.
    pub(crate) fn plain(&mut self) -> Option<String> {
        self.0.next().flatten().and_then(Value::into_plain)
    }

    /// The next value, read sealed and opened.
    pub(crate) fn opened(&mut self) -> Option<Opened> {
        match self.0.next().flatten()? {
            Value::Opened(opened) => Some(opened),
            Value::Plain(_) => None,
        }
    }

    /// The values left, read plain.
    pub(crate) fn into_plain(self) -> Vec<Option<String>> {
        self.0.map(|v| v.and_then(Value::into_plain)).collect()
    }
}

impl Value {
    fn into_plain(self) -> Option<String> {
        match self {
            Value::Plain(text) => Some(text),
            Value::Opened(_) => None,
        }
    }
}

impl Store {
    /// The values of `reads`, in one round trip.
    pub(crate) async fn get(&self, reads: &[Read<'_>]) -> Result<Values, StoreError> {
        let keys: Vec<&str> = reads.iter().map(|r| r.key).collect();
        let stored = on_backend!(self, b => b.mget(&keys))?;
        Ok(self.values(reads, stored))
    }

    /// Opens what `reads` asks to be opened. A value that cannot be opened
    /// (key changed, tampered) is treated as absent, and soon overwritten.
    pub(super) fn values(&self, reads: &[Read<'_>], stored: Vec<Option<String>>) -> Values {
        let values = reads.iter().zip(stored).map(|(read, stored)| {
            let text = stored?;
            if !read.sealed {
                return Some(Value::Plain(text));
            }
            let plain = self
                .sealer
                .open(read.key, &text)
                .map_err(
                    |e| tracing::warn!(key = read.key, error = %e, "ignoring a stored value that cannot be opened"),
                )
                .ok()?;
            Some(Value::Opened(Opened { sealed: text, plain }))
        });
        Values(values.collect::<Vec<_>>().into_iter())
    }
}
