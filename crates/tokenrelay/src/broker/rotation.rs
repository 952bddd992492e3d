//! Rotation: single flight within the process, then across instances
//! through the store's lock; the lock holder fetches and stores, the others
//! wait for its token; the refresh of a token that is due, handed to the
//! caller to run inside its request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::entry::CachedToken;
use super::slot::Slot;
use super::{Broker, shared_failure};
use crate::error::{Error, Result};
use crate::store::{Backoff, Lease, StoreError, TokenState, Write};
use crate::token::{MintedWith, Provenance, Source, Token, retry};

/// First pause of a caller waiting for another instance's refresh; doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
/// Longest pause between two looks at the store while waiting.
const MAX_POLL: Duration = Duration::from_millis(400);
/// When another instance holds the lock and our token is still valid, look
/// again after this long instead of on every request.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

/// The refresh of a token that is due: the caller runs it inside its
/// request, alongside what it does with the token it already has.
pub(crate) type Refresh = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Clears the slot's refreshing flag however the refresh ends, cancelled included.
struct Refreshing(Broker, String);

impl Drop for Refreshing {
    fn drop(&mut self) {
        if let Ok((_, slot)) = self.0.slot(&self.1) {
            slot.refreshing.store(false, Ordering::Release);
        }
    }
}

impl Broker {
    /// The refresh of `upstream`'s due token, unless this process runs one already.
    pub(super) fn refresh_due(&self, upstream: &str) -> Option<Refresh> {
        let (_, slot) = self.slot(upstream).ok()?;
        if slot.refreshing.swap(true, Ordering::AcqRel) {
            return None;
        }
        let guard = Refreshing(self.clone(), upstream.to_owned());
        Some(Box::pin(async move {
            let Refreshing(broker, upstream) = &guard;
            if let Err(e) = broker.refresh(upstream, true).await {
                tracing::warn!(upstream, code = e.code(), error = %e, "token refresh failed; the current token is served until it expires");
            }
        }))
    }

    /// Single flight within the process, then across instances.
    pub(super) async fn refresh(&self, upstream: &str, background: bool) -> Result<Token> {
        let (source, slot) = self.slot(upstream)?;
        let _flight = slot.flight.lock().await;
        let now = SystemTime::now();
        let current = slot.memory().clone().filter(|e| e.is_valid(now));
        // Another task may have refreshed while this one waited for the guard.
        if let Some(e) = current.as_ref().filter(|e| e.is_fresh(now) || !background) {
            return Ok(e.token.clone().from(Provenance::Memory));
        }
        if let Some(err) = slot.cooling_down() {
            return current.map(|e| e.token.from(Provenance::Memory)).ok_or(err);
        }
        let started = Instant::now();
        match self.rotate(upstream, source, slot, current.as_ref()).await {
            Ok((entry, outcome)) => {
                tracing::info!(
                    upstream,
                    outcome = outcome.as_str(),
                    secret = entry.token.minted_with().as_str(),
                    valid_for_s = entry.ttl(SystemTime::now()).as_secs(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "token ready"
                );
                *slot.memory() = Some(entry.clone());
                Ok(entry.token.from(outcome))
            }
            Err(err) => {
                slot.cool_down(err.clone(), self.inner.config.cache.failure_cooldown);
                match current {
                    Some(e) => {
                        tracing::warn!(upstream, code = err.code(), error = %err, "token refresh failed; serving the current token until it expires");
                        Ok(e.token.from(Provenance::Memory))
                    }
                    None => Err(err),
                }
            }
        }
    }

    /// Gets a fresh entry through the store, fetching it if this caller wins
    /// the lock. `current` is this instance's still-valid token, if any: with
    /// one, a caller never waits for another instance's refresh.
    async fn rotate(
        &self,
        upstream: &str,
        source: &Source,
        slot: &Slot,
        current: Option<&CachedToken>,
    ) -> Result<(CachedToken, Provenance)> {
        let cache = &self.inner.config.cache;
        let store = &self.inner.store;
        let mut backoff = Backoff::new(FIRST_POLL, MAX_POLL, cache.wait_timeout);

        let mut state = match slot.keys.read(store).await {
            Ok(v) => v,
            Err(e) => return self.fetch_direct(upstream, source, e).await,
        };
        loop {
            let now = SystemTime::now();
            let stored = state.token.as_ref().and_then(|t| self.entry(slot, &t.plain));
            if let Some(e) = stored.clone().filter(|e| e.is_fresh(now)) {
                return Ok((e, Provenance::Store));
            }
            if let Some(err) = state.failure.as_deref().and_then(|raw| shared_failure::decode(upstream, raw)) {
                return Err(err);
            }
            let (lease, after) = match slot.keys.take(store, cache.lock_lease).await {
                Ok(x) => x,
                Err(e) => return self.fetch_direct(upstream, source, e).await,
            };
            if let Some(lease) = lease {
                return self.fetch_as_leader(upstream, source, slot, lease, &after).await;
            }
            // Someone else is refreshing: keep serving a valid token meanwhile.
            let valid = stored.or_else(|| current.cloned()).filter(|e| e.is_valid(now));
            if let Some(e) = valid {
                return Ok((e.retry_refresh_after(now, REFRESH_RETRY), Provenance::Store));
            }
            if !backoff.wait().await {
                return Err(Error::TokenUnavailable {
                    upstream: upstream.to_owned(),
                    reason: format!(
                        "waited {} for another instance to refresh the token",
                        humantime::format_duration(cache.wait_timeout)
                    ),
                });
            }
            state = after;
        }
    }

    /// This caller holds the lock: fetch, store, release, in that order.
    async fn fetch_as_leader(
        &self,
        upstream: &str,
        source: &Source,
        slot: &Slot,
        lease: Lease,
        after: &TokenState,
    ) -> Result<(CachedToken, Provenance)> {
        let cache = &self.inner.config.cache;
        let store = &self.inner.store;
        let now = SystemTime::now();
        // The previous holder may have stored a token just before we locked.
        let prior = after.token.as_ref().and_then(|t| self.entry(slot, &t.plain));
        if let Some(e) = prior.clone().filter(|e| e.is_fresh(now)) {
            lease.release().await;
            return Ok((e, Provenance::Store));
        }
        let fetched_at = SystemTime::now();
        match retry::fetch(source, &self.inner.http, upstream).await {
            Ok(token) => {
                let entry = self.minted(slot, token, fetched_at, prior.as_ref());
                let ttl = entry.ttl(SystemTime::now());
                match store.put_fenced(&slot.keys.token, Write::Sealed(&entry.to_bytes()), ttl, lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        upstream,
                        "the refresh lock's lease ran out during the fetch; not storing this token over a newer one"
                    ),
                    Err(err) => tracing::warn!(
                        upstream,
                        error = %err,
                        "could not store the new token; other instances will fetch their own"
                    ),
                }
                Ok((entry, Provenance::Fetched))
            }
            Err(err) => {
                let value = shared_failure::encode(&err);
                match store.put_fenced(&slot.keys.failure, Write::Plain(&value), cache.failure_cooldown, lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(upstream, "the refresh lock's lease ran out; not sharing the failure"),
                    Err(e) => tracing::warn!(upstream, error = %e, "could not share the token failure"),
                }
                Err(err)
            }
        }
    }

    /// The store failed: degrade to a direct fetch, guarded in-process only.
    async fn fetch_direct(
        &self,
        upstream: &str,
        source: &Source,
        cause: StoreError,
    ) -> Result<(CachedToken, Provenance)> {
        tracing::warn!(upstream, error = %cause, "shared store unavailable; fetching the token directly");
        let fetched_at = SystemTime::now();
        let token = retry::fetch(source, &self.inner.http, upstream).await?;
        let (_, slot) = self.slot(upstream)?;
        Ok((self.minted(slot, token, fetched_at, None), Provenance::Direct))
    }

    /// The entry of a token just fetched, recording which secret minted it
    /// beside the times the token it replaces recorded (`stored`, the one
    /// the store held, else this instance's: [`Slot::prior_record`]).
    fn minted(&self, slot: &Slot, token: Token, fetched_at: SystemTime, stored: Option<&CachedToken>) -> CachedToken {
        let prior = slot.prior_record(stored);
        if token.minted_with() == MintedWith::Previous {
            slot.minted_with_previous.store(true, Ordering::Release);
        }
        let secrets = slot.tags.record(token.minted_with(), fetched_at, prior.as_ref());
        CachedToken::new(token, fetched_at, &self.inner.config.cache).with_secrets(secrets)
    }
}
