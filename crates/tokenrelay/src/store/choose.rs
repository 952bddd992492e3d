//! Which store a process uses, chosen once from its environment: Upstash
//! (under Upstash's or Vercel KV's variable names) when its URL is set, else
//! the local file store; and the secret its values are sealed and its keys
//! named with.

use std::sync::{Arc, Once};

use secrecy::SecretString;
use url::Url;

use super::keys::KeyNamer;
use super::keys::session::SessionKey;
use super::local::LocalStore;
use super::seal::{self, Sealer};
use super::upstash::UpstashClient;
use super::{Backends, Store};
use crate::config::{Env, StoreSettings};
use crate::error::{Error, MissingVar, Result};

/// Upstash database URL and token (Upstash's own names).
pub const UPSTASH_VARS: (&str, &str) = ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN");
/// The same, as Vercel KV names them.
pub const VERCEL_KV_VARS: (&str, &str) = ("KV_REST_API_URL", "KV_REST_API_TOKEN");
/// Base64 of the 32-byte AES-256-GCM key sealing tokens at rest.
pub const ENCRYPTION_KEY_VAR: &str = "TOKENRELAY_ENCRYPTION_KEY";
/// Overrides the local store's directory.
pub const LOCAL_STORE_VAR: &str = "TOKENRELAY_LOCAL_STORE";

/// How the store seals values, names keys and signs sessions: all from one secret.
struct Keyed {
    sealer: Sealer,
    namer: KeyNamer,
    session: SessionKey,
}

impl Keyed {
    /// Everything derived from `secret`, sealing with `sealer`.
    fn new(sealer: Sealer, secret: &[u8]) -> Self {
        Self { sealer, namer: KeyNamer::new(secret), session: SessionKey::derive(secret) }
    }

    /// From a base64 encryption key.
    fn from_key(key: &str) -> Result<Self> {
        let key = seal::decode_key(key)
            .map_err(|reason| Error::InvalidEnv { name: ENCRYPTION_KEY_VAR.to_owned(), reason })?;
        Ok(Self::new(Sealer::new(&key), &key))
    }

    fn store(self, backend: Backends) -> Store {
        Store { backend: Arc::new(backend), sealer: self.sealer, namer: self.namer, session: self.session }
    }
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
        let keyed = match env.get(ENCRYPTION_KEY_VAR) {
            Some(key) => Keyed::from_key(key)?,
            // Without an encryption key, names are keyed by the Upstash token:
            // only who can read the database (and so its plaintext tokens) can
            // test guesses of a client id against them.
            None if settings.allow_unencrypted => Keyed::new(Sealer::Plain, token.as_bytes()),
            None => {
                return Err(missing(
                    ENCRYPTION_KEY_VAR,
                    "encrypting tokens in the remote store; or set store.allow_unencrypted = true",
                ));
            }
        };
        let client = UpstashClient::new(url, SecretString::from(token.to_owned()), http, settings.timeout);
        Ok(keyed.store(Backends::Upstash(client)))
    }

    fn local(env: &Env) -> Result<Store> {
        let dir = env.get(LOCAL_STORE_VAR).map_or_else(LocalStore::default_dir, Into::into);
        let local = LocalStore::open(dir.clone()).map_err(|e| Error::InvalidEnv {
            name: LOCAL_STORE_VAR.to_owned(),
            reason: format!("cannot use {}: {e}", dir.display()),
        })?;
        let keyed = match env.get(ENCRYPTION_KEY_VAR) {
            Some(key) => Keyed::from_key(key)?,
            None => {
                let key = local.key().map_err(|e| Error::InvalidEnv {
                    name: LOCAL_STORE_VAR.to_owned(),
                    reason: format!("cannot create the local key in {}: {e}", dir.display()),
                })?;
                Keyed::from_key(&key)?
            }
        };
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            tracing::info!(dir = %dir.display(), "no Upstash database configured (UPSTASH_REDIS_REST_URL or KV_REST_API_URL): using the local file store, shared by processes on this machine only");
        });
        Ok(keyed.store(Backends::Local(local)))
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
}
