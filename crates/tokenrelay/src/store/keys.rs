//! Store key naming, in one place: every key starts with [`PREFIX`], and
//! names what it holds without holding a secret or a client address.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Versioned so that a format change never reads the old one.
const PREFIX: &str = "tokenrelay:v1";

/// The keys of one upstream's shared token state.
#[derive(Debug, Clone)]
pub(crate) struct TokenKeys {
    /// The sealed token; also the associated data it is sealed under.
    pub(crate) token: String,
    /// The refresh lock, held by the one instance that fetches.
    pub(crate) lock: String,
    /// The last token endpoint failure, shared for the cooldown.
    pub(crate) failure: String,
}

impl TokenKeys {
    /// Keys for `upstream` whose credentials are identified by `identity`
    /// (hashed: the identity itself never appears in the store).
    pub(crate) fn new(upstream: &str, identity: &str) -> Self {
        let token = format!("{PREFIX}:{upstream}:{}", digest(identity));
        Self { lock: format!("{token}:lock"), failure: format!("{token}:failure"), token }
    }
}

/// The rate counter of `client` on `upstream` in fixed window number
/// `window`. The client is hashed so that its address is not listed in clear
/// (a hash of an IPv4 address can be reversed by brute force; it is not
/// anonymous).
pub(crate) fn rate(upstream: &str, client: &str, window: u64) -> String {
    format!("{PREFIX}:rate:{upstream}:{}:{window}", digest(client))
}

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

impl CacheKeys {
    /// Keys for the answer `identity` (method, path, query, headers: hashed,
    /// since a query can hold what a visitor typed) of `upstream`.
    pub(crate) fn new(upstream: &str, identity: &str) -> Self {
        let entry = format!("{PREFIX}:cache:{upstream}:{}", digest(identity));
        let purges = format!("{PREFIX}:cache:{upstream}:purges");
        Self { lock: format!("{entry}:lock"), purges_lock: format!("{purges}:lock"), entry, purges }
    }
}

/// 96 bits of SHA-256, URL-safe base64.
fn digest(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&Sha256::digest(text.as_bytes())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_keys_separate_upstreams_clients_and_windows_without_naming_the_address() {
        assert_ne!(rate("getty", "203.0.113.7", 1), rate("getty", "2001:db8::/64", 1));
        assert_ne!(rate("getty", "203.0.113.7", 1), rate("other", "203.0.113.7", 1));
        assert_ne!(rate("getty", "203.0.113.7", 1), rate("getty", "203.0.113.7", 2));
        assert!(!rate("getty", "203.0.113.7", 1).contains("203.0.113.7"));
    }

    #[test]
    fn cache_keys_hide_the_request_and_share_the_upstream_purge_record() {
        let a = CacheKeys::new("api", "GET\n/search\nq=secret+words");
        let b = CacheKeys::new("api", "GET\n/search\nq=other");
        assert_ne!(a.entry, b.entry);
        assert_eq!(a.purges, b.purges);
        assert!(!a.entry.contains("secret") && a.entry.starts_with("tokenrelay:v1:cache:api:"), "{}", a.entry);
        assert_eq!(a.lock, format!("{}:lock", a.entry));
    }

    #[test]
    fn token_keys_share_one_stem() {
        let k = TokenKeys::new("api", "oauth2\nhttps://id.example.com\nclient");
        assert!(k.token.starts_with("tokenrelay:v1:api:"), "{}", k.token);
        assert_eq!(k.lock, format!("{}:lock", k.token));
        assert!(!k.token.contains("client"));
    }
}
