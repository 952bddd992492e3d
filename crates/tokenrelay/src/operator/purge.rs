//! Purges: an upstream's purge record (path prefix → time), written here
//! and read by every cache lookup with the entry (its format:
//! `relay::Purges`).

use std::time::Duration;

use crate::broker::Broker;
use crate::config::relay::RouteCache;
use crate::error::Error;
use crate::relay::Purges;
use crate::store::{Backoff, CacheKeys, Write};

/// How long a purge holds the purge record's lock: one read and one write.
const PURGE_LEASE: Duration = Duration::from_secs(2);
/// How long a purge waits while another purge of the same upstream holds the record.
const PURGE_WAIT: Duration = Duration::from_millis(2500);
/// About how often it looks again meanwhile.
const PURGE_RETRY: Duration = Duration::from_millis(50);

/// Forgets every cached answer of `upstream` whose path is `prefix` or below
/// it (`""` or `"/"`: all of them), in every instance sharing the store.
///
/// Records the purge in the upstream's purge record, which every lookup
/// reads with the entry (so a purge costs one write, never a scan); each
/// instance's in-process level forgets within its `HOT_LIFETIME` (a second).
pub async fn purge_cache(broker: &Broker, upstream: &str, prefix: &str) -> crate::Result<()> {
    let failed = |reason: String| Error::CachePurgeFailed { upstream: upstream.to_owned(), reason };
    let u = broker.config().upstreams.get(upstream).ok_or_else(|| Error::UnknownUpstream(upstream.to_owned()))?;
    if !u.relay.iter().flat_map(|r| &r.routes).any(|r| r.cache.is_some()) {
        return Err(failed("no route of this upstream has a cache".to_owned()));
    }
    // The record is shared by every deployment of the upstream, whose routes
    // may keep answers longer than this config's: it lives, and keeps each
    // purge, as long as any entry may (not as long as the purger's routes say).
    let keep = RouteCache::MAX_LIFETIME;
    if !(prefix.is_empty() || prefix.starts_with('/')) {
        return Err(failed(format!("path prefix \"{prefix}\" must start with '/'")));
    }
    let store = broker.store();
    let keys = CacheKeys::new(store.namer(), upstream, "");
    let mut backoff = Backoff::new(PURGE_RETRY, PURGE_RETRY, PURGE_WAIT);
    loop {
        let (lease, record) = keys.take_purges(store, PURGE_LEASE).await.map_err(|e| failed(e.to_string()))?;
        if let Some(lease) = lease {
            let record = Purges::parse(record.as_deref()).add(prefix, keep);
            return match store.put_fenced(&keys.purges, Write::Plain(&record), keep, lease).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(failed("the store took too long; run the purge again".to_owned())),
                Err(e) => Err(failed(e.to_string())),
            };
        }
        if !backoff.wait().await {
            break;
        }
    }
    Err(failed("another purge of this upstream is still running; run the purge again".to_owned()))
}
