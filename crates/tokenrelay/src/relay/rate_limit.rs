//! Per client IP and upstream request limits, counted in the shared store so
//! that every instance counts together (with the local file store: every
//! process on the machine).
//!
//! Fixed windows: simple, one atomic store call per request, and at worst a
//! burst of twice the limit across a window boundary.

use std::net::IpAddr;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::error::{Kind, RelayError};
use crate::config::relay::RateLimit;
use crate::store::Store;

/// Counts this request and refuses it once the window's limit is reached.
///
/// If the store fails, the request is let through with a warning: an outage
/// of the counter must not take the site down.
pub(super) async fn check(
    store: &Store,
    upstream: &str,
    client: Option<IpAddr>,
    limit: RateLimit,
) -> Result<(), RelayError> {
    let key = key(upstream, client);
    match store.incr_window(&key, limit.window).await {
        Ok((count, left)) if count > u64::from(limit.requests) => Err(Kind::RateLimited { retry_after: left }.into()),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(upstream, error = %e, "rate limit counter unavailable; letting the request through");
            Ok(())
        }
    }
}

/// The counter's key. The address is hashed so that it is not listed in
/// clear in the store (a hash of an IPv4 address can be reversed by brute
/// force; it is not anonymous). Clients whose address the platform did not
/// provide share one counter.
fn key(upstream: &str, client: Option<IpAddr>) -> String {
    let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let digest = Sha256::digest(client.as_bytes());
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]);
    format!("tokenrelay:v1:rate:{upstream}:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_upstreams_and_clients_without_naming_the_address() {
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert_ne!(key("getty", Some(a)), key("getty", Some(b)));
        assert_ne!(key("getty", Some(a)), key("other", Some(a)));
        assert!(!key("getty", Some(a)).contains("203.0.113.7"));
        assert_eq!(key("getty", None), key("getty", None));
    }
}
