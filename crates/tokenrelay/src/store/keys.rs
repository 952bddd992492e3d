//! Store key naming, in one place. Every key starts with [`PREFIX`] and names
//! what it holds with a keyed hash (HMAC-SHA256, RFC 2104), never a secret, a
//! client id or a client address in clear, nor a plain hash of one that could
//! be confirmed by guessing.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Versioned so that a format change never reads the old one.
const PREFIX: &str = "tokenrelay:v1";
/// Derives the naming key from the store's secret, so that the encryption key
/// itself is never used for two purposes.
const DERIVATION_LABEL: &[u8] = b"tokenrelay:v1:key-naming";
/// Derives the relay session signing key (`relay::caller`) from the same
/// secret, under its own label.
const SESSION_LABEL: &[u8] = b"tokenrelay:v1:caller-session";
/// Bytes of the keyed hash kept in a name: 128 bits.
const NAME_HASH_LEN: usize = 16;

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

impl TokenKeys {
    /// What a read of the token state fetches: the token and the shared failure.
    pub(crate) fn read(&self) -> Vec<&str> {
        vec![&self.token, &self.failure]
    }
}

impl CacheKeys {
    /// What a lookup fetches: the entry, the purge record and the fill lock.
    pub(crate) fn read(&self) -> Vec<&str> {
        vec![&self.entry, &self.purges, &self.lock]
    }
}

/// Names store keys with a key derived from the store's secret, and holds
/// the relay session key derived from it.
pub(crate) struct KeyNamer(HmacSha256, SessionKey);

/// The key relay session cookies are signed with (HMAC-SHA256).
#[derive(Clone)]
pub(crate) struct SessionKey(HmacSha256);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey([REDACTED])")
    }
}

impl SessionKey {
    /// A fresh MAC under this key.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }

    /// The key a store keyed by `secret` derives, for tests of the session cookie.
    #[cfg(test)]
    pub(crate) fn derived_from(secret: &[u8]) -> Self {
        KeyNamer::new(secret).1
    }
}

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
        let session = mac(secret).chain_update(SESSION_LABEL).finalize().into_bytes();
        Self(mac(&derived), SessionKey(mac(&session)))
    }

    /// The relay session signing key.
    pub(crate) fn session_key(&self) -> &SessionKey {
        &self.1
    }

    /// A caller's subject (a login's `sub`) as the relay keeps it: keyed
    /// hash, so neither a session cookie nor a store key names the person.
    pub(crate) fn subject(&self, subject: &str) -> String {
        self.hash(&format!("subject\n{subject}"))
    }

    /// Keys for `upstream` whose credentials are identified by `identity`.
    /// Deployments whose credentials differ (preview and production on one
    /// store) get different keys, and so never share a token.
    pub(crate) fn token_keys(&self, upstream: &str, identity: &str) -> TokenKeys {
        let token = format!("{PREFIX}:{upstream}:{}", self.hash(identity));
        TokenKeys {
            lock: format!("{token}:lock"),
            failure: format!("{token}:failure"),
            invalidations: format!("{token}:invalidations"),
            token,
        }
    }

    /// The rate counter of `client` on `upstream` in fixed window number
    /// `window`; the client's address is never named in clear.
    pub(crate) fn rate(&self, upstream: &str, client: &str, window: u64) -> String {
        format!("{PREFIX}:rate:{upstream}:{}:{window}", self.hash(client))
    }

    /// The budget counter of `upstream` (or of its route `route`, a path
    /// pattern: not a secret, but hashed to keep names short and plain) in
    /// fixed window number `window`.
    pub(crate) fn budget(&self, upstream: &str, route: Option<&str>, window: u64) -> String {
        let scope = route.map_or_else(|| "*".to_owned(), |r| self.hash(r));
        format!("{PREFIX}:budget:{upstream}:{scope}:{window}")
    }

    /// The upstream's cooldown (it asked every caller to wait), or its route
    /// `route`'s (a path pattern, hashed like a budget's): when it ends, in
    /// ms since the epoch, stored until then.
    pub(crate) fn cooldown(&self, upstream: &str, route: Option<&str>) -> String {
        match route {
            None => format!("{PREFIX}:cooldown:{upstream}"),
            Some(route) => format!("{PREFIX}:cooldown:{upstream}:{}", self.hash(route)),
        }
    }

    /// A JWKS shared by every instance, by the URL it was fetched from.
    pub(crate) fn jwks(&self, jwks_url: &str) -> String {
        format!("{PREFIX}:jwks:{}", self.hash(jwks_url))
    }

    /// Keys for the answer `identity` (the deployment's base URL, credentials
    /// and injected values, then method, path, query, headers: hashed, since
    /// it holds secrets and a query can hold what a visitor typed) of
    /// `upstream`. The purge record is the upstream's, named by its name only:
    /// a purge covers the answers of every deployment of that name.
    pub(crate) fn cache_keys(&self, upstream: &str, identity: &str) -> CacheKeys {
        let entry = format!("{PREFIX}:cache:{upstream}:{}", self.hash(identity));
        let purges = format!("{PREFIX}:cache:{upstream}:purges");
        CacheKeys { lock: format!("{entry}:lock"), purges_lock: format!("{purges}:lock"), entry, purges }
    }

    fn hash(&self, text: &str) -> String {
        let tag = self.0.clone().chain_update(text.as_bytes()).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..NAME_HASH_LEN])
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (RFC 2104 §2), so this never fails.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    const IDENTITY: &str = "[\"oauth2\",\"https://id.example.com/token\",\"client-7f3a\"]";

    #[test]
    fn rate_keys_separate_upstreams_clients_and_windows_without_naming_the_address() {
        let n = KeyNamer::new(b"k");
        assert_ne!(n.rate("getty", "203.0.113.7", 1), n.rate("getty", "2001:db8::/64", 1));
        assert_ne!(n.rate("getty", "203.0.113.7", 1), n.rate("other", "203.0.113.7", 1));
        assert_ne!(n.rate("getty", "203.0.113.7", 1), n.rate("getty", "203.0.113.7", 2));
        assert!(!n.rate("getty", "203.0.113.7", 1).contains("203.0.113.7"));
    }

    #[test]
    fn budget_keys_separate_upstreams_routes_and_windows() {
        let n = KeyNamer::new(b"k");
        assert_eq!(n.budget("getty", None, 7), "tokenrelay:v1:budget:getty:*:7");
        assert_ne!(n.budget("getty", Some("/search/**"), 7), n.budget("getty", None, 7));
        assert_ne!(n.budget("getty", Some("/search/**"), 7), n.budget("getty", Some("/images/**"), 7));
        assert_eq!(n.cooldown("getty", None), "tokenrelay:v1:cooldown:getty");
        let route = n.cooldown("getty", Some("/search/**"));
        assert!(route.starts_with("tokenrelay:v1:cooldown:getty:"), "{route}");
        assert_ne!(route, n.cooldown("getty", Some("/images/**")), "each route pattern its own");
    }

    #[test]
    fn cache_keys_hide_the_request_and_share_the_upstream_purge_record() {
        let n = KeyNamer::new(b"secret-a");
        let a = n.cache_keys("api", "GET\n/search\nq=secret+words");
        let b = n.cache_keys("api", "GET\n/search\nq=other");
        assert_ne!(a.entry, b.entry);
        assert_eq!(a.purges, b.purges);
        assert!(!a.entry.contains("secret") && a.entry.starts_with("tokenrelay:v1:cache:api:"), "{}", a.entry);
        assert_eq!(a.lock, format!("{}:lock", a.entry));
        let other_store = KeyNamer::new(b"secret-b").cache_keys("api", "GET\n/search\nq=secret+words");
        assert_ne!(other_store.entry, a.entry, "keyed");
    }

    #[test]
    fn token_keys_share_one_stem_and_depend_on_the_store_secret() {
        let k = KeyNamer::new(b"secret-a").token_keys("api", IDENTITY);
        assert!(k.token.starts_with("tokenrelay:v1:api:"), "{}", k.token);
        assert_eq!(k.lock, format!("{}:lock", k.token));
        assert_eq!(k.failure, format!("{}:failure", k.token));
        assert_eq!(KeyNamer::new(b"secret-a").token_keys("api", IDENTITY).token, k.token, "stable");
        assert_ne!(KeyNamer::new(b"secret-b").token_keys("api", IDENTITY).token, k.token, "keyed");
        assert_ne!(KeyNamer::new(b"secret-a").token_keys("api", "other credentials").token, k.token);
    }

    #[test]
    fn names_hold_no_plain_hash_of_the_identity() {
        let k = KeyNamer::new(b"secret-a").token_keys("api", IDENTITY);
        let plain = sha2::Sha256::digest(IDENTITY.as_bytes());
        for len in [12, 16] {
            let guessable = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&plain[..len]);
            assert!(!k.token.contains(&guessable), "{}", k.token);
        }
        assert!(!k.token.contains("client-7f3a"));
    }
}
