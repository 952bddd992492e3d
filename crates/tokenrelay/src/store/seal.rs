//! Sealing tokens at rest with AES-256-GCM.
//!
//! The cache key is bound as associated data, so a sealed value copied under
//! another key fails to open. Each seal uses a fresh random 96-bit nonce.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Marks an AES-256-GCM sealed value: `v1.` + base64(nonce ‖ ciphertext).
const SEALED: &str = "v1.";
/// Marks a plaintext value, only written when the config opts out of encryption.
const PLAIN: &str = "p1.";
const NONCE_LEN: usize = 12;
/// Key length of AES-256, in bytes.
pub(crate) const KEY_LEN: usize = 32;

/// Seals and opens stored values.
pub(crate) enum Sealer {
    Aes(Box<Aes256Gcm>),
    /// Explicit opt-out (`store.allow_unencrypted = true`).
    Plain,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.encrypts() { "Sealer(AES-256-GCM, key redacted)" } else { "Sealer(plaintext)" })
    }
}

/// A stored value could not be opened (wrong key, tampering, foreign format).
#[derive(Debug, thiserror::Error)]
#[error("stored value cannot be opened: {0}")]
pub(crate) struct OpenError(&'static str);

impl Sealer {
    /// A sealer with a 32-byte key (see [`decode_key`]).
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Self::Aes(Box::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))))
    }

    /// A new random key, base64-encoded.
    pub(crate) fn generate_key() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// Whether values are encrypted.
    pub(crate) fn encrypts(&self) -> bool {
        matches!(self, Sealer::Aes(_))
    }

    pub(crate) fn seal(&self, aad: &str, plaintext: &[u8]) -> String {
        match self {
            Sealer::Aes(cipher) => {
                let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
                // Encryption with a valid key and nonce cannot fail for in-memory buffers.
                let ct = cipher.encrypt(&nonce, Payload { msg: plaintext, aad: aad.as_bytes() }).unwrap_or_default();
                let mut out = nonce.to_vec();
                out.extend_from_slice(&ct);
                format!("{SEALED}{}", B64.encode(out))
            }
            Sealer::Plain => format!("{PLAIN}{}", String::from_utf8_lossy(plaintext)),
        }
    }

    pub(crate) fn open(&self, aad: &str, stored: &str) -> Result<Vec<u8>, OpenError> {
        match self {
            Sealer::Aes(cipher) => {
                let body = stored.strip_prefix(SEALED).ok_or(OpenError("not sealed by this version"))?;
                let raw = B64.decode(body).map_err(|_| OpenError("not base64"))?;
                if raw.len() <= NONCE_LEN {
                    return Err(OpenError("too short"));
                }
                let (nonce, ct) = raw.split_at(NONCE_LEN);
                cipher
                    .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() })
                    .map_err(|_| OpenError("authentication failed (different key or key name)"))
            }
            Sealer::Plain => {
                stored.strip_prefix(PLAIN).map(|s| s.as_bytes().to_vec()).ok_or(OpenError("not a plaintext value"))
            }
        }
    }
}

/// Decodes a base64-encoded 32-byte key; the error says what is wrong, never the key.
pub(crate) fn decode_key(text: &str) -> Result<[u8; KEY_LEN], String> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| "is not valid base64 (generate one with `openssl rand -base64 32`)".to_owned())?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!("must decode to {KEY_LEN} bytes, got {} (generate one with `openssl rand -base64 32`)", bytes.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&decode_key(&Sealer::generate_key()).unwrap())
    }

    #[test]
    fn sealed_value_round_trips_and_hides_the_plaintext() {
        let s = sealer();
        let sealed = s.seal("k", b"tok_abcdef");
        assert!(!sealed.contains("tok_abcdef"));
        assert_eq!(s.open("k", &sealed).unwrap(), b"tok_abcdef");
    }

    #[test]
    fn sealed_value_is_bound_to_its_key_name() {
        let s = sealer();
        let sealed = s.seal("key-a", b"tok");
        assert!(s.open("key-b", &sealed).is_err());
    }

    #[test]
    fn another_encryption_key_cannot_open() {
        let sealed = sealer().seal("k", b"tok");
        assert!(sealer().open("k", &sealed).is_err());
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(decode_key("not base64!").unwrap_err().contains("base64"));
        assert!(decode_key("AAAA").unwrap_err().contains("got 3"));
    }
}
