//! The relay's caller sessions (`relay::caller`): the key their cookies are
//! signed with, and the keyed hash a caller's subject is kept as.

use hmac::Mac;

use super::{HmacSha256, KeyNamer, mac};

/// Derives the relay session signing key from the store's secret, under its
/// own label.
const SESSION_LABEL: &[u8] = b"tokenrelay:v1:caller-session";

/// The key relay session cookies are signed with (HMAC-SHA256).
#[derive(Clone)]
pub(crate) struct SessionKey(HmacSha256);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey([REDACTED])")
    }
}

impl SessionKey {
    /// The session key of a store keyed by `secret` (see [`KeyNamer::new`]).
    pub(crate) fn derive(secret: &[u8]) -> Self {
        let session = mac(secret).chain_update(SESSION_LABEL).finalize().into_bytes();
        Self(mac(&session))
    }

    /// A fresh MAC under this key.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }
}

/// A caller's subject (a login's `sub`) as the relay keeps it: keyed hash,
/// so neither a session cookie nor a store key names the person.
pub(crate) fn subject(namer: &KeyNamer, subject: &str) -> String {
    namer.hash(&format!("subject\n{subject}"))
}
