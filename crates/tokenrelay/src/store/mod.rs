//! The shared token store: Upstash Redis over REST when configured, else an
//! embedded local file store. Both implement the few operations of
//! [`Backend`]; [`Store`] seals what it writes (see [`seal`]) and names the
//! keys (see [`keys`]).

mod keys;
mod lease;
mod local;
pub(crate) mod seal;
pub(crate) mod upstash;

use std::sync::{Arc, Once};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::config::{Env, StoreSettings};
use crate::error::{Error, MissingVar, Result};
use keys::KeyNamer;
pub(crate) use keys::{CacheKeys, SessionKey, TokenKeys};
pub(crate) use lease::{Backoff, Lease};
use local::LocalStore;
use seal::Sealer;
use upstash::UpstashClient;

/// Upstash database URL and token (Upstash's own names).
pub const UPSTASH_VARS: (&str, &str) = ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN");
/// The same, as Vercel KV names them.
pub const VERCEL_KV_VARS: (&str, &str) = ("KV_REST_API_URL", "KV_REST_API_TOKEN");
/// Base64 of the 32-byte AES-256-GCM key sealing tokens at rest.
pub const ENCRYPTION_KEY_VAR: &str = "TOKENRELAY_ENCRYPTION_KEY";
/// Overrides the local store's directory.
pub const LOCAL_STORE_VAR: &str = "TOKENRELAY_LOCAL_STORE";

/// Why a store operation failed. Never holds a secret: the Upstash token is
/// only ever sent as a header.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("timed out")]
    Timeout,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("redis error: {0}")]
    Redis(String),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("local store: {0}")]
    Io(String),
}

impl StoreError {
    pub(crate) fn transport(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            StoreError::Timeout
        } else if e.is_connect() {
            StoreError::Transport("connection failed".to_owned())
        } else {
            // The source, not the error itself: reqwest's Display includes the URL.
            StoreError::Transport(
                std::error::Error::source(e).map_or_else(|| "request failed".to_owned(), ToString::to_string),
            )
        }
    }
}

/// The operations every backend implements, each atomic in its backend, so
/// that one instance's read-modify-write never interleaves with another's.
pub(crate) trait Backend {
    /// The values of `keys`, `None` where absent or expired.
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>, StoreError>;

    /// Deletes `key` only while it still holds `expected`.
    async fn delete_if(&self, key: &str, expected: &str) -> Result<bool, StoreError>;

    /// Takes `lock` for `owner` unless someone holds it, for `lease`; then
    /// reads `keys`, so that a winner sees the state after winning.
    async fn lock_and_read(
        &self,
        lock: &str,
        owner: &str,
        lease: Duration,
        keys: &[&str],
    ) -> Result<(bool, Vec<Option<String>>), StoreError>;

    /// Fenced write: only while `owner` still holds `lock`, stores `value`
    /// under `key` for `ttl` and releases the lock; returns whether it did.
    /// A writer whose lease ran out (another instance may hold the lock and
    /// have stored a newer value) writes nothing.
    async fn set_fenced(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        lock: &str,
        owner: &str,
    ) -> Result<bool, StoreError>;

    /// Stores `value` under `key` for `ttl`, whatever it held.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Adds each count to its counter (created with the count's `ttl`) and
    /// reads `keys`, in one round trip: the new totals in order, and the
    /// values as [`Backend::mget`] gives them.
    async fn count_and_read(
        &self,
        counts: &[Count],
        keys: &[&str],
    ) -> Result<(Vec<u64>, Vec<Option<String>>), StoreError>;
}

/// An addition to a shared counter ([`Store::add_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) key: String,
    pub(crate) add: u64,
    /// How long a counter this addition creates lives.
    pub(crate) ttl: Duration,
}

enum Backends {
    Upstash(UpstashClient),
    Local(LocalStore),
}

/// Runs one [`Backend`] operation on whichever backend is in use.
macro_rules! on_backend {
    ($store:expr, $b:ident => $call:expr) => {
        match &*$store.backend {
            Backends::Upstash($b) => $call.await,
            Backends::Local($b) => $call.await,
        }
    };
}

/// The store in use. It seals every token it writes and opens every token it
/// reads, so callers only see plaintext.
pub(crate) struct Store {
    /// Shared with the [`Lease`]s it hands out, which release themselves.
    backend: Arc<Backends>,
    sealer: Sealer,
    namer: KeyNamer,
}

/// One cached answer's shared state, opened.
#[derive(Debug, Default)]
pub(crate) struct CacheState {
    /// The entry's plaintext; `None` when absent or when it cannot be opened.
    pub(crate) entry: Option<Vec<u8>>,
    /// The upstream's purge record.
    pub(crate) purges: Option<String>,
    /// Whether an instance holds the fill lock.
    pub(crate) filling: bool,
}

/// What a request's one round trip to the store brought back
/// ([`Store::count_and_read`]).
pub(crate) struct ColdRead {
    /// The counters' new totals, in order.
    pub(crate) totals: Vec<u64>,
    pub(crate) token: Option<TokenState>,
    pub(crate) cache: Option<CacheState>,
    /// The values of the cooldown keys asked for, in order.
    pub(crate) cooldowns: Vec<Option<String>>,
}

/// One upstream's shared state as the store holds it.
pub(crate) struct TokenState {
    /// The token, opened; `None` when absent or when it cannot be opened.
    pub(crate) token: Option<StoredToken>,
    /// The failure another instance shared, if any.
    pub(crate) failure: Option<String>,
}

/// An opened token, with the sealed form it was read in so that it can be
/// deleted only while the store still holds exactly that value.
pub(crate) struct StoredToken {
    sealed: String,
    /// The plaintext that was sealed.
    pub(crate) plain: Vec<u8>,
}

impl Store {
    /// Chooses the store from the environment: Upstash (or Vercel KV) when its
    /// URL is set, else the local file store, said once in the log.
    pub(crate) fn from_env(
        env: &Env,
        settings: &StoreSettings,
        http: reqwest::Client,
        config_file: &std::path::Path,
    ) -> Result<Store> {
        let missing = |name: &str, why: &str| Error::MissingEnv {
            file: config_file.to_owned(),
            missing: vec![MissingVar { name: name.to_owned(), used_by: why.to_owned() }],
        };
        let found = [UPSTASH_VARS, VERCEL_KV_VARS].into_iter().find(|(url, _)| env.get(url).is_some());
        let Some((url_var, token_var)) = found else {
            return Self::local(env);
        };
        let url = Url::parse(env.get(url_var).unwrap_or_default())
            .map_err(|e| Error::InvalidEnv { name: url_var.to_owned(), reason: format!("not a URL: {e}") })?;
        let token = env
            .get(token_var)
            .ok_or_else(|| missing(token_var, &format!("the shared store, since {url_var} is set")))?;
        let (sealer, namer) = match env.get(ENCRYPTION_KEY_VAR) {
            Some(key) => keyed(key)?,
            // Without an encryption key, names are keyed by the Upstash token:
            // only who can read the database (and so its plaintext tokens) can
            // test guesses of a client id against them.
            None if settings.allow_unencrypted => (Sealer::Plain, KeyNamer::new(token.as_bytes())),
            None => {
                return Err(missing(
                    ENCRYPTION_KEY_VAR,
                    "encrypting tokens in the remote store; or set store.allow_unencrypted = true",
                ));
            }
        };
        let client = UpstashClient::new(url, SecretString::from(token.to_owned()), http, settings.timeout);
        Ok(Store { backend: Arc::new(Backends::Upstash(client)), sealer, namer })
    }

    fn local(env: &Env) -> Result<Store> {
        let dir = env.get(LOCAL_STORE_VAR).map_or_else(LocalStore::default_dir, Into::into);
        let local = LocalStore::open(dir.clone()).map_err(|e| Error::InvalidEnv {
            name: LOCAL_STORE_VAR.to_owned(),
            reason: format!("cannot use {}: {e}", dir.display()),
        })?;
        let (sealer, namer) = match env.get(ENCRYPTION_KEY_VAR) {
            Some(key) => keyed(key)?,
            None => {
                let key = local.key().map_err(|e| Error::InvalidEnv {
                    name: LOCAL_STORE_VAR.to_owned(),
                    reason: format!("cannot create the local key in {}: {e}", dir.display()),
                })?;
                keyed(&key)?
            }
        };
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            tracing::info!(dir = %dir.display(), "no Upstash database configured (UPSTASH_REDIS_REST_URL or KV_REST_API_URL): using the local file store, shared by processes on this machine only");
        });
        Ok(Store { backend: Arc::new(Backends::Local(local)), sealer, namer })
    }

    /// Whether other machines share this store.
    pub(crate) fn is_remote(&self) -> bool {
        matches!(*self.backend, Backends::Upstash(_))
    }

    /// One line saying which store is used, without secrets.
    pub(crate) fn describe(&self) -> String {
        let sealing = if self.sealer.encrypts() { "AES-256-GCM" } else { "unencrypted" };
        match &*self.backend {
            Backends::Upstash(c) => format!("upstash {} ({sealing})", c.url()),
            Backends::Local(l) => format!("local file store {} ({sealing})", l.dir().display()),
        }
    }

    /// The keys of `upstream`'s token state; `identity` names its credentials.
    pub(crate) fn token_keys(&self, upstream: &str, identity: &str) -> TokenKeys {
        self.namer.token_keys(upstream, identity)
    }

    /// The rate counter key of `client` on `upstream` in fixed window number `window`.
    pub(crate) fn rate_key(&self, upstream: &str, client: &str, window: u64) -> String {
        self.namer.rate(upstream, client, window)
    }

    /// The budget counter of `upstream`, or of its route `route`, in fixed window number `window`.
    pub(crate) fn budget_key(&self, upstream: &str, route: Option<&str>, window: u64) -> String {
        self.namer.budget(upstream, route, window)
    }

    /// Where `upstream`'s cooldown (or its route `route`'s) is shared.
    pub(crate) fn cooldown_key(&self, upstream: &str, route: Option<&str>) -> String {
        self.namer.cooldown(upstream, route)
    }

    /// Shares a cooldown of `upstream` ending at `until_ms` (ms since the
    /// epoch); the key lives until then.
    pub(crate) async fn put_cooldown(&self, key: &str, until_ms: u64, ttl: Duration) -> Result<(), StoreError> {
        on_backend!(self, b => b.set(key, &until_ms.to_string(), ttl))
    }

    /// Reads `keys` as they are stored: counters and cooldowns, nothing sealed.
    pub(crate) async fn read_plain(&self, keys: &[&str]) -> Result<Vec<Option<String>>, StoreError> {
        on_backend!(self, b => b.mget(keys))
    }

    /// Where the key set fetched from `jwks_url` is shared.
    pub(crate) fn jwks_key(&self, jwks_url: &str) -> String {
        self.namer.jwks(jwks_url)
    }

    /// A shared key set (sealed, so only this site's instances can have
    /// written it), as the JSON it was stored as.
    pub(crate) async fn read_jwks(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let values = on_backend!(self, b => b.mget(&[key]))?;
        Ok(values.into_iter().next().flatten().and_then(|sealed| self.open(key, &sealed, "shared JWKS")))
    }

    /// Seals and shares a key set for `ttl`.
    pub(crate) async fn put_jwks(&self, key: &str, json: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let sealed = self.sealer.seal(key, json);
        on_backend!(self, b => b.set(key, &sealed, ttl))
    }

    /// The key relay session cookies are signed with, derived from the store's secret.
    pub(crate) fn session_key(&self) -> &SessionKey {
        self.namer.session_key()
    }

    /// A caller's subject as a keyed hash ([`KeyNamer::subject`]).
    pub(crate) fn subject(&self, subject: &str) -> String {
        self.namer.subject(subject)
    }

    /// The keys of `upstream`'s cached answer named by `identity`.
    pub(crate) fn cache_keys(&self, upstream: &str, identity: &str) -> CacheKeys {
        self.namer.cache_keys(upstream, identity)
    }

    /// Reads the token and the shared failure, in one round trip.
    pub(crate) async fn read(&self, keys: &TokenKeys) -> Result<TokenState, StoreError> {
        let values = on_backend!(self, b => b.mget(&TokenKeys::read(keys)))?;
        Ok(self.state(keys, values))
    }

    /// Takes the refresh lock unless another instance holds it, then reads
    /// the state, in one round trip: when the lock is won, the read shows the
    /// state after winning it, so a token stored by the previous holder is
    /// never fetched again.
    pub(crate) async fn lock_and_read(
        &self,
        keys: &TokenKeys,
        lease: Duration,
    ) -> Result<(Option<Lease>, TokenState), StoreError> {
        let (won, values) = self.take(&keys.lock, lease, &keys.read()).await?;
        Ok((won, self.state(keys, values)))
    }

    /// Takes `lock` for `lease` unless someone holds it, then reads `keys`.
    async fn take(
        &self,
        lock: &str,
        lease: Duration,
        keys: &[&str],
    ) -> Result<(Option<Lease>, Vec<Option<String>>), StoreError> {
        let candidate = Lease::new(self.backend.clone(), lock, lease);
        let (won, values) = on_backend!(self, b => b.lock_and_read(lock, candidate.owner(), lease, keys))?;
        let lease = if won {
            Some(candidate)
        } else {
            candidate.settled();
            None
        };
        Ok((lease, values))
    }

    /// Fenced write: stores `value` under `key` for `ttl` and releases the
    /// lease's lock, only while it still holds it; returns whether it stored.
    /// On a store error the lease is released ([`Lease::fenced_write_done`]).
    async fn put_fenced(&self, key: &str, value: &str, ttl: Duration, mut lease: Lease) -> Result<bool, StoreError> {
        lease.sending_fenced_write();
        let written = on_backend!(self, b => b.set_fenced(key, value, ttl, lease.lock(), lease.owner()));
        lease.fenced_write_done(written).await
    }

    /// Seals and stores a new token for `ttl` and releases the lock, only
    /// while the lease still holds it; returns whether it was stored.
    pub(crate) async fn put_token(
        &self,
        keys: &TokenKeys,
        plain: &[u8],
        ttl: Duration,
        lease: Lease,
    ) -> Result<bool, StoreError> {
        let sealed = self.sealer.seal(&keys.token, plain);
        self.put_fenced(&keys.token, &sealed, ttl, lease).await
    }

    /// Shares a token endpoint failure for `ttl` and releases the lock, only
    /// while the lease still holds it; returns whether it was shared.
    pub(crate) async fn put_failure(
        &self,
        keys: &TokenKeys,
        failure: &str,
        ttl: Duration,
        lease: Lease,
    ) -> Result<bool, StoreError> {
        self.put_fenced(&keys.failure, failure, ttl, lease).await
    }

    /// Deletes the token only while the store still holds `token`.
    pub(crate) async fn delete_token(&self, keys: &TokenKeys, token: &StoredToken) -> Result<bool, StoreError> {
        on_backend!(self, b => b.delete_if(&keys.token, &token.sealed))
    }

    /// Adds each count to its shared counter and returns the new totals, in
    /// one round trip; each addition is atomic, so every instance counts together.
    pub(crate) async fn add_counts(&self, counts: &[Count]) -> Result<Vec<u64>, StoreError> {
        Ok(on_backend!(self, b => b.count_and_read(counts, &[]))?.0)
    }

    /// What a cold request needs from the store, in one round trip: adds
    /// `counts` and reads the token state of `token`, the cached answer of
    /// `cache`, each when given, and the `cooldowns` keys.
    pub(crate) async fn count_and_read(
        &self,
        counts: &[Count],
        token: Option<&TokenKeys>,
        cache: Option<&CacheKeys>,
        cooldowns: &[&str],
    ) -> Result<ColdRead, StoreError> {
        let token_keys = token.map(TokenKeys::read).unwrap_or_default();
        let cache_keys = cache.map(CacheKeys::read).unwrap_or_default();
        let keys: Vec<&str> = token_keys.iter().chain(&cache_keys).chain(cooldowns).copied().collect();
        let (totals, mut values) = on_backend!(self, b => b.count_and_read(counts, &keys))?;
        let cooldowns = values.split_off(token_keys.len() + cache_keys.len());
        let cached = values.split_off(token_keys.len());
        let token = token.map(|k| self.state(k, values));
        let cache = cache.map(|k| self.cache_state(k, cached));
        Ok(ColdRead { totals, token, cache, cooldowns })
    }

    /// Reads a cached answer, its upstream's purges and whether a fill is
    /// under way, in one round trip.
    pub(crate) async fn read_cached(&self, keys: &CacheKeys) -> Result<CacheState, StoreError> {
        let values = on_backend!(self, b => b.mget(&keys.read()))?;
        Ok(self.cache_state(keys, values))
    }

    /// Takes the fill lock unless another instance holds it, then reads the
    /// answer and purges, in one round trip (as [`Store::lock_and_read`]).
    pub(crate) async fn lock_cached(
        &self,
        keys: &CacheKeys,
        lease: Duration,
    ) -> Result<(Option<Lease>, CacheState), StoreError> {
        let (won, mut values) = self.take(&keys.lock, lease, &[&keys.entry, &keys.purges]).await?;
        // Whoever won, the lock is held now.
        values.push(Some(String::new()));
        Ok((won, self.cache_state(keys, values)))
    }

    /// Seals and stores an answer for `ttl` if the lease still holds the fill
    /// lock, and releases it; whether it stored.
    pub(crate) async fn put_cached(
        &self,
        keys: &CacheKeys,
        plain: &[u8],
        ttl: Duration,
        lease: Lease,
    ) -> Result<bool, StoreError> {
        let sealed = self.sealer.seal(&keys.entry, plain);
        self.put_fenced(&keys.entry, &sealed, ttl, lease).await
    }

    /// Takes the purge record's lock and reads the record, in one round trip.
    pub(crate) async fn lock_purges(
        &self,
        keys: &CacheKeys,
        lease: Duration,
    ) -> Result<(Option<Lease>, Option<String>), StoreError> {
        let (won, values) = self.take(&keys.purges_lock, lease, &[&keys.purges]).await?;
        Ok((won, values.into_iter().next().flatten()))
    }

    /// Stores the purge record for `ttl`, releasing the lock the lease holds.
    pub(crate) async fn put_purges(
        &self,
        keys: &CacheKeys,
        record: &str,
        ttl: Duration,
        lease: Lease,
    ) -> Result<bool, StoreError> {
        self.put_fenced(&keys.purges, record, ttl, lease).await
    }

    /// Opens `[entry, purges, lock]` values; an entry that cannot be opened is absent.
    fn cache_state(&self, keys: &CacheKeys, values: Vec<Option<String>>) -> CacheState {
        let mut values = values.into_iter();
        let entry = values.next().flatten().and_then(|sealed| self.open(&keys.entry, &sealed, "cached answer"));
        CacheState { entry, purges: values.next().flatten(), filling: values.next().flatten().is_some() }
    }

    /// Opens `sealed`, stored under `key`. A value that cannot be opened (key
    /// changed, tampered) is treated as absent, and soon overwritten.
    fn open(&self, key: &str, sealed: &str, what: &str) -> Option<Vec<u8>> {
        self.sealer
            .open(key, sealed)
            .map_err(|e| tracing::warn!(key, error = %e, "ignoring a {what} that cannot be opened"))
            .ok()
    }

    /// Opens `[token, failure]` values.
    fn state(&self, keys: &TokenKeys, values: Vec<Option<String>>) -> TokenState {
        let mut values = values.into_iter();
        let token = values
            .next()
            .flatten()
            .and_then(|sealed| Some(StoredToken { plain: self.open(&keys.token, &sealed, "stored token")?, sealed }));
        TokenState { token, failure: values.next().flatten() }
    }
}

/// The sealer and key namer of a base64 encryption key.
fn keyed(key: &str) -> Result<(Sealer, KeyNamer)> {
    let key =
        seal::decode_key(key).map_err(|reason| Error::InvalidEnv { name: ENCRYPTION_KEY_VAR.to_owned(), reason })?;
    Ok((Sealer::new(&key), KeyNamer::new(&key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_add_up_across_instances_through_upstash() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let redis = testkit::RedisServer::start().await.unwrap();
            let upstash = testkit::Upstash::start(&redis).await.unwrap();
            let env = Env::from_pairs([(UPSTASH_VARS.0, upstash.url()), (UPSTASH_VARS.1, upstash.token().to_owned())]);
            let settings = StoreSettings { allow_unencrypted: true, timeout: Duration::from_secs(2) };
            let open =
                || Store::from_env(&env, &settings, reqwest::Client::new(), std::path::Path::new("t.toml")).unwrap();
            let (a, b) = (open(), open());
            let ttl = Duration::from_secs(30);
            let count = |key: &str, add| Count { key: key.to_owned(), add, ttl };
            assert_eq!(a.add_counts(&[count("rate:x", 3), count("rate:y", 1)]).await.unwrap(), [3, 1]);
            assert_eq!(upstash.requests(), 1, "one round trip for every counter");
            assert_eq!(b.add_counts(&[count("rate:x", 2)]).await.unwrap(), [5], "both instances count together");
            let pttl = upstash.redis_pttl("rate:x").await;
            assert!(pttl > 25_000 && pttl <= 30_000, "the counter expires in Redis too: {pttl}");
        })
        .await
        .unwrap();
    }
}
