//! Per client IP and upstream request limits, counted in the shared store so
//! that every instance counts together (with the local file store: every
//! process on the machine).
//!
//! Fixed windows: simple, one atomic store call per request, and at worst a
//! burst of twice the limit across a window boundary.

use std::net::IpAddr;

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
    let key = store.rate_key(upstream, &client.map_or_else(|| UNKNOWN_CLIENT.to_owned(), |ip| ip.to_string()));
    match store.incr_window(&key, limit.window).await {
        Ok((count, left)) if count > u64::from(limit.requests) => Err(Kind::RateLimited { retry_after: left }.into()),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(upstream, error = %e, "rate limit counter unavailable; letting the request through");
            Ok(())
        }
    }
}

/// Clients whose address the platform did not provide share one counter.
const UNKNOWN_CLIENT: &str = "unknown";
