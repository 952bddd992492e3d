//! Per-upstream state: the in-process token (the memory level), the
//! in-process single-flight guard, and the failure cooldown.

use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::entry::CachedToken;
use super::secrets::{SecretRecord, SecretTags};
use crate::error::Error;
use crate::store::TokenKeys;

/// Per-upstream state.
pub(super) struct Slot {
    /// Where the store keeps this upstream's token, lock and failure.
    pub(super) keys: TokenKeys,
    /// The tags of the configured secrets, to record and read which minted a token.
    pub(super) tags: SecretTags,
    memory: Mutex<Option<CachedToken>>,
    /// In-process single flight.
    pub(super) flight: tokio::sync::Mutex<()>,
    /// Whether this process runs a refresh of the due token.
    pub(super) refreshing: AtomicBool,
    /// Whether the memory level holds a token read from the store on a
    /// caller's behalf and not served yet (its outcome is `store`).
    pub(super) adopted: AtomicBool,
    /// Whether this process minted a token with the previous secret (the
    /// current one refused) that no caller was told of yet.
    pub(super) minted_with_previous: AtomicBool,
    /// The last failure and until when callers fail fast with it.
    failure: Mutex<Option<(Instant, Error)>>,
    /// The secrets' record of the last token dropped from memory (after a
    /// 401), so that the token fetched next carries its times on.
    forgotten: Mutex<Option<SecretRecord>>,
}

impl Slot {
    pub(super) fn new(keys: TokenKeys, tags: SecretTags) -> Self {
        Slot {
            keys,
            tags,
            memory: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            adopted: AtomicBool::new(false),
            minted_with_previous: AtomicBool::new(false),
            failure: Mutex::new(None),
            forgotten: Mutex::new(None),
        }
    }

    /// Drops the memory level's token, keeping its secrets' record.
    pub(super) fn forget(&self, memory: &mut Option<CachedToken>) {
        if let Some(entry) = memory.take() {
            *self.forgotten.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(entry.secrets);
        }
    }

    /// The secrets' record a new token carries on: the stored token's
    /// (`stored`), else this instance's, else the last one it dropped.
    pub(super) fn prior_record(&self, stored: Option<&CachedToken>) -> Option<SecretRecord> {
        stored
            .map(|e| e.secrets.clone())
            .or_else(|| self.memory().as_ref().map(|e| e.secrets.clone()))
            .or_else(|| self.forgotten.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }

    /// The memory level: this instance's token, if any.
    pub(super) fn memory(&self) -> MutexGuard<'_, Option<CachedToken>> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last failure while its cooldown runs.
    pub(super) fn cooling_down(&self) -> Option<Error> {
        let failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failure.as_ref().filter(|(until, _)| Instant::now() < *until).map(|(_, e)| e.clone())
    }

    /// Fails fast with `err` for `for_`.
    pub(super) fn cool_down(&self, err: Error, for_: Duration) {
        *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now() + for_, err));
    }
}
