//! The token broker: two cache levels and single-flight rotation.
//!
//! 1. **In-process cache.** A warm instance serves a fresh token with no
//!    network call at all, and refreshes it in the background once it is
//!    within the refresh window.
//! 2. **Shared store.** On a miss, the sealed token is read from the store
//!    (one round trip). When it is missing or due, exactly one caller across
//!    all instances fetches it: an in-process guard plus a distributed lock
//!    (`SET NX PX` with an owner value, released by compare-and-delete). The
//!    others wait, with jittered backoff and a bound, for the new token; a
//!    crashed holder's lock simply expires. The new token is written only
//!    while its fetcher still holds the lock (a fenced write), so a holder
//!    whose lease ran out never overwrites a newer token.
//!
//! If the store fails, the broker fetches directly and logs a warning; the
//! next rotation tries the store again. If the token endpoint fails, the
//! failure is remembered for a cooldown, in-process and in the store, so no
//! instance hammers it.

mod entry;
mod prefetch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Env, Summary};
use crate::error::{Error, Result};
use crate::store::{Store, StoreError, TokenKeys, TokenState};
use crate::token::{Outcome, Source, Token, retry};
use entry::Entry;

/// First pause of a caller waiting for another instance's refresh; doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
/// Longest pause between two looks at the store while waiting.
const MAX_POLL: Duration = Duration::from_millis(400);
/// When another instance holds the lock and our token is still valid, look
/// again after this long instead of on every request.
const REFRESH_RETRY: Duration = Duration::from_secs(1);
/// The window of `cache.invalidations_per_hour`.
const INVALIDATION_WINDOW: Duration = Duration::from_secs(3600);
/// Connect timeout of the broker's HTTP client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Fetches, caches and rotates the tokens of the configured upstreams.
///
/// Cheap to clone; build one per process and share it.
///
/// ```no_run
/// # async fn demo() -> Result<(), tokenrelay::Error> {
/// use tokenrelay::{Broker, Env};
///
/// let broker = Broker::from_env(&Env::local())?;
/// let token = broker.token("getty").await?;
/// // ... call the API with `token.expose()`; on a 401:
/// if broker.invalidate("getty", &token).await? {
///     let fresh = broker.token("getty").await?; // and retry once
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    http: reqwest::Client,
    slots: BTreeMap<String, Slot>,
}

/// Per-upstream state.
struct Slot {
    /// Where the store keeps this upstream's token, lock and failure.
    keys: TokenKeys,
    memory: Mutex<Option<Entry>>,
    /// In-process single flight.
    flight: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    /// The last failure and until when callers fail fast with it.
    failure: Mutex<Option<(Instant, Error)>>,
}

/// Why [`Broker::invalidate`] kept a young token (a log field).
const TOO_YOUNG: &str = "younger than cache.min_token_age";

/// What [`Broker::invalidate`] decided.
enum Verdict {
    /// Drop it from memory; `from_store` when the store held it and dropped it too.
    Drop { from_store: bool },
    /// Keep it, for this reason (a log field).
    Keep(&'static str),
}

/// A token endpoint failure as shared through the store (never a secret:
/// error reasons are built from codes and statuses and scrubbed).
#[derive(Serialize, Deserialize)]
struct SharedFailure {
    code: String,
    reason: String,
}

impl Broker {
    /// Loads the config ([`Config::load`]) and builds a broker on the store
    /// the environment selects.
    pub fn from_env(env: &Env) -> Result<Broker> {
        Self::new(Config::load(env)?, env)
    }

    /// Builds a broker for `config`, on the store the environment selects:
    /// Upstash (or Vercel KV) when configured, else the local file store.
    pub fn new(config: Config, env: &Env) -> Result<Broker> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("tokenrelay/", env!("CARGO_PKG_VERSION")))
            // Never follow redirects: the relay must not be steered to another
            // host, and a token endpoint has no business redirecting.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::InvalidEnv {
                name: "TLS".into(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        let store = Store::from_env(env, &config.store, http.clone(), &config.file)?;
        let slots = config
            .upstreams()
            .map(|u| (u.name.clone(), Slot::new(store.token_keys(&u.name, &u.source.identity()))))
            .collect();
        Ok(Broker { inner: Arc::new(Inner { config, store, http, slots }) })
    }

    /// The validated config.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A redacted summary of the effective config and store.
    pub fn summary(&self) -> Summary {
        self.inner.config.summary(self.inner.store.describe())
    }

    /// Whether the store is shared beyond this machine (Upstash).
    pub fn has_remote_store(&self) -> bool {
        self.inner.store.is_remote()
    }

    /// The process's one HTTP client, shared with the relay.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The shared store, for the relay's rate limits.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// A valid token for `upstream`.
    ///
    /// Served from memory while fresh (no network); else from the store;
    /// else fetched by exactly one caller across all instances.
    pub async fn token(&self, upstream: &str) -> Result<Token> {
        let (source, slot) = self.slot(upstream)?;
        if !source.rotates() {
            return retry::fetch(source, &self.inner.http, upstream).await;
        }
        let now = SystemTime::now();
        if let Some(entry) = slot.memory().clone().filter(|e| e.is_valid(now)) {
            if !entry.is_fresh(now) {
                self.refresh_in_background(upstream);
            }
            return Ok(entry.token.from(Outcome::Memory));
        }
        self.refresh(upstream, false).await
    }

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
        let (source, slot) = self.slot(upstream)?;
        if !source.rotates() {
            return Ok(false);
        }
        let min_age = self.inner.config.cache.min_token_age;
        // Judged from memory first: a refused young token costs no store call.
        let young =
            slot.memory().as_ref().is_some_and(|e| e.token.same_value(rejected) && e.age(SystemTime::now()) < min_age);
        let verdict = if young {
            Verdict::Keep(TOO_YOUNG)
        } else {
            self.drop_stored(slot, rejected, true).await.unwrap_or_else(|e| {
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
    async fn discard(&self, upstream: &str, stale: &Token) -> Result<()> {
        let (_, slot) = self.slot(upstream)?;
        self.forget(slot, stale);
        if let Err(e) = self.drop_stored(slot, stale, false).await {
            tracing::warn!(upstream, error = %e, "shared store unavailable while discarding; dropped from memory only");
        }
        Ok(())
    }

    /// Drops `token` from the store while the store holds it (compare-and-delete).
    /// When `limited`, keeps it instead if it is younger than
    /// `cache.min_token_age` or the upstream's invalidations for the hour are spent.
    async fn drop_stored(&self, slot: &Slot, token: &Token, limited: bool) -> std::result::Result<Verdict, StoreError> {
        let cache = &self.inner.config.cache;
        let store = &self.inner.store;
        let gone = Verdict::Drop { from_store: false };
        let Some(stored) = store.read(&slot.keys).await?.token else { return Ok(gone) };
        let Some(entry) = self.entry(&stored.plain).filter(|e| e.token.same_value(token)) else { return Ok(gone) };
        if limited {
            if entry.age(SystemTime::now()) < cache.min_token_age {
                return Ok(Verdict::Keep(TOO_YOUNG));
            }
            let (spent, _) = store.incr_window(&slot.keys.invalidations, INVALIDATION_WINDOW).await?;
            if spent > u64::from(cache.invalidations_per_hour) {
                return Ok(Verdict::Keep("cache.invalidations_per_hour spent"));
            }
        }
        store.delete_token(&slot.keys, &stored).await.map(|from_store| Verdict::Drop { from_store })
    }

    /// Drops `token` from memory if memory still holds it.
    fn forget(&self, slot: &Slot, token: &Token) {
        let mut memory = slot.memory();
        if memory.as_ref().is_some_and(|e| e.token.same_value(token)) {
            *memory = None;
        }
    }

    fn slot(&self, upstream: &str) -> Result<(&Source, &Slot)> {
        let u = self.inner.config.upstreams.get(upstream).ok_or_else(|| Error::UnknownUpstream(upstream.to_owned()))?;
        Ok((&u.source, &self.inner.slots[upstream]))
    }

    fn refresh_in_background(&self, upstream: &str) {
        let Ok((_, slot)) = self.slot(upstream) else { return };
        if slot.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (broker, upstream) = (self.clone(), upstream.to_owned());
        tokio::spawn(async move {
            if let Err(e) = broker.refresh(&upstream, true).await {
                tracing::warn!(upstream, code = e.code(), error = %e, "background token refresh failed");
            }
            if let Ok((_, slot)) = broker.slot(&upstream) {
                slot.refreshing.store(false, Ordering::Release);
            }
        });
    }

    /// Single flight within the process, then across instances.
    async fn refresh(&self, upstream: &str, background: bool) -> Result<Token> {
        let (source, slot) = self.slot(upstream)?;
        let _flight = slot.flight.lock().await;
        let now = SystemTime::now();
        let current = slot.memory().clone().filter(|e| e.is_valid(now));
        // Another task may have refreshed while this one waited for the guard.
        if let Some(e) = current.as_ref().filter(|e| e.is_fresh(now) || !background) {
            return Ok(e.token.clone().from(Outcome::Memory));
        }
        if let Some(err) = slot.cooling_down() {
            return current.map(|e| e.token.from(Outcome::Memory)).ok_or(err);
        }
        let started = Instant::now();
        match self.rotate(upstream, source, slot, current.as_ref()).await {
            Ok((entry, outcome)) => {
                tracing::info!(
                    upstream,
                    outcome = outcome.as_str(),
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
                        Ok(e.token.from(Outcome::Memory))
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
        current: Option<&Entry>,
    ) -> Result<(Entry, Outcome)> {
        let cache = &self.inner.config.cache;
        let store = &self.inner.store;
        let owner = format!("{:032x}", fastrand::u128(..));
        let deadline = Instant::now() + cache.wait_timeout;
        let mut pause = FIRST_POLL;

        let mut state = match store.read(&slot.keys).await {
            Ok(v) => v,
            Err(e) => return self.fetch_direct(upstream, source, e).await,
        };
        loop {
            let now = SystemTime::now();
            let stored = state.token.as_ref().and_then(|t| self.entry(&t.plain));
            if let Some(e) = stored.clone().filter(|e| e.is_fresh(now)) {
                return Ok((e, Outcome::Store));
            }
            if let Some(err) = state.failure.as_deref().and_then(|raw| shared_failure(upstream, raw)) {
                return Err(err);
            }
            let (won, after) = match store.lock_and_read(&slot.keys, &owner, cache.lock_lease).await {
                Ok(x) => x,
                Err(e) => return self.fetch_direct(upstream, source, e).await,
            };
            if won {
                return self.fetch_as_leader(upstream, source, slot, &owner, &after).await;
            }
            // Someone else is refreshing: keep serving a valid token meanwhile.
            let valid = stored.or_else(|| current.cloned()).filter(|e| e.is_valid(now));
            if let Some(e) = valid {
                return Ok((e.retry_refresh_after(now, REFRESH_RETRY), Outcome::Store));
            }
            if Instant::now() >= deadline {
                return Err(Error::TokenUnavailable {
                    upstream: upstream.to_owned(),
                    reason: format!(
                        "waited {} for another instance to refresh the token",
                        humantime::format_duration(cache.wait_timeout)
                    ),
                });
            }
            tokio::time::sleep(pause.mul_f64(0.5 + fastrand::f64())).await;
            pause = (pause * 2).min(MAX_POLL);
            state = after;
        }
    }

    /// This caller holds the lock: fetch, store, release, in that order.
    async fn fetch_as_leader(
        &self,
        upstream: &str,
        source: &Source,
        slot: &Slot,
        owner: &str,
        after: &TokenState,
    ) -> Result<(Entry, Outcome)> {
        let cache = &self.inner.config.cache;
        let store = &self.inner.store;
        let now = SystemTime::now();
        // The previous holder may have stored a token just before we locked.
        if let Some(e) = after.token.as_ref().and_then(|t| self.entry(&t.plain)).filter(|e| e.is_fresh(now)) {
            if let Err(err) = store.unlock(&slot.keys, owner).await {
                tracing::warn!(upstream, error = %err, "could not release the refresh lock; it will expire");
            }
            return Ok((e, Outcome::Store));
        }
        let fetched_at = SystemTime::now();
        match retry::fetch(source, &self.inner.http, upstream).await {
            Ok(token) => {
                let entry = Entry::new(token, fetched_at, cache);
                let ttl = entry.ttl(SystemTime::now());
                match store.put_token(&slot.keys, &entry.to_bytes(), ttl, owner).await {
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
                Ok((entry, Outcome::Fetched))
            }
            Err(err) => {
                let shared = SharedFailure { code: err.code().to_owned(), reason: reason_of(&err) };
                let value = serde_json::to_string(&shared).unwrap_or_default();
                match store.put_failure(&slot.keys, &value, cache.failure_cooldown, owner).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(upstream, "the refresh lock's lease ran out; not sharing the failure"),
                    Err(e) => tracing::warn!(upstream, error = %e, "could not share the token failure"),
                }
                Err(err)
            }
        }
    }

    /// The store failed: degrade to a direct fetch, guarded in-process only.
    async fn fetch_direct(&self, upstream: &str, source: &Source, cause: StoreError) -> Result<(Entry, Outcome)> {
        tracing::warn!(upstream, error = %cause, "shared store unavailable; fetching the token directly");
        let fetched_at = SystemTime::now();
        let token = retry::fetch(source, &self.inner.http, upstream).await?;
        Ok((Entry::new(token, fetched_at, &self.inner.config.cache), Outcome::Direct))
    }

    /// Reads an opened token back into an entry with this config's schedule.
    fn entry(&self, plain: &[u8]) -> Option<Entry> {
        Entry::from_bytes(plain, &self.inner.config.cache)
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.inner.store.describe())
            .field("upstreams", &self.inner.slots.keys())
            .finish()
    }
}

impl Slot {
    fn new(keys: TokenKeys) -> Self {
        Slot {
            keys,
            memory: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    fn memory(&self) -> MutexGuard<'_, Option<Entry>> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cooling_down(&self) -> Option<Error> {
        let failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failure.as_ref().filter(|(until, _)| Instant::now() < *until).map(|(_, e)| e.clone())
    }

    fn cool_down(&self, err: Error, for_: Duration) {
        *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now() + for_, err));
    }
}

/// The human reason inside a token error, without the upstream prefix.
fn reason_of(err: &Error) -> String {
    match err {
        Error::TokenRejected { reason, .. }
        | Error::TokenResponseInvalid { reason, .. }
        | Error::TokenUnavailable { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Rebuilds the error another instance shared.
fn shared_failure(upstream: &str, raw: &str) -> Option<Error> {
    let f: SharedFailure = serde_json::from_str(raw).ok()?;
    let upstream = upstream.to_owned();
    let reason = format!("{} (shared by another instance; retried after the cooldown)", f.reason);
    Some(match f.code.as_str() {
        "token_rejected" => Error::TokenRejected { upstream, reason },
        "token_response_invalid" => Error::TokenResponseInvalid { upstream, reason },
        _ => Error::TokenUnavailable { upstream, reason },
    })
}
