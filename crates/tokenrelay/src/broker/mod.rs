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
//!
//! This file holds the public API ([`Broker`]: construction, `token`,
//! `summary`); the rest lives in one file per job: `slot` (per-upstream
//! state: the memory level and the cooldown), `rotation` (single flight,
//! refresh, waiting for another instance), `invalidation` (dropping a refused
//! or stale token), `shared_failure` (the failure stored for the cooldown),
//! `entry` (a token's schedule and sealed form), `secrets` (which secret
//! minted a token) and `prefetch` (tokens that must outlive a build).

mod entry;
mod invalidation;
mod prefetch;
mod rotation;
mod secrets;
mod shared_failure;
mod slot;
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::config::{Config, Env, Summary};
use crate::error::{Error, Result};
use crate::store::{Store, TokenKeys, TokenState};
use crate::token::{self, Provenance, Source, Token};
use entry::CachedToken;
pub(crate) use rotation::Refresh;
use secrets::SecretTags;
pub(crate) use secrets::SecretUse;
use slot::Slot;
pub(crate) use upstream::{SendError, UpstreamBody, UpstreamClient, UpstreamResponse, declared_length};

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
    upstream: UpstreamClient,
    slots: BTreeMap<String, Slot>,
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
        let upstream = UpstreamClient::new().map_err(|e| Error::InvalidEnv {
            name: "TLS".into(),
            reason: format!("cannot build the upstream HTTP client: {e}"),
        })?;
        let store = Store::from_env(env, &config.store, http.clone(), &config.file)?;
        let slots = config
            .upstreams()
            .map(|u| {
                let keys = TokenKeys::new(store.namer(), &u.name, &u.source.identity());
                (u.name.clone(), Slot::new(keys, SecretTags::new(store.namer(), &u.name, &u.source)))
            })
            .collect();
        Ok(Broker { inner: Arc::new(Inner { config, store, http, upstream, slots }) })
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

    /// The process's one client of the relay's upstream calls.
    pub(crate) fn upstream_http(&self) -> &UpstreamClient {
        &self.inner.upstream
    }

    /// The shared store, for the relay's rate limits.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// A valid token for `upstream`.
    ///
    /// Served from memory while fresh (no network); else from the store;
    /// else fetched by exactly one caller across all instances. A token due
    /// for refresh is refreshed before this returns (nothing is left running
    /// after it: see [`Broker::token_and_refresh`] to overlap the two).
    pub async fn token(&self, upstream: &str) -> Result<Token> {
        let (token, refresh) = self.token_and_refresh(upstream).await?;
        if let Some(refresh) = refresh {
            refresh.await;
        }
        Ok(token)
    }

    /// A valid token for `upstream`, and, when it is due, its refresh, for
    /// the caller to run alongside its use of the token and to finish before
    /// its own answer ends: a serverless instance may be frozen right after.
    pub(crate) async fn token_and_refresh(&self, upstream: &str) -> Result<(Token, Option<Refresh>)> {
        let (source, slot) = self.slot(upstream)?;
        if let Source::Static(key) = source {
            return Ok((token::static_token(key), None));
        }
        let now = SystemTime::now();
        // The token alone is copied out, not the whole entry with its secrets' record.
        let valid = slot.memory().as_ref().filter(|e| e.is_valid(now)).map(|e| (e.token.clone(), e.is_fresh(now)));
        if let Some((token, fresh)) = valid {
            let refresh = if fresh { None } else { self.refresh_due(upstream) };
            let outcome =
                if slot.adopted.swap(false, Ordering::AcqRel) { Provenance::Store } else { Provenance::Memory };
            return Ok((token.from(outcome), refresh));
        }
        // Boxed: the refresh's state machine (a store trip and a token fetch,
        // kilobytes) would otherwise sit in every warm call's future above it.
        Ok((Box::pin(self.refresh(upstream, false)).await?, None))
    }

    /// Whether this process minted a token for `upstream` with the previous
    /// secret, because the endpoint refused the current one, since the last
    /// call (its token fetch, or a refresh ahead of it): said once.
    pub(crate) fn take_minted_with_previous(&self, upstream: &str) -> bool {
        self.slot(upstream).is_ok_and(|(_, slot)| slot.minted_with_previous.swap(false, Ordering::AcqRel))
    }

    /// The store keys to read for `upstream`'s token when this instance has
    /// no valid one in memory, so that a cold request can read it in the same
    /// round trip as its other store calls (then [`Broker::adopt`]).
    pub(crate) fn keys_to_read(&self, upstream: &str) -> Option<&TokenKeys> {
        let (source, slot) = self.slot(upstream).ok()?;
        let now = SystemTime::now();
        let valid = slot.memory().as_ref().is_some_and(|e| e.is_valid(now));
        (source.rotates() && !valid).then_some(&slot.keys)
    }

    /// Takes a token state read from the store for `upstream` into memory
    /// when it holds a valid token.
    pub(crate) fn adopt(&self, upstream: &str, state: &TokenState) {
        let Ok((_, slot)) = self.slot(upstream) else { return };
        let now = SystemTime::now();
        let stored = state.token.as_ref().and_then(|t| self.entry(slot, &t.plain)).filter(|e| e.is_valid(now));
        if let Some(entry) = stored {
            let mut memory = slot.memory();
            if memory.as_ref().is_none_or(|m| !m.is_valid(now)) {
                // The same line as a token found by the broker itself: logs read alike either way.
                tracing::info!(
                    upstream,
                    outcome = Provenance::Store.as_str(),
                    valid_for_s = entry.ttl(now).as_secs(),
                    "token ready"
                );
                *memory = Some(entry);
                slot.adopted.store(true, Ordering::Release);
            }
        }
    }

    /// `upstream`'s stored token, read from the store (never memory),
    /// without the token itself: when it was minted, when it expires, and
    /// which secret minted it; `None` for a static key or when no valid
    /// token is stored.
    pub(crate) async fn stored_token(&self, upstream: &str) -> Result<Option<StoredToken>> {
        let (source, slot) = self.slot(upstream)?;
        if !source.rotates() {
            return Ok(None);
        }
        let state =
            slot.keys.read(&self.inner.store).await.map_err(|e| Error::StoreUnreadable { reason: e.to_string() })?;
        let entry = state.token.as_ref().and_then(|t| self.entry(slot, &t.plain));
        let now = SystemTime::now();
        Ok(entry.map(|e| StoredToken {
            minted_at: now - e.age(now),
            expires_at: e.token.expires_at(),
            secrets: slot.tags.read(&e.secrets),
            has_previous: source.has_previous(),
        }))
    }

    /// The upstream's token source and state.
    fn slot(&self, upstream: &str) -> Result<(&Source, &Slot)> {
        let u = self.inner.config.upstreams.get(upstream).ok_or_else(|| Error::UnknownUpstream(upstream.to_owned()))?;
        Ok((&u.source, &self.inner.slots[upstream]))
    }

    /// Reads an opened token back into an entry with this config's
    /// schedule, its token marked with the secret that minted it.
    fn entry(&self, slot: &Slot, plain: &[u8]) -> Option<CachedToken> {
        let mut entry = CachedToken::from_bytes(plain, &self.inner.config.cache)?;
        entry.token = entry.token.minted(slot.tags.label(entry.secrets.minted_with.as_deref()));
        Some(entry)
    }
}

/// A stored token as `status` shows it, without the token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredToken {
    pub(crate) minted_at: SystemTime,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) secrets: SecretUse,
    /// Whether the config names a previous secret.
    pub(crate) has_previous: bool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.inner.store.describe())
            .field("upstreams", &self.inner.slots.keys())
            .finish()
    }
}
