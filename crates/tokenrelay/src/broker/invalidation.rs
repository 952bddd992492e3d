//! Invalidation: dropping a token the upstream refused (within
//! `cache.min_token_age` and `cache.invalidations_per_hour`; a token it said
//! it no longer accepts, within the hourly budget only) or one that does not
//! last long enough, from memory and, by compare-and-delete, from the store.

use std::time::{Duration, SystemTime};

use super::Broker;
use super::slot::Slot;
use crate::error::Result;
use crate::store::{Count, StoreError};
use crate::token::Token;

/// The window of `cache.invalidations_per_hour`.
const INVALIDATION_WINDOW: Duration = Duration::from_secs(3600);

/// Why [`Broker::invalidate`] kept a young token (a log field).
const TOO_YOUNG: &str = "younger than cache.min_token_age";

/// Which limits keep a refused token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limits {
    /// `cache.min_token_age`, then `cache.invalidations_per_hour`.
    AgeAndBudget,
    /// `cache.invalidations_per_hour` only.
    Budget,
    /// None: the token is dropped.
    None,
}

/// What [`Broker::invalidate`] decided.
enum Verdict {
    /// Drop it from memory; `from_store` when the store held it and dropped it too.
    Drop { from_store: bool },
    /// Keep it, for this reason (a log field).
    Keep(&'static str),
}

impl Broker {
    /// Drops `rejected` (a token the upstream answered 401 to) from both
    /// levels, but from the store only if it still holds that same token:
    /// a late 401 never throws away a newer token.
    ///
    /// A 401 that a new token cannot cure (a resource the credentials may
    /// not see) must not rotate the token on every request, so the token is
    /// kept while younger than `cache.min_token_age`, and once
    /// `cache.invalidations_per_hour` tokens of this upstream were dropped
    /// from the store (counted there, across instances). Returns whether a
    /// retry may get another token: `false` when it was kept, or for a static
    /// key.
    pub async fn invalidate(&self, upstream: &str, rejected: &Token) -> Result<bool> {
        self.refused(upstream, rejected, Limits::AgeAndBudget).await
    }

    /// Like [`invalidate`](Self::invalidate), for a token the upstream said it
    /// no longer accepts: a 401 with `WWW-Authenticate: Bearer
    /// error="invalid_token"` (RFC 6750 §3.1: expired, revoked…). A new token
    /// is the cure, so it is dropped whatever its age; still at most
    /// `cache.invalidations_per_hour` per upstream, so an upstream that says
    /// so of every token cannot make visitors hammer the token endpoint.
    pub async fn invalidate_revoked(&self, upstream: &str, rejected: &Token) -> Result<bool> {
        self.refused(upstream, rejected, Limits::Budget).await
    }

    async fn refused(&self, upstream: &str, rejected: &Token, limits: Limits) -> Result<bool> {
        let (source, slot) = self.slot(upstream)?;
        if !source.rotates() {
            return Ok(false);
        }
        let min_age = self.inner.config.cache.min_token_age;
        // Judged from memory first: a refused young token costs no store call.
        let young = limits == Limits::AgeAndBudget
            && slot
                .memory()
                .as_ref()
                .is_some_and(|e| e.token.same_value(rejected) && e.age(SystemTime::now()) < min_age);
        let verdict = if young {
            Verdict::Keep(TOO_YOUNG)
        } else {
            self.drop_stored(slot, rejected, limits).await.unwrap_or_else(|e| {
                tracing::warn!(upstream, error = %e, "shared store unavailable while invalidating; dropping from memory only");
                Verdict::Drop { from_store: false }
            })
        };
        match verdict {
            Verdict::Keep(reason) => {
                tracing::info!(upstream, reason, "upstream refused the token; keeping it");
                Ok(false)
            }
            Verdict::Drop { from_store } => {
                self.forget(slot, rejected);
                tracing::info!(upstream, dropped_from_store = from_store, "token invalidated");
                Ok(true)
            }
        }
    }

    /// Drops `stale` from memory and, while the store still holds it, from
    /// the store: for tokens that are valid but not for long enough.
    pub(super) async fn discard(&self, upstream: &str, stale: &Token) -> Result<()> {
        let (_, slot) = self.slot(upstream)?;
        self.forget(slot, stale);
        if let Err(e) = self.drop_stored(slot, stale, Limits::None).await {
            tracing::warn!(upstream, error = %e, "shared store unavailable while discarding; dropped from memory only");
        }
        Ok(())
    }

    /// Drops `token` from the store while the store holds it (compare-and-delete),
    /// unless `limits` keep it: it is younger than `cache.min_token_age`, or
    /// the upstream's invalidations for the hour are spent.
    async fn drop_stored(
        &self,
        slot: &Slot,
        token: &Token,
        limits: Limits,
    ) -> std::result::Result<Verdict, StoreError> {
        let cache = &self.inner.config.cache;
        let store = &self.inner.store;
        let gone = Verdict::Drop { from_store: false };
        let Some(stored) = slot.keys.read(store).await?.token else { return Ok(gone) };
        let Some(entry) = self.entry(slot, &stored.plain).filter(|e| e.token.same_value(token)) else {
            return Ok(gone);
        };
        if limits != Limits::None {
            if limits == Limits::AgeAndBudget && entry.age(SystemTime::now()) < cache.min_token_age {
                return Ok(Verdict::Keep(TOO_YOUNG));
            }
            // A counter created by the first invalidation lives one window: a fixed
            // window from that moment, shared by every instance.
            let count = Count { key: slot.keys.invalidations.clone(), add: 1, ttl: INVALIDATION_WINDOW };
            let spent = store.count(&[count], &[]).await?.totals.pop().unwrap_or(u64::MAX);
            if spent > u64::from(cache.invalidations_per_hour) {
                return Ok(Verdict::Keep("cache.invalidations_per_hour spent"));
            }
        }
        store.delete_if(&slot.keys.token, &stored).await.map(|from_store| Verdict::Drop { from_store })
    }

    /// Drops `token` from memory if memory still holds it.
    fn forget(&self, slot: &Slot, token: &Token) {
        let mut memory = slot.memory();
        if memory.as_ref().is_some_and(|e| e.token.same_value(token)) {
            slot.forget(&mut memory);
        }
    }
}
