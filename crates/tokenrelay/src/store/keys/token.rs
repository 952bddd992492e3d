//! One upstream's shared token state (`broker`): the sealed token, the lock
//! of the one instance that fetches it, the failure it shares for the
//! cooldown, and the count of tokens dropped after a 401.

use std::time::Duration;

use super::{KeyNamer, PREFIX};
use crate::store::{Lease, Opened, Read, Store, StoreError, Values};

/// The keys of one upstream's shared token state.
#[derive(Debug, Clone)]
pub(crate) struct TokenKeys {
    /// The sealed token; also the associated data it is sealed under.
    pub(crate) token: String,
    /// The refresh lock, held by the one instance that fetches.
    pub(crate) lock: String,
    /// The last token endpoint failure, shared for the cooldown.
    pub(crate) failure: String,
    /// Counts the tokens dropped after a 401 in the current window, so that
    /// every instance spends one budget.
    pub(crate) invalidations: String,
}

/// One upstream's shared state as the store holds it.
pub(crate) struct TokenState {
    /// The token, opened; `None` when absent or when it cannot be opened.
    pub(crate) token: Option<Opened>,
    /// The failure another instance shared, if any.
    pub(crate) failure: Option<String>,
}

impl TokenKeys {
    /// Keys for `upstream` whose credentials are identified by `identity`.
    /// Deployments whose credentials differ (preview and production on one
    /// store) get different keys, and so never share a token.
    pub(crate) fn new(namer: &KeyNamer, upstream: &str, identity: &str) -> Self {
        let token = format!("{PREFIX}:{upstream}:{}", namer.hash(identity));
        TokenKeys {
            lock: format!("{token}:lock"),
            failure: format!("{token}:failure"),
            invalidations: format!("{token}:invalidations"),
            token,
        }
    }

    /// What a read of the token state fetches: the token and the shared failure.
    pub(crate) fn reads(&self) -> [Read<'_>; 2] {
        [Read::sealed(&self.token), Read::plain(&self.failure)]
    }

    /// Takes the state out of `values`, read as [`TokenKeys::reads`] asked.
    pub(crate) fn state(values: &mut Values) -> TokenState {
        TokenState { token: values.opened(), failure: values.plain() }
    }

    /// Reads the token and the shared failure, in one round trip.
    pub(crate) async fn read(&self, store: &Store) -> Result<TokenState, StoreError> {
        Ok(Self::state(&mut store.get(&self.reads()).await?))
    }

    /// Takes the refresh lock unless another instance holds it, then reads
    /// the state, in one round trip ([`Store::take`]).
    pub(crate) async fn take(&self, store: &Store, lease: Duration) -> Result<(Option<Lease>, TokenState), StoreError> {
        let (lease, mut values) = store.take(&self.lock, lease, &self.reads()).await?;
        Ok((lease, Self::state(&mut values)))
    }
}

/// What a stored token records of the secret that minted it: a keyed hash
/// of its value, so that `status` can tell the current secret from the
/// previous one across deployments that swap them, and no one without the
/// store's secret can confirm a guess of it.
pub(crate) fn secret_tag(namer: &KeyNamer, upstream: &str, secret: &str) -> String {
    namer.hash(&format!("secret\0{upstream}\0{secret}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use sha2::Digest as _;

    const IDENTITY: &str = "[\"oauth2\",\"https://id.example.com/token\",\"client-7f3a\"]";

    #[test]
    fn token_keys_share_one_stem_and_depend_on_the_store_secret() {
        let keys = |secret: &[u8], identity| TokenKeys::new(&KeyNamer::new(secret), "api", identity);
        let k = keys(b"secret-a", IDENTITY);
        assert!(k.token.starts_with("tokenrelay:v1:api:"), "{}", k.token);
        assert_eq!(k.lock, format!("{}:lock", k.token));
        assert_eq!(k.failure, format!("{}:failure", k.token));
        assert_eq!(keys(b"secret-a", IDENTITY).token, k.token, "stable");
        assert_ne!(keys(b"secret-b", IDENTITY).token, k.token, "keyed");
        assert_ne!(keys(b"secret-a", "other credentials").token, k.token);
    }

    #[test]
    fn names_hold_no_plain_hash_of_the_identity() {
        let k = TokenKeys::new(&KeyNamer::new(b"secret-a"), "api", IDENTITY);
        let plain = sha2::Sha256::digest(IDENTITY.as_bytes());
        for len in [12, 16] {
            let guessable = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&plain[..len]);
            assert!(!k.token.contains(&guessable), "{}", k.token);
        }
        assert!(!k.token.contains("client-7f3a"));
    }
}
