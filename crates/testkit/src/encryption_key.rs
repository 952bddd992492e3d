//! The store's encryption key, as an operator makes one.

use base64::Engine as _;

/// Base64 of 32 random bytes, as `openssl rand -base64 32` makes
/// (`TOKENRELAY_ENCRYPTION_KEY`).
pub fn base64_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(std::array::from_fn::<u8, 32, _>(|_| fastrand::u8(..)))
}
