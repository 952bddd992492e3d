//! Store key naming: one file per kind of key, saying what its key holds and
//! how its values read. Every key starts with [`PREFIX`] and names what it
//! holds with a keyed hash (HMAC-SHA256, RFC 2104), never a secret, a client
//! id or a client address in clear, nor a plain hash of one that could be
//! confirmed by guessing.

pub(crate) mod alert;
pub(crate) mod cache;
pub(crate) mod cooldown;
pub(crate) mod counter;
pub(crate) mod jwks;
pub(crate) mod meter;
pub(crate) mod session;
pub(crate) mod token;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Versioned so that a format change never reads the old one.
const PREFIX: &str = "tokenrelay:v1";
/// Derives the naming key from the store's secret, so that the encryption key
/// itself is never used for two purposes.
const DERIVATION_LABEL: &[u8] = b"tokenrelay:v1:key-naming";
/// Bytes of the keyed hash kept in a name: 128 bits.
const NAME_HASH_LEN: usize = 16;

/// Names store keys with a key derived from the store's secret.
pub(crate) struct KeyNamer(HmacSha256);

impl std::fmt::Debug for KeyNamer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyNamer([REDACTED])")
    }
}

impl KeyNamer {
    /// A namer keyed by `secret`: the encryption key (or the local store's
    /// key), or without one, the Upstash token.
    pub(crate) fn new(secret: &[u8]) -> Self {
        let derived = mac(secret).chain_update(DERIVATION_LABEL).finalize().into_bytes();
        Self(mac(&derived))
    }

    /// `text` as a name: its keyed hash, so that no one without the store's
    /// secret can confirm a guess of it.
    fn hash(&self, text: &str) -> String {
        let tag = self.0.clone().chain_update(text.as_bytes()).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..NAME_HASH_LEN])
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (RFC 2104 §2), so this never fails.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}
